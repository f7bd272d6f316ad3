"""The public JSON API, ``/api/v1``: services, practitioners, slots and bookings."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from scheduler.api.openapi import documented
from scheduler.api.responses import (
    BookingOut,
    CourseClashOut,
    CourseOut,
    ErrorOut,
    PractitionersOut,
    ServicesOut,
    SlotsOut,
    SlotTakenOut,
    shaped,
)
from scheduler.api.schemas import (
    BookingIn,
    CancelIn,
    IntakeIn,
    RepeatIn,
    RescheduleIn,
    SlotQuery,
    field_errors,
)
from scheduler.audit import PATIENT, Actor
from scheduler.booking.availability import Slot
from scheduler.booking.courses import CourseUnavailable, Instead, Repeat, book_course
from scheduler.booking.models import Booking, Course
from scheduler.booking.operations import (
    BookingError,
    PatientDetails,
    SlotUnavailable,
    book_session,
    cancel_booking,
    find_slots,
    reschedule_booking,
)
from scheduler.clinic.models import Clinic, Practitioner, Treatment
from scheduler.extensions import db
from scheduler.patients.intake import IntakeAnswers
from scheduler.ratelimit import BOOKING, CHANGES, SLOTS, rate_limited
from scheduler.web import clinic_or_503, now, token_shaped, uid_host
from scheduler.webhooks.operations import booking_data

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_SLOT_RANGE_DAYS = 62
Model = TypeVar("Model", bound=BaseModel)


class ApiError(Exception):
    """An error answered as ``{"error", "fields"}`` with an HTTP status."""

    def __init__(
        self, status: int, message: str, fields: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or {}
        self.extra = extra


@blueprint.errorhandler(ApiError)
def api_error(error: ApiError) -> ResponseReturnValue:
    """Answer an :class:`ApiError` as JSON."""
    return jsonify(error=error.message, fields=error.fields, **error.extra), error.status


def parse_body(model: type[Model], *, optional: bool = False) -> Model:
    """Validate the JSON body against ``model``; only ``application/json`` is accepted."""
    if optional and not request.get_data():
        return model()
    if not request.is_json:
        raise ApiError(415, "Send the body as JSON with Content-Type: application/json.")
    try:
        payload = json.loads(request.get_data())
    except ValueError as exc:
        raise ApiError(400, "The body is not valid JSON.") from exc
    except RecursionError as exc:
        # Too deep to read at all, so whether it is well formed is not known either.
        raise ApiError(
            400, "The body is nested too deeply to read; no call takes more than a few levels."
        ) from exc
    if not isinstance(payload, dict):
        raise ApiError(422, "The body must be a JSON object.")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(422, "Some fields need fixing.", field_errors(exc)) from exc


def _time(clinic: Clinic, moment: datetime) -> str:
    return moment.astimezone(clinic.tz).isoformat()


def slot_json(clinic: Clinic, slot: Slot) -> dict[str, Any]:
    """One free slot as the API shows it."""
    return {
        "start": _time(clinic, slot.start),
        "end": _time(clinic, slot.end),
        "practitioner": slot.practitioner_id,
    }


def booking_json(clinic: Clinic, booking: Booking) -> dict[str, Any]:
    """One booking as the API shows it to the holder of its token: as webhooks send it, but
    with the name and phone typed when booking, never those on the patient's record."""
    data = booking_data(clinic, booking, current_app.config["BASE_URL"])
    data["patient"] = {
        "name": booking.given_name,
        "email": booking.patient.email,
        "phone": booking.given_phone,
    }
    return data


def _unavailable(clinic: Clinic, exc: SlotUnavailable) -> ApiError:
    return ApiError(
        409,
        exc.message,
        {"start": exc.message},
        alternatives=[slot_json(clinic, slot) for slot in exc.alternatives],
    )


def _treatment(service_id: int) -> Treatment:
    treatment = db.session.get(Treatment, service_id)
    if treatment is None or not treatment.active:
        raise ApiError(422, "Unknown service.", {"service": f"no service with id {service_id}"})
    return treatment


