"""Fuzzing the calendar import with generated calendars and damaged copies of real ones.

Every file must either import with a correct result or be refused whole with a one-line message
that says what is wrong, leaving the database as it was. Nothing may escape as another kind of
exception, and no import may be half written. Where the outcome can be worked out without the
import's own code (events without repetition, in UTC, a known zone, floating or all-day), the
busy time must be exactly that; everywhere, what is stored is in UTC and ends after it starts.

Hypothesis drives the operation functions on a real database session that is rolled back after
each example; a few examples go through ``calendar import`` and the staff upload as well.
"""

from __future__ import annotations

import functools
import io
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

from flask import Flask
from hypothesis import example, given, note, settings
from hypothesis import strategies as st
from markupsafe import escape as escape_html
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from scheduler.calendars.expansion import Expansion
from scheduler.calendars.imports import (
    ImportReport,
    import_busy,
    import_calendar_file,
    import_window,
    read_series,
)
from scheduler.calendars.models import BusyTime, ExternalEvent
from scheduler.calendars.reading import CalendarFileError, Limits
from scheduler.clinic.models import Clinic, Practitioner
from scheduler.extensions import db
from scheduler.staff.models import Role, User
from tests.conftest import NOW, PASSWORD, log_in, token_of

CORPUS = Path(__file__).parent / "calendars"
SAMPLES = sorted(path for path in CORPUS.rglob("*") if path.suffix in {".ics", ".eml"})
WINDOW = import_window(NOW)
CLINIC_ZONES = ("Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")
EVENT_ZONES = (*CLINIC_ZONES, "Europe/Berlin", "Pacific/Chatham", "America/Sao_Paulo", "UTC")
# A small cap on events, so that files over it are quick to make; a rule that may never match
# gets a fifth of a second instead of two. Occurrences have the usual cap.
LIMITS = Limits(max_events=50, seconds=10)
QUICK_RULES = mock.patch("scheduler.calendars.expansion.SERIES_SECONDS", 0.2)
SUMMARY_LINE = re.compile(r"imported \d+, updated \d+, cancelled \d+, skipped \d+, errors \d+")

# CI runs the same examples every time; the whole file takes well under 40 seconds.
FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None)
FEW = settings(FUZZ, max_examples=10)

# Imported before each example, so that "the database is as it was" means something.
EARLIER = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fuzz//EN\r\n"
    b"BEGIN:VEVENT\r\nUID:earlier-1@fuzz\r\nDTSTAMP:20261101T000000Z\r\n"
    b"DTSTART:20261201T090000Z\r\nDTEND:20261201T100000Z\r\nSUMMARY:Earlier\r\nEND:VEVENT\r\n"
    b"BEGIN:VEVENT\r\nUID:earlier-2@fuzz\r\nDTSTAMP:20261101T000000Z\r\n"
    b"DTSTART;TZID=Europe/London:20261207T140000\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\n"
    b"DURATION:PT45M\r\nSUMMARY:Earlier weekly\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


@functools.cache
def earlier() -> Expansion:
    """``EARLIER`` as read for a London clinic, read once (importing never changes it)."""
    return read_series(
        EARLIER, name="earlier.ics", tz=ZoneInfo("Europe/London"), now=NOW, limits=LIMITS
    )


# ----------------------------------------------------------------- what the import stored


def stored(session: Session, practitioner: Practitioner) -> tuple[tuple[object, ...], ...]:
    """Every event and busy row of the practitioner, read back from the database."""
    session.expire_all()
    events = session.execute(
        select(
            ExternalEvent.uid,
            ExternalEvent.sequence,
            ExternalEvent.dtstamp,
            ExternalEvent.cancelled,
            ExternalEvent.summary,
        )
        .where(ExternalEvent.practitioner_id == practitioner.id)
        .order_by(ExternalEvent.uid)
    ).all()
    busy = session.execute(
        select(
            ExternalEvent.uid,
            BusyTime.occurrence,
            BusyTime.start_at,
            BusyTime.end_at,
            BusyTime.summary,
            BusyTime.all_day,
            BusyTime.cancelled,
            BusyTime.sequence,
            BusyTime.dtstamp,
        )
        .join(ExternalEvent)
        .where(BusyTime.practitioner_id == practitioner.id)
        .order_by(ExternalEvent.uid, BusyTime.occurrence)
    ).all()
    return tuple(tuple(row) for row in events) + tuple(tuple(row) for row in busy)


def live_busy(session: Session, practitioner: Practitioner, uid: str) -> list[tuple[object, ...]]:
    """The busy time one series blocks, as (start, end, summary) in order."""
    return [
        tuple(row)
        for row in session.execute(
            select(BusyTime.start_at, BusyTime.end_at, BusyTime.summary)
            .join(ExternalEvent)
            .where(
                BusyTime.practitioner_id == practitioner.id,
                BusyTime.cancelled.is_(False),
                ExternalEvent.uid == uid,
            )
            .order_by(BusyTime.start_at)
        )
    ]


