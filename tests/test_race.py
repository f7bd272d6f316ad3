"""No time can be booked twice, however many patients try at the same moment."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from sqlalchemy import func, select

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