def _practitioner(practitioner_id: int | None, field: str = "practitioner") -> Practitioner | None:
    if practitioner_id is None:
        return None
    practitioner = db.session.get(Practitioner, practitioner_id)
    if practitioner is None or not practitioner.active:
        raise ApiError(
            422,
            "Unknown practitioner.",
            {field: f"no practitioner with id {practitioner_id}"},
        )
    return practitioner


def _booking(token: str) -> Booking:
    booking = (
        db.session.scalars(select(Booking).where(Booking.manage_token == token)).first()
        if token_shaped(token)
        else None
    )
    if booking is None:
        raise ApiError(404, "No booking has that token.")
    return booking


@blueprint.get("/services")
@documented(tag="Clinic", operation_id="list_services", responses={200: ServicesOut})
def services() -> ResponseReturnValue:
    """List the treatments patients can book."""
    treatments = db.session.scalars(
        select(Treatment).where(Treatment.active.is_(True)).order_by(Treatment.position)
    )
    return jsonify(
        shaped(
            ServicesOut,
            [
                {
                    "id": t.id,
                    "name": t.name,
                    "description": t.description,
                    "duration_minutes": t.duration_minutes,
                    "first_visit": t.first_visit,
                }
                for t in treatments
            ],
        )
    )


@blueprint.get("/practitioners")
@documented(tag="Clinic", operation_id="list_practitioners", responses={200: PractitionersOut})
def practitioners() -> ResponseReturnValue:
    """List the practitioners with their credentials and the treatments they give."""
    rows = db.session.scalars(
        select(Practitioner)
        .where(Practitioner.active.is_(True))
        .options(selectinload(Practitioner.treatments))
        .order_by(Practitioner.id)
    )
    return jsonify(
        shaped(
            PractitionersOut,
            [
                {
                    "id": p.id,
                    "name": p.name,
                    "credentials": p.credentials,
                    "licence": p.licence,
                    "bio": p.bio,
                    "service_ids": sorted(t.id for t in p.treatments if t.active),
                }
                for p in rows
            ],
        )
    )


@blueprint.get("/slots")
@rate_limited(SLOTS)
@documented(
    tag="Slots",
    operation_id="list_slots",
    query=SlotQuery,
    params={
        "service": "The service's id.",
        "start": "The first of the clinic's dates to search.",
        "end": f"The last date, inclusive: at most {MAX_SLOT_RANGE_DAYS} days after `start`.",
        "practitioner": "Only this practitioner's times; leave it out for anyone's.",
    },
    responses={
        200: SlotsOut,
        422: (ErrorOut, "A parameter needs fixing, or names an unknown service or practitioner."),
    },
)
def slots() -> ResponseReturnValue:
    """Free times for a service between two of the clinic's dates, both inclusive."""
    clinic = clinic_or_503()
    try:
        query = SlotQuery.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise ApiError(422, "Some parameters need fixing.", field_errors(exc)) from exc
    if query.end < query.start:
        raise ApiError(422, "The end date is before the start date.", {"end": "before start"})
    if query.end - query.start > timedelta(days=MAX_SLOT_RANGE_DAYS):
        raise ApiError(
            422,
            f"Ask for at most {MAX_SLOT_RANGE_DAYS} days at a time.",
            {"end": f"at most {MAX_SLOT_RANGE_DAYS} days after start"},
        )
    treatment = _treatment(query.service)
    practitioner = _practitioner(query.practitioner)
    found = find_slots(
        db.session(),
        clinic=clinic,
        treatment=treatment,
        practitioner=practitioner,
        first_day=query.start,
        last_day=query.end,
        now=now(),
    )
    free = [slot_json(clinic, slot) for slot in found]
    return jsonify(shaped(SlotsOut, {"timezone": clinic.timezone, "slots": free}))


