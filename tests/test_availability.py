"""The pure availability pipeline: diaries in, slots out, with no database and no Flask."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from scheduler.booking.availability import (
    BusyTimes,
    Interval,
    PractitionerDiary,
    RoomDiary,
    Rules,
    Slot,
    WeeklyHours,
    free_slots,
    merge_anyone,
    nearest,
)

LONDON = ZoneInfo("Europe/London")
# Monday 23 November 2026: London keeps GMT, so its wall clock reads the same as UTC.
MONDAY = date(2026, 11, 23)
TUESDAY = MONDAY + timedelta(days=1)
# Long before the days asked about, with rules that let notice and horizon not get in the way.
EARLY = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
OPEN = Rules(step=timedelta(minutes=15), min_notice=timedelta(0), horizon=timedelta(days=730))
SPRING_FORWARD = date(2027, 3, 28)  # a Sunday: London clocks go from 01:00 GMT to 02:00 BST
FALL_BACK = date(2026, 10, 25)  # a Sunday: London clocks go from 02:00 BST back to 01:00 GMT


def at(day: date, hhmm: str, tz: ZoneInfo = LONDON) -> datetime:
    """Return the UTC instant of a wall time in ``tz`` (the first one, if it repeats)."""
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=tz).astimezone(UTC)


def hours(*spans: str, weekdays: Sequence[int] = range(7)) -> list[WeeklyHours]:
    """Weekly hours from spans like ``"09:00-13:00"``, the same on each of ``weekdays``."""
    result = []
    for weekday in weekdays:
        for span in spans:
            start, end = span.split("-")
            result.append(WeeklyHours(weekday, time.fromisoformat(start), time.fromisoformat(end)))
    return result


def slots_for(
    *,
    working: Sequence[WeeklyHours] | None = None,
    busy: Sequence[Interval] = (),
    rooms: Sequence[RoomDiary] | None = None,
    practitioners: Sequence[PractitionerDiary] | None = None,
    first_day: date = MONDAY,
    last_day: date | None = None,
    duration: int = 60,
    buffer: int = 15,
    rules: Rules = OPEN,
    now: datetime = EARLY,
    tz: ZoneInfo = LONDON,
) -> list[Slot]:
    """Call ``free_slots`` for one practitioner (id 1) and one room (id 1) unless told otherwise."""
    if practitioners is None:
        working = hours("09:00-13:00", "14:00-18:00") if working is None else working
        practitioners = [PractitionerDiary(1, working, busy)]
    return free_slots(
        tz=tz,
        first_day=first_day,
        last_day=first_day if last_day is None else last_day,
        duration=timedelta(minutes=duration),
        buffer=timedelta(minutes=buffer),
        practitioners=practitioners,
        rooms=[RoomDiary(1)] if rooms is None else rooms,
        rules=rules,
        now=now,
    )


def walls(slots: Sequence[Slot], tz: ZoneInfo = LONDON) -> list[str]:
    """The slots' starts as ``HH:MM`` on the wall clock of ``tz``."""
    return [f"{slot.start.astimezone(tz):%H:%M}" for slot in slots]


def every(first: str, last: str, minutes: int = 15) -> list[str]:
    """Wall times from ``first`` to ``last`` inclusive, ``minutes`` apart."""
    current = datetime.combine(MONDAY, time.fromisoformat(first))
    end = datetime.combine(MONDAY, time.fromisoformat(last))
    times = []
    while current <= end:
        times.append(f"{current:%H:%M}")
        current += timedelta(minutes=minutes)
    return times


# Working hours


def test_slots_fill_the_working_hours_on_the_step():
    starts = walls(slots_for(working=hours("09:00-13:00", "14:00-18:00")))

    assert starts == every("09:00", "11:45") + every("14:00", "16:45")


