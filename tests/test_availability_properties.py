"""Properties of availability in every kind of time zone, around daylight-saving changes.

Hypothesis draws a clinic zone (whole-hour, half-hour and 45-minute offsets; one-hour and
30-minute changes; changes at midnight), a search window of a few days around one of the zone's
changes, weekly hours, time off, bookings with their buffers, busy time imported from calendars,
rooms, the treatment and the clinic's rules. Every slot ``free_slots`` offers must keep the
rules below, and every start that a brute-force walk over the wall clock finds free must be
offered. The oracle works from the wall clock with ``zoneinfo`` directly, never through the
helpers of ``availability``; the last property runs the same cases through the database.

What the code documents for daylight-saving changes, and the oracle follows:

* a wall time a change skips is never a start;
* a wall time that repeats is a start once, at its first occurrence (as ``local_to_utc`` says);
* hours run, in real time, from their start until the clock first shows their end, so a session
  may run across a change inside the hours, and hours ending on a skipped wall time end at the
  skip.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import Flask
from hypothesis import example, given, note, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from scheduler.booking.availability import (
    Interval,
    PractitionerDiary,
    RoomDiary,
    Rules,
    Slot,
    WeeklyHours,
    free_slots,
    merge_anyone,
)
from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import find_slots
from scheduler.calendars.models import BusyTime, ExternalEvent
from scheduler.clinic.models import Clinic, Practitioner, Room, TimeOff, Treatment, WorkingHours
from scheduler.extensions import db
from scheduler.patients.models import Patient

ZONES = (
    "Europe/London",
    "America/New_York",
    "Australia/Lord_Howe",  # changes by 30 minutes
    "Pacific/Chatham",  # +12:45 and +13:45, changing at 02:45 and 03:45
    "Asia/Kolkata",  # +05:30, no changes
    "America/Sao_Paulo",  # changed at midnight until 2019: some days had no 00:00
    "UTC",
)
DAY = timedelta(days=1)
MINUTES_PER_DAY = 24 * 60

# CI runs the same examples every time; the whole file takes well under 30 seconds.
PROPERTIES = settings(max_examples=100, deadline=None, derandomize=True, database=None)
THROUGH_THE_DATABASE = settings(PROPERTIES, max_examples=25)


# ------------------------------------------------------------------------- the wall clock


@functools.cache
def changes(zone: str) -> tuple[date, ...]:
    """The local dates from 2017 to 2028 on which ``zone``'s offset changes."""
    tz = ZoneInfo(zone)
    found = []
    day = date(2017, 1, 1)
    before = datetime.combine(day, time(0), tzinfo=tz).utcoffset()
    while day < date(2029, 1, 1):
        after = datetime.combine(day + DAY, time(0), tzinfo=tz).utcoffset()
        if after != before:
            found.append(day)
        before = after
        day += DAY
    return tuple(found)


def wall(day: date, minute: int) -> datetime:
    """A naive wall-clock time ``minute`` minutes after midnight of ``day``."""
    return datetime.combine(day, time(0)) + timedelta(minutes=minute)


def existing_instant(day: date, minute: int, tz: ZoneInfo) -> datetime | None:
    """The first instant the clock of ``tz`` shows the wall time, or ``None`` if it never does."""
    local = wall(day, minute)
    instant = local.replace(tzinfo=tz).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != local:
        return None  # skipped by a change
    return instant


