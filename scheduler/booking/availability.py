"""Free slots, computed without a database or Flask: data in, slots out.

The pipeline follows Easy!Appointments' subtractive one: working hours, minus time off, minus
bookings with their buffers and other busy time, give free intervals; candidate starts every
slot step (on the clinic's wall clock) that fit the treatment plus its buffer in a free interval
of the practitioner *and* of some room become slots; those inside the minimum notice or past the
horizon are dropped. Busy intervals are sorted once and probed by bisection, so a month for a
clinic costs a few thousand cheap checks and no query per day or per slot.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from scheduler.timeutil import local_to_utc, wall_time_exists

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class Rules:
    """The clinic's booking rules."""

    step: timedelta = timedelta(minutes=15)
    min_notice: timedelta = timedelta(hours=12)
    horizon: timedelta = timedelta(days=60)


@dataclass(frozen=True)
class WeeklyHours:
    """One interval of weekly working hours in wall-clock time; weekday 0 is Monday."""

    weekday: int
    start: time
    end: time


@dataclass(frozen=True)
class PractitionerDiary:
    """What availability needs to know of one practitioner."""

    practitioner_id: int
    hours: Sequence[WeeklyHours]
    busy: Sequence[Interval] = ()  # time off, bookings to the end of their buffer, busy events


@dataclass(frozen=True)
class RoomDiary:
    """What availability needs to know of one room."""

    room_id: int
    busy: Sequence[Interval] = ()


@dataclass(frozen=True, order=True)
class Slot:
    """A bookable start for one practitioner, with a room that is free for it."""

    start: datetime
    end: datetime
    practitioner_id: int
    room_id: int = field(compare=False)


Point = TypeVar("Point", int, datetime)


def _merge(intervals: Iterable[tuple[Point, Point]]) -> list[tuple[Point, Point]]:
    """Sort half-open intervals and join those that overlap or touch; drop empty ones."""
    merged: list[tuple[Point, Point]] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class BusyTimes:
    """Sorted, merged busy intervals answering "is this stretch free?" by bisection."""

    def __init__(self, intervals: Iterable[Interval]) -> None:
        merged = _merge(intervals)
        self._starts = [start for start, _ in merged]
        self._ends = [end for _, end in merged]

    def is_free(self, start: datetime, end: datetime) -> bool:
        """Tell whether nothing busy overlaps ``[start, end)``."""
        return self.busy_until(start, end) is None

    def busy_until(self, start: datetime, end: datetime) -> datetime | None:
        """Return when the busy time overlapping ``[start, end)`` ends, or ``None`` if free.

        Any stretch of the same length starting before that moment overlaps it too, so a
        search can jump there.
        """
        # Only the last interval starting before ``end`` can overlap: merged intervals are
        # disjoint and sorted, so their ends are sorted too.
        index = bisect.bisect_left(self._starts, end) - 1
        if index < 0 or self._ends[index] <= start:
            return None
        return self._ends[index]


