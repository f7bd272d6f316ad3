"""VTIMEZONE components in the RRULE style calendar clients expect.

Google and Outlook describe a zone by its yearly rules (``RRULE:FREQ=YEARLY;BYMONTH=3;
BYDAY=-1SU``) from a DTSTART in 1970; Outlook is known to mishandle the list-of-dates style
that ``icalendar``'s ``add_missing_timezones()`` writes. zoneinfo has no API for a zone's rules,
so they are read off its transitions: two consecutive years must follow the same rule, or the
zone (a rare one whose changes follow no weekday rule) is described date by date instead.
"""

from __future__ import annotations

import calendar as monthcal
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from icalendar import Timezone, TimezoneDaylight, TimezoneStandard

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@dataclass(frozen=True)
class Transition:
    """A change of offset: the wall time it happens at (in the old offset) and the offsets."""

    local: datetime  # naive wall-clock time in the offset before the change
    offset_from: timedelta
    offset_to: timedelta
    name: str
    is_dst: bool

    def rule(self) -> tuple[int, int, int, int, int]:
        """Month, week ordinal (-1 for last), weekday, hour and minute of the change."""
        day = self.local.day
        last_day = monthcal.monthrange(self.local.year, self.local.month)[1]
        ordinal = -1 if day + 7 > last_day else (day - 1) // 7 + 1
        return (self.local.month, ordinal, self.local.weekday(), self.local.hour, self.local.minute)


def _offset(moment: datetime, tz: ZoneInfo) -> timedelta:
    return moment.astimezone(tz).utcoffset() or timedelta(0)


@lru_cache(maxsize=256)
def transitions(key: str, year: int) -> tuple[Transition, ...]:
    """Return the zone's changes of offset during ``year``, found by scanning its hours."""
    tz = ZoneInfo(key)
    found = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    offset = _offset(moment, tz)
    hour = timedelta(hours=1)
    while moment < end:
        following = moment + hour
        new_offset = _offset(following, tz)
        if new_offset != offset:
            change = moment
            while _offset(change + timedelta(minutes=1), tz) == offset:
                change += timedelta(minutes=1)
            change += timedelta(minutes=1)
            after = change.astimezone(tz)
            found.append(
                Transition(
                    local=(change + offset).replace(tzinfo=None),
                    offset_from=offset,
                    offset_to=new_offset,
                    name=after.tzname() or "",
                    is_dst=bool(after.dst()),
                )
            )
            offset = new_offset
        moment = following
    return tuple(found)


def _first_in(year: int, month: int, ordinal: int, weekday: int) -> int:
    """Return the day of ``month`` in ``year`` that is the ``ordinal``-th ``weekday``."""
    days = [
        day
        for day in range(1, monthcal.monthrange(year, month)[1] + 1)
        if date(year, month, day).weekday() == weekday
    ]
    return days[ordinal if ordinal < 0 else ordinal - 1]


def vtimezone(tz: ZoneInfo, around: date) -> Timezone:
    """Return the VTIMEZONE for ``tz`` valid for events around ``around``.

    The same component serves every calendar of that zone and year (every message's invite
    needs one): callers add it to a calendar and never change it.
    """
    return _vtimezone(tz.key, around.year)


@lru_cache(maxsize=64)
def _vtimezone(key: str, year: int) -> Timezone:
    tz, around = ZoneInfo(key), date(year, 1, 1)
    this_year, next_year = transitions(key, around.year), transitions(key, around.year + 1)
    component = Timezone()
    component.add("tzid", key)
    if not this_year and not next_year:
        moment = datetime(around.year, 1, 1, tzinfo=tz)
        offset = moment.utcoffset() or timedelta(0)
        standard = TimezoneStandard()
        standard.add("dtstart", datetime(1970, 1, 1))  # noqa: DTZ001 - VTIMEZONE wall time
        standard.add("tzoffsetfrom", offset)
        standard.add("tzoffsetto", offset)
        standard.add("tzname", moment.tzname() or key)
        component.add_component(standard)
        return component
    if [t.rule() for t in this_year] != [t.rule() for t in next_year]:
        # No yearly weekday rule: describe the years around the events date by date.
        return Timezone.from_tzinfo(
            tz,
            tzid=key,
            first_date=date(around.year - 1, 1, 1),
            last_date=date(around.year + 2, 12, 31),
        )
    for change in this_year:
        month, ordinal, weekday, hour, minute = change.rule()
        part = TimezoneDaylight() if change.is_dst else TimezoneStandard()
        part.add(
            "dtstart",
            datetime(1970, month, _first_in(1970, month, ordinal, weekday), hour, minute),  # noqa: DTZ001
        )
        part.add(
            "rrule", {"freq": "yearly", "bymonth": month, "byday": f"{ordinal}{WEEKDAYS[weekday]}"}
        )
        part.add("tzoffsetfrom", change.offset_from)
        part.add("tzoffsetto", change.offset_to)
        part.add("tzname", change.name)
        component.add_component(part)
    return component