def test_treatment_and_buffer_must_end_by_the_end_of_hours():
    """60 + 15 minutes fit from 11:45 to 13:00 exactly; from 12:00 they would overrun."""
    starts = walls(slots_for(working=hours("09:00-13:00"), duration=60, buffer=15))

    assert "11:45" in starts
    assert "12:00" not in starts


def test_no_slot_spans_the_lunch_break():
    starts = walls(slots_for(working=hours("09:00-13:00", "14:00-18:00")))

    assert not [s for s in starts if "11:45" < s < "14:00"]
    assert "14:00" in starts


def test_no_slots_on_a_day_without_hours():
    only_tuesday = hours("09:00-13:00", weekdays=[TUESDAY.weekday()])

    assert slots_for(working=only_tuesday, first_day=MONDAY) == []
    assert slots_for(working=only_tuesday, first_day=TUESDAY) != []


def test_both_dates_of_the_range_are_included():
    found = slots_for(first_day=MONDAY, last_day=TUESDAY)

    days = {slot.start.astimezone(LONDON).date() for slot in found}
    assert days == {MONDAY, TUESDAY}


def test_slots_align_to_the_step_of_the_wall_clock_not_to_the_start_of_hours():
    starts = walls(slots_for(working=hours("09:10-12:00")))

    assert starts[0] == "09:15"
    assert all(int(s[3:]) % 15 == 0 for s in starts)


def test_step_follows_the_clinics_wall_clock_in_a_half_hour_zone():
    """In Kolkata (UTC+05:30) hourly slots start on the local hour, i.e. at half past in UTC."""
    kolkata = ZoneInfo("Asia/Kolkata")
    hourly = Rules(step=timedelta(hours=1), min_notice=timedelta(0), horizon=timedelta(days=730))

    found = slots_for(working=hours("09:00-12:00"), duration=60, buffer=0, rules=hourly, tz=kolkata)

    assert walls(found, kolkata) == ["09:00", "10:00", "11:00"]
    assert {slot.start.minute for slot in found} == {30}


def test_weekly_intervals_that_touch_behave_as_one():
    """09-13 and 13-17 let a session run across 13:00."""
    starts = walls(slots_for(working=hours("09:00-13:00", "13:00-17:00")))

    assert starts == every("09:00", "15:45")


def test_weekly_intervals_with_a_gap_do_not_join():
    starts = walls(slots_for(working=hours("09:00-13:00", "13:15-17:00")))

    assert "12:30" not in starts
    assert "13:15" in starts


def test_slot_end_is_the_start_plus_the_duration_without_buffer():
    found = slots_for(duration=60, buffer=15)

    assert all(slot.end - slot.start == timedelta(minutes=60) for slot in found)


# Busy time


def test_busy_time_blocks_every_start_that_would_overlap_it():
    booked = (at(MONDAY, "10:00"), at(MONDAY, "11:15"))  # 60 minutes plus a 15-minute buffer

    starts = walls(slots_for(working=hours("08:00-13:00"), busy=[booked]))

    assert starts == every("08:00", "08:45") + every("11:15", "11:45")


def test_slot_whose_buffer_ends_as_busy_time_begins_is_offered():
    """08:45 + 60 + 15 minutes ends at 10:00 exactly: intervals are half-open."""
    booked = (at(MONDAY, "10:00"), at(MONDAY, "11:15"))

    starts = walls(slots_for(working=hours("08:00-13:00"), busy=[booked]))

    assert "08:45" in starts
    assert "09:00" not in starts


def test_slot_may_start_the_moment_busy_time_ends():
    booked = (at(MONDAY, "10:00"), at(MONDAY, "11:15"))

    starts = walls(slots_for(working=hours("08:00-13:00"), busy=[booked]))

    assert "11:15" in starts
    assert "11:00" not in starts


def test_buffer_after_the_treatment_must_be_free_too():
    """At 09:00 a 60-minute session ends as the busy time begins, but its buffer does not."""
    booked = (at(MONDAY, "10:00"), at(MONDAY, "11:00"))

    assert "09:00" not in walls(slots_for(busy=[booked], duration=60, buffer=15))
    assert "09:00" in walls(slots_for(busy=[booked], duration=60, buffer=0))