def assert_sound(session: Session, practitioner: Practitioner) -> None:
    """Every stored time is an aware UTC instant, and every busy row ends after it starts."""
    session.expire_all()
    rows = session.scalars(select(BusyTime).where(BusyTime.practitioner_id == practitioner.id))
    for row in rows:
        for moment in (row.start_at, row.end_at, row.occurrence, row.dtstamp):
            assert moment is None or moment.utcoffset() == timedelta(0), row
        assert row.end_at > row.start_at, (row.start_at, row.end_at)
        assert row.summary.isprintable(), row.summary
        assert len(row.summary) <= 500


def assert_readable(text: str) -> None:
    """A message for a person: one printable line that says something."""
    assert text.strip(), "an empty message"
    assert text.isprintable(), repr(text)
    assert "Traceback" not in text


@contextmanager
def clinic_session(app: Flask, zone: str) -> Iterator[tuple[Session, Clinic, Practitioner]]:
    """A session holding a clinic in ``zone`` and a practitioner, all rolled back afterwards."""
    with app.app_context():
        engine = db.engine
    session = Session(engine)
    try:
        clinic = Clinic(name="Fuzz clinic", timezone=zone)
        practitioner = Practitioner(name="Fuzz Practitioner", email="fuzz@clinic.test")
        session.add_all([clinic, practitioner])
        session.flush()
        import_busy(session, practitioner=practitioner, expansion=earlier())
        yield session, clinic, practitioner
    finally:
        session.rollback()
        session.close()


def run_import(
    session: Session, clinic: Clinic, practitioner: Practitioner, data: bytes, name: str
) -> ImportReport:
    with QUICK_RULES:
        return import_calendar_file(
            session,
            clinic=clinic,
            practitioner=practitioner,
            data=data,
            name=name,
            now=NOW,
            limits=LIMITS,
        )


def import_or_refuse(
    session: Session, clinic: Clinic, practitioner: Practitioner, data: bytes, name: str
) -> ImportReport | None:
    """Import a file; return ``None`` if it was refused, after checking that cleanly."""
    before = stored(session, practitioner)
    try:
        report = run_import(session, clinic, practitioner, data, name)
    except CalendarFileError as refused:
        note(f"refused: {refused.message}")
        assert_readable(refused.message)
        assert stored(session, practitioner) == before, "a refused file changed the database"
        return None
    note(f"report: {report.summary()}; problems: {report.problems}")
    assert report.errors == len(report.problems)
    for text in (*report.problems, *report.notes):
        assert_readable(text)
    assert_sound(session, practitioner)
    return report


# ------------------------------------------------------------------ generated calendars


def rarely(one_in: int) -> st.SearchStrategy[bool]:
    """True about once in ``one_in`` draws (``integers`` would favour its bounds)."""
    return st.sampled_from((False,) * (one_in - 1) + (True,))


TEXT = st.text(
    st.sampled_from("abcdefghij KLMNOP0123456789-.,;:/éüßöàñ気功Ωé"), min_size=1, max_size=40
).map(str.strip)
WINDOWS_ZONES = ("W. Europe Standard Time", "GMT Standard Time", "Eastern Standard Time")
UNKNOWN_ZONES = ("Mars/Olympus_Mons", "Europe/Atlantis", "GMT+25", "")
CUSTOM_ZONE = (
    "BEGIN:VTIMEZONE",
    "TZID:Custom Zone",
    "BEGIN:STANDARD",
    "DTSTART:16010101T030000",
    "TZOFFSETFROM:+0200",
    "TZOFFSETTO:+0100",
    "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10",
    "END:STANDARD",
    "BEGIN:DAYLIGHT",
    "DTSTART:16010101T020000",
    "TZOFFSETFROM:+0100",
    "TZOFFSETTO:+0200",
    "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3",
    "END:DAYLIGHT",
    "END:VTIMEZONE",
)


def escape(text: str) -> str:
    """Escape TEXT as RFC 5545 says."""
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def stamp(moment: datetime) -> str:
    return f"{moment:%Y%m%dT%H%M%S}"


@dataclass(frozen=True)
class When:
    """A DTSTART-like value: how it is written and, if it can be worked out, its instant."""

    kind: str  # utc, zone, floating, date, or a kind the oracle does not work out
    zone: str
    value: datetime  # the wall time (midnight for a date)

    def written(self, name: str) -> str:
        if self.kind == "utc":
            return f"{name}:{stamp(self.value)}Z"
        if self.kind == "date":
            return f"{name};VALUE=DATE:{self.value:%Y%m%d}"
        if self.kind == "floating":
            return f"{name}:{stamp(self.value)}"
        if self.kind == "bad-date":  # a date-time that says it is a date
            return f"{name};VALUE=DATE:{stamp(self.value)}"
        return f"{name};TZID={self.zone}:{stamp(self.value)}"

    def moved(self, delta: timedelta) -> When:
        return When(self.kind, self.zone, self.value + delta)

    def instant(self, clinic: ZoneInfo, wall: datetime | None = None) -> datetime:
        """The instant of this value (or of ``wall`` read the same way), as RFC 5545 says:
        the first occurrence of a repeated time, a skipped time with the offset before it."""
        value = self.value if wall is None else wall
        if self.kind == "utc":
            return value.replace(tzinfo=UTC)
        zone = ZoneInfo(self.zone) if self.kind == "zone" else clinic
        return value.replace(tzinfo=zone).astimezone(UTC)


