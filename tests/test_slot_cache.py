"""The slot cache: keyed by the clinic's schedule version, which every change that can move a
free time raises in its own transaction, so that a cached answer is never stale.

Each read is made as a request makes it, in a session of its own; the changes are made in
another (the test's), through the unit of work, bulk statements, an import or raw SQL.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.orm import Session

from scheduler.booking.availability import Slot
from scheduler.booking.operations import find_slots
from scheduler.booking.slotcache import TIME_BUCKET, SlotCache, bump, time_bucket
from scheduler.calendars.imports import import_calendar_file
from scheduler.calendars.reading import Limits
from scheduler.clinic.models import Clinic, Practitioner, TimeOff, WorkingHours
from tests.conftest import NOW, london

TUESDAY = date(2026, 11, 24)


@pytest.fixture
def cache() -> SlotCache:
    return SlotCache(64)


@pytest.fixture
def read(session, setup):
    """Find Tuesday's follow-up slots for anyone in a session of its own, like a request."""

    def find(cache: SlotCache | None, *, now=NOW, practitioner=None) -> list[Slot]:
        with Session(session.get_bind()) as own:
            return find_slots(
                own,
                clinic=own.get(Clinic, setup.clinic.id),
                treatment=own.get(type(setup.follow_up), setup.follow_up.id),
                practitioner=practitioner and own.get(type(practitioner), practitioner.id),
                first_day=TUESDAY,
                last_day=TUESDAY,
                now=now,
                cache=cache,
            )

    return find


def starts(slots: list[Slot]) -> list[str]:
    return [slot.start.strftime("%H:%M") for slot in slots]


def version(session, setup) -> int:
    session.rollback()
    return session.scalar(select(Clinic.schedule_version).where(Clinic.id == setup.clinic.id))


def test_a_repeated_question_is_answered_from_the_cache(read, cache):
    first = read(cache)
    assert len(cache) == 1
    assert read(cache) == first == read(None)


def test_a_booking_made_elsewhere_is_seen_at_once(read, cache, book, setup):
    before = read(cache)
    assert "10:00" in starts(before)
    book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    book(london("2026-11-24", "10:00"), practitioner=setup.james)
    after = read(cache)
    assert "10:00" not in starts(after)
    assert after == read(None)


def test_time_off_is_seen_at_once(read, cache, make_time_off, setup):
    read(cache)
    for practitioner in (setup.mei, setup.james):
        make_time_off(practitioner, london("2026-11-24", "09:00"), london("2026-11-24", "13:00"))
    after = read(cache)
    assert starts(after)[0] == "14:00"
    assert after == read(None)


def test_an_import_is_seen_at_once(read, cache, session, setup):
    read(cache)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN"]
    for practitioner in ("mei", "james"):
        lines += [
            "BEGIN:VEVENT",
            f"UID:{practitioner}-teaching@example.org",
            "DTSTAMP:20261120T120000Z",
            "DTSTART:20261124T140000Z",
            "DTEND:20261124T180000Z",
            "SUMMARY:Teaching",
            "END:VEVENT",
        ]
    for practitioner in (setup.mei, setup.james):
        import_calendar_file(
            session,
            clinic=setup.clinic,
            practitioner=practitioner,
            data="\r\n".join([*lines, "END:VCALENDAR", ""]).encode(),
            name="teaching.ics",
            now=NOW,
            limits=Limits(),
        )
    session.commit()
    after = read(cache)
    assert starts(after)[-1] < "14:00"
    assert after == read(None)


def test_bulk_statements_are_seen_at_once(read, cache, session, setup):
    read(cache)
    session.execute(
        insert(TimeOff),
        [
            {
                "practitioner_id": practitioner.id,
                "start_at": london("2026-11-24", "09:00"),
                "end_at": london("2026-11-24", "12:00"),
            }
            for practitioner in (setup.mei, setup.james)
        ],
    )
    session.commit()
    after_insert = read(cache)
    assert starts(after_insert)[0] == "14:00"
    assert after_insert == read(None)
    session.execute(delete(TimeOff))
    session.commit()
    assert starts(read(cache))[0] == "09:00"
    session.execute(update(Practitioner).values(active=False))
    session.commit()
    assert read(cache) == [] == read(None)