def test_time_off_blocks_the_days_it_covers():
    time_off = (at(MONDAY, "12:00"), at(TUESDAY + timedelta(days=1), "10:00"))

    found = slots_for(busy=[time_off], first_day=MONDAY, last_day=TUESDAY + timedelta(days=1))

    by_day = {
        day: walls([s for s in found if s.start.astimezone(LONDON).date() == day])
        for day in (MONDAY, TUESDAY, TUESDAY + timedelta(days=1))
    }
    assert by_day[MONDAY] == every("09:00", "10:45")
    assert by_day[TUESDAY] == []
    assert by_day[TUESDAY + timedelta(days=1)][0] == "10:00"


# Notice and horizon


def test_minimum_notice_drops_earlier_starts_and_keeps_the_exact_edge():
    rules = Rules(min_notice=timedelta(hours=2), horizon=timedelta(days=60))

    starts = walls(slots_for(rules=rules, now=at(MONDAY, "08:00")))

    assert starts[0] == "10:00"


def test_minimum_notice_from_a_time_off_the_step_rounds_up_to_the_next_slot():
    rules = Rules(min_notice=timedelta(hours=2), horizon=timedelta(days=60))

    starts = walls(slots_for(rules=rules, now=at(MONDAY, "08:07")))

    assert starts[0] == "10:15"


def test_horizon_drops_later_starts_and_keeps_the_exact_edge():
    rules = Rules(min_notice=timedelta(0), horizon=timedelta(days=1))

    starts = walls(slots_for(rules=rules, now=at(MONDAY, "10:00"), first_day=TUESDAY))

    assert starts == every("09:00", "10:00")


def test_starts_in_the_past_are_never_offered():
    rules = Rules(min_notice=timedelta(0), horizon=timedelta(days=60))

    found = slots_for(rules=rules, now=at(MONDAY, "10:05"))

    assert walls(found)[0] == "10:15"


# Rooms


def test_no_slot_when_every_room_is_busy_even_if_the_practitioner_is_free():
    taken = (at(MONDAY, "09:00"), at(MONDAY, "13:00"))
    rooms = [RoomDiary(1, [taken]), RoomDiary(2, [taken])]

    starts = walls(slots_for(rooms=rooms))

    assert starts == every("14:00", "16:45")


def test_slot_gets_the_first_free_room_in_order():
    first_taken = RoomDiary(7, [(at(MONDAY, "09:00"), at(MONDAY, "10:00"))])
    found = slots_for(rooms=[first_taken, RoomDiary(3)])

    room_at = {wall: slot.room_id for wall, slot in zip(walls(found), found, strict=True)}
    assert room_at["09:00"] == 3
    assert room_at["10:00"] == 7


def test_no_rooms_means_no_slots():
    assert slots_for(rooms=[]) == []


def test_a_room_busy_for_part_of_the_session_is_not_offered():
    rooms = [RoomDiary(1, [(at(MONDAY, "10:00"), at(MONDAY, "10:05"))])]

    starts = walls(slots_for(rooms=rooms))

    assert "09:00" not in starts  # the session ends at 10:00 but its buffer runs to 10:15
    assert "09:45" not in starts
    assert "10:15" in starts


# Several practitioners and "anyone"


def test_slots_are_sorted_by_start_then_by_the_order_of_practitioners():
    working = hours("09:00-11:00")
    diaries = [PractitionerDiary(5, working), PractitionerDiary(2, working)]

    found = slots_for(practitioners=diaries)

    assert [(f"{s.start:%H:%M}", s.practitioner_id) for s in found[:4]] == [
        ("09:00", 5),
        ("09:00", 2),
        ("09:15", 5),
        ("09:15", 2),
    ]