SIMPLE_KINDS = {"utc", "zone", "floating", "date"}
# Nights in 2027 when the clocks of London, New York, Berlin, Lord Howe or Chatham change.
CHANGE_NIGHTS = tuple(
    date(2027, month, day)
    for month, day in ((3, 14), (3, 28), (4, 4), (9, 26), (10, 3), (10, 31), (11, 7))
)


@st.composite
def whens(draw: st.DrawFn, clinic_zone: str) -> When:
    odd = draw(rarely(12))
    kind = draw(
        st.sampled_from(("windows", "unknown", "custom", "bad-date"))
        if odd
        else st.sampled_from(("utc", "utc", "zone", "zone", "floating", "date"))
    )
    zone = {
        "zone": draw(st.sampled_from(EVENT_ZONES)),
        "windows": draw(st.sampled_from(WINDOWS_ZONES)),
        "unknown": draw(st.sampled_from(UNKNOWN_ZONES)),
        "custom": "Custom Zone",
    }.get(kind, clinic_zone)
    # Mostly in the coming weeks, sometimes on a night the clocks change, sometimes far out.
    day = draw(
        st.one_of(
            st.dates(date(2026, 11, 1), date(2027, 1, 31)),
            st.sampled_from(CHANGE_NIGHTS),
            st.dates(date(2025, 6, 1), date(2029, 6, 1)),
        )
    )
    if kind == "date":
        return When(kind, zone, datetime.combine(day, time(0)))
    minute = draw(st.one_of(st.integers(0, 4 * 60), st.integers(0, 24 * 60 - 1)))
    second = draw(st.sampled_from((0, 0, 0, 30)))
    return When(kind, zone, datetime.combine(day, time(minute // 60, minute % 60, second)))


@dataclass(frozen=True)
class Outcome:
    """What one event should do: block ``busy``, be skipped, or be reported as a problem."""

    busy: tuple[datetime, datetime, str] | None = None
    problem: bool = False


@dataclass(frozen=True)
class Event:
    """The content lines of one VEVENT."""

    uid: str
    lines: tuple[str, ...]
    outcome: Outcome | None  # None: not worked out here


def duration_text(weeks: int, days: int, seconds: int) -> str:
    text = "P"
    if weeks:
        text += f"{weeks}W"
    if days:
        text += f"{days}D"
    if seconds or text == "P":
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        text += "T" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
        text += f"{secs}S" if secs or not (hours or minutes) else ""
    return text


@st.composite
def events(draw: st.DrawFn, clinic_zone: str, uid: str, cancel: bool) -> Event:
    """One VEVENT, with what it should do when that can be worked out here."""
    clinic = ZoneInfo(clinic_zone)
    start = draw(whens(clinic_zone))
    summary = draw(st.one_of(st.none(), TEXT))
    lines = [f"UID:{uid}", start.written("DTSTART")]
    simple = start.kind in SIMPLE_KINDS and not cancel
    if draw(st.booleans()):
        sent = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 99999)))
        lines.append(f"DTSTAMP:{stamp(sent)}Z")
    end: datetime | None
    begins = start.instant(clinic) if start.kind in SIMPLE_KINDS else None
    form = draw(st.sampled_from(("dtend",) * 4 + ("duration",) * 3 + ("none",)))
    if form == "dtend":
        if start.kind == "date":
            delta = timedelta(days=draw(st.integers(-1, 3)))
        else:
            delta = timedelta(minutes=draw(st.integers(-60, 3 * 24 * 60)))
        finish = start.moved(delta)
        lines.append(finish.written("DTEND"))
        end = finish.instant(clinic) if simple else None
    elif form == "duration":
        weeks = draw(st.integers(0, 1))
        days = draw(st.integers(0, 2))
        seconds = 0 if start.kind == "date" else draw(st.integers(0, 10 * 3600))
        if start.kind == "date" and weeks == days == 0:
            days = 1
        lines.append(f"DURATION:{duration_text(weeks, days, seconds)}")
        # Days and weeks are nominal (on the wall clock); hours, minutes and seconds are exact.
        nominal = start.value + timedelta(weeks=weeks, days=days)
        end = start.instant(clinic, nominal) + timedelta(seconds=seconds) if simple else None
    elif start.kind == "date":  # an all-day event lasts the day
        end = start.instant(clinic, start.value + timedelta(days=1)) if simple else None
    else:  # a timed event without an end takes no time
        end = begins
    if summary is not None:
        lines.append(f"SUMMARY:{escape(summary)}")
    sequence = draw(st.sampled_from(("", "0", "1", "2", "7")))
    if sequence:
        lines.append(f"SEQUENCE:{sequence}")
    status = draw(st.sampled_from(("", "", "", "CONFIRMED", "CONFIRMED", "TENTATIVE", "CANCELLED")))
    if status:
        lines.append(f"STATUS:{status}")
    transp = draw(st.sampled_from(("", "", "", "OPAQUE", "OPAQUE", "TRANSPARENT")))
    if transp:
        lines.append(f"TRANSP:{transp}")
    blocks = status != "CANCELLED" and transp != "TRANSPARENT"
    outcome: Outcome | None = None
    if simple and begins is not None and end is not None:
        if end < begins and status != "CANCELLED":  # a cancelled series is not read further
            outcome = Outcome(problem=True)
        elif blocks and end > begins and end > WINDOW.start and begins < WINDOW.end:
            outcome = Outcome(busy=(begins, end, summary or ""))
        else:
            outcome = Outcome()
    return Event(uid, tuple(lines), outcome)


