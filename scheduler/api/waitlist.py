"""The waitlist in the JSON API: join it, read one's place, leave it (by the entry's token)."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from scheduler.api.openapi import documented
from scheduler.api.responses import ErrorOut, WaitlistEntryOut, shaped
from scheduler.api.schemas import WaitlistIn
from scheduler.api.views import ApiError, _practitioner, _treatment, blueprint, parse_body
from scheduler.booking.operations import PatientDetails
from scheduler.clinic.models import Clinic
from scheduler.extensions import db
from scheduler.ratelimit import CHANGES, WAITLIST, rate_limited
from scheduler.waitlist.models import WaitlistEntry
from scheduler.waitlist.operations import WaitlistError, is_over, join_waitlist, leave_waitlist
from scheduler.web import clinic_or_503, external_url, now, token_shaped


def entry_json(clinic: Clinic, entry: WaitlistEntry) -> dict[str, Any]:
    """One place on the waitlist as the API shows it to the holder of its token.

    ``status`` is ``waiting``, ``booked`` (a time offered was booked), ``left``, or ``expired``
    once every date has passed.
    """
    return {
        "token": entry.token,
        "status": "expired" if is_over(entry, clinic, now()) else entry.status.value,
        "service": entry.treatment_id,
        "service_name": entry.treatment.name,
        "practitioner": entry.practitioner_id,
        "practitioner_name": None if entry.practitioner is None else entry.practitioner.name,
        "dates": [day.isoformat() for day in entry.dates],
        "timezone": clinic.timezone,
        "joined": entry.created_at.astimezone(clinic.tz).isoformat(),
        # As typed when joining, never the patient's record (see Booking.given_name).
        "patient": {
            "name": entry.given_name,
            "email": entry.patient.email,
            "phone": entry.given_phone,
        },
        "manage_url": external_url("waitlist.entry", token=entry.token),
        "leave_url": external_url("api.leave_waitlist_entry", token=entry.token),
    }


def _entry(token: str) -> WaitlistEntry:
    entry = (
        db.session.scalars(select(WaitlistEntry).where(WaitlistEntry.token == token)).first()
        if token_shaped(token)
        else None
    )
    if entry is None:
        raise ApiError(404, "No waitlist entry has that token.")
    return entry


@blueprint.post("/waitlist")
@rate_limited(WAITLIST)
@documented(
    tag="Waitlist",
    operation_id="join_waitlist",
    body=WaitlistIn,
    examples={
        "Anyone, on two dates": {
            "service": 2,
            "practitioner": None,
            "dates": ["2026-12-01", "2026-12-03"],
            "patient": {"name": "Ann Lee", "email": "ann@example.org"},
        }
    },
    responses={
        201: (WaitlistEntryOut, "Joined: the place on the waitlist."),
        422: (
            ErrorOut,
            "Some fields need fixing: an unknown service or practitioner, or dates that have "
            "passed or lie beyond the clinic's horizon.",
        ),
    },
)
def create_waitlist_entry() -> ResponseReturnValue:
    """Join the waitlist; freed times on the dates are offered by mail in the order of joining."""
    clinic = clinic_or_503()
    body = parse_body(WaitlistIn)
    treatment = _treatment(body.service)
    practitioner = _practitioner(body.practitioner)
    try:
        entry = join_waitlist(
            db.session(),
            clinic=clinic,
            treatment=treatment,
            practitioner=practitioner,
            days=body.dates,
            patient=PatientDetails(body.patient.name, str(body.patient.email), body.patient.phone),
            now=now(),
        )
    except WaitlistError as exc:
        db.session.rollback()
        raise ApiError(422, exc.message, {exc.field or "body": exc.message}) from exc
    db.session.commit()
    return jsonify(shaped(WaitlistEntryOut, entry_json(clinic, entry))), 201


@blueprint.get("/waitlist/<token>")
@documented(
    tag="Waitlist",
    params={"token": "The place's token (`token` in the place)."},
    responses={200: WaitlistEntryOut, 404: (ErrorOut, "No place on the waitlist has that token.")},
)
def get_waitlist_entry(token: str) -> ResponseReturnValue:
    """Show the place on the waitlist the token belongs to."""
    clinic = clinic_or_503()
    return jsonify(shaped(WaitlistEntryOut, entry_json(clinic, _entry(token))))


@blueprint.post("/waitlist/<token>/leave")
@rate_limited(CHANGES)
@documented(
    tag="Waitlist",
    operation_id="leave_waitlist",
    params={"token": "The place's token (`token` in the place)."},
    responses={
        200: (WaitlistEntryOut, "Left: the place, now `left`."),
        404: (ErrorOut, "No place on the waitlist has that token."),
        409: (ErrorOut, "The place is no longer waiting: already left, or booked."),
    },
)
def leave_waitlist_entry(token: str) -> ResponseReturnValue:
    """Leave the waitlist; offers still open are withdrawn."""
    clinic = clinic_or_503()
    entry = _entry(token)
    try:
        leave_waitlist(db.session(), entry=entry, now=now())
    except WaitlistError as exc:
        db.session.rollback()
        raise ApiError(409, exc.message) from exc
    db.session.commit()
    return jsonify(shaped(WaitlistEntryOut, entry_json(clinic, entry)))
