"""Structured logs: one JSON object per line for every booking change and every delivery.

They go to the ``scheduler.events`` logger at INFO, so an operator's log store can count
bookings, follow a booking through its changes, or alert on failing mail, across however many
app servers and dispatchers write them. A booking change is logged once it has committed (a
change refused or rolled back logs nothing). They name bookings, patients and staff by id and
never hold a patient's name, contact details or health answers.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from scheduler.audit import Actor, AuditAction
from scheduler.booking.models import Booking
from scheduler.unitofwork import OnCommit

logger = logging.getLogger("scheduler.events")


def init_app(app: Flask) -> None:
    """Let the event lines through (Python's loggers pass only warnings by default) to the
    app's logger, whose handler Flask adds unless logging is configured (stderr, which
    gunicorn and systemd collect)."""
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    app.logger.debug("event log on %s", logger.name)


def emit(event: str, at: datetime, **fields: Any) -> None:
    """Log ``{"event": event, "at": …, **fields}`` as one line of JSON."""
    logger.info(json.dumps({"event": event, "at": at.isoformat(), **fields}))


def _emit_all(lines: list[dict[str, Any]]) -> None:
    for line in lines:
        emit(**line)


_COMMITTED: OnCommit[dict[str, Any]] = OnCommit("logged_booking_changes", after=_emit_all)


def booking_changed(
    session: Session, booking: Booking, actor: Actor, action: AuditAction, now: datetime
) -> None:
    """Log a change of ``booking`` (as it is now) once the unit of work commits."""
    _COMMITTED.note(
        session,
        {
            "event": f"booking.{action.value}",
            "at": now,
            "booking": booking.id,
            "status": booking.status.value,
            "start": booking.start_at.isoformat(),
            "end": booking.end_at.isoformat(),
            "practitioner": booking.practitioner_id,
            "treatment": booking.treatment_id,
            "room": booking.room_id,
            "patient": booking.patient_id,
            "by": f"staff:{actor.user_id}" if actor.is_staff else actor.label,
        },
    )
