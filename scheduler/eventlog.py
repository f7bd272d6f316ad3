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
import re
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from scheduler.audit import Actor, AuditAction
from scheduler.booking.models import Booking
from scheduler.unitofwork import OnCommit

logger = logging.getLogger("scheduler.events")
# What a mail server's refusal ("550 <ann@example.org>: no such user") or an address with a
# password in it (https://user:secret@host/) would otherwise bring into a log line.
EMAIL_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"'/@]+@[^\s<>()\[\]\\,;:\"'/@]+")
# PostgreSQL's own error messages repeat the values of the row that broke a constraint.
ERROR_DETAIL = re.compile(r"^DETAIL: .*$", re.MULTILINE)
HIDDEN = "[address hidden]"


def redact(text: str) -> str:
    """``text`` without email addresses and without the values a database error repeats."""
    return EMAIL_ADDRESS.sub(HIDDEN, ERROR_DETAIL.sub("DETAIL: [hidden]", text))


class PrivateLines(logging.Filter):
    """Keep a record's message to one line, so that nothing a client sent (a path, say) can
    start a line of its own in the log, and keep addresses and a failing row's values out of
    the message and its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage())
        record.msg = message.replace("\r", "\\r").replace("\n", "\\n")
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def init_app(app: Flask) -> None:
    """Let the event lines through (Python's loggers pass only warnings by default) to the
    app's logger, whose handler Flask adds unless logging is configured (stderr, which
    gunicorn and systemd collect); keep the app's own lines private and one line each."""
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not any(isinstance(f, PrivateLines) for f in app.logger.filters):
        app.logger.addFilter(PrivateLines())
    app.logger.debug("event log on %s", logger.name)


def _scrubbed(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def emit(event: str, at: datetime, **fields: Any) -> None:
    """Log ``{"event": event, "at": …, **fields}`` as one line of JSON, with any email
    address in a text field hidden."""
    scrubbed = {name: _scrubbed(value) for name, value in fields.items()}
    logger.info(json.dumps({"event": event, "at": at.isoformat(), **scrubbed}))


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