def test_anyone_keeps_one_slot_per_start_from_the_first_practitioner():
    working = hours("09:00-11:00")
    busy_first = [(at(MONDAY, "09:00"), at(MONDAY, "09:30"))]
    diaries = [PractitionerDiary(5, working, busy_first), PractitionerDiary(2, working)]

    merged = merge_anyone(slots_for(practitioners=diaries))

    assert walls(merged) == every("09:00", "09:45")
    who = {wall: slot.practitioner_id for wall, slot in zip(walls(merged), merged, strict=True)}
    assert who == {"09:00": 2, "09:15": 2, "09:30": 5, "09:45": 5}


def test_anyone_offers_a_start_when_only_one_practitioner_is_free():
    working = hours("09:00-11:00")
    all_morning = [(at(MONDAY, "09:00"), at(MONDAY, "11:00"))]
    diaries = [PractitionerDiary(5, working, all_morning), PractitionerDiary(2, working)]

    merged = merge_anyone(slots_for(practitioners=diaries))

    assert {slot.practitioner_id for slot in merged} == {2}
    assert len(merged) == len(every("09:00", "09:45"))


# Daylight saving time in London


def test_spring_forward_offers_no_wall_time_in_the_skipped_hour():
    found = slots_for(working=hours("00:00-04:00"), first_day=SPRING_FORWARD, duration=30, buffer=0)

    assert walls(found) == every("00:00", "00:45") + every("02:00", "03:30")
    assert not [wall for wall in walls(found) if wall.startswith("01:")]


def test_spring_forward_starts_are_distinct_instants():
    found = slots_for(working=hours("00:00-04:00"), first_day=SPRING_FORWARD, duration=30, buffer=0)

    starts = [slot.start for slot in found]
    assert len(set(starts)) == len(starts)
    assert starts == sorted(starts)


def test_spring_forward_session_across_the_gap_lasts_its_real_duration():
    """90 minutes from 00:30 GMT end at 03:00 BST: 90 real minutes, 150 on the wall clock."""
    found = slots_for(working=hours("00:00-04:00"), first_day=SPRING_FORWARD, duration=90, buffer=0)

    slot = next(s for s in found if f"{s.start.astimezone(LONDON):%H:%M}" == "00:30")
    assert slot.end - slot.start == timedelta(minutes=90)
    assert f"{slot.end.astimezone(LONDON):%H:%M %Z}" == "03:00 BST"


def test_spring_forward_hours_ending_after_the_gap_hold_real_time_only():
    """From 00:00 to 04:00 on that day is three real hours, so 150 minutes fit from 00:30."""
    found = slots_for(
        working=hours("00:00-04:00"), first_day=SPRING_FORWARD, duration=150, buffer=0
    )

    assert walls(found) == every("00:00", "00:30")


def test_fall_back_offers_each_wall_time_once():
    found = slots_for(working=hours("00:00-04:00"), first_day=FALL_BACK, duration=30, buffer=0)

    wall_times = walls(found)
    assert len(set(wall_times)) == len(wall_times)
    assert "01:30" in wall_times


def test_fall_back_starts_are_distinct_instants():
    found = slots_for(working=hours("00:00-04:00"), first_day=FALL_BACK, duration=30, buffer=0)

    starts = [slot.start for slot in found]
    assert len(set(starts)) == len(starts)
    assert starts == sorted(starts)


def test_fall_back_slots_last_exactly_their_duration_in_real_time():
    found = slots_for(working=hours("00:00-04:00"), first_day=FALL_BACK, duration=30, buffer=15)

    assert found
    assert all(slot.end - slot.start == timedelta(minutes=30) for slot in found)


def test_fall_back_hours_hold_the_extra_real_hour():
    """From 00:00 BST to 04:00 GMT is five real hours, so a 270-minute session fits."""
    found = slots_for(working=hours("00:00-04:00"), first_day=FALL_BACK, duration=270, buffer=0)

    assert walls(found) == ["00:00", "00:15", "00:30"]