RULE_PARTS = {
    "FREQ": ("DAILY", "WEEKLY", "WEEKLY", "MONTHLY", "YEARLY", "HOURLY", "SECONDLY", "FOO"),
    "COUNT": ("1", "3", "10", "500", "99999999999999999999", "0", "-1"),
    "UNTIL": ("20270115", "20270115T100000Z", "20270115T100000", "20200101T000000Z"),
    "INTERVAL": ("1", "2", "7", "0", "-1"),
    "BYDAY": ("MO", "MO,WE,FR", "-1SU", "5FR", "53MO", "XX"),
    "BYMONTHDAY": ("30", "31", "-1", "0", "32"),
    "BYMONTH": ("2", "11", "13"),
    "BYSETPOS": ("1", "-1", "400"),
    "BYHOUR": ("9", "25"),
    "WKST": ("SU", "MO"),
}


@st.composite
def repeating(draw: st.DrawFn, base: Event, clinic_zone: str) -> list[Event]:
    """Make an event repeat, oddly at times, with exceptions, extra dates and moved instances."""
    lines = list(base.lines)
    start_line = next(line for line in lines if line.startswith("DTSTART"))
    parts = [f"FREQ={draw(st.sampled_from(RULE_PARTS['FREQ']))}"]
    others = [key for key in RULE_PARTS if key != "FREQ"]
    for key in draw(st.lists(st.sampled_from(others), max_size=3, unique=True)):
        parts.append(f"{key}={draw(st.sampled_from(RULE_PARTS[key]))}")
    if not draw(rarely(5)):
        lines.append("RRULE:" + ";".join(parts))
    start = draw(whens(clinic_zone))
    for name in ("EXDATE", "RDATE"):
        if draw(st.booleans()):
            values = [start.moved(timedelta(days=draw(st.integers(0, 30)))) for _ in range(2)]
            text = ",".join(v.written(name).split(":", 1)[1] for v in values)
            lines.append(values[0].written(name).split(":", 1)[0] + ":" + text)
    if draw(rarely(10)):
        lines.append("RDATE;VALUE=PERIOD:20261205T100000Z/PT1H,20261206T100000Z/20261206T120000Z")
    if draw(rarely(10)):
        lines.append(draw(st.sampled_from(("EXDATE:garbage", "RDATE:2026-12-01"))))
    master = Event(base.uid, tuple(lines), None)
    moved = []
    for _ in range(draw(st.integers(0, 2))):
        key = start_line.split(":", 1)
        original = key[0].replace("DTSTART", "RECURRENCE-ID") + ":" + key[1]
        if draw(st.booleans()):
            original = draw(whens(clinic_zone)).written("RECURRENCE-ID")
        instance = draw(events(clinic_zone, base.uid, False))
        uid_line, *rest = instance.lines
        moved.append(Event(base.uid, (uid_line, original, *rest), None))
    if moved and draw(rarely(4)):
        return moved  # the moved instances arrive without their series
    return [master, *moved]


HOSTILE_LINES = (
    "DURATION:P99999999W",
    "DURATION:-PT2H",
    "DTEND:99991231T235959Z",
    "DTSTART:",
    "DTEND;TZID=Europe/London:20261301T250000",
    "SEQUENCE:99999999999999999999",
    "SEQUENCE:-4",
    "SEQUENCE:seven",
    "DTSTAMP;TZID=Pacific/Chatham:00010101T000000",
    "DTSTAMP:garbage",
    "STATUS:CANCELLED",
    "RECURRENCE-ID:20261201T100000Z",
    'ATTENDEE;CN="Zoë";PARTSTAT=ACCEPTED:mailto:zoe@example.org',
    'X-ODD;PARAM="a:b;c":value',
    "SUMMARY:" + "Ω" * 600,
    "DESCRIPTION:a\\nb\\,c\\;d",
)


@dataclass(frozen=True)
class Generated:
    """A generated calendar file and, per UID it holds once, what should be blocked."""

    name: str
    data: bytes
    clinic_zone: str
    expected: dict[str, Outcome]  # the events whose outcome is worked out here
    # When every event is worked out: the file must be imported, with these counts of series
    # imported and of events skipped as errors.
    counts: tuple[int, int] | None

    def __repr__(self) -> str:  # the test notes the file itself, decoded
        return f"Generated({self.name!r}, {len(self.data)} bytes, counts={self.counts})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how Hypothesis shows it
        printer.text(repr(self))