def test_an_edit_of_the_hours_is_seen_at_once(read, cache, session, setup):
    read(cache, practitioner=setup.mei)
    for hours in session.scalars(
        select(WorkingHours).where(WorkingHours.practitioner_id == setup.mei.id)
    ):
        if hours.weekday == TUESDAY.weekday() and hours.start_time.hour == 14:
            session.delete(hours)
    session.commit()
    after = read(cache, practitioner=setup.mei)
    assert starts(after)[-1] < "14:00"
    assert after == read(None, practitioner=setup.mei)


def test_raw_sql_needs_an_explicit_bump(read, cache, session, setup):
    read(cache)
    session.connection().execute(text("UPDATE rooms SET active = false"))
    bump(session)
    session.commit()
    assert read(cache) == [] == read(None)


def test_the_version_is_raised_in_the_changes_own_transaction(session, setup, make_time_off):
    start = version(session, setup)
    session.add(
        WorkingHours(
            practitioner_id=setup.mei.id,
            weekday=6,
            start_time=london("2026-11-29", "09:00").time(),
            end_time=london("2026-11-29", "12:00").time(),
        )
    )
    session.flush()
    session.rollback()
    assert version(session, setup) == start
    make_time_off(setup.mei, london("2026-11-24", "09:00"), london("2026-11-24", "10:00"))
    assert version(session, setup) == start + 1


def test_changes_that_cannot_move_a_time_leave_the_version(session, setup):
    start = version(session, setup)
    session.get(Clinic, setup.clinic.id)
    session.commit()
    assert version(session, setup) == start


def test_a_unit_of_work_that_changed_the_schedule_reads_afresh(session, setup, cache):
    def mine() -> list[str]:
        return starts(
            find_slots(
                session,
                clinic=setup.clinic,
                treatment=setup.follow_up,
                practitioner=setup.mei,
                first_day=TUESDAY,
                last_day=TUESDAY,
                now=NOW,
                cache=cache,
            )
        )

    assert "09:00" in mine()
    session.add(
        TimeOff(
            practitioner_id=setup.mei.id,
            start_at=london("2026-11-24", "09:00"),
            end_at=london("2026-11-24", "10:00"),
        )
    )
    assert "09:00" not in mine()
    session.rollback()


def test_the_notice_holds_to_the_minute_within_a_time_bucket(read, cache):
    # The clinic's notice is 12 hours: at 21:50 on Monday, 09:45 on Tuesday is too soon.
    moments = [london("2026-11-23", "21:40") + timedelta(minutes=m) for m in range(0, 25, 5)]
    assert time_bucket(moments[0]) <= moments[0] < time_bucket(moments[0]) + TIME_BUCKET
    for moment in moments:
        assert read(cache, now=moment) == read(None, now=moment), moment
    assert starts(read(cache, now=moments[2]))[0] == "10:00"


def test_the_horizon_holds_to_the_minute_within_a_time_bucket(read, cache):
    # The horizon is 60 days: from 09:02 on 25 September, Tuesday's times up to 09:02 count.
    early = london("2026-09-25", "09:00")
    for minutes in (0, 1, 2, 4, 14, 16, 31):
        moment = early + timedelta(minutes=minutes)
        assert read(cache, now=moment) == read(None, now=moment), moment


def test_a_cache_of_size_zero_keeps_nothing(read):
    off = SlotCache(0)
    assert read(off) == read(None)
    assert len(off) == 0


def test_the_oldest_list_makes_way(read, setup):
    small = SlotCache(1)
    read(small)
    read(small, practitioner=setup.mei)
    assert len(small) == 1
