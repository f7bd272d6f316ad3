"""Helpers the views share: the clock, the clinic, absolute URLs, noting who looked."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import abort, current_app, request, session, url_for

from scheduler.audit import Actor, Viewed, record_view
from scheduler.clinic.models import Clinic
from scheduler.db import begin_write
from scheduler.extensions import db

View = TypeVar("View", bound=Callable[..., Any])


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


# What every token in a link is made of (``secrets.token_urlsafe``, at most its column's 64).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def token_shaped(token: str) -> bool:
    """Tell whether ``token`` from a URL could be one of ours. Anything else is not looked up
    at all: it is a 404 like any miss, where PostgreSQL would refuse a NUL byte with an error.
    """
    return _TOKEN.fullmatch(token) is not None


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


def accepts_bodies_up_to(limit: Callable[[Mapping[str, Any]], int]) -> Callable[[View], View]:
    """Let a view take bodies of up to ``limit(app.config)`` bytes from a logged-in user,
    instead of ``MAX_CONTENT_LENGTH`` (calendar uploads). Put it under ``staff_only``."""

    def mark(view: View) -> View:
        view.body_limit = limit  # type: ignore[attr-defined]
        return view

    return mark


def apply_body_limit() -> None:
    """Raise this request's body limit when its view accepts larger bodies.

    It runs before CSRFProtect's check, which reads the form and so enforces the limit before
    the view is called. Only a session that is logged in gets the larger limit (checked
    without a query, so the write lock is still the first thing a request takes).
    """
    view = current_app.view_functions.get(request.endpoint or "")
    limit = getattr(view, "body_limit", None)
    if limit is not None and "_user_id" in session:
        request.max_content_length = limit(current_app.config)


def safe_next(target: str | None, fallback: str) -> str:
    """Return ``target`` if it is a path on this site (never another site), else ``fallback``:
    where to go after logging in, or back to after switching the language."""
    # Browsers drop tabs and line breaks from a URL and read "\\" as "/"; a line break
    # would also be refused in the Location header (a 500).
    if target and target.startswith("/") and not re.search(r"[\x00-\x1f\x7f\\]", target):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and not target.startswith("//"):
            return target
    return fallback