@st.composite
def generated_calendars(draw: st.DrawFn) -> Generated:
    clinic_zone = draw(st.sampled_from(CLINIC_ZONES))
    blocks: list[list[str]] = []
    expected: dict[str, Outcome] = {}
    simple = True
    seen: set[str] = set()
    for number in range(draw(st.sampled_from((1, 1, 1, 2)))):
        method = draw(st.sampled_from(("", "", "", "", "PUBLISH", "REQUEST", "REQUEST")))
        if draw(rarely(10)):
            method = draw(st.sampled_from(("CANCEL", "REPLY", "X-ODD")))
        lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Fuzz//Generated//EN"]
        if method:
            lines.append(f"METHOD:{method}")
        wr_timezone = draw(rarely(12))
        if wr_timezone:
            lines.append(f"X-WR-TIMEZONE:{draw(st.sampled_from(('Europe/Berlin', 'Nowhere')))}")
            simple = False
        if draw(rarely(4)):
            lines.extend(CUSTOM_ZONE)
        for index in range(draw(st.integers(1, 4))):
            uid = draw(
                st.sampled_from(
                    (f"event-{number}-{index}@fuzz", f"event-{number}-{index}-é気@fuzz")
                )
            )
            if draw(rarely(15)):
                uid = draw(st.sampled_from(("shared@fuzz", "", " ", "x" * 501, "nul\x00@fuzz")))
            event = draw(events(clinic_zone, uid, method == "CANCEL"))
            group = [event]
            if draw(rarely(5)):
                group = draw(repeating(event, clinic_zone))
            for one in group:
                body = list(one.lines)
                if draw(rarely(12)):
                    body.insert(
                        draw(st.integers(0, len(body))), draw(st.sampled_from(HOSTILE_LINES))
                    )
                    one = Event(one.uid, one.lines, None)
                lines += ["BEGIN:VEVENT", *body, "END:VEVENT"]
                uid_ok = one.uid.startswith("event-")
                worked_out = (
                    one.outcome is not None
                    and uid_ok
                    and method in ("", "PUBLISH", "REQUEST")
                    and not wr_timezone
                    and len(group) == 1
                    and one.uid not in seen
                )
                if worked_out and one.outcome is not None:
                    expected[one.uid] = one.outcome
                else:
                    expected.pop(one.uid, None)
                    simple = False
                seen.add(one.uid)
        lines.append("END:VCALENDAR")
        blocks.append(lines)
    data = render(draw, [line for block in blocks for line in block])
    counts = None
    if simple:
        outcomes = expected.values()
        counts = (sum(1 for o in outcomes if o.busy), sum(1 for o in outcomes if o.problem))
    return Generated("generated.ics", data, clinic_zone, expected, counts)


def render(draw: st.DrawFn, lines: list[str]) -> bytes:
    """Encode and fold content lines as calendar programs do (and as they should not)."""
    encoding = "utf-8"
    text = "\n".join(lines)
    if set(text) <= set(map(chr, range(128))) | set("éüßöàñ") and draw(rarely(5)):
        encoding = "windows-1252"  # old Outlook
    newline = draw(st.sampled_from((b"\r\n", b"\r\n", b"\n")))
    out = []
    for line in lines:
        raw = line.encode(encoding)
        width = draw(st.sampled_from((75, 75, 10, 1)))  # folds may split a character
        pieces = [raw[:width]] + [b" " + raw[i : i + width] for i in range(width, len(raw), width)]
        out.append(newline.join(pieces))
    data = newline.join(out) + newline
    if draw(rarely(10)):
        data = b"\xef\xbb\xbf" + data
    return data


# A VEVENT with a DURATION across the night London's clocks go back: PT2H from 00:30 BST is two
# real hours, not the three that adding two hours to the wall clock gives.
DURATION_ACROSS_FALL_BACK = Generated(
    "duration.ics",
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Fuzz//EN\r\nBEGIN:VEVENT\r\nUID:night@fuzz\r\n"
    b"DTSTART;TZID=Europe/London:20271031T003000\r\nDURATION:PT2H\r\nSUMMARY:Night\r\n"
    b"END:VEVENT\r\nEND:VCALENDAR\r\n",
    "Europe/London",
    {
        "night@fuzz": Outcome(
            busy=(
                datetime(2027, 10, 30, 23, 30, tzinfo=UTC),
                datetime(2027, 10, 31, 1, 30, tzinfo=UTC),
                "Night",
            )
        )
    },
    (1, 0),
)


# A UID with a NUL in it: PostgreSQL refuses to store such text.
NUL_IN_THE_UID = Generated(
    "nul.ics",
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Fuzz//EN\r\nBEGIN:VEVENT\r\nUID:nul\x00@fuzz\r\n"
    b"DTSTART:20261201T100000Z\r\nDTEND:20261201T110000Z\r\nEND:VEVENT\r\n"
    b"BEGIN:VEVENT\r\nUID:fine@fuzz\r\nDTSTART:20261202T100000Z\r\nDTEND:20261202T110000Z\r\n"
    b"END:VEVENT\r\nEND:VCALENDAR\r\n",
    "Europe/London",
    {
        "fine@fuzz": Outcome(
            busy=(datetime(2026, 12, 2, 10, tzinfo=UTC), datetime(2026, 12, 2, 11, tzinfo=UTC), "")
        )
    },
    (1, 1),
)
# A daily all-day event without an end: expanding it took twenty seconds, as the expansion
# narrowed its steps to 15 minutes where occurrences follow one another without a gap, so the
# event after it was refused for taking too long.
ENDLESS_DAILY = Generated(
    "daily.ics",
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Fuzz//EN\r\nBEGIN:VEVENT\r\nUID:daily@fuzz\r\n"
    b"DTSTART;VALUE=DATE:20261201\r\nDTEND;VALUE=DATE:20261202\r\nRRULE:FREQ=DAILY\r\n"
    b"SUMMARY:Working from home\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:after@fuzz\r\n"
    b"DTSTART:20261202T100000Z\r\nDTEND:20261202T110000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    "Europe/London",
    {
        "after@fuzz": Outcome(
            busy=(datetime(2026, 12, 2, 10, tzinfo=UTC), datetime(2026, 12, 2, 11, tzinfo=UTC), "")
        )
    },
    (2, 0),
)

