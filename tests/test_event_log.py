"""Structured logs: a JSON line for each committed booking change and each delivery, with ids
and never a patient's details."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from scheduler.audit import PATIENT, AuditAction
from scheduler.booking.models import Booking
from scheduler.eventlog import booking_changed
from tests.conftest import london

PATIENT_DETAILS = {"name": "Ann Lee", "email": "ann@example.org", "phone": "+44 7700 900123"}


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Any:
    """The event lines logged so far, parsed."""
    caplog.set_level(logging.INFO, logger="scheduler.events")

    def parsed() -> list[dict[str, Any]]:
        return [
            json.loads(record.getMessage())
            for record in caplog.records
            if record.name == "scheduler.events"
        ]

    return parsed


def api_book(client, setup, start) -> Any:
    body = {
        "service": setup.follow_up.id,
        "practitioner": setup.mei.id,
        "start": start.isoformat(),
        "patient": PATIENT_DETAILS,
        "notes": "Migraines since the accident",
    }
    return client.post("/api/v1/bookings", json=body)


def test_each_committed_booking_change_is_one_json_line(client, session, setup, lines):
    token = api_book(client, setup, london("2026-11-24", "10:00")).get_json()["token"]
    moved = {"start": london("2026-11-24", "11:00").isoformat()}
    assert client.post(f"/api/v1/bookings/{token}/reschedule", json=moved).status_code == 200
    assert client.post(f"/api/v1/bookings/{token}/cancel").status_code == 200

    session.rollback()
    booking = session.query(Booking).filter_by(manage_token=token).one()
    logged = lines()
    assert [line["event"] for line in logged] == [
        "booking.booked",
        "booking.rescheduled",
        "booking.cancelled",
    ]
    assert {line["booking"] for line in logged} == {booking.id}
    assert logged[1]["start"] == london("2026-11-24", "11:00").isoformat()
    assert logged[2]["status"] == "cancelled"
    assert all(line["by"] == "patient" and line["patient"] == booking.patient_id for line in logged)
    text = json.dumps(logged)
    for private in [*PATIENT_DETAILS.values(), "Migraines", token]:
        assert private not in text, "no patient details, notes or tokens in the logs"


def test_a_refused_booking_logs_nothing(client, setup, lines):
    assert api_book(client, setup, london("2026-11-24", "10:00")).status_code == 201
    assert api_book(client, setup, london("2026-11-24", "10:00")).status_code == 409

    assert [line["event"] for line in lines()] == ["booking.booked"]


def test_a_change_rolled_back_logs_nothing_and_a_savepoints_rollback_only_its_own(
    session, book, lines, clock
):
    first = book(london("2026-11-24", "10:00"))
    lines_before = len(lines())
    booking_changed(session, first, PATIENT, AuditAction.STATUS_CHANGED, clock())
    session.rollback()
    assert len(lines()) == lines_before

    booking_changed(session, first, PATIENT, AuditAction.STATUS_CHANGED, clock())
    savepoint = session.begin_nested()
    second = session.get(Booking, first.id)
    booking_changed(session, second, PATIENT, AuditAction.RESCHEDULED, clock())
    savepoint.rollback()
    session.commit()

    assert [line["event"] for line in lines()[lines_before:]] == ["booking.status_changed"]


def test_each_delivery_is_logged_with_its_outcome(app, client, setup, lines):
    api_book(client, setup, london("2026-11-24", "10:00"))

    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])

    assert result.exit_code == 0, result.output
    mail = [line for line in lines() if line["event"].startswith("mail.")]
    assert [line["event"] for line in mail] == ["mail.sent"]
    assert mail[0]["kind"] == "confirmation"
    assert mail[0]["failed_tries"] == 0
    assert mail[0]["dispatcher"]
    assert PATIENT_DETAILS["email"] not in json.dumps(mail)