@blueprint.post("/bookings")
@rate_limited(BOOKING)
@documented(
    tag="Bookings",
    body=BookingIn,
    examples={
        "A single visit": {
            "service": 2,
            "practitioner": None,
            "start": "2026-12-01T10:00:00+00:00",
            "patient": {"name": "Ann Lee", "email": "ann@example.org", "phone": "07700 900123"},
            "notes": "Lower back pain",
        },
        "A first visit, with the intake answers": {
            "service": 1,
            "practitioner": 1,
            "start": "2026-12-01T14:00:00+00:00",
            "patient": {"name": "Ann Lee", "email": "ann@example.org"},
            "intake": {"medications": "", "conditions": ["diabetes"], "consent": True},
        },
        "A course of six weekly sessions, one date moved": {
            "service": 2,
            "practitioner": 1,
            "start": "2026-12-01T10:00:00+00:00",
            "patient": {"name": "Ann Lee", "email": "ann@example.org"},
            "repeat": {
                "count": 6,
                "every_weeks": 1,
                "instead": [
                    {
                        "of": "2026-12-22T10:00:00+00:00",
                        "start": "2026-12-22T11:00:00+00:00",
                        "practitioner": 2,
                    }
                ],
            },
        },
    },
    responses={
        201: (BookingOut | CourseOut, "Booked: the booking, or with `repeat` the whole course."),
        409: (
            SlotTakenOut | CourseClashOut,
            "The time is not free, and nothing was booked: `alternatives` are the nearest free "
            "times; for a course, `conflicts` lists each date that is not free with its own.",
        ),
        422: (
            ErrorOut,
            "Some fields need fixing: unknown service or practitioner, a time in the past, "
            "outside the clinic's notice or horizon, a first visit without `intake` and "
            "`consent: true`.",
        ),
    },
)
def create_booking() -> ResponseReturnValue:
    """Book a session, or with ``repeat`` a course; ``practitioner: null`` means anyone free."""
    clinic = clinic_or_503()
    body = parse_body(BookingIn)
    placed = book_request(clinic, body, PATIENT)
    db.session.commit()
    if isinstance(placed, Booking):
        return jsonify(shaped(BookingOut, booking_json(clinic, placed))), 201
    return jsonify(
        shaped(
            CourseOut,
            {
                "course": [booking_json(clinic, session) for session in placed.sessions],
                "sessions": placed.session_count,
                "every_weeks": placed.every_weeks,
            },
        )
    ), 201


def book_request(clinic: Clinic, body: BookingIn, actor: Actor) -> Booking | Course:
    """Book what ``body`` asks for as ``actor``: a session, or with ``repeat`` a course.

    A refusal rolls back and becomes an :class:`ApiError` (409 with the alternatives or the
    conflicting dates, 422 for a wrong request); the caller commits.
    """
    treatment = _treatment(body.service)
    practitioner = _practitioner(body.practitioner)
    request_details: dict[str, Any] = {
        "clinic": clinic,
        "treatment": treatment,
        "practitioner": practitioner,
        "start": body.start,
        "patient": PatientDetails(body.patient.name, str(body.patient.email), body.patient.phone),
        "notes": body.notes,
        "now": now(),
        "uid_host": uid_host(),
        "intake": None if body.intake is None else _intake(body.intake),
        "actor": actor,
    }
    try:
        if body.repeat is None:
            return book_session(db.session(), **request_details)
        repeat = _repeat(body.repeat)
        return book_course(db.session(), repeat=repeat, **request_details)
    except CourseUnavailable as exc:
        db.session.rollback()
        raise ApiError(
            409,
            exc.message,
            {"start": exc.message},
            conflicts=[
                {
                    "start": _time(clinic, clash.start),
                    "error": clash.message,
                    "alternatives": [slot_json(clinic, slot) for slot in clash.alternatives],
                }
                for clash in exc.clashes
            ],
        ) from exc
    except SlotUnavailable as exc:
        db.session.rollback()
        raise _unavailable(clinic, exc) from exc
    except BookingError as exc:
        db.session.rollback()
        field = _REQUEST_FIELDS.get(exc.field or "", exc.field or "body")
        raise ApiError(422, exc.message, {field: exc.message}) from exc


