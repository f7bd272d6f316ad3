"""The booking operations against a real database: rules, rooms, buffers, identity, constraints."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import IntegrityError

from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import (
    BookingError,
    PatientDetails,
    SlotUnavailable,
    book_session,
    cancel_booking,
    find_slots,
    reschedule_booking,
)
from scheduler.patients.models import Patient
from tests.conftest import london


def test_a_booking_stores_utc_times_its_buffer_and_calendar_identity(book, setup):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)

    assert booking.start_at == london("2026-11-24", "10:00")
    assert booking.start_at.utcoffset() == timedelta(0)
    assert booking.end_at - booking.start_at == timedelta(minutes=60)
    assert booking.blocked_until - booking.end_at == timedelta(minutes=15)
    assert booking.status is BookingStatus.CONFIRMED
    assert booking.sequence == 0
    assert booking.calendar_uid.startswith("booking-")
    assert booking.calendar_uid.endswith("@clinic.test")


def test_manage_tokens_are_unguessable_and_distinct(book, setup):
    first = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    second = book(london("2026-11-24", "10:00"), practitioner=setup.james)

    # token_urlsafe(32): 43 characters of 6 bits, 256 bits in all (at least 128 required).
    assert len(first.manage_token) >= 43
    assert first.manage_token != second.manage_token


def test_anyone_gets_the_first_practitioner_free(book, setup):
    start = london("2026-11-24", "10:00")
    first = book(start)
    second = book(start)

    assert {first.practitioner_id, second.practitioner_id} == {setup.mei.id, setup.james.id}
    assert first.room_id != second.room_id
    with pytest.raises(SlotUnavailable):
        book(start)


def test_a_room_shortage_blocks_a_time_even_with_a_practitioner_free(
    book, setup, make_practitioner, session
):
    start = london("2026-11-24", "10:00")
    third = make_practitioner(name="Sofia Rossi", treatments=[setup.follow_up])
    book(start, practitioner=setup.mei)
    book(start, practitioner=setup.james)

    with pytest.raises(SlotUnavailable):
        book(start, practitioner=third)


def test_the_buffer_after_a_session_keeps_the_practitioner_busy(book, setup):
    book(london("2026-11-24", "10:00"), practitioner=setup.mei)  # blocked until 11:15

    with pytest.raises(SlotUnavailable):
        book(london("2026-11-24", "11:00"), practitioner=setup.mei)
    assert book(london("2026-11-24", "11:15"), practitioner=setup.mei).id


def test_a_refused_time_comes_with_the_nearest_free_alternatives(book, setup):
    start = london("2026-11-24", "10:00")
    book(start, practitioner=setup.mei)

    with pytest.raises(SlotUnavailable) as refused:
        book(start, practitioner=setup.mei)

    alternatives = refused.value.alternatives
    assert alternatives
    assert all(slot.practitioner_id == setup.mei.id for slot in alternatives)
    assert all(slot.start != start for slot in alternatives)
    assert min(abs(slot.start - start) for slot in alternatives) <= timedelta(hours=2)


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (london("2026-11-23", "07:00"), "already passed"),
        (london("2026-11-23", "15:00"), "notice"),
        (london("2027-02-01", "10:00"), "60 days"),
    ],
)
def test_rule_breaking_times_are_refused_with_the_reason(book, setup, start, message):
    with pytest.raises(BookingError) as refused:
        book(start, practitioner=setup.mei)

    assert message in refused.value.message
    assert refused.value.field == "start"


def test_a_time_off_the_slot_step_is_not_bookable(book, setup):
    with pytest.raises(SlotUnavailable):
        book(london("2026-11-24", "10:07"), practitioner=setup.mei)


def test_time_off_blocks_bookings(book, setup, make_time_off):
    make_time_off(setup.mei, london("2026-11-24", "00:00"), london("2026-11-25", "00:00"))

    with pytest.raises(SlotUnavailable):
        book(london("2026-11-24", "10:00"), practitioner=setup.mei)


def test_a_practitioner_who_does_not_give_the_treatment_is_refused(
    session, setup, make_treatment, clock
):
    cupping = make_treatment(name="Cupping", duration_minutes=30)

    with pytest.raises(BookingError) as refused:
        book_session(
            session,
            clinic=setup.clinic,
            treatment=cupping,
            practitioner=setup.mei,
            start=london("2026-11-24", "10:00"),
            patient=PatientDetails("Ann", "ann@example.org"),
            now=clock(),
            uid_host="clinic.test",
        )
    assert refused.value.field == "practitioner"


def test_a_returning_patient_is_found_by_email_whatever_the_case(book, setup, session):
    first = book(london("2026-11-24", "10:00"), email="Ann.Lee@Example.org")
    second = book(london("2026-11-25", "10:00"), email="ann.lee@example.org")

    assert first.patient_id == second.patient_id
    assert session.scalar(select(func.count()).select_from(Patient)) == 1


def test_rescheduling_keeps_the_identity_and_raises_the_sequence(book, setup, session, clock):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    token, uid = booking.manage_token, booking.calendar_uid

    reschedule_booking(
        session,
        clinic=setup.clinic,
        booking=booking,
        start=london("2026-11-26", "15:00"),
        now=clock(),
    )
    session.commit()

    assert booking.start_at == london("2026-11-26", "15:00")
    assert (booking.manage_token, booking.calendar_uid) == (token, uid)
    assert booking.sequence == 1
    assert booking.practitioner_id == setup.mei.id
    # The old time is free again.
    assert book(london("2026-11-24", "10:00"), practitioner=setup.mei).id


def test_rescheduling_to_a_taken_time_changes_nothing(book, setup, session, clock):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    book(london("2026-11-24", "15:00"), practitioner=setup.mei)

    with pytest.raises(SlotUnavailable):
        reschedule_booking(
            session,
            clinic=setup.clinic,
            booking=booking,
            start=london("2026-11-24", "15:00"),
            now=clock(),
        )
    session.rollback()

    assert booking.start_at == london("2026-11-24", "10:00")
    assert booking.sequence == 0


def test_rescheduling_may_overlap_the_booking_itself(book, setup, session, clock):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)

    reschedule_booking(
        session,
        clinic=setup.clinic,
        booking=booking,
        start=london("2026-11-24", "10:30"),
        now=clock(),
    )
    session.commit()

    assert booking.start_at == london("2026-11-24", "10:30")


def test_cancelling_early_frees_the_time_and_is_not_late(book, setup, session, clock):
    booking = book(london("2026-11-26", "10:00"), practitioner=setup.mei)

    cancel_booking(
        session, clinic=setup.clinic, booking=booking, reason="Feeling better", now=clock()
    )
    session.commit()

    assert booking.status is BookingStatus.CANCELLED
    assert booking.late_cancellation is False
    assert booking.cancellation_reason == "Feeling better"
    assert booking.sequence == 1
    assert book(london("2026-11-26", "10:00"), practitioner=setup.mei).id


def test_cancelling_inside_the_late_window_is_recorded_as_late(book, setup, session, clock):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    clock.now = london("2026-11-23", "20:00")  # 14 hours before

    cancel_booking(session, clinic=setup.clinic, booking=booking, now=clock())
    session.commit()

    assert booking.late_cancellation is True


def test_a_cancelled_or_past_booking_cannot_be_changed(book, setup, session, clock):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    cancel_booking(session, clinic=setup.clinic, booking=booking, now=clock())
    session.commit()

    with pytest.raises(BookingError, match="cancelled"):
        cancel_booking(session, clinic=setup.clinic, booking=booking, now=clock())

    other = book(london("2026-11-24", "15:00"), practitioner=setup.mei)
    clock.now = london("2026-11-24", "15:30")
    with pytest.raises(BookingError, match="already started"):
        reschedule_booking(
            session,
            clinic=setup.clinic,
            booking=other,
            start=london("2026-11-27", "10:00"),
            now=clock(),
        )


def _row(booking: Booking, **changes):
    row = {
        column.key: getattr(booking, column.key)
        for column in Booking.__table__.columns
        if column.key != "id"
    }
    row.update(manage_token=uuid.uuid4().hex, calendar_uid=f"booking-{uuid.uuid4()}@test")
    row.update(changes)
    return row


def test_the_database_refuses_overlapping_live_bookings_for_a_practitioner(book, setup, session):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    other_room = next(room for room in setup.rooms if room.id != booking.room_id)

    half_hour = timedelta(minutes=30)
    overlapping = _row(
        booking,
        room_id=other_room.id,
        start_at=booking.start_at + half_hour,
        end_at=booking.end_at + half_hour,
        blocked_until=booking.blocked_until + half_hour,
    )
    with pytest.raises(IntegrityError):
        session.execute(insert(Booking), [overlapping])
    session.rollback()


def test_the_database_refuses_overlapping_live_bookings_in_a_room(book, setup, session):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)

    with pytest.raises(IntegrityError):
        session.execute(insert(Booking), [_row(booking, practitioner_id=setup.james.id)])
    session.rollback()


def test_the_database_allows_adjacent_and_cancelled_overlapping_bookings(book, setup, session):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    hour = timedelta(hours=1)
    adjacent = booking.blocked_until

    session.execute(
        insert(Booking),
        [
            _row(booking, start_at=adjacent, end_at=adjacent + hour, blocked_until=adjacent + hour),
            _row(booking, status=BookingStatus.CANCELLED),
        ],
    )
    session.commit()

    assert session.scalar(select(func.count()).select_from(Booking)) == 3


def test_the_database_refuses_moving_a_booking_onto_another(book, setup, session):
    first = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    second = book(london("2026-11-24", "14:00"), practitioner=setup.mei)

    second.start_at, second.end_at, second.blocked_until = (
        first.start_at,
        first.end_at,
        first.blocked_until,
    )
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_finding_four_weeks_of_slots_takes_a_few_range_queries(setup, session, book, clock):
    for day in range(24, 28):
        book(london(f"2026-11-{day}", "10:00"), practitioner=setup.mei)
    statements: list[str] = []

    def count(*args):
        statements.append(args[2])

    def slots(days: int):
        statements.clear()
        event.listen(session.get_bind(), "before_cursor_execute", count)
        try:
            found = find_slots(
                session,
                clinic=setup.clinic,
                treatment=setup.follow_up,
                practitioner=None,
                first_day=london("2026-11-23", "12:00").date(),
                last_day=london("2026-11-23", "12:00").date() + timedelta(days=days - 1),
                now=clock(),
            )
        finally:
            event.remove(session.get_bind(), "before_cursor_execute", count)
        return found, len(statements)

    slots(1)  # loads the clinic, treatment and practitioners once, as a request would
    week, week_queries = slots(7)
    month, month_queries = slots(28)

    assert len(month) > len(week) > 0
    assert month_queries == week_queries <= 8