def test_summer_slots_are_on_the_wall_clock_step():
    summer_monday = date(2027, 6, 7)
    found = slots_for(first_day=summer_monday)

    assert walls(found)[0] == "09:00"
    assert found[0].start == datetime(2027, 6, 7, 8, 0, tzinfo=UTC)


# BusyTimes


def test_busy_times_intervals_are_half_open():
    busy = BusyTimes([(at(MONDAY, "10:00"), at(MONDAY, "11:00"))])

    assert busy.is_free(at(MONDAY, "09:00"), at(MONDAY, "10:00"))
    assert busy.is_free(at(MONDAY, "11:00"), at(MONDAY, "12:00"))
    assert not busy.is_free(at(MONDAY, "09:00"), at(MONDAY, "10:01"))
    assert not busy.is_free(at(MONDAY, "10:59"), at(MONDAY, "12:00"))


def test_busy_times_sees_a_stretch_inside_or_around_a_busy_interval():
    busy = BusyTimes([(at(MONDAY, "10:00"), at(MONDAY, "11:00"))])

    assert not busy.is_free(at(MONDAY, "10:15"), at(MONDAY, "10:30"))
    assert not busy.is_free(at(MONDAY, "09:00"), at(MONDAY, "12:00"))


def test_busy_times_accepts_unsorted_and_overlapping_intervals():
    busy = BusyTimes(
        [
            (at(MONDAY, "14:00"), at(MONDAY, "15:00")),
            (at(MONDAY, "09:00"), at(MONDAY, "12:00")),
            (at(MONDAY, "10:00"), at(MONDAY, "11:00")),  # inside the one before
        ]
    )

    assert not busy.is_free(at(MONDAY, "11:30"), at(MONDAY, "11:45"))
    assert busy.is_free(at(MONDAY, "12:00"), at(MONDAY, "14:00"))
    assert not busy.is_free(at(MONDAY, "14:30"), at(MONDAY, "14:45"))


def test_busy_times_ignores_empty_and_inverted_intervals():
    busy = BusyTimes(
        [
            (at(MONDAY, "10:00"), at(MONDAY, "10:00")),
            (at(MONDAY, "11:00"), at(MONDAY, "10:30")),
        ]
    )

    assert busy.is_free(at(MONDAY, "09:00"), at(MONDAY, "12:00"))


def test_empty_busy_times_is_always_free():
    assert BusyTimes([]).is_free(at(MONDAY, "00:00"), at(TUESDAY, "00:00"))


# nearest


def _slot(hhmm: str, practitioner: int = 1) -> Slot:
    start = at(MONDAY, hhmm)
    return Slot(start, start + timedelta(minutes=60), practitioner, 1)


def test_nearest_returns_the_closest_slots_in_time_order():
    slots = [_slot(wall) for wall in every("09:00", "16:00", 60)]

    found = nearest(slots, at(MONDAY, "12:10"), count=3)

    assert walls(found) == ["11:00", "12:00", "13:00"]


def test_nearest_prefers_the_earlier_of_two_equally_close_slots():
    slots = [_slot("11:00"), _slot("13:00")]

    assert walls(nearest(slots, at(MONDAY, "12:00"), count=1)) == ["11:00"]


def test_nearest_returns_all_when_there_are_fewer_than_asked():
    slots = [_slot("09:00"), _slot("10:00")]

    assert len(nearest(slots, at(MONDAY, "12:00"), count=5)) == 2


# Properties over random diaries

STEPS = (5, 10, 15, 20, 30, 60)


