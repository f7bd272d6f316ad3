"""Read calendar files people upload or fetch: ``.ics`` or ``.eml``, in whatever charset.

Everything here treats the bytes as hostile: the size is checked before anything is parsed,
the structure (``BEGIN``/``END`` nesting, number of events) is checked line by line so that a
refusal can say where the file went wrong, and only then does ``icalendar`` parse it.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from flask_babel import gettext
from icalendar import Calendar
from icalendar.timezone import tzp

UTF8_BOM = b"\xef\xbb\xbf"
# Components that become events of their own, counted against ``Limits.max_events``.
_EVENT_LIKE = {"VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY"}
_NAME = re.compile(r"[A-Za-z0-9-]+\Z")
_HEADER_LINE = re.compile(rb"[A-Za-z][A-Za-z0-9-]*:[ \t]")


@dataclass(frozen=True)
class Limits:
    """Caps that keep a hostile or runaway file from taking the server down."""

    max_bytes: int = 10 * 1024 * 1024
    max_events: int = 20_000
    max_depth: int = 8
    max_occurrences: int = 1_000  # per series, within the window
    seconds: float = 60.0


def limits_from(config: Mapping[str, Any]) -> Limits:
    """Return the limits an app's settings ask for (``CALENDAR_IMPORT_…``)."""
    return Limits(
        max_bytes=config.get("CALENDAR_IMPORT_MAX_BYTES", Limits.max_bytes),
        max_events=config.get("CALENDAR_IMPORT_MAX_EVENTS", Limits.max_events),
        seconds=config.get("CALENDAR_IMPORT_SECONDS", Limits.seconds),
    )