# Where a refusal's field is in the request body.
_REQUEST_FIELDS = {
    **{name: f"intake.{name}" for name in IntakeIn.model_fields},
    "sessions": "repeat.count",
    "every_weeks": "repeat.every_weeks",
}


def _intake(answers: IntakeIn) -> IntakeAnswers:
    return IntakeAnswers(
        medications=answers.medications,
        conditions=[c.value for c in answers.conditions],
        other_conditions=answers.other_conditions,
        consent=answers.consent,
    )


def _repeat(asked: RepeatIn) -> Repeat:
    instead = {}
    for index, change in enumerate(asked.instead):
        instead[change.of] = Instead(
            change.start,
            _practitioner(change.practitioner, f"repeat.instead.{index}.practitioner"),
        )
    return Repeat(asked.count, asked.every_weeks, instead)


@blueprint.get("/bookings/<token>")
@documented(
    tag="Bookings",
    params={"token": "The booking's token (`token` in the booking)."},
    responses={200: BookingOut, 404: ErrorOut},
)
def get_booking(token: str) -> ResponseReturnValue:
    """Show the booking the token belongs to."""
    clinic = clinic_or_503()
    return jsonify(shaped(BookingOut, booking_json(clinic, _booking(token))))


@blueprint.post("/bookings/<token>/cancel")
@rate_limited(CHANGES)
@documented(
    tag="Bookings",
    operation_id="cancel_booking",
    body=CancelIn,
    body_required=False,
    examples={"With a reason": {"reason": "Feeling better"}},
    params={"token": "The booking's token (`token` in the booking)."},
    responses={
        200: (BookingOut, "Cancelled: the booking, with `late_cancellation`."),
        404: ErrorOut,
        409: (ErrorOut, "The booking is already cancelled, or its visit has started."),
    },
)
def cancel(token: str) -> ResponseReturnValue:
    """Cancel the booking; inside the late window it is recorded as late."""
    clinic = clinic_or_503()
    body = parse_body(CancelIn, optional=True)
    booking = _booking(token)
    try:
        cancel_booking(db.session(), clinic=clinic, booking=booking, reason=body.reason, now=now())
    except BookingError as exc:
        db.session.rollback()
        raise ApiError(409, exc.message) from exc
    db.session.commit()
    return jsonify(shaped(BookingOut, booking_json(clinic, booking)))


@blueprint.post("/bookings/<token>/reschedule")
@rate_limited(CHANGES)
@documented(
    tag="Bookings",
    operation_id="reschedule_booking",
    body=RescheduleIn,
    examples={"An hour later": {"start": "2026-12-01T11:00:00+00:00"}},
    params={"token": "The booking's token (`token` in the booking)."},
    responses={
        200: (BookingOut, "Moved: the booking at its new time."),
        404: ErrorOut,
        409: (
            SlotTakenOut | ErrorOut,
            "The new time is not free (`alternatives` are the nearest free times), or the "
            "booking can no longer be changed (cancelled, or its visit has started).",
        ),
        422: (
            ErrorOut,
            "The new time needs fixing: in the past, outside the clinic's notice or horizon, "
            "or the booking's own time.",
        ),
    },
)
def reschedule(token: str) -> ResponseReturnValue:
    """Move the booking to a new start with the same practitioner."""
    clinic = clinic_or_503()
    body = parse_body(RescheduleIn)
    booking = _booking(token)
    try:
        reschedule_booking(
            db.session(), clinic=clinic, booking=booking, start=body.start, now=now()
        )
    except SlotUnavailable as exc:
        db.session.rollback()
        raise _unavailable(clinic, exc) from exc
    except BookingError as exc:
        db.session.rollback()
        status = 422 if exc.field else 409
        raise ApiError(status, exc.message, {exc.field or "booking": exc.message}) from exc
    db.session.commit()
    return jsonify(shaped(BookingOut, booking_json(clinic, booking)))
