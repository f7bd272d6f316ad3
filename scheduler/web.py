"""Helpers the views share: the clock, the clinic, absolute URLs, noting who looked."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import abort, current_app, url_for

from scheduler.audit import Actor, Viewed, record_view
from scheduler.clinic.models import Clinic
from scheduler.db import begin_write
from scheduler.extensions import db


def now() -> datetime:
    """Return the current time from the app's clock (tests replace it with a fixed one)."""
    return current_app.config["CLOCK"]()


def clinic_or_503() -> Clinic:
    """Return the clinic, or answer 503 while the database has none set up yet."""
    clinic = Clinic.get(db.session())
    if clinic is None:
        abort(503, "The clinic has not been set up yet: run `flask --app scheduler demo seed`.")
    return clinic


def external_url(endpoint: str, **values: Any) -> str:
    """Return an absolute URL under ``BASE_URL`` (for mail, calendar files and the API)."""
    return current_app.config["BASE_URL"] + url_for(endpoint, **values)


def uid_host() -> str:
    """Return the host name that calendar UIDs end with."""
    return urlsplit(current_app.config["BASE_URL"]).hostname or "localhost"


def note_view(actor: Actor, where: Viewed, patient_id: int, booking_id: int | None = None) -> None:
    """Record in the audit trail that a GET showed a patient's record, and commit.

    The request has read without the write lock; the note is written in a transaction of its
    own that takes it, so on SQLite it waits for other writers instead of failing.
    """
    session = db.session()
    session.rollback()
    begin_write(session)
    record_view(
        session, actor=actor, where=where, now=now(), patient_id=patient_id, booking_id=booking_id
    )
    session.commit()
