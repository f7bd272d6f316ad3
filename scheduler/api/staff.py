"""The staff API, ``/api/v1/staff``: bookings, patients, the schedule and busy time, for the
holder of a personal API token.

Only ``Authorization: Bearer TOKEN`` lets a request in, never the staff area's session cookie
(so no page a logged-in browser opens can call it), and the token acts with its user's role,
as the staff pages do: a practitioner sees and marks only their own bookings and patients,
only the front desk books, and only admins and the treating practitioner read health answers.
Lists page by an opaque cursor. Every answer is one of the models in
:mod:`scheduler.api.staff_schemas`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from flask import g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError
from sqlalchemy import and_, or_
from sqlalchemy.orm import selectinload

from scheduler.api.openapi import documented
from scheduler.api.responses import CourseClashOut, ErrorOut, SlotTakenOut
from scheduler.api.schemas import BookingIn, field_errors
from scheduler.api.staff_schemas import (
    BookingListQuery,
    BookingPage,
    Busy,
    BusyTime,
    CourseBooked,
    CoursePlace,
    Intake,
    PatientDetail,
    PatientListQuery,
    PatientPage,
    PatientRef,
    PatientSummary,
    PractitionerSchedule,
    RangeQuery,
    Schedule,
    StaffBooking,
    StaffBookingDetail,
    StatusIn,
)
from scheduler.api.staff_schemas import Counts as CountsOut
from scheduler.api.views import ApiError, blueprint, book_request, parse_body
from scheduler.audit import Actor, Viewed
from scheduler.booking.courses import progress
from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import BookingError, set_status
from scheduler.booking.staff_views import Filters, bookings_query
from scheduler.clinic.models import Clinic, Practitioner
from scheduler.db import begin_write
from scheduler.extensions import db
from scheduler.patients import models as patient_models
from scheduler.patients.operations import (
    Counts,
    patient_record,
    patients_after,
    visible_patient,
)
from scheduler.ratelimit import STAFF_API, rate_limited
from scheduler.staff.auth import practitioners_visible_to, sees_health
from scheduler.staff.diary import Block, agendas
from scheduler.staff.models import ApiToken, Role, User
from scheduler.staff.tokens import find_token, mark_used, use_due
from scheduler.timeutil import checked_instant
from scheduler.web import clinic_or_503, external_url, note_view, now

P = ParamSpec("P")
Model = TypeVar("Model", bound=BaseModel)

FRONT_DESK = (Role.ADMIN, Role.RECEPTION)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The bookings list shows two weeks from today unless asked otherwise, and a year at most.
DEFAULT_SPAN = timedelta(days=13)
LONGEST_LIST_SPAN = timedelta(days=366)
LONGEST_SCHEDULE_SPAN = timedelta(days=62)
MAX_ID = 2**31 - 1
REALM = 'Bearer realm="staff API"'
_BOOKING_LOADS = (
    selectinload(Booking.treatment),
    selectinload(Booking.practitioner),
    selectinload(Booking.room),
    selectinload(Booking.patient),
)


# --- Who is asking ------------------------------------------------------------------------------


class TokenRefused(ApiError):
    """401: no token was sent, or not a live one; the answer says how to authenticate."""

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(401, message)
        self.challenge = REALM + (f', error="{error}"' if error else "")


@blueprint.errorhandler(TokenRefused)
def token_refused(error: TokenRefused) -> ResponseReturnValue:
    """Answer a refused token as JSON, with the challenge RFC 6750 asks for."""
    return (
        jsonify(error=error.message, fields=error.fields),
        401,
        {"WWW-Authenticate": error.challenge},
    )


def _authenticate() -> ApiToken:
    """Return the live token the request carries, or refuse it; the session cookie is ignored."""
    scheme, _, presented = request.headers.get("Authorization", "").strip().partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise TokenRefused(
            "Send a personal API token in the Authorization header: Bearer TOKEN. "
            "Staff create tokens in the staff area, under API tokens."
        )
    token = find_token(db.session(), presented, now())
    if token is None:
        raise TokenRefused(
            "That API token does not work: it is unknown, revoked or expired, "
            "or its account is switched off.",
            "invalid_token",
        )
    _note_use(token)
    return token


def _note_use(token: ApiToken) -> None:
    """Record when the token was last used, in a transaction of its own (so it counts also
    when the request then fails), holding the write lock as every write does."""
    moment = now()
    if not use_due(token, moment):
        return
    session = db.session()
    token_id = token.id
    writes = request.method not in READ_METHODS
    if not writes:
        session.rollback()  # end the read, so that the update starts with the write lock
        begin_write(session)
    mark_used(session, token_id, moment)
    session.commit()
    if writes:
        begin_write(session)  # the request's own work starts holding the lock again


def token_required(
    *roles: Role,
) -> Callable[[Callable[P, ResponseReturnValue]], Callable[P, ResponseReturnValue]]:
    """Require a live personal API token (else 401), of a user in one of ``roles`` if any are
    given (else 403)."""

    def decorate(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            token = _authenticate()
            if roles and token.user.role not in roles:
                raise ApiError(
                    403, f"A {token.user.role.value}'s token cannot do this; ask the front desk."
                )
            g.api_token = token
            return view(*args, **kwargs)

        # For the OpenAPI document: who may call it, and how.
        wrapper.allowed_roles = frozenset(roles or Role)  # type: ignore[attr-defined]
        wrapper.bearer_token = True  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _user() -> User:
    token: ApiToken = g.api_token
    return token.user


def _actor() -> Actor:
    """The token's user, as the audit trail names them (with the token, to tell apart what
    a program did from what its owner did in the staff area)."""
    token: ApiToken = g.api_token
    return Actor(f"{token.user.email} (API token “{token.name}”)", token.user_id)


def _scope() -> list[int] | None:
    """The practitioners whose bookings and patients the token sees (``None``: everyone's)."""
    user = _user()
    if user.role is not Role.PRACTITIONER:
        return None
    return [p.id for p in practitioners_visible_to(db.session(), user)]


# --- Reading requests ---------------------------------------------------------------------------


def _query(model: type[Model]) -> Model:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise ApiError(422, "Some parameters need fixing.", field_errors(exc)) from exc


def _days(
    clinic: Clinic, start: date | None, end: date | None, longest: timedelta
) -> tuple[date, date]:
    """Return the clinic's days asked for: from today and for two weeks unless given."""
    first = start or now().astimezone(clinic.tz).date()
    last = end or first + DEFAULT_SPAN
    if last < first:
        raise ApiError(422, "The end date is before the start date.", {"end": "before start"})
    if last - first > longest:
        days = longest.days + 1
        raise ApiError(
            422, f"Ask for at most {days} days at a time.", {"end": f"at most {days} days"}
        )
    return first, last


def _chosen(practitioner_id: int | None, visible: list[Practitioner]) -> Practitioner | None:
    """Return the practitioner asked for: 422 when there is none, 403 when not the token's."""
    if practitioner_id is None:
        return None
    for practitioner in visible:
        if practitioner.id == practitioner_id:
            return practitioner
    if db.session.get(Practitioner, practitioner_id) is None:
        raise ApiError(
            422,
            "Unknown practitioner.",
            {"practitioner": f"no practitioner with id {practitioner_id}"},
        )
    raise ApiError(
        403,
        "A practitioner's token sees only their own schedule.",
        {"practitioner": "not the token's practitioner"},
    )


def _encode_cursor(kind: str, *key: Any) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad_cursor() -> ApiError:
    return ApiError(
        422,
        "The cursor is not one this list gave.",
        {"cursor": "pass the next_cursor of the page before, unchanged, or leave it out"},
    )


def _decode_cursor(cursor: str | None, kind: str) -> list[Any] | None:
    if not cursor:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise _bad_cursor() from exc
    if not isinstance(value, list) or not value or value[0] != kind:
        raise _bad_cursor()
    return value[1:]


def _valid_id(value: Any) -> int:
    if type(value) is not int or not 0 < value <= MAX_ID:
        raise _bad_cursor()
    return value


def _booking_position(cursor: str | None) -> tuple[datetime, int] | None:
    key = _decode_cursor(cursor, "b")
    if key is None:
        return None
    if len(key) != 2 or not isinstance(key[0], str):
        raise _bad_cursor()
    try:
        start = checked_instant(datetime.fromisoformat(key[0]))
    except ValueError as exc:
        raise _bad_cursor() from exc
    return start, _valid_id(key[1])


def _patient_position(cursor: str | None) -> int | None:
    key = _decode_cursor(cursor, "p")
    if key is None:
        return None
    if len(key) != 1:
        raise _bad_cursor()
    return _valid_id(key[0])


def _visible_booking(booking_id: int) -> Booking:
    """Return a booking the token may see, or 404 (never 403: ids cannot be probed)."""
    booking = db.session.get(Booking, booking_id) if booking_id <= MAX_ID else None
    scope = _scope()
    if booking is None or (scope is not None and booking.practitioner_id not in scope):
        raise ApiError(404, "There is no booking with that id that this token may see.")
    return booking


# --- Answers ------------------------------------------------------------------------------------


def _json(model: BaseModel, status: int = 200) -> ResponseReturnValue:
    return jsonify(model.model_dump(mode="json")), status


def _booking(clinic: Clinic, booking: Booking) -> StaffBooking:
    tz = clinic.tz
    place = progress(booking)
    return StaffBooking(
        id=booking.id,
        status=booking.status,
        start=booking.start_at.astimezone(tz),
        end=booking.end_at.astimezone(tz),
        timezone=clinic.timezone,
        service=booking.treatment_id,
        service_name=booking.treatment.name,
        practitioner=booking.practitioner_id,
        practitioner_name=booking.practitioner.name,
        room=booking.room_id,
        room_name=booking.room.name,
        patient=PatientRef(
            id=booking.patient.id,
            name=booking.patient.name,
            email=booking.patient.email,
            phone=booking.patient.phone,
        ),
        notes=booking.notes,
        staff_notes=booking.staff_notes,
        late_cancellation=booking.late_cancellation,
        cancelled_at=None if booking.cancelled_at is None else booking.cancelled_at.astimezone(tz),
        cancellation_reason=booking.cancellation_reason,
        awaiting_approval=booking.awaiting_approval,
        course=None
        if place is None
        else CoursePlace(session=place.position, of=place.total, attended=place.done),
        booked_at=booking.created_at.astimezone(tz),
        manage_url=external_url("booking.manage", token=booking.manage_token),
    )


def _intake(clinic: Clinic, intake: patient_models.Intake) -> Intake:
    return Intake(
        medications=intake.medications,
        conditions=list(intake.conditions),
        other_conditions=intake.other_conditions,
        flags=intake.flags,
        consent_at=intake.consent_at.astimezone(clinic.tz),
        updated_at=intake.updated_at.astimezone(clinic.tz),
    )


def _booking_detail(clinic: Clinic, booking: Booking) -> StaffBookingDetail:
    intake = booking.patient.intake
    shown = intake is not None and sees_health(_user(), booking.practitioner_id)
    return StaffBookingDetail(
        **dict(_booking(clinic, booking)),
        intake_on_file=intake is not None,
        intake=_intake(clinic, intake) if shown and intake is not None else None,
    )


def _counts(counts: Counts) -> CountsOut:
    return CountsOut(
        completed=counts.completed,
        no_shows=counts.no_shows,
        late_cancellations=counts.late_cancellations,
    )


def _busy(clinic: Clinic, block: Block) -> Busy:
    return Busy(
        kind="off" if block.kind == "off" else "busy",
        start=block.start.astimezone(clinic.tz),
        end=block.end.astimezone(clinic.tz),
        label=block.label,
    )


# --- Bookings -----------------------------------------------------------------------------------


@blueprint.get("/staff/bookings")
@documented(
    tag="Staff",
    bearer=True,
    query=BookingListQuery,
    responses={
        200: BookingPage,
        403: (ErrorOut, "The token's account may not see that practitioner's bookings."),
        422: (ErrorOut, "A parameter or the cursor needs fixing."),
    },
)
@token_required()
def staff_bookings() -> ResponseReturnValue:
    """List bookings by start, narrowed by dates, practitioner, status and patient."""
    clinic = clinic_or_503()
    query = _query(BookingListQuery)
    visible = practitioners_visible_to(db.session(), _user())
    first, last = _days(clinic, query.start, query.end, LONGEST_LIST_SPAN)
    filters = Filters(
        first,
        last,
        practitioner=_chosen(query.practitioner, visible),
        status=query.status,
        text=query.patient,
    )
    statement = bookings_query(clinic, filters, visible).options(*_BOOKING_LOADS)
    after = _booking_position(query.cursor)
    if after is not None:
        start, booking_id = after
        statement = statement.where(
            or_(Booking.start_at > start, and_(Booking.start_at == start, Booking.id > booking_id))
        )
    rows = list(db.session.scalars(statement.limit(query.limit + 1)))
    page = rows[: query.limit]
    last_row = page[-1] if page else None
    return _json(
        BookingPage(
            items=[_booking(clinic, b) for b in page],
            next_cursor=_encode_cursor("b", last_row.start_at.isoformat(), last_row.id)
            if last_row is not None and len(rows) > query.limit
            else None,
        )
    )


@blueprint.post("/staff/bookings")
@rate_limited(STAFF_API)
@documented(
    tag="Staff",
    bearer=True,
    body=BookingIn,
    responses={
        201: (StaffBooking | CourseBooked, "Booked: the booking, or with `repeat` the course."),
        403: (ErrorOut, "Only reception and admins book."),
        409: (SlotTakenOut | CourseClashOut, "The time is not free; nothing was booked."),
        422: (ErrorOut, "A field needs fixing."),
    },
)
@token_required(*FRONT_DESK)
def staff_create_booking() -> ResponseReturnValue:
    """Book for a patient, as the public API does but as staff: no minimum notice, the staff
    horizon, and never awaiting approval."""
    clinic = clinic_or_503()
    body = parse_body(BookingIn)
    placed = book_request(clinic, body, _actor())
    db.session.commit()
    if isinstance(placed, Booking):
        return _json(_booking(clinic, placed), 201)
    return _json(
        CourseBooked(
            course=[_booking(clinic, session) for session in placed.sessions],
            sessions=placed.session_count,
            every_weeks=placed.every_weeks,
        ),
        201,
    )


@blueprint.get("/staff/bookings/<int:booking_id>")
@documented(
    tag="Staff",
    bearer=True,
    params={"booking_id": "The booking's id."},
    responses={
        200: StaffBookingDetail,
        404: (ErrorOut, "No booking with that id that the token may see."),
    },
)
@token_required()
def staff_booking(booking_id: int) -> ResponseReturnValue:
    """Show one booking, with the health answers for those who may read them."""
    clinic = clinic_or_503()
    booking = _visible_booking(booking_id)
    detail = _booking_detail(clinic, booking)
    if detail.intake is not None:
        note_view(_actor(), Viewed.BOOKING_API, booking.patient_id, booking.id)
    return _json(detail)


@blueprint.post("/staff/bookings/<int:booking_id>/status")
@rate_limited(STAFF_API)
@documented(
    tag="Staff",
    bearer=True,
    body=StatusIn,
    params={"booking_id": "The booking's id."},
    responses={
        200: StaffBookingDetail,
        404: (ErrorOut, "No booking with that id that the token may see."),
        409: (ErrorOut, "The booking cannot take that status now."),
    },
)
@token_required()
def staff_booking_status(booking_id: int) -> ResponseReturnValue:
    """Mark the visit arrived, completed or a no-show, or put it back to confirmed."""
    clinic = clinic_or_503()
    booking = _visible_booking(booking_id)
    body = parse_body(StatusIn)
    try:
        set_status(
            db.session(),
            clinic=clinic,
            booking=booking,
            status=BookingStatus(body.status),
            now=now(),
            actor=_actor(),
        )
    except BookingError as exc:
        db.session.rollback()
        raise ApiError(409, exc.message, {"status": exc.message}) from exc
    db.session.commit()
    return _json(_booking_detail(clinic, booking))


# --- Patients -----------------------------------------------------------------------------------


@blueprint.get("/staff/patients")
@documented(
    tag="Staff",
    bearer=True,
    query=PatientListQuery,
    responses={200: PatientPage, 422: (ErrorOut, "A parameter or the cursor needs fixing.")},
)
@token_required()
def staff_patients() -> ResponseReturnValue:
    """List patients in the order they were added, searching names, emails and phones."""
    clinic = clinic_or_503()
    query = _query(PatientListQuery)
    rows, more = patients_after(
        db.session(),
        query=query.q,
        practitioner_ids=_scope(),
        after=_patient_position(query.cursor),
        limit=query.limit,
        now=now(),
    )
    tz = clinic.tz
    items = [
        PatientSummary(
            id=row.patient.id,
            name=row.patient.name,
            email=row.patient.email,
            phone=row.patient.phone,
            erased=row.patient.erased_at is not None,
            next_visit=None if row.next_visit is None else row.next_visit.astimezone(tz),
            counts=_counts(row.counts),
        )
        for row in rows
    ]
    return _json(
        PatientPage(
            items=items,
            next_cursor=_encode_cursor("p", items[-1].id) if more and items else None,
        )
    )


@blueprint.get("/staff/patients/<int:patient_id>")
@documented(
    tag="Staff",
    bearer=True,
    params={"patient_id": "The patient's id."},
    responses={
        200: PatientDetail,
        404: (ErrorOut, "No patient with that id that the token may see."),
    },
)
@token_required()
def staff_patient(patient_id: int) -> ResponseReturnValue:
    """Show a patient: details, counts, visits, and the intake answers for admins and
    practitioners."""
    clinic = clinic_or_503()
    scope = _scope()
    patient = visible_patient(db.session(), patient_id, scope) if patient_id <= MAX_ID else None
    if patient is None:
        raise ApiError(404, "There is no patient with that id that this token may see.")
    note_view(_actor(), Viewed.PATIENT_API, patient.id)
    shown = patient_record(db.session(), patient, practitioner_ids=scope, now=now())
    tz = clinic.tz
    may_read_health = _user().role in (Role.ADMIN, Role.PRACTITIONER)
    return _json(
        PatientDetail(
            id=patient.id,
            name=patient.name,
            email=patient.email,
            phone=patient.phone,
            added_at=patient.created_at.astimezone(tz),
            erased_at=None if patient.erased_at is None else patient.erased_at.astimezone(tz),
            counts=_counts(shown.counts),
            upcoming=[_booking(clinic, b) for b in shown.upcoming],
            past=[_booking(clinic, b) for b in shown.past],
            intake_on_file=patient.intake is not None,
            intake=_intake(clinic, patient.intake)
            if patient.intake is not None and may_read_health
            else None,
        )
    )


# --- The schedule and busy time -----------------------------------------------------------------


@blueprint.get("/staff/schedule")
@documented(
    tag="Staff",
    bearer=True,
    query=RangeQuery,
    responses={
        200: Schedule,
        403: (ErrorOut, "The token's account may not see that practitioner."),
    },
)
@token_required()
def staff_schedule() -> ResponseReturnValue:
    """Each practitioner's bookings and time away (imported busy time, time off) over the
    clinic's days ``start`` to ``end``."""
    clinic = clinic_or_503()
    query = _query(RangeQuery)
    first, last = _days(clinic, query.start, query.end, LONGEST_SCHEDULE_SPAN)
    visible = practitioners_visible_to(db.session(), _user())
    chosen = _chosen(query.practitioner, visible)
    found = agendas(db.session(), clinic, first, last, [chosen] if chosen else visible)
    return _json(
        Schedule(
            timezone=clinic.timezone,
            start=first,
            end=last,
            practitioners=[
                PractitionerSchedule(
                    id=agenda.practitioner.id,
                    name=agenda.practitioner.name,
                    bookings=[_booking(clinic, b) for b in agenda.bookings],
                    busy=[_busy(clinic, block) for block in agenda.away],
                )
                for agenda in found
            ],
        )
    )


@blueprint.get("/staff/busy")
@documented(
    tag="Staff",
    bearer=True,
    query=RangeQuery,
    responses={
        200: BusyTime,
        403: (ErrorOut, "The token's account may not see that practitioner."),
        422: (ErrorOut, "A parameter needs fixing, or no practitioner was named."),
    },
)
@token_required()
def staff_busy() -> ResponseReturnValue:
    """One practitioner's time away (imported busy time, time off) over the clinic's days
    ``start`` to ``end``; a practitioner's token may leave ``practitioner`` out."""
    clinic = clinic_or_503()
    query = _query(RangeQuery)
    first, last = _days(clinic, query.start, query.end, LONGEST_SCHEDULE_SPAN)
    user = _user()
    visible = practitioners_visible_to(db.session(), user)
    chosen = _chosen(query.practitioner, visible)
    if chosen is None:
        if user.role is not Role.PRACTITIONER or not visible:
            raise ApiError(422, "Say whose busy time.", {"practitioner": "required"})
        chosen = visible[0]
    [agenda] = agendas(db.session(), clinic, first, last, [chosen], with_bookings=False)
    return _json(
        BusyTime(
            timezone=clinic.timezone,
            practitioner=chosen.id,
            start=first,
            end=last,
            busy=[_busy(clinic, block) for block in agenda.away],
        )
    )
