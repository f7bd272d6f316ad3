"""The public JSON API, ``/api/v1``: services, practitioners, slots and bookings."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from scheduler.api.schemas import (
    BookingIn,
    CancelIn,
    IntakeIn,
    RepeatIn,
    RescheduleIn,
    SlotQuery,
    field_errors,
)
from scheduler.booking.availability import Slot
from scheduler.booking.courses import CourseUnavailable, Instead, Repeat, book_course, progress
from scheduler.booking.models import Booking
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
from scheduler.web import clinic_or_503, external_url, now, uid_host

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
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "The body is not valid JSON.") from exc
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
    """One booking as the API shows it to the holder of its token."""
    return {
        "token": booking.manage_token,
        "status": booking.status.value,
        "start": _time(clinic, booking.start_at),
        "end": _time(clinic, booking.end_at),
        "timezone": clinic.timezone,
        "service": booking.treatment_id,
        "service_name": booking.treatment.name,
        "practitioner": booking.practitioner_id,
        "practitioner_name": booking.practitioner.name,
        "room": booking.room.name,
        "patient": {
            "name": booking.patient.name,
            "email": booking.patient.email,
            "phone": booking.patient.phone,
        },
        "notes": booking.notes,
        "late_cancellation": booking.late_cancellation,
        # A request the clinic has yet to approve: it holds its time but is not confirmed.
        "awaiting_approval": booking.awaiting_approval,
        "course": _course_place(booking),
        "manage_url": external_url("booking.manage", token=booking.manage_token),
        "ics_url": external_url("booking.ics", token=booking.manage_token),
    }


def _course_place(booking: Booking) -> dict[str, int | None] | None:
    """Where a session stands in its course: its number (``None`` once cancelled) of how many."""
    place = progress(booking)
    if place is None:
        return None
    return {"session": place.position, "of": place.total, "attended": place.done}


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
    booking = db.session.scalars(select(Booking).where(Booking.manage_token == token)).first()
    if booking is None:
        raise ApiError(404, "No booking has that token.")
    return booking


@blueprint.get("/services")
def services() -> ResponseReturnValue:
    """List the treatments patients can book."""
    treatments = db.session.scalars(
        select(Treatment).where(Treatment.active.is_(True)).order_by(Treatment.position)
    )
    return jsonify(
        [
            {
                "id": t.id,
                "name": t.name,
                "description": t.description,
                "duration_minutes": t.duration_minutes,
                "first_visit": t.first_visit,
            }
            for t in treatments
        ]
    )


@blueprint.get("/practitioners")
def practitioners() -> ResponseReturnValue:
    """List the practitioners with their credentials and the treatments they give."""
    rows = db.session.scalars(
        select(Practitioner)
        .where(Practitioner.active.is_(True))
        .options(selectinload(Practitioner.treatments))
        .order_by(Practitioner.id)
    )
    return jsonify(
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
        ]
    )


@blueprint.get("/slots")
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
    return jsonify(timezone=clinic.timezone, slots=[slot_json(clinic, s) for s in found])


@blueprint.post("/bookings")
def create_booking() -> ResponseReturnValue:
    """Book a session, or with ``repeat`` a course; ``practitioner: null`` means anyone free."""
    clinic = clinic_or_503()
    body = parse_body(BookingIn)
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
    }
    try:
        if body.repeat is None:
            booking = book_session(db.session(), **request_details)
        else:
            repeat = _repeat(body.repeat)
            course = book_course(db.session(), repeat=repeat, **request_details)
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
    db.session.commit()
    if body.repeat is None:
        return jsonify(booking_json(clinic, booking)), 201
    return jsonify(
        course=[booking_json(clinic, session) for session in course.sessions],
        sessions=course.session_count,
        every_weeks=course.every_weeks,
    ), 201


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
def get_booking(token: str) -> ResponseReturnValue:
    """Show the booking the token belongs to."""
    clinic = clinic_or_503()
    return jsonify(booking_json(clinic, _booking(token)))


@blueprint.post("/bookings/<token>/cancel")
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
    return jsonify(booking_json(clinic, booking))


@blueprint.post("/bookings/<token>/reschedule")
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
    return jsonify(booking_json(clinic, booking))