def _random_case(rng: random.Random) -> dict:
    """A random week: hours, busy times for the practitioner and two rooms, rules and now."""
    working = []
    for weekday in range(7):
        for _ in range(rng.randint(0, 3)):
            start = rng.randrange(0, 23 * 60, 5)
            end = min(24 * 60 - 5, start + rng.randrange(30, 8 * 60, 5))
            working.append(
                WeeklyHours(weekday, time(start // 60, start % 60), time(end // 60, end % 60))
            )
    week_start = datetime.combine(MONDAY, time(0), tzinfo=UTC)

    def random_busy(count: int) -> list[Interval]:
        intervals = []
        for _ in range(count):
            start = week_start + timedelta(minutes=rng.randrange(0, 7 * 24 * 60))
            intervals.append((start, start + timedelta(minutes=rng.randrange(1, 6 * 60))))
        return intervals

    return {
        "working": working,
        "busy": random_busy(rng.randint(0, 25)),
        "rooms": [RoomDiary(1, random_busy(rng.randint(0, 15))), RoomDiary(2, random_busy(5))],
        "duration": rng.choice((30, 45, 60, 90)),
        "buffer": rng.choice((0, 5, 15)),
        "rules": Rules(
            step=timedelta(minutes=rng.choice(STEPS)),
            min_notice=timedelta(minutes=rng.randrange(0, 48 * 60)),
            horizon=timedelta(days=rng.randint(1, 10)),
        ),
        "now": week_start + timedelta(minutes=rng.randrange(-3 * 24 * 60, 5 * 24 * 60)),
    }


def _worked_minutes(working: Sequence[WeeklyHours], weekday: int) -> set[int]:
    minutes: set[int] = set()
    for h in working:
        if h.weekday == weekday:
            minutes.update(
                range(h.start.hour * 60 + h.start.minute, h.end.hour * 60 + h.end.minute)
            )
    return minutes


def _overlaps(start: datetime, end: datetime, intervals: Sequence[Interval]) -> bool:
    return any(busy_start < end and start < busy_end for busy_start, busy_end in intervals)


def _find(case: dict) -> list[Slot]:
    return slots_for(first_day=MONDAY, last_day=MONDAY + timedelta(days=6), **case)


def test_random_diaries_never_give_a_slot_outside_hours_over_busy_time_or_off_the_step():
    for seed in range(300):
        case = _random_case(random.Random(seed))
        rooms = {room.room_id: room.busy for room in case["rooms"]}
        needed = timedelta(minutes=case["duration"] + case["buffer"])
        step = int(case["rules"].step.total_seconds() // 60)
        for slot in _find(case):
            local = slot.start.astimezone(LONDON)
            minute = local.hour * 60 + local.minute
            blocked_until = slot.start + needed
            worked = _worked_minutes(case["working"], local.weekday())
            context = f"seed {seed}, slot {slot}"
            assert set(range(minute, minute + int(needed.total_seconds() // 60))) <= worked, context
            assert not _overlaps(slot.start, blocked_until, case["busy"]), context
            assert not _overlaps(slot.start, blocked_until, rooms[slot.room_id]), context
            assert minute % step == 0, context
            assert local.second == local.microsecond == 0, context
            assert case["now"] + case["rules"].min_notice <= slot.start, context
            assert slot.start <= case["now"] + case["rules"].horizon, context


def test_random_diaries_offer_every_free_start_on_the_step():
    """A brute-force search over every minute of the week finds exactly the same starts."""
    for seed in range(300):
        case = _random_case(random.Random(seed))
        rules: Rules = case["rules"]
        step = int(rules.step.total_seconds() // 60)
        needed = case["duration"] + case["buffer"]
        expected = set()
        for offset in range(7):
            day = MONDAY + timedelta(days=offset)
            worked = _worked_minutes(case["working"], day.weekday())
            for minute in range(0, 24 * 60, step):
                start = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=UTC)
                end = start + timedelta(minutes=needed)
                if (
                    set(range(minute, minute + needed)) <= worked
                    and case["now"] + rules.min_notice <= start <= case["now"] + rules.horizon
                    and not _overlaps(start, end, case["busy"])
                    and any(not _overlaps(start, end, room.busy) for room in case["rooms"])
                ):
                    expected.add(start)

        assert {slot.start for slot in _find(case)} == expected, f"seed {seed}"
