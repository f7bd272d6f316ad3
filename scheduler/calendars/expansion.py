"""Turn parsed calendars into series of occurrences, as RFC 5545 and iTIP (RFC 5546) mean them.

Each UID is one series: its master event (with RRULE, RDATE, EXDATE) and its moved or
cancelled instances (RECURRENCE-ID). Series are expanded only within a window, with caps on
occurrences and time, by ``recurring-ical-events``; one bad series is reported and skipped
without touching the rest. Nothing here reads or writes the database.
"""

from __future__ import annotations

import sys
import time as monotonic_clock
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as wall_time
from itertools import islice
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

import recurring_ical_events
import x_wr_timezone
from flask_babel import gettext
from icalendar import Calendar, Component, vBroken

from scheduler.calendars.reading import CalendarFileError, Limits
from scheduler.i18n import N_
from scheduler.timeutil import local_to_utc

# Properties whose damage makes an event unreadable; damage elsewhere is ignored.
_ESSENTIAL = {
    "UID",
    "DTSTART",
    "DTEND",
    "DURATION",
    "RRULE",
    "RDATE",
    "EXDATE",
    "RECURRENCE-ID",
    "SEQUENCE",
    "DTSTAMP",
    "STATUS",
    "TRANSP",
}
_TIMED = ("DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE", "RDATE")
# Repetitions more frequent than any busy time, named for the refusal.
_TOO_FREQUENT = {
    "SECONDLY": N_("every second"),
    "MINUTELY": N_("every minute"),
    "HOURLY": N_("every hour"),
}
_METHODS = {"PUBLISH", "REQUEST", "ADD", "CANCEL"}
MAX_UID_LENGTH = 500
MAX_TEXT_LENGTH = 500
FIRST_YEAR, LAST_YEAR = 1900, 2999
# How long one series' rule may take to expand, when its parts could make it never match.
SERIES_SECONDS = 2.0
_PAGE = timedelta(days=31)


