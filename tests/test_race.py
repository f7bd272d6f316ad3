"""No time can be booked twice, however many patients try at the same moment."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from sqlalchemy import func, select, text

from scheduler.booking.models import Booking
from scheduler.booking.operations import PatientDetails, SlotUnavailable, book_session
from scheduler.clinic.models import Clinic, Practitioner, Treatment
from scheduler.extensions import db
from tests.conftest import NOW, london

RACERS = 16


def _race(app: Flask, attempt) -> list[str]:
    """Run ``attempt(index)`` in RACERS threads released together; return their outcomes."""
    barrier = threading.Barrier(RACERS)

    def run(index: int) -> str:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                return attempt(index)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        return list(pool.map(run, range(RACERS)))


def test_sixteen_concurrent_bookings_of_one_time_give_exactly_one_winner(app, setup, session):
    start = london("2026-11-25", "10:00")
    ids = (setup.clinic.id, setup.follow_up.id, setup.mei.id)

    def attempt(index: int) -> str:
        from scheduler.db import begin_write

        own = db.session()
        begin_write(own)
        clinic = own.get_one(Clinic, ids[0])
        try:
            book_session(
                own,
                clinic=clinic,
                treatment=own.get_one(Treatment, ids[1]),
                practitioner=own.get_one(Practitioner, ids[2]),
                start=start,
                patient=PatientDetails(f"Racer {index}", f"racer{index}@example.org"),
                now=NOW,
                uid_host="clinic.test",
            )
            own.commit()
            return "booked"
        except SlotUnavailable:
            own.rollback()
            return "taken"

    outcomes = Counter(_race(app, attempt))

    assert outcomes == {"booked": 1, "taken": RACERS - 1}
    session.rollback()  # end this session's read snapshot to see what the racers wrote
    live = session.scalar(
        select(func.count()).select_from(Booking).where(Booking.start_at == start)
    )
    assert live == 1


def test_sixteen_concurrent_api_requests_give_one_201_and_the_rest_409(app, setup, session):
    start = london("2026-11-25", "14:00").isoformat()
    service, practitioner = setup.follow_up.id, setup.james.id

    def attempt(index: int) -> str:
        response = app.test_client().post(
            "/api/v1/bookings",
            json={
                "service": service,
                "practitioner": practitioner,
                "start": start,
                "patient": {"name": f"Caller {index}", "email": f"caller{index}@example.org"},
            },
        )
        if response.status_code == 409:
            assert response.json["alternatives"], "a lost race offers the nearest free times"
        return str(response.status_code)

    outcomes = Counter(_race(app, attempt))

    assert outcomes == {"201": 1, "409": RACERS - 1}
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Booking)) == 1


def test_a_booking_that_deadlocks_with_one_later_rolled_back_still_gets_its_time(
    app, setup, session, make_treatment
):
    """PostgreSQL settles a deadlock between two claims by aborting one; that one has not lost:
    it tries again, waits for the other, and gets the time when the other rolls back.

    The holder books 14:00–14:30 and leaves it uncommitted; the contender's hour from 14:00
    waits for it; the holder then books 14:45–15:15, which waits for the contender's hour:
    a deadlock, which the contender's shorter ``deadlock_timeout`` makes its to lose.
    """
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite lets one writer in at a time: claims never deadlock there")
    top_up = make_treatment(name="Top-up", duration_minutes=30, buffer_minutes=0)
    setup.james.treatments.append(top_up)
    session.commit()
    ids = (setup.clinic.id, setup.james.id)
    first_held, contender_waits = threading.Event(), threading.Event()

    def book(own, treatment_id: int, hhmm: str, who: str) -> None:
        book_session(
            own,
            clinic=own.get_one(Clinic, ids[0]),
            treatment=own.get_one(Treatment, treatment_id),
            practitioner=own.get_one(Practitioner, ids[1]),
            start=london("2026-11-25", hhmm),
            patient=PatientDetails(who.title(), f"{who}@example.org"),
            now=NOW,
            uid_host="clinic.test",
        )

    def holder() -> str:
        with app.app_context():
            own = db.session()
            try:
                own.execute(text("SET LOCAL deadlock_timeout = '30s'"))
                book(own, top_up.id, "14:00", "holder")
                first_held.set()
                assert contender_waits.wait(30), "the contender never waited for the holder"
                # Waits for the contender's claim until PostgreSQL aborts that one.
                book(own, top_up.id, "14:45", "holder")
                own.rollback()
                return "held both, then rolled back"
            finally:
                db.session.remove()

    def contender() -> str:
        with app.app_context():
            own = db.session()
            try:
                assert first_held.wait(30)
                own.execute(text("SET LOCAL deadlock_timeout = '3s'"))
                book(own, setup.follow_up.id, "14:00", "contender")
                own.commit()
                return "booked"
            except SlotUnavailable:
                own.rollback()
                return "taken"
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=2) as pool:
        held, wanted = pool.submit(holder), pool.submit(contender)
        for _ in range(300):
            with app.app_context(), db.engine.connect() as watcher:
                waiting = watcher.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    )
                )
            if waiting or wanted.done():
                break
            time.sleep(0.01)
        contender_waits.set()
        assert held.result(timeout=60) == "held both, then rolled back"
        assert wanted.result(timeout=60) == "booked"

    session.rollback()
    starts = session.execute(
        select(Booking.start_at, Booking.treatment_id).where(
            Booking.practitioner_id == setup.james.id
        )
    ).all()
    assert starts == [(london("2026-11-25", "14:00"), setup.follow_up.id)]