def _day_intervals(hours: Sequence[WeeklyHours], weekday: int) -> list[tuple[int, int]]:
    """Return the day's working intervals as merged (start, end) minutes after midnight."""
    return _merge(
        (h.start.hour * 60 + h.start.minute, h.end.hour * 60 + h.end.minute)
        for h in hours
        if h.weekday == weekday
    )


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def free_slots(
    *,
    tz: ZoneInfo,
    first_day: date,
    last_day: date,
    duration: timedelta,
    buffer: timedelta,
    practitioners: Sequence[PractitionerDiary],
    rooms: Sequence[RoomDiary],
    rules: Rules,
    now: datetime,
) -> list[Slot]:
    """Return every free slot from ``first_day`` to ``last_day`` (the clinic's dates, inclusive).

    A slot is a start on the slot step of the clinic's wall clock where the practitioner works
    and is free, and some room is free, for ``duration + buffer``; it lies at least the minimum
    notice after ``now`` and no further than the horizon. Wall times that a daylight-saving
    change skips are never offered, and repeated ones only once; hours that end on a skipped wall
    time end at the skip. Slots are sorted by start, then by the order of ``practitioners``; the
    room is the first free one in the order of ``rooms``.
    """
    step_minutes = max(1, int(rules.step.total_seconds() // 60))
    earliest = now + rules.min_notice
    latest = now + rules.horizon
    needed = duration + buffer
    room_busy = [(room.room_id, BusyTimes(room.busy)) for room in rooms]
    slots: list[Slot] = []
    if not room_busy:
        return slots
    days = [_DayClock(day, tz) for day in _days(first_day, last_day)]
    for diary in practitioners:
        busy = BusyTimes(diary.busy)
        weekly = {weekday: _day_intervals(diary.hours, weekday) for weekday in range(7)}
        for clock in days:
            for start_minute, end_minute in weekly[clock.day.weekday()]:
                interval_end = clock.end_instant(end_minute)
                minute = -(-start_minute // step_minutes) * step_minutes
                while minute < end_minute:
                    start = clock.existing_instant(minute)
                    if start is None:  # skipped by a daylight-saving change
                        minute += step_minutes
                        continue
                    blocked_until = start + needed
                    if blocked_until > interval_end or start > latest:
                        break
                    if start < earliest:
                        minute = clock.step_at_or_after(earliest, minute, step_minutes)
                        continue
                    free_at = busy.busy_until(start, blocked_until)
                    if free_at is None:
                        room_ends = []
                        for room_id, times in room_busy:
                            room_free_at = times.busy_until(start, blocked_until)
                            if room_free_at is None:
                                slots.append(
                                    Slot(start, start + duration, diary.practitioner_id, room_id)
                                )
                                break
                            room_ends.append(room_free_at)
                        else:
                            free_at = min(room_ends)
                    if free_at is None:
                        minute += step_minutes
                    else:  # jump past what blocks this start
                        minute = clock.step_at_or_after(free_at, minute, step_minutes)
    order = {diary.practitioner_id: index for index, diary in enumerate(practitioners)}
    slots.sort(key=lambda slot: (slot.start, order[slot.practitioner_id]))
    return slots


class _DayClock:
    """Turns minutes after local midnight on one day into UTC instants.

    On the days without a daylight-saving change (all but about two a year) the offset is
    fixed, so this is one addition; only on change days does it ask the zone for each time.
    """

    def __init__(self, day: date, tz: ZoneInfo) -> None:
        self.day = day
        self.tz = tz
        midnight = datetime.combine(day, time(0), tzinfo=tz)
        last = datetime.combine(day, time(23, 59, 59), tzinfo=tz)
        offset = midnight.utcoffset()
        self.base = (
            datetime.combine(day, time(0), tzinfo=UTC) - offset
            if offset is not None and offset == last.utcoffset()
            else None
        )

    def instant(self, minute: int) -> datetime:
        """Return the instant the wall clock shows ``minute`` minutes after midnight."""
        if self.base is not None:
            return self.base + timedelta(minutes=minute)
        return local_to_utc(self.day, _minute_time(minute), self.tz)

    def end_instant(self, minute: int) -> datetime:
        """Return when the wall clock first shows ``minute`` minutes after midnight or later.

        That is :meth:`instant`, except that hours ending on a wall time a daylight-saving change
        skips end at the skip: read as :meth:`instant` reads it, 01:30 in a gap from 01:00 to
        02:00 would be the moment the clock shows 02:30, after the hours have ended.
        """
        for later in range(minute, 24 * 60):
            moment = self.existing_instant(later)
            if moment is not None:
                return moment
        return local_to_utc(self.day + timedelta(days=1), time(0), self.tz)

    def step_at_or_after(self, moment: datetime, minute: int, step: int) -> int:
        """Return the first minute on the step, after ``minute``, whose instant is not before
        ``moment``; on a change day simply the next step, to stay on the careful path."""
        if self.base is None:
            return minute + step
        elapsed = -(-(moment - self.base) // timedelta(minutes=1))
        return max(minute + step, -(-elapsed // step) * step)

    def existing_instant(self, minute: int) -> datetime | None:
        """Like :meth:`instant`, but ``None`` for a wall time the day skips."""
        if self.base is None and not wall_time_exists(self.day, _minute_time(minute), self.tz):
            return None
        return self.instant(minute)


def _minute_time(minute: int) -> time:
    if minute >= 24 * 60:
        return time(23, 59, 59, 999999)
    return time(minute // 60, minute % 60)


def merge_anyone(slots: Sequence[Slot]) -> list[Slot]:
    """Keep one slot per start time: the first practitioner's, in the order slots come."""
    seen: set[datetime] = set()
    merged = []
    for slot in slots:
        if slot.start not in seen:
            seen.add(slot.start)
            merged.append(slot)
    return merged


def nearest(slots: Sequence[Slot], target: datetime, count: int = 5) -> list[Slot]:
    """Return up to ``count`` slots closest to ``target``, earliest first among equals."""
    ranked = sorted(slots, key=lambda slot: (abs(slot.start - target), slot.start))
    return sorted(ranked[:count])