@dataclass(frozen=True)
class Window:
    """The stretch of time, in UTC, within which series are expanded."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Person:
    """An attendee or organizer as the file names them."""

    name: str
    email: str
    partstat: str = ""


@dataclass(frozen=True)
class Occurrence:
    """One instance of a series, keyed by its original start (its RECURRENCE-ID) in UTC."""

    key: datetime
    start: datetime
    end: datetime
    summary: str
    all_day: bool
    sequence: int
    dtstamp: datetime | None
    cancelled: bool = False
    description: str = ""
    attendees: tuple[Person, ...] = ()
    organizer: Person | None = None


@dataclass
class Series:
    """What one file says about one UID.

    ``whole`` is true when it speaks for the whole series (it holds the master event, or
    cancels it): then ``occurrences`` is every instance within the window. Otherwise it speaks
    only for the instances it lists.
    """

    uid: str
    whole: bool
    cancelled: bool
    sequence: int
    dtstamp: datetime | None
    summary: str
    occurrences: list[Occurrence] = field(default_factory=list)


@dataclass
class Expansion:
    """The series found in some calendars, the events that had to be skipped, and notes."""

    series: list[Series] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Problem(Exception):
    """One event cannot be read; the rest of the file goes on."""


def expand(
    calendars: Iterable[Calendar],
    *,
    tz: ZoneInfo,
    window: Window,
    limits: Limits,
    started: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Expansion:
    """Read every series of events in ``calendars`` within ``window``.

    Floating times and all-day dates are taken in ``tz`` (the clinic's zone). Raise
    :class:`CalendarFileError` if the whole takes longer than ``limits.seconds``. ``progress``
    is told how many series of how many are done.
    """
    started = monotonic_clock.monotonic() if started is None else started
    result = Expansion()
    deadline = started + limits.seconds
    reader = _Reader(tz, window, limits, deadline)
    work: list[tuple[bool, list[Component], dict[str, list[Component]]]] = []
    for calendar in calendars:
        method = str(calendar.get("METHOD", "PUBLISH")).strip().upper()
        if method not in _METHODS:
            result.notes.append(
                gettext(
                    "a calendar with METHOD:%(method)s (a reply or counter-proposal to an invite) "
                    "holds nothing to import; it was passed over",
                    method=clean_text(method, 20),
                )
            )
            continue
        calendar = _standard_zones(calendar, result)
        timezones = [c for c in calendar.subcomponents if c.name == "VTIMEZONE"]
        work.append((method == "CANCEL", timezones, _by_uid(calendar, result)))
    total = sum(len(groups) for _, _, groups in work)
    done = 0
    for cancel, timezones, groups in work:
        for uid, components in groups.items():
            if monotonic_clock.monotonic() > deadline:
                raise CalendarFileError(
                    gettext(
                        "reading the file took longer than %(seconds)s seconds; "
                        "split it into smaller files",
                        seconds=f"{limits.seconds:g}",
                    )
                )
            try:
                result.series.append(reader.series(uid, components, timezones, cancel=cancel))
            except _Problem as problem:
                result.problems.append(f"{_describe(uid, components)}: {problem}")
            done += 1
            if progress is not None:
                progress(done, total)
    if reader.floating:
        result.notes.append(
            gettext(
                "%(count)d event(s) had floating times (no time zone); they were taken "
                "in the clinic's time zone, %(zone)s",
                count=reader.floating,
                zone=tz.key,
            )
        )
    return result


def _standard_zones(calendar: Calendar, result: Expansion) -> Calendar:
    """Apply Google's ``X-WR-TIMEZONE`` so that UTC times mean the calendar's wall times."""
    if "X-WR-TIMEZONE" not in calendar:
        return calendar
    try:
        return x_wr_timezone.to_standard(calendar)
    except (ValueError, KeyError) as exc:  # an unknown zone name
        name = str(calendar.get("X-WR-TIMEZONE"))[:60]
        result.notes.append(
            gettext(
                "X-WR-TIMEZONE %(name)s is not a known zone and was ignored (%(reason)s)",
                name=repr(name),
                reason=exc,
            )
        )
        return calendar
    except OverflowError:  # a time such as 9999-12-31T23:59:59Z has no wall time in the zone
        name = str(calendar.get("X-WR-TIMEZONE"))[:60]
        result.notes.append(
            gettext(
                "X-WR-TIMEZONE %(name)s was ignored: a time in the calendar is too near the year "
                "1 or 9999 to be moved into it",
                name=repr(name),
            )
        )
        return calendar


def _by_uid(calendar: Calendar, result: Expansion) -> dict[str, list[Component]]:
    groups: dict[str, list[Component]] = defaultdict(list)
    for component in calendar.subcomponents:
        if component.name != "VEVENT":
            continue
        uid = str(component.get("UID", "")).strip()
        if not uid:
            result.problems.append(f"{_describe('', [component])}: {gettext('it has no UID')}")
        elif len(uid) > MAX_UID_LENGTH:
            result.problems.append(
                _describe("", [component])
                + ": "
                + gettext("its UID is longer than %(most)d characters", most=MAX_UID_LENGTH)
            )
        elif not uid.isprintable():  # PostgreSQL cannot even store a NUL
            result.problems.append(
                f"{_describe('', [component])}: {gettext('its UID holds control characters')}"
            )
        else:
            groups[uid].append(component)
    return groups


def _describe(uid: str, components: list[Component]) -> str:
    summary = clean_text(str(components[0].get("SUMMARY", "")), 60) if components else ""
    start = components[0].get("DTSTART") if components else None
    if summary:
        described = gettext("event %(summary)s", summary=repr(summary))
    else:
        described = gettext("an event")
    if start is not None and hasattr(start, "to_ical"):
        when = clean_text(start.to_ical().decode("ascii", "replace"), 30)
        described = gettext("%(event)s at %(when)s", event=described, when=when)
    return described + (f" (UID {clean_text(uid, 60)})" if uid else "")


def clean_text(value: str, length: int = MAX_TEXT_LENGTH) -> str:
    """Return text from a file with control characters turned into spaces, and cut short."""
    return "".join(ch if ch.isprintable() else " " for ch in value[:length]).strip()


class _Reader:
    """Reads series within one window, counting what it had to assume."""

    def __init__(self, tz: ZoneInfo, window: Window, limits: Limits, deadline: float) -> None:
        self.tz = tz
        self.window = window
        self.limits = limits
        self.deadline = deadline
        self.floating = 0

    def series(
        self,
        uid: str,
        components: list[Component],
        timezones: list[Component],
        *,
        cancel: bool,
    ) -> Series:
        for component in components:
            self._check(component)
        masters = [c for c in components if "RECURRENCE-ID" not in c]
        instances = [c for c in components if "RECURRENCE-ID" in c]
        if len(masters) > 1:
            # A feed may repeat an event; the newest copy speaks for it.
            masters.sort(key=lambda c: version_key(*_version(c)))
            masters = masters[-1:]
        if masters:
            master = masters[0]
            sequence, dtstamp = _version(master)
            summary = clean_text(str(master.get("SUMMARY", "")))
            if cancel or _status(master) == "CANCELLED":
                return Series(uid, True, True, sequence, dtstamp, summary)
            occurrences = self._expand(master, instances, timezones)
            return Series(uid, True, False, sequence, dtstamp, summary, occurrences)
        listed = [self._instance(c, cancelled=cancel) for c in instances]
        newest = max(listed, key=lambda o: version_key(o.sequence, o.dtstamp))
        sequence, dtstamp = newest.sequence, newest.dtstamp
        summary = listed[0].summary
        # The same instance twice: as with the master, the newest copy speaks for it.
        by_key: dict[datetime, Occurrence] = {}
        for one in sorted(listed, key=lambda o: version_key(o.sequence, o.dtstamp)):
            by_key[one.key] = one
        listed = [o for o in listed if by_key[o.key] is o]
        return Series(uid, False, False, sequence, dtstamp, summary, listed)

    def _check(self, component: Component) -> None:
        for name, message in component.errors:
            if str(name).upper() in _ESSENTIAL:
                raise _Problem(
                    gettext(
                        "its %(name)s cannot be read (%(reason)s)",
                        name=name,
                        reason=clean_text(str(message), 120),
                    )
                )
        for name in _ESSENTIAL:  # a copy (X-WR-TIMEZONE makes one) keeps no ``errors``
            for prop in _as_list(component.get(name)):
                if isinstance(prop, vBroken):
                    message = clean_text(str(prop.parse_error), 120)
                    raise _Problem(
                        gettext(
                            "its %(name)s cannot be read (%(reason)s)", name=name, reason=message
                        )
                    )
        if "DTSTART" not in component and "RECURRENCE-ID" not in component:
            raise _Problem(gettext("it has no start (DTSTART)"))
        for name in ("DTSTART", "DTEND", "DURATION", "RECURRENCE-ID"):
            if isinstance(component.get(name), list):
                raise _Problem(gettext("it has more than one %(name)s", name=name))
        for name in _TIMED:
            for prop in _as_list(component.get(name)):
                tzid = prop.params.get("TZID")
                for value in _values(prop):
                    if tzid and isinstance(value, datetime) and value.tzinfo is None:
                        raise _Problem(
                            gettext(
                                "its time zone %(zone)s is unknown",
                                zone=repr(clean_text(str(tzid), 80)),
                            )
                        )
                    year = value.year
                    if not FIRST_YEAR <= year <= LAST_YEAR:
                        raise _Problem(
                            gettext("its %(name)s is in the year %(year)d", name=name, year=year)
                        )
        for rule in _as_list(component.get("RRULE")):
            frequency = str(rule.get("FREQ", [""])[0]).upper()
            if frequency in _TOO_FREQUENT:
                raise _Problem(
                    gettext(
                        "it repeats %(frequency)s, which no busy time does",
                        frequency=gettext(_TOO_FREQUENT[frequency]),
                    )
                )
            # INTERVAL=0 sends the expansion round in a loop that eats memory until it dies.
            interval = rule.get("INTERVAL", [1])[0]
            if not isinstance(interval, int) or interval < 1:
                raise _Problem(
                    gettext(
                        "its RRULE has INTERVAL=%(interval)s; it must be 1 or more",
                        interval=interval,
                    )
                )

    def _instant(self, value: date | datetime) -> datetime:
        """Return a start or end as a UTC instant: dates and floating times in the clinic's zone."""
        if not isinstance(value, datetime):
            return local_to_utc(value, wall_time(0), self.tz)
        if value.tzinfo is None:
            return value.replace(tzinfo=self.tz).astimezone(UTC)
        return value.astimezone(UTC)

    def _expand(
        self, master: Component, instances: list[Component], timezones: list[Component]
    ) -> list[Occurrence]:
        if "RRULE" not in master and "RDATE" not in master and not instances:
            occurrence = self._occurrence(master)
            return [occurrence] if self._wanted(occurrence) else []
        self._bound_rules(master)
        # Instances the master generates carry its version; a moved one carries its own.
        version = _version(master)
        # Expansion turns a DURATION into a DTEND on the wall clock, so each instance is given
        # its own (a moved one's, else the master's) to measure as RFC 5545 does.
        moved = {self._instant(_when(c["RECURRENCE-ID"])): _duration(c) for c in instances}
        length = _duration(master)
        calendar = Calendar()
        for component in (*timezones, master, *instances):
            calendar.add_component(component)
        occurrences: list[Occurrence] = []
        deadline = min(self.deadline, monotonic_clock.monotonic() + SERIES_SECONDS)
        guard = _time_limit(deadline) if _may_never_match(master) else nullcontext()
        try:
            with guard:
                found = self._occurring(calendar)
                for key, event in islice(found, self.limits.max_occurrences + 1):
                    occurrence = self._occurrence(event, duration=moved.get(key, length))
                    if occurrence.key not in moved:
                        occurrence = replace(occurrence, sequence=version[0], dtstamp=version[1])
                    if self._wanted(occurrence):
                        occurrences.append(occurrence)
        except _Problem:
            raise
        except _OutOfTime as exc:
            raise _Problem(gettext("its repetition rule takes too long to work out")) from exc
        except Exception as exc:  # any failure of the expansion of hostile input is this event's
            raise _Problem(
                gettext(
                    "its repetition cannot be read (%(reason)s)", reason=clean_text(str(exc), 120)
                )
            ) from exc
        if len(occurrences) > self.limits.max_occurrences:
            raise _Problem(
                gettext(
                    "it repeats more than %(most)d times within the window",
                    most=self.limits.max_occurrences,
                )
            )
        return sorted(occurrences, key=lambda o: (o.start, o.key))

    def _occurring(self, calendar: Calendar) -> Iterator[tuple[datetime, Component]]:
        """Yield each occurrence overlapping the window once, with its key, a page at a time.

        ``after()`` narrows its steps to 15 minutes wherever occurrences follow one another
        without a gap (a daily all-day event), which takes minutes over the window; pages of a
        month do not.
        """
        query = recurring_ical_events.of(calendar)
        seen: set[datetime] = set()
        start = self.window.start
        while start < self.window.end:
            end = min(start + _PAGE, self.window.end)
            for event in query.between(start, end):
                key = self._instant(_when(event.get("RECURRENCE-ID") or event["DTSTART"]))
                if key not in seen:
                    seen.add(key)
                    yield key, event
            start = end

    def _bound_rules(self, master: Component) -> None:
        """End open-ended rules at the window's end, so that nothing past it is worked out."""
        start = master.get("DTSTART")
        if start is None:
            return
        first = start.dt
        end = self.window.end
        until: date | datetime
        if not isinstance(first, datetime):
            until = end.astimezone(self.tz).date()
        elif first.tzinfo is None:
            until = end.astimezone(self.tz).replace(tzinfo=None)
        else:
            until = end
        for rule in _as_list(master.get("RRULE")):
            if "COUNT" not in rule and "UNTIL" not in rule:
                rule["UNTIL"] = [until]

    def _wanted(self, occurrence: Occurrence) -> bool:
        return (
            occurrence.end > occurrence.start
            and occurrence.end > self.window.start
            and occurrence.start < self.window.end
            and not occurrence.cancelled
        )

    def _occurrence(
        self, event: Component, *, cancelled: bool = False, duration: timedelta | None = None
    ) -> Occurrence:
        timed: Any = event  # an icalendar Event, which knows its start and end
        if duration is None:
            duration = _duration(event)
        try:
            start_value = timed.start
            end_value = timed.end
            start = self._instant(start_value)
            if duration is not None and isinstance(start_value, datetime):
                end = self._after(start_value, duration)
            else:
                end = self._instant(end_value)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise _Problem(
                gettext("its start or end cannot be read (%(reason)s)", reason=exc)
            ) from exc
        if isinstance(start_value, datetime) and start_value.tzinfo is None:
            self.floating += 1
        key_prop = event.get("RECURRENCE-ID") or event.get("DTSTART")
        sequence, dtstamp = _version(event)
        if end < start:
            raise _Problem(gettext("it ends before it starts"))
        return Occurrence(
            key=self._instant(_when(key_prop)),
            start=start,
            end=end,
            summary=clean_text(str(event.get("SUMMARY", ""))),
            all_day=not isinstance(start_value, datetime),
            sequence=sequence,
            dtstamp=dtstamp,
            cancelled=cancelled or _status(event) == "CANCELLED" or _transparent(event),
            description=clean_text(str(event.get("DESCRIPTION", "")), 2000),
            attendees=tuple(_people(event.get("ATTENDEE"))),
            organizer=next(iter(_people(event.get("ORGANIZER"))), None),
        )

    def _after(self, start: datetime, duration: timedelta) -> datetime:
        """Return the instant ``duration`` after ``start`` as RFC 5545 measures it: days and
        weeks on the wall clock, hours, minutes and seconds in real time, even across a change
        of the clocks (adding to an aware datetime would count those on the wall clock too)."""
        days = timedelta(days=duration.days)
        return self._instant(start + days) + (duration - days)

    def _instance(self, component: Component, *, cancelled: bool) -> Occurrence:
        """Read a moved or cancelled instance sent on its own, without its master."""
        if "DTSTART" not in component:
            # A CANCEL may name the instance by RECURRENCE-ID alone.
            key = self._instant(_when(component["RECURRENCE-ID"]))
            sequence, dtstamp = _version(component)
            return Occurrence(
                key=key,
                start=key,
                end=key + timedelta(minutes=1),
                summary=clean_text(str(component.get("SUMMARY", ""))),
                all_day=False,
                sequence=sequence,
                dtstamp=dtstamp,
                cancelled=True,
            )
        occurrence = self._occurrence(component, cancelled=cancelled)
        if occurrence.end == occurrence.start:
            # Moved to no length at all, it blocks nothing, as if cancelled; the row that keeps
            # its version still needs a length.
            end = occurrence.start + timedelta(minutes=1)
            occurrence = replace(occurrence, end=end, cancelled=True)
        return occurrence


class _OutOfTime(Exception):
    """The expansion of one rule ran past its time."""


# Rule parts that can combine into a rule that never matches (BYMONTH=2;BYMONTHDAY=30), for
# which dateutil searches on to the year 9999 in a loop no UNTIL or COUNT ends.
_RISKY_PARTS = {"BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYSETPOS", "BYHOUR", "BYMINUTE", "BYSECOND"}


def _may_never_match(master: Component) -> bool:
    for rule in _as_list(master.get("RRULE")):
        if _RISKY_PARTS & {str(key).upper() for key in rule}:
            return True
        if any(str(day).lstrip("+-")[:1].isdigit() for day in rule.get("BYDAY", [])):
            return True  # the fifth Friday of February
    return False


@contextmanager
def _time_limit(deadline: float) -> Iterator[None]:
    """Raise :class:`_OutOfTime` inside the code below once ``deadline`` passes.

    A trace hook checks the clock whenever a Python function is entered: the only way to stop
    a third-party loop from outside. It costs time, so it guards only rules that may need it.
    """
    previous = sys.gettrace()

    def check(frame: FrameType, event: str, arg: object) -> None:
        if monotonic_clock.monotonic() > deadline:
            raise _OutOfTime

    sys.settrace(check)
    try:
        yield
    finally:
        sys.settrace(previous)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _when(prop: Any) -> date | datetime:
    """Return the date or date-time a property holds, or explain that it holds neither."""
    value = getattr(prop, "dt", None)
    if not isinstance(value, date):
        raise _Problem(gettext("its RECURRENCE-ID or DTSTART is not a date or a date-time"))
    return value


def _duration(component: Component) -> timedelta | None:
    """Return the DURATION an event is measured by, if it has one (and no DTEND)."""
    value = getattr(component.get("DURATION"), "dt", None)
    return value if isinstance(value, timedelta) and "DTEND" not in component else None


def _values(prop: Any) -> Iterator[date | datetime]:
    """Yield the dates and times a property holds (one, or a list for EXDATE and RDATE)."""
    if hasattr(prop, "dts"):
        for item in prop.dts:
            value = item.dt
            yield value[0] if isinstance(value, tuple) else value
    elif hasattr(prop, "dt"):
        value = prop.dt
        if isinstance(value, date):
            yield value


def _version(component: Component) -> tuple[int, datetime | None]:
    """Return SEQUENCE and DTSTAMP: what decides whether one message is newer than another."""
    try:
        sequence = max(0, int(component.get("SEQUENCE", 0)))
    except (TypeError, ValueError):
        sequence = 0
    stamp = component.get("DTSTAMP")
    value = getattr(stamp, "dt", None)
    dtstamp: datetime | None = None
    if isinstance(value, datetime):
        dtstamp = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return sequence, dtstamp


def version_key(sequence: int, dtstamp: datetime | None) -> tuple[int, datetime]:
    """Return a sortable version: SEQUENCE first, then DTSTAMP (a missing one is oldest)."""
    return sequence, dtstamp or datetime(1, 1, 1, tzinfo=UTC)


def _status(component: Component) -> str:
    return str(component.get("STATUS", "")).strip().upper()


def _transparent(component: Component) -> bool:
    """Tell whether the event is marked free (TRANSP:TRANSPARENT), so it blocks nothing."""
    return str(component.get("TRANSP", "")).strip().upper() == "TRANSPARENT"


def _people(value: Any) -> Iterator[Person]:
    for address in _as_list(value):
        text = str(address).strip()
        email = text[7:] if text.lower().startswith("mailto:") else ""
        params = getattr(address, "params", {})
        yield Person(
            name=clean_text(str(params.get("CN", "")), 200),
            email=clean_text(email, 254).lower(),
            partstat=str(params.get("PARTSTAT", "")).upper(),
        )