# X-WR-TIMEZONE moves UTC times into its zone; one at 9999-12-31T23:59:59Z overflowed there.
OUT_OF_RANGE_FOR_X_WR_TIMEZONE = Generated(
    "google.ics",
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Fuzz//EN\r\nX-WR-TIMEZONE:Europe/Berlin\r\n"
    b"BEGIN:VEVENT\r\nUID:far@fuzz\r\nDTSTART:20261201T100000Z\r\nDTEND:99991231T235959Z\r\n"
    b"END:VEVENT\r\nBEGIN:VEVENT\r\nUID:near@fuzz\r\nDTSTART:20261202T100000Z\r\n"
    b"DTEND:20261202T110000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    "Europe/London",
    {
        "near@fuzz": Outcome(
            busy=(datetime(2026, 12, 2, 10, tzinfo=UTC), datetime(2026, 12, 2, 11, tzinfo=UTC), "")
        )
    },
    (1, 1),
)


@FUZZ
@given(calendar=generated_calendars())
@example(calendar=DURATION_ACROSS_FALL_BACK)
@example(calendar=NUL_IN_THE_UID)
@example(calendar=ENDLESS_DAILY)
@example(calendar=OUT_OF_RANGE_FOR_X_WR_TIMEZONE)
def test_a_generated_calendar_imports_what_it_says_or_is_refused_cleanly(
    app: Flask, calendar: Generated
):
    note(calendar.data.decode("utf-8", "replace"))
    with clinic_session(app, calendar.clinic_zone) as (session, clinic, practitioner):
        report = import_or_refuse(session, clinic, practitioner, calendar.data, calendar.name)
        if calendar.counts is not None:
            assert report is not None, "a well-formed calendar was refused"
        if report is None:
            return
        for uid, outcome in calendar.expected.items():
            wanted = [outcome.busy] if outcome.busy else []
            assert live_busy(session, practitioner, uid) == wanted, uid
        if calendar.counts is not None:
            assert (report.imported, report.errors) == calendar.counts
            assert (report.updated, report.cancelled) == (0, 0)
        # The same file again changes nothing.
        before = stored(session, practitioner)
        again = run_import(session, clinic, practitioner, calendar.data, calendar.name)
        assert stored(session, practitioner) == before
        if calendar.counts is not None:
            assert (again.imported, again.updated, again.cancelled) == (0, 0, 0)