def first_showing(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """The first instant at which the clock of ``tz`` shows the wall time or a later one."""
    instant = existing_instant(day, minute, tz)
    if instant is not None:
        return instant
    local = wall(day, minute)
    # Read with the offset after the change, a skipped time lies before the change: walk on.
    moment = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    while moment.astimezone(tz).replace(tzinfo=None) < local:
        moment += timedelta(minutes=1)
    return moment


def minutes_of(value: time) -> int:
    return value.hour * 60 + value.minute


def merged_hours(hours: Sequence[WeeklyHours], weekday: int) -> list[tuple[int, int]]:
    """The day's hours as minutes after midnight, overlapping or touching intervals joined."""
    spans = sorted((minutes_of(h.start), minutes_of(h.end)) for h in hours if h.weekday == weekday)
    joined: list[tuple[int, int]] = []
    for start, end in spans:
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((start, end))
    return joined


def overlaps(start: datetime, end: datetime, intervals: Sequence[Interval]) -> bool:
    return any(busy_start < end and start < busy_end for busy_start, busy_end in intervals)


# ------------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Booked:
    """A booking: the time it blocks (with its buffer) and the index of its room."""

    start: datetime
    blocked_until: datetime
    room: int
    cancelled: bool = False


@dataclass(frozen=True)
class Diary:
    """One practitioner's hours and what takes their time."""

    hours: tuple[WeeklyHours, ...]
    time_off: tuple[Interval, ...] = ()
    busy_time: tuple[Interval, ...] = ()  # imported from their own calendars
    bookings: tuple[Booked, ...] = ()


@dataclass(frozen=True)
class Case:
    """One search for free slots, with everything it is given.

    Practitioners get the ids 10, 11, …; rooms 100, 101, … ``taken`` holds, for each room, the
    times other practitioners (who do not give this treatment) have booked it.
    """

    tz: ZoneInfo
    first_day: date
    last_day: date
    duration: timedelta
    buffer: timedelta
    diaries: tuple[Diary, ...]
    taken: tuple[tuple[Interval, ...], ...]
    rules: Rules
    now: datetime

    @property
    def needed(self) -> timedelta:
        return self.duration + self.buffer

    @property
    def step(self) -> int:
        return int(self.rules.step.total_seconds() // 60)

    @functools.cached_property
    def practitioners(self) -> list[PractitionerDiary]:
        return [
            PractitionerDiary(
                10 + n,
                diary.hours,
                [
                    *diary.time_off,
                    *diary.busy_time,
                    *((b.start, b.blocked_until) for b in diary.bookings if not b.cancelled),
                ],
            )
            for n, diary in enumerate(self.diaries)
        ]

    @functools.cached_property
    def rooms(self) -> list[RoomDiary]:
        return [
            RoomDiary(
                100 + n,
                [
                    *taken,
                    *(
                        (b.start, b.blocked_until)
                        for diary in self.diaries
                        for b in diary.bookings
                        if b.room == n and not b.cancelled
                    ),
                ],
            )
            for n, taken in enumerate(self.taken)
        ]

    def days(self) -> list[date]:
        count = (self.last_day - self.first_day).days + 1
        return [self.first_day + timedelta(days=n) for n in range(count)]

    def slots(self, practitioners: Sequence[PractitionerDiary] | None = None) -> list[Slot]:
        return free_slots(
            tz=self.tz,
            first_day=self.first_day,
            last_day=self.last_day,
            duration=self.duration,
            buffer=self.buffer,
            practitioners=self.practitioners if practitioners is None else practitioners,
            rooms=self.rooms,
            rules=self.rules,
            now=self.now,
        )

    def diary(self, practitioner_id: int) -> PractitionerDiary:
        return next(d for d in self.practitioners if d.practitioner_id == practitioner_id)

    def expected_starts(self, diary: PractitionerDiary) -> set[datetime]:
        """Every start a brute-force walk over each day's wall clock finds free."""
        earliest, latest = self.now + self.rules.min_notice, self.now + self.rules.horizon
        rooms = self.rooms
        found = set()
        for day in self.days():
            for first, last in merged_hours(diary.hours, day.weekday()):
                ends = first_showing(day, last, self.tz)
                for minute in range(-(-first // self.step) * self.step, last, self.step):
                    start = existing_instant(day, minute, self.tz)
                    if start is None:
                        continue
                    blocked_until = start + self.needed
                    if (
                        blocked_until <= ends
                        and earliest <= start <= latest
                        and not overlaps(start, blocked_until, diary.busy)
                        and any(not overlaps(start, blocked_until, r.busy) for r in rooms)
                    ):
                        found.add(start)
        return found


# Hours are minutes after midnight; times before 05:00 are drawn often, because every change
# these zones make falls between 00:00 and 03:45.
minute_of_day = st.one_of(st.integers(0, MINUTES_PER_DAY - 1), st.integers(0, 5 * 60))


@st.composite
def weekly_hours(draw: st.DrawFn, *, days: Sequence[date], on: date) -> tuple[WeeklyHours, ...]:
    """Up to three intervals on each weekday of ``days``, at least one on that of ``on``;
    some days all day long.

    Intervals may overlap or touch (availability joins them); none runs overnight, as the
    model's ``end_time > start_time`` forbids. Weekdays outside the search get no hours.
    """
    hours = []
    for weekday in sorted({day.weekday() for day in days}):
        if draw(st.integers(0, 4)) == 0:
            hours.append(WeeklyHours(weekday, time(0), time(23, 59)))
            continue
        for _ in range(draw(st.integers(1 if weekday == on.weekday() else 0, 3))):
            a, b = draw(minute_of_day), draw(minute_of_day)
            if a == b:
                b = a + 1 if a < MINUTES_PER_DAY - 1 else a - 1
            start, end = min(a, b), max(a, b)
            hours.append(WeeklyHours(weekday, time(*divmod(start, 60)), time(*divmod(end, 60))))
    return tuple(hours)


@st.composite
def cases(draw: st.DrawFn, zone: str) -> Case:
    """A few days around one of ``zone``'s changes (any days, for a zone without changes)."""
    tz = ZoneInfo(zone)
    if changes(zone):
        around = draw(st.sampled_from(changes(zone)))
    else:
        around = draw(st.dates(date(2024, 1, 1), date(2028, 12, 31)))
    first_day = around - timedelta(days=draw(st.integers(0, 2)))
    last_day = around + timedelta(days=draw(st.integers(0, 2)))
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    # Busy time and "now" fall anywhere from a day before the window to a day after it.
    origin = datetime.combine(first_day - DAY, time(0), tzinfo=UTC)
    span = ((last_day - first_day).days + 3) * MINUTES_PER_DAY

    def moment(*, whole_minutes: bool = True) -> datetime:
        minute = draw(st.integers(0, span))
        # Times imported from calendars need not fall on whole minutes.
        second = 0 if whole_minutes else draw(st.sampled_from((0, 0, 0, 1, 30, 59)))
        return origin + timedelta(minutes=minute, seconds=second)

    def intervals(most: int, longest: int, *, whole_minutes: bool = True) -> tuple[Interval, ...]:
        found = []
        for _ in range(draw(st.integers(0, most))):
            start = moment(whole_minutes=whole_minutes)
            found.append((start, start + timedelta(minutes=draw(st.integers(1, longest)))))
        return tuple(found)

    # Bookings never overlap for a practitioner or a room (the database sees to that), and
    # none is longer than a day: at most 480 minutes and a 240-minute buffer.
    taken: list[list[Interval]] = [[] for _ in range(draw(st.integers(1, 3)))]
    for room in taken:
        for start, end in intervals(2, 480 + 240):
            if not overlaps(start, end, room):
                room.append((start, end))
    diaries = []
    for _ in range(draw(st.integers(1, 3))):
        bookings: list[Booked] = []
        for _ in range(draw(st.integers(0, 4))):
            start = moment()
            end = start + timedelta(minutes=draw(st.integers(5, 480 + 240)))
            room = draw(st.integers(0, len(taken) - 1))
            cancelled = draw(st.integers(0, 4)) == 0
            mine = [(b.start, b.blocked_until) for b in bookings if not b.cancelled]
            theirs = [
                (b.start, b.blocked_until)
                for d in diaries
                for b in d.bookings
                if b.room == room and not b.cancelled
            ]
            if cancelled or not overlaps(start, end, [*mine, *theirs, *taken[room]]):
                bookings.append(Booked(start, end, room, cancelled))
        diaries.append(
            Diary(
                hours=draw(weekly_hours(days=days, on=around)),
                time_off=intervals(1, 2 * MINUTES_PER_DAY),
                busy_time=intervals(3, 600, whole_minutes=False),
                bookings=tuple(bookings),
            )
        )
    min_notice = draw(st.one_of(st.sampled_from((0, 60, 12 * 60)), st.integers(0, 72 * 60)))
    return Case(
        tz=tz,
        first_day=first_day,
        last_day=last_day,
        duration=timedelta(minutes=draw(st.integers(5, 480))),
        buffer=timedelta(minutes=draw(st.sampled_from((0, 0, 5, 10, 15, 30, 240)))),
        diaries=tuple(diaries),
        taken=tuple(tuple(room) for room in taken),
        rules=Rules(
            step=timedelta(minutes=draw(st.sampled_from((5, 10, 15, 20, 30, 45, 60, 90, 240)))),
            min_notice=timedelta(minutes=min_notice),
            horizon=timedelta(days=draw(st.sampled_from((1, 2, 3, 5, 60, 730)))),
        ),
        now=origin + timedelta(minutes=draw(st.integers(-2 * MINUTES_PER_DAY, span))),
    )


any_case = st.sampled_from(ZONES).flatmap(cases)


def change_day_case(zone: str, day: date, hours: str, duration: int) -> Case:
    """One practitioner, one room and wide-open rules on one day, for regression examples."""
    start, end = (time.fromisoformat(part) for part in hours.split("-"))
    return Case(
        tz=ZoneInfo(zone),
        first_day=day,
        last_day=day,
        duration=timedelta(minutes=duration),
        buffer=timedelta(0),
        diaries=(Diary(hours=(WeeklyHours(day.weekday(), start, end),)),),
        taken=((),),
        rules=Rules(step=timedelta(minutes=15), min_notice=timedelta(0), horizon=730 * DAY),
        now=datetime.combine(day - DAY, time(0), tzinfo=UTC),
    )


# Found by these properties: hours ending on a wall time that a change skips ran on, in real
# time, as far past the change as that time lay in the gap. London skips 01:00-02:00 on
# 28 March 2027, so hours until 01:30 offered 00:45-01:15 GMT, which ends at 02:15 BST.
LONDON_HOURS_ENDING_IN_THE_GAP = change_day_case(
    "Europe/London", date(2027, 3, 28), "00:00-01:30", 30
)
# Lord Howe skips 02:00-02:30 on 3 October 2027; Chatham 02:45-03:45 on 24 September 2017.
LORD_HOWE_HOURS_ENDING_IN_THE_GAP = change_day_case(
    "Australia/Lord_Howe", date(2027, 10, 3), "01:00-02:15", 60
)
CHATHAM_HOURS_ENDING_IN_THE_GAP = change_day_case(
    "Pacific/Chatham", date(2017, 9, 24), "02:00-03:15", 45
)


def regressions(test: Callable[..., None]) -> Callable[..., None]:
    """Add the regression examples to a property."""
    for case in (
        LONDON_HOURS_ENDING_IN_THE_GAP,
        LORD_HOWE_HOURS_ENDING_IN_THE_GAP,
        CHATHAM_HOURS_ENDING_IN_THE_GAP,
    ):
        test = example(case=case)(test)
    return test


# ------------------------------------------------------------------------------ properties


@PROPERTIES
@given(case=any_case)
@regressions
def test_every_slot_lies_within_the_working_hours_of_its_day_on_the_clinic_clock(case: Case):
    for slot in case.slots():
        local = slot.start.astimezone(case.tz)
        minute = local.hour * 60 + local.minute
        assert case.first_day <= local.date() <= case.last_day, slot
        assert existing_instant(local.date(), minute, case.tz) == slot.start, (
            f"{slot} is not the first occurrence of {local:%H:%M} on the wall clock"
        )
        assert minute % case.step == 0, f"{slot} is off the step"
        assert local.second == local.microsecond == 0, slot
        hours = case.diary(slot.practitioner_id).hours
        around = [(a, b) for a, b in merged_hours(hours, local.weekday()) if a <= minute < b]
        assert around, f"{slot} starts at {local:%A %H:%M}, outside the hours"
        [(_, last)] = around
        ends = first_showing(local.date(), last, case.tz)
        assert slot.start + case.needed <= ends, (
            f"{slot} with its buffer runs past the end of the hours, "
            f"{ends.astimezone(case.tz):%H:%M %Z}"
        )


@PROPERTIES
@given(case=any_case)
def test_no_slot_overlaps_a_booking_time_off_or_busy_time_with_the_buffer(case: Case):
    rooms = case.rooms
    for slot in case.slots():
        blocked_until = slot.start + case.needed
        diary = case.diaries[slot.practitioner_id - 10]
        for what, intervals in [
            ("time off", diary.time_off),
            ("busy time", diary.busy_time),
            ("a booking", [(b.start, b.blocked_until) for b in diary.bookings if not b.cancelled]),
        ]:
            assert not overlaps(slot.start, blocked_until, intervals), f"{slot} overlaps {what}"
        first_free = next(r for r in rooms if not overlaps(slot.start, blocked_until, r.busy))
        assert slot.room_id == first_free.room_id, f"{slot} is not in the first free room"


@PROPERTIES
@given(case=any_case)
def test_no_slot_starts_inside_the_minimum_notice_or_past_the_horizon(case: Case):
    for slot in case.slots():
        assert case.now + case.rules.min_notice <= slot.start, slot
        assert slot.start <= case.now + case.rules.horizon, slot


@PROPERTIES
@given(case=any_case)
def test_slots_are_sorted_unique_in_utc_and_last_exactly_the_treatment(case: Case):
    found = case.slots()
    keys = [(slot.start, slot.practitioner_id - 10) for slot in found]

    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert all(slot.start.utcoffset() == slot.end.utcoffset() == timedelta(0) for slot in found)
    assert all(slot.end - slot.start == case.duration for slot in found)


@settings(PROPERTIES, max_examples=200)  # the strongest property: worth more examples
@given(case=any_case)
@regressions
def test_every_free_start_on_the_step_is_offered_and_nothing_else(case: Case):
    found = case.slots()

    for diary in case.practitioners:
        offered = [slot.start for slot in found if slot.practitioner_id == diary.practitioner_id]
        expected = case.expected_starts(diary)
        note(f"practitioner {diary.practitioner_id}: {len(expected)} free starts")
        assert set(offered) == expected


@PROPERTIES
@given(case=any_case)
def test_anyone_is_the_union_of_each_practitioners_own_slots(case: Case):
    own = {diary.practitioner_id: case.slots([diary]) for diary in case.practitioners}
    together = case.slots()

    # A practitioner's slots do not depend on who else is asked about.
    for practitioner_id, slots in own.items():
        assert [slot for slot in together if slot.practitioner_id == practitioner_id] == slots
    first_free: dict[datetime, int] = {}
    for practitioner_id, slots in own.items():  # in the order practitioners are asked about
        for slot in slots:
            first_free.setdefault(slot.start, practitioner_id)
    anyone = merge_anyone(together)
    assert [(slot.start, slot.practitioner_id) for slot in anyone] == sorted(first_free.items())


# ------------------------------------------------------------------ through the database


@dataclass
class Stored:
    """A case written to the database."""

    clinic: Clinic
    treatment: Treatment
    practitioners: list[Practitioner]
    rooms: list[Room]


def store(session: Session, case: Case) -> Stored:
    """Write a case as a clinic's data, in rows as the app writes them, and flush."""
    clinic = Clinic(
        name="Property clinic",
        timezone=case.tz.key,
        slot_step_minutes=case.step,
        min_notice_minutes=int(case.rules.min_notice.total_seconds() // 60),
        horizon_days=case.rules.horizon.days,
    )
    treatment = Treatment(
        name="Treatment",
        duration_minutes=int(case.duration.total_seconds() // 60),
        buffer_minutes=int(case.buffer.total_seconds() // 60),
    )
    other = Treatment(name="Another treatment", duration_minutes=60)
    serial = itertools.count()  # everything below is rolled back, so names may repeat
    patient = Patient(name="Pat Example", email="pat@example.org")
    rooms = [Room(name=f"Room {n}") for n in range(len(case.taken))]
    session.add_all([clinic, treatment, other, patient, *rooms])
    practitioners = []
    for n, diary in enumerate(case.diaries):
        practitioner = Practitioner(
            name=f"Practitioner {n}",
            email=f"practitioner{n}@clinic.test",
            treatments=[treatment],
            working_hours=[
                WorkingHours(weekday=h.weekday, start_time=h.start, end_time=h.end)
                for h in diary.hours
            ],
        )
        session.add(practitioner)
        practitioners.append(practitioner)
    session.flush()

    def book(
        practitioner: Practitioner,
        room: Room,
        start: datetime,
        end: datetime,
        *,
        of: Treatment = treatment,
        cancelled: bool = False,
    ) -> None:
        session.add(
            Booking(
                treatment_id=of.id,
                practitioner_id=practitioner.id,
                room_id=room.id,
                patient_id=patient.id,
                start_at=start,
                end_at=end,
                blocked_until=end,
                status=BookingStatus.CANCELLED if cancelled else BookingStatus.CONFIRMED,
                manage_token=f"token-{next(serial)}",
                calendar_uid=f"booking-{next(serial)}@clinic.test",
            )
        )

    for n, (room, taken) in enumerate(zip(rooms, case.taken, strict=True)):
        # Each room's other bookings are by someone who does not give the treatment.
        elsewhere = Practitioner(name="Elsewhere", email=f"elsewhere{n}@clinic.test")
        session.add(elsewhere)
        session.flush()
        for start, end in taken:
            book(elsewhere, room, start, end, of=other)
    for practitioner, diary in zip(practitioners, case.diaries, strict=True):
        for booked in diary.bookings:
            book(
                practitioner,
                rooms[booked.room],
                booked.start,
                booked.blocked_until,
                cancelled=booked.cancelled,
            )
        for start, end in diary.time_off:
            session.add(TimeOff(practitioner_id=practitioner.id, start_at=start, end_at=end))
        event = ExternalEvent(practitioner_id=practitioner.id, uid="busy@calendar.test")
        session.add(event)
        # Each instance of a series has its own key (two may start together).
        keys = (datetime(2000, 1, 1, tzinfo=UTC) + timedelta(hours=n) for n in itertools.count())
        for start, end in diary.busy_time:
            event.busy_times.append(
                BusyTime(
                    practitioner_id=practitioner.id,
                    occurrence=next(keys),
                    start_at=start,
                    end_at=end,
                )
            )
        # Cancelled busy time blocks nothing.
        event.busy_times.append(
            BusyTime(
                practitioner_id=practitioner.id,
                occurrence=next(keys),
                start_at=datetime.combine(case.first_day, time(0), tzinfo=UTC),
                end_at=datetime.combine(case.last_day + DAY, time(0), tzinfo=UTC),
                cancelled=True,
            )
        )
    session.flush()
    return Stored(clinic, treatment, practitioners, rooms)


def as_rows(slots: Sequence[Slot]) -> list[tuple[object, ...]]:
    """Slots as tuples that compare their rooms too."""
    return [(s.start, s.end, s.practitioner_id, s.room_id) for s in slots]


@THROUGH_THE_DATABASE
@given(case=any_case)
def test_find_slots_reads_every_diary_from_the_database_and_merges_anyone(app: Flask, case: Case):
    with app.app_context():
        engine = db.engine
    with Session(engine) as session:
        try:
            stored = store(session, case)
            ids = {p.id: 10 + n for n, p in enumerate(stored.practitioners)}
            room_ids = {r.id: 100 + n for n, r in enumerate(stored.rooms)}

            def search(practitioner: Practitioner | None) -> list[tuple[object, ...]]:
                found = find_slots(
                    session,
                    clinic=stored.clinic,
                    treatment=stored.treatment,
                    practitioner=practitioner,
                    first_day=case.first_day,
                    last_day=case.last_day,
                    now=case.now,
                )
                return [
                    (s.start, s.end, ids[s.practitioner_id], room_ids[s.room_id]) for s in found
                ]

            for practitioner, diary in zip(stored.practitioners, case.practitioners, strict=True):
                assert search(practitioner) == as_rows(case.slots([diary]))
            assert search(None) == as_rows(merge_anyone(case.slots()))
        finally:
            session.rollback()