class CalendarFileError(Exception):
    """A file refused whole, with a message that says what is wrong and where."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Readable(Protocol):
    """Anything with ``read(size)``: an open file, an upload, an HTTP response."""

    def read(self, size: int = -1, /) -> bytes: ...


def read_capped(stream: Readable, max_bytes: int, *, declared: str | None = None) -> bytes:
    """Read at most ``max_bytes`` from ``stream``, refusing more before it is all read.

    ``declared`` is a length the sender announced (Content-Length), refused at once if too big.
    """
    too_large = CalendarFileError(
        gettext(
            "the file is larger than %(most)d bytes "
            "(CALENDAR_IMPORT_MAX_BYTES sets the limit of %(most)d bytes)",
            most=max_bytes,
        )
    )
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large
    return data


@dataclass
class CalendarFile:
    """The calendars found in one file, and what a person should know about how it was read."""

    calendars: list[Calendar]
    notes: list[str] = field(default_factory=list)


def read_calendar_file(data: bytes, *, name: str, limits: Limits) -> CalendarFile:
    """Return the calendars in ``data`` (an ``.ics`` file or an ``.eml`` invite) or refuse it."""
    if len(data) > limits.max_bytes:
        raise CalendarFileError(
            gettext(
                "the file is %(size)s; the limit is %(most)s",
                size=_size(len(data)),
                most=_size(limits.max_bytes),
            )
        )
    if not data.strip():
        raise CalendarFileError(gettext("the file is empty"))
    if _looks_like_email(data, name):
        return _read_email(data, limits)
    result = CalendarFile([])
    text = _decode(_logical_lines(data), charset=None, notes=result.notes)
    result.calendars = _parse(text, limits)
    return result


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MB"
    return f"{count / 1024:.0f} KB" if count >= 1024 else gettext("%(count)d bytes", count=count)


def _looks_like_email(data: bytes, name: str) -> bool:
    head = data.lstrip()
    if head.startswith(UTF8_BOM):
        head = head[len(UTF8_BOM) :]
    if head[:6].upper() == b"BEGIN:":
        return False
    return name.lower().endswith(".eml") or bool(_HEADER_LINE.match(head))


def _read_email(data: bytes, limits: Limits) -> CalendarFile:
    """Take the calendar out of an invite: the ``text/calendar`` part or an ``.ics`` attachment.

    Outlook sends the same invite twice (the alternative part and an attachment), so identical
    parts are read once.
    """
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    result = CalendarFile([])
    seen: set[bytes] = set()
    for part in message.walk():
        if part.is_multipart() or not _is_calendar_part(part):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or payload in seen or not payload.strip():
            continue
        seen.add(payload)
        charset = part.get_content_charset() or "utf-8"
        text = _decode(_logical_lines(payload), charset=charset, notes=result.notes)
        result.calendars.extend(_parse(text, limits))
    if not seen:
        raise CalendarFileError(
            gettext(
                "the email holds no calendar invite (no text/calendar part and no .ics attachment)"
            )
        )
    return result


def _is_calendar_part(part: email.message.Message) -> bool:
    content_type = part.get_content_type()
    filename = (part.get_filename() or "").lower()
    return content_type in {"text/calendar", "application/ics"} or filename.endswith(".ics")


@dataclass
class _Line:
    number: int  # the physical line it starts on, for messages
    parts: list[bytes]


def _logical_lines(data: bytes) -> list[_Line]:
    """Unfold the raw bytes into logical lines, remembering where each one starts.

    Unfolding bytes, not text, keeps a multi-byte character split across a fold intact. Lines
    may end in CRLF or a bare LF; blank lines are dropped.
    """
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    lines: list[_Line] = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw[:1] in (b" ", b"\t") and lines:
            lines[-1].parts.append(raw[1:])
        elif raw.strip():
            lines.append(_Line(number, [raw]))
    return lines


@dataclass
class _Text:
    numbers: list[int]
    lines: list[str]


def _decode(lines: list[_Line], *, charset: str | None, notes: list[str]) -> _Text:
    """Decode the lines: the declared charset, else UTF-8, else (as old Outlook writes) 1252."""
    joined = [b"".join(line.parts) for line in lines]
    numbers = [line.number for line in lines]
    declared = charset or "utf-8"
    try:
        return _Text(numbers, b"\n".join(joined).decode(declared).split("\n"))
    except LookupError as exc:
        raise CalendarFileError(
            gettext("the charset %(charset)s is not one this server knows", charset=repr(charset))
        ) from exc
    except UnicodeDecodeError:
        pass
    bad = next(numbers[i] for i, line in enumerate(joined) if not _decodes(line, declared))
    fallback = "windows-1252" if charset is None else declared
    if charset is None:
        note = gettext(
            "line %(line)d is not valid %(charset)s; the file was read as %(fallback)s",
            line=bad,
            charset=declared.upper(),
            fallback=fallback,
        )
    else:
        note = gettext(
            "line %(line)d is not valid %(charset)s; the file was read as %(fallback)s "
            "with unreadable characters replaced",
            line=bad,
            charset=declared.upper(),
            fallback=fallback,
        )
    notes.append(note)
    text = b"\n".join(joined).decode(fallback, errors="replace")
    return _Text(numbers, text.split("\n"))


def _decodes(line: bytes, charset: str) -> bool:
    try:
        line.decode(charset)
    except UnicodeDecodeError:
        return False
    return True


# icalendar keeps the zones of the VTIMEZONEs it reads in one cache for the whole process, and
# the first definition of a name wins: Outlook names every zone "Customized Time Zone", so a
# New York invite would keep the Berlin rules of one read before. Each file is read with an
# empty cache, one at a time, and so sees only its own zones.
_ZONE_CACHE = threading.Lock()


def _parse(text: _Text, limits: Limits) -> list[Calendar]:
    """Check the structure line by line, then let icalendar parse it."""
    _check_structure(text, limits)
    try:
        with _ZONE_CACHE:
            tzp.use_zoneinfo()  # which empties the cache
            calendars = Calendar.from_ical("\r\n".join(text.lines), multiple=True)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise CalendarFileError(
            gettext("the calendar could not be read: %(reason)s", reason=_clean(str(exc), 200))
        ) from exc
    return list(calendars)


def _check_structure(text: _Text, limits: Limits) -> None:
    """Refuse a file whose lines or nesting are broken, or that holds too much, saying where."""
    stack: list[tuple[str, int]] = []
    calendars = events = 0
    for number, line in zip(text.numbers, text.lines, strict=True):
        name, colon, value = line.partition(":")
        name = name.split(";", 1)[0]
        if not colon or not _NAME.match(name):
            raise CalendarFileError(
                gettext(
                    "line %(line)d: %(text)s is not a calendar line (NAME:value expected)",
                    line=number,
                    text=_excerpt(line),
                )
            )
        keyword = name.upper()
        if keyword == "BEGIN":
            component = value.strip().upper()
            if not stack and component != "VCALENDAR":
                raise CalendarFileError(
                    gettext(
                        "line %(line)d: BEGIN:%(component)s outside BEGIN:VCALENDAR",
                        line=number,
                        component=_clean(component),
                    )
                )
            stack.append((component, number))
            if len(stack) > limits.max_depth:
                raise CalendarFileError(
                    gettext(
                        "line %(line)d: components nested more than %(most)d deep",
                        line=number,
                        most=limits.max_depth,
                    )
                )
            calendars += component == "VCALENDAR"
            if component in _EVENT_LIKE:
                events += 1
                if events > limits.max_events:
                    raise CalendarFileError(
                        gettext(
                            "line %(line)d: the file holds more than %(most)d events; "
                            "split it into smaller files",
                            line=number,
                            most=limits.max_events,
                        )
                    )
        elif keyword == "END":
            component = value.strip().upper()
            if not stack:
                raise CalendarFileError(
                    gettext(
                        "line %(line)d: END:%(component)s without a BEGIN before it",
                        line=number,
                        component=_clean(component),
                    )
                )
            opened, opened_at = stack.pop()
            if opened != component:
                raise CalendarFileError(
                    gettext(
                        "line %(line)d: END:%(component)s closes BEGIN:%(opened)s "
                        "from line %(opened_at)d",
                        line=number,
                        component=_clean(component),
                        opened=_clean(opened),
                        opened_at=opened_at,
                    )
                )
        elif not stack:
            raise CalendarFileError(
                gettext(
                    "line %(line)d: %(text)s outside BEGIN:VCALENDAR",
                    line=number,
                    text=_excerpt(line),
                )
            )
    if stack:
        opened, opened_at = stack[-1]
        raise CalendarFileError(
            gettext(
                "the file ends inside BEGIN:%(opened)s from line %(opened_at)d "
                "(it may be cut short)",
                opened=_clean(opened),
                opened_at=opened_at,
            )
        )
    if not calendars:
        raise CalendarFileError(gettext("this is not a calendar file: it has no BEGIN:VCALENDAR"))


def _clean(text: str, length: int = 40) -> str:
    """Return a piece of the file fit for a message: short and free of control characters."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[:length])
    return clean + ("…" if len(text) > length else "")


def _excerpt(text: str) -> str:
    """Quote a piece of the file for a message."""
    return repr(_clean(text))