def customized_zone(uid: str, standard: str, daylight: str) -> bytes:
    """An Outlook invite at 10:00 on 1 December 2026 in a zone it calls "Customized Time Zone"."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:Microsoft Exchange Server 2010",
        "BEGIN:VTIMEZONE",
        "TZID:Customized Time Zone",
        "BEGIN:STANDARD",
        "DTSTART:16010101T020000",
        f"TZOFFSETFROM:{daylight}",
        f"TZOFFSETTO:{standard}",
        "RRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11",
        "END:STANDARD",
        "BEGIN:DAYLIGHT",
        "DTSTART:16010101T020000",
        f"TZOFFSETFROM:{standard}",
        f"TZOFFSETTO:{daylight}",
        "RRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3",
        "END:DAYLIGHT",
        "END:VTIMEZONE",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTART;TZID=Customized Time Zone:20261201T100000",
        "DTEND;TZID=Customized Time Zone:20261201T110000",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def test_each_file_is_read_with_its_own_customized_time_zone(app: Flask):
    """Found by fuzzing: icalendar kept the first zone of a name it read for the whole process,
    so an invite from New York was read with the Berlin rules of one imported before it."""
    berlin = customized_zone("berlin@fuzz", "+0100", "+0200")
    new_york = customized_zone("new-york@fuzz", "-0500", "-0400")
    nameless = customized_zone("nameless@fuzz", "+0100", "+0200").replace(
        b"TZID:Customized Time Zone", b"TZID:Another Zone"
    )
    with clinic_session(app, "Europe/London") as (session, clinic, practitioner):
        run_import(session, clinic, practitioner, berlin, "berlin.eml")
        run_import(session, clinic, practitioner, new_york, "new-york.eml")
        report = run_import(session, clinic, practitioner, nameless, "nameless.ics")

        assert live_busy(session, practitioner, "berlin@fuzz") == [
            (datetime(2026, 12, 1, 9, tzinfo=UTC), datetime(2026, 12, 1, 10, tzinfo=UTC), "")
        ]
        assert live_busy(session, practitioner, "new-york@fuzz") == [
            (datetime(2026, 12, 1, 15, tzinfo=UTC), datetime(2026, 12, 1, 16, tzinfo=UTC), "")
        ]
        # A zone the file names but does not define is unknown, whatever was read before.
        [problem] = report.problems
        assert "its time zone 'Customized Time Zone' is unknown" in problem


# ------------------------------------------------------------- damaged copies of real files

STRUCTURE_LINES = (
    "BEGIN:VEVENT",
    "END:VEVENT",
    "END:VCALENDAR",
    "BEGIN:VCALENDAR",
    "BEGIN:VALARM",
    "BEGIN:VTIMEZONE",
    "not a calendar line",
    "RRULE:FREQ=DAILY;COUNT=100000",
    "RRULE:FREQ=DAILY;INTERVAL=0",
    "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
    "RRULE:FREQ=MINUTELY",
    "EXDATE:20261202T100000Z,garbage",
    "METHOD:CANCEL",
    "TRANSP:TRANSPARENT",
    "X-WR-TIMEZONE:Nowhere/Else",
    "UID:",
    "UID:nul\x00here",
    "\x00\x01\x02",
)


@functools.cache
def sample(path: Path) -> bytes:
    return path.read_bytes()


@dataclass(frozen=True)
class Damaged:
    """A corpus file after some damage, with a note of what was done to it."""

    name: str
    data: bytes
    how: tuple[str, ...]

    def __repr__(self) -> str:  # the bytes can run to many kilobytes
        return f"Damaged({self.name!r}, {len(self.data)} bytes, {', '.join(self.how)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how Hypothesis shows it
        printer.text(repr(self))


@st.composite
def damage(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """Damage a file once: cut it short, flip a byte, or repeat, drop or add lines."""
    lines = data.split(b"\n")
    kind = draw(
        st.sampled_from(
            (
                *("truncate", "flip", "duplicate", "drop", "drop-end", "insert", "huge"),
                *("repeat", "swap", "bare-cr"),
            )
        )
    )
    if kind == "truncate":
        at = draw(st.integers(0, len(data)))
        return data[:at], f"cut at byte {at}"
    if kind == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        bits = draw(st.integers(1, 255))
        return data[:at] + bytes([data[at] ^ bits]) + data[at + 1 :], f"byte {at} ^ {bits}"
    if kind == "bare-cr":
        return data.replace(b"\r\n", b"\r"), "bare CR line ends"
    at = draw(st.integers(0, len(lines) - 1))
    if kind == "duplicate":
        return b"\n".join([*lines[: at + 1], *lines[at:]]), f"line {at + 1} twice"
    if kind == "drop":
        return b"\n".join(lines[:at] + lines[at + 1 :]), f"line {at + 1} dropped"
    if kind == "drop-end":
        ends = [n for n, line in enumerate(lines) if line.startswith(b"END:")]
        if ends:
            at = draw(st.sampled_from(ends))
        return b"\n".join(lines[:at] + lines[at + 1 :]), f"line {at + 1} dropped"
    if kind == "insert":
        line = draw(st.sampled_from(HOSTILE_LINES + STRUCTURE_LINES)).encode() + b"\r"
        return b"\n".join([*lines[:at], line, *lines[at:]]), f"{line!r} before line {at + 1}"
    if kind == "huge":
        numbers = list(re.finditer(rb"\d+", data))
        if not numbers:
            return data, "no numbers"
        number = draw(st.sampled_from(numbers))
        return data[: number.start()] + b"9" * 25 + data[number.end() :], f"huge {number[0]!r}"
    if kind == "repeat":
        start = data.find(b"BEGIN:VEVENT")
        end = data.find(b"END:VEVENT", start)
        if start < 0 or end < 0:
            return data, "no event to repeat"
        block = data[start : end + len(b"END:VEVENT\r\n")]
        times = draw(st.sampled_from((2, 20, 60)))  # 60 is over the cap of 50 events
        return data[:start] + block * times + data[start:], f"first event {times + 1} times"
    other = draw(st.integers(0, len(lines) - 1))
    lines[at], lines[other] = lines[other], lines[at]
    return b"\n".join(lines), f"lines {at + 1} and {other + 1} swapped"


@st.composite
def damaged_samples(draw: st.DrawFn) -> Damaged:
    path = draw(st.sampled_from(SAMPLES))
    data = sample(path)
    how = []
    for _ in range(draw(st.sampled_from((1, 1, 2, 3)))):
        data, what = draw(damage(data))
        how.append(what)
    return Damaged(path.name, data, tuple(how))


# A control character in a broken DTSTART went into the message naming the event (and so onto
# the terminal of whoever ran ``calendar import``).
CONTROL_CHARACTER_IN_A_BROKEN_START = Damaged(
    "broken-dtstart.ics",
    sample(CORPUS / "malformed/broken-dtstart.ics").replace(b"2026-12-02", b"2026\x1512-02"),
    ("byte 261 ^ 56",),
)


# A repeating event with its DTSTART line twice: the second made the start a list.
START_TWICE = Damaged(
    "lightning.ics",
    sample(CORPUS / "thunderbird/lightning.ics").replace(
        b"DTSTART;TZID=Europe/London:20261130T100000\n",
        b"DTSTART;TZID=Europe/London:20261130T100000\n" * 2,
    ),
    ("line 40 twice",),
)

# A control character in a VTIMEZONE's rule went into the message refusing the whole file.
CONTROL_CHARACTER_IN_A_ZONE_RULE = Damaged(
    "icloud.ics",
    sample(CORPUS / "apple/icloud.ics").replace(b"BYDAY=-1SU", b"BYDAY=-\x0fSU", 1),
    ("a byte flipped in a VTIMEZONE rule",),
)


@FUZZ
@given(file=damaged_samples())
@example(file=CONTROL_CHARACTER_IN_A_BROKEN_START)
@example(file=START_TWICE)
@example(file=CONTROL_CHARACTER_IN_A_ZONE_RULE)
def test_a_damaged_calendar_file_is_imported_soundly_or_refused_cleanly(app: Flask, file: Damaged):
    note(f"{file.name}: {', '.join(file.how)}")
    with clinic_session(app, "Europe/London") as (session, clinic, practitioner):
        report = import_or_refuse(session, clinic, practitioner, file.data, file.name)
        if report is None:
            return
        before = stored(session, practitioner)
        run_import(session, clinic, practitioner, file.data, file.name)
        assert stored(session, practitioner) == before, "importing it again changed something"


# ------------------------------------------------------ through the command and the upload

CLI_EMAIL = "cli@clinic.test"


@contextmanager
def committed_practitioner(app: Flask) -> Iterator[tuple[Session, Practitioner]]:
    """The clinic (in London) and a practitioner with earlier busy time, committed; the busy
    time any example adds is removed after it."""
    with app.app_context():
        engine = db.engine
    with Session(engine) as session:
        if Clinic.get(session) is None:
            session.add(Clinic(name="Fuzz clinic", timezone="Europe/London"))
        practitioner = session.scalars(
            select(Practitioner).where(Practitioner.email == CLI_EMAIL)
        ).first()
        if practitioner is None:
            practitioner = Practitioner(name="Command Line", email=CLI_EMAIL)
            session.add(practitioner)
        session.flush()
        import_busy(session, practitioner=practitioner, expansion=earlier())
        session.commit()
        try:
            yield session, practitioner
        finally:
            session.rollback()
            mine = ExternalEvent.practitioner_id == practitioner.id
            session.execute(delete(BusyTime).where(BusyTime.practitioner_id == practitioner.id))
            session.execute(delete(ExternalEvent).where(mine))
            session.commit()


def expected_report(app: Flask, data: bytes, name: str) -> ImportReport | str:
    """What the operation makes of a file for a London clinic: its report, or why it refused."""
    with clinic_session(app, "Europe/London") as (session, clinic, practitioner):
        try:
            return run_import(session, clinic, practitioner, data, name)
        except CalendarFileError as refused:
            return refused.message


any_file = st.one_of(
    generated_calendars().map(lambda c: Damaged(c.name, c.data, ("generated",))),
    damaged_samples(),
)


@FEW
@given(file=any_file)
def test_the_command_imports_a_file_or_refuses_it_in_one_line_and_writes_nothing(
    app: Flask, file: Damaged
):
    name, data = file.name, file.data
    note(data.decode("utf-8", "replace"))
    expected = expected_report(app, data, name)
    with (
        committed_practitioner(app) as (session, practitioner),
        tempfile.TemporaryDirectory() as folder,
    ):
        path = Path(folder) / name
        path.write_bytes(data)
        before = stored(session, practitioner)
        session.rollback()

        with QUICK_RULES:
            result = app.test_cli_runner().invoke(
                args=["calendar", "import", str(path), "--practitioner", CLI_EMAIL]
            )

        note(result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output
        summary = result.stdout.strip().splitlines()[-1]
        assert SUMMARY_LINE.fullmatch(summary), result.stdout
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        if isinstance(expected, str):
            assert result.exit_code == 1
            assert errors == [f"Error: {path}: {expected}; nothing from it was imported"]
            assert_readable(errors[0])
            assert stored(session, practitioner) == before
        else:
            assert result.exit_code == 0, result.output
            assert errors == []
            assert summary == expected.summary()
            assert_sound(session, practitioner)


@FEW
@given(file=any_file)
def test_the_staff_upload_imports_a_file_or_names_why_not_and_writes_nothing(
    app: Flask, file: Damaged
):
    name, data = file.name, file.data
    note(data.decode("utf-8", "replace"))
    expected = expected_report(app, data, name)
    with committed_practitioner(app) as (session, practitioner):
        if session.scalars(select(User).where(User.email == "admin@clinic.test")).first() is None:
            admin = User(email="admin@clinic.test", role=Role.ADMIN)
            admin.set_password(PASSWORD)
            session.add(admin)
            session.commit()
        before = stored(session, practitioner)
        session.rollback()
        client = app.test_client()
        log_in(client, "admin@clinic.test")

        with QUICK_RULES:
            answer = client.post(
                "/staff/calendars/import",
                data={
                    "csrf_token": token_of(client),
                    "practitioner": str(practitioner.id),
                    "kind": "busy",
                    "files": [(io.BytesIO(data), name)],
                },
                content_type="multipart/form-data",
            )

        page = answer.get_data(as_text=True)
        if isinstance(expected, str):
            assert answer.status_code == 422
            assert escape_html(f"{name} was not imported: {expected}") in page
            assert stored(session, practitioner) == before
        else:
            assert answer.status_code == (200 if expected.errors == 0 else 422)
            assert expected.summary() in page
            assert_sound(session, practitioner)
