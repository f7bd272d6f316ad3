"""Bookings in the staff area: find them, book for a caller, move, cancel, mark and annotate.

Reception and admins work with every booking; a practitioner sees their own, marks arrivals
and no-shows and keeps notes on them, but leaves moving and cancelling to the front desk.
Every change goes through the same operations as the patient's own pages, so the same checks
hold, the same messages are queued, and the audit trail names who did it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy import Select, select

from scheduler.audit import Viewed, trail
from scheduler.booking.approvals import (
    approve_booking,
    approve_course,
    decline_booking,
    requests_in_course,
)
from scheduler.booking.availability import Slot
from scheduler.booking.courses import progress
from scheduler.booking.forms import (
    ApproveForm,
    CallerForm,
    DeclineForm,
    MoveRoomForm,
    StaffCancelForm,
    StaffNotesForm,
    StaffRescheduleForm,
    StatusForm,
)
from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import (
    BookingError,
    RoomTaken,
    cancel_booking,
    is_changeable,
    move_to_room,
    reschedule_booking,
    room_can_change,
    rooms_free_for,
    set_staff_notes,
    set_status,
)
from scheduler.booking.policies import missed_visits, pending_requests
from scheduler.booking.views import (
    book_from_form,
    course_context,
    picker,
    read_choice,
    read_start,
    refuse,
)
from scheduler.clinic.models import Clinic, Practitioner, Room, Treatment
from scheduler.extensions import db
from scheduler.i18n import label
from scheduler.notifications.models import Notification
from scheduler.patients.models import Patient
from scheduler.patients.operations import patient_matches
from scheduler.staff.auth import (
    current_staff,
    may_see_health,
    practitioners_visible_to,
    staff_actor,
    staff_only,
)
from scheduler.staff.models import Role
from scheduler.timeutil import day_bounds
from scheduler.web import clinic_or_503, note_view, now

blueprint = Blueprint("bookings", __name__, url_prefix="/staff/bookings")

FRONT_DESK = (Role.ADMIN, Role.RECEPTION)
PAGE_SIZE = 100
DEFAULT_SPAN = timedelta(days=13)
LONGEST_SPAN = timedelta(days=366)
# Which buttons a booking in each status offers.
NEXT_STATUSES = {
    BookingStatus.CONFIRMED: [
        BookingStatus.ARRIVED,
        BookingStatus.COMPLETED,
        BookingStatus.NO_SHOW,
    ],
    BookingStatus.ARRIVED: [BookingStatus.COMPLETED, BookingStatus.NO_SHOW],
    BookingStatus.COMPLETED: [BookingStatus.CONFIRMED],
    BookingStatus.NO_SHOW: [BookingStatus.ARRIVED, BookingStatus.CONFIRMED],
    BookingStatus.CANCELLED: [],
}


@dataclass
class Filters:
    """What the bookings list is narrowed to, read from the query string."""

    first: date
    last: date
    practitioner: Practitioner | None = None
    status: BookingStatus | None = None
    text: str = ""
    page: int = 0
    errors: dict[str, str] = field(default_factory=dict)


def _read_day(args: Mapping[str, str], name: str, default: date, errors: dict[str, str]) -> date:
    raw = args.get(name, "").strip()
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[name] = gettext("Use the date picker or YYYY-MM-DD.")
        return default


def read_filters(args: Mapping[str, str], clinic: Clinic, visible: list[Practitioner]) -> Filters:
    """Read the list's filters, falling back to the next two weeks and saying what was wrong."""
    errors: dict[str, str] = {}
    today = now().astimezone(clinic.tz).date()
    first = _read_day(args, "from", today, errors)
    last = _read_day(args, "to", first + DEFAULT_SPAN, errors)
    if last < first:
        errors["to"] = gettext(
            "The last day is before the first; showing two weeks from the first."
        )
        last = first + DEFAULT_SPAN
    elif last - first > LONGEST_SPAN:
        errors["to"] = gettext("Show at most a year at a time; showing a year from the first day.")
        last = first + LONGEST_SPAN
    filters = Filters(first, last, text=args.get("q", "").strip()[:200], errors=errors)
    chosen = args.get("practitioner", "").strip()
    if chosen:
        filters.practitioner = next((p for p in visible if str(p.id) == chosen), None)
        if filters.practitioner is None:
            errors["practitioner"] = gettext("Choose a practitioner from the list.")
    status = args.get("status", "").strip()
    if status:
        try:
            filters.status = BookingStatus(status)
        except ValueError:
            errors["status"] = gettext("Choose a status from the list.")
    raw_page = args.get("page", "0")
    filters.page = int(raw_page) if raw_page.isascii() and raw_page.isdigit() else 0
    filters.page = min(filters.page, 10_000)
    return filters


def bookings_query(
    clinic: Clinic, filters: Filters, visible: list[Practitioner]
) -> Select[Booking]:
    """Select the bookings ``filters`` ask for among ``visible`` practitioners', in the order of
    their start (then id)."""
    start, end = day_bounds(filters.first, filters.last, clinic.tz)
    query = (
        select(Booking)
        .join(Patient)
        .where(
            Booking.start_at >= start,
            Booking.start_at < end,
            Booking.practitioner_id.in_([p.id for p in visible]),
        )
        .order_by(Booking.start_at, Booking.id)
    )
    if filters.practitioner is not None:
        query = query.where(Booking.practitioner_id == filters.practitioner.id)
    if filters.status is not None:
        query = query.where(Booking.status == filters.status)
    if filters.text:
        query = query.where(patient_matches(filters.text))
    return query


@blueprint.get("/")
@staff_only()
def index() -> ResponseReturnValue:
    """Bookings in a date range, narrowed by practitioner, status and patient."""
    clinic = clinic_or_503()
    visible = practitioners_visible_to(db.session(), current_staff())
    filters = read_filters(request.args, clinic, visible)
    rows = list(
        db.session.scalars(
            bookings_query(clinic, filters, visible)
            .offset(filters.page * PAGE_SIZE)
            .limit(PAGE_SIZE + 1)
        )
    )
    args: dict[str, Any] = {k: v for k, v in request.args.items() if k != "page"}
    return render_template(
        "staff/bookings/index.html",
        clinic=clinic,
        filters=filters,
        practitioners=visible,
        statuses=list(BookingStatus),
        rows=rows[:PAGE_SIZE],
        next_url=url_for("bookings.index", **args, page=filters.page + 1)
        if len(rows) > PAGE_SIZE
        else None,
        previous_url=url_for("bookings.index", **args, page=filters.page - 1)
        if filters.page
        else None,
        may_book=current_staff().role in FRONT_DESK,
        pending=db.session.scalars(
            pending_requests([p.id for p in visible]).limit(PAGE_SIZE)
        ).all(),
    ), 422 if filters.errors else 200


def _booking_or_404(booking_id: int) -> Booking:
    """Return a booking the current user may see, or 404 (never 403: no probing for ids)."""
    booking = db.session.get(Booking, booking_id)
    user = current_staff()
    if booking is None or (
        user.role is Role.PRACTITIONER and booking.practitioner_id != user.practitioner_id
    ):
        abort(404)
    return booking


def _detail_page(
    booking: Booking,
    *,
    status_form: StatusForm | None = None,
    notes_form: StaffNotesForm | None = None,
    cancel_form: StaffCancelForm | None = None,
    room_form: MoveRoomForm | None = None,
    approve_form: ApproveForm | None = None,
    decline_form: DeclineForm | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    clinic = clinic_or_503()
    user = current_staff()
    front_desk = user.role in FRONT_DESK
    rooms_changeable = front_desk and room_can_change(clinic, booking, now())
    notes_form = notes_form or StaffNotesForm(staff_notes=booking.staff_notes)
    messages = (
        db.session.scalars(
            select(Notification)
            .where(Notification.booking_id == booking.id)
            .order_by(Notification.due_at, Notification.id)
        ).all()
        if user.role in FRONT_DESK
        else []
    )
    return render_template(
        "staff/bookings/detail.html",
        clinic=clinic,
        booking=booking,
        status_form=status_form or StatusForm(),
        notes_form=notes_form,
        cancel_form=cancel_form or StaffCancelForm(),
        next_statuses=NEXT_STATUSES[booking.status],
        describe_status=lambda status: label(status, "-"),
        front_desk=user.role in FRONT_DESK,
        changeable=is_changeable(booking, now()),
        events=trail(db.session(), booking_id=booking.id),
        patient_pages="patients.detail" in current_app.view_functions,
        messages=messages,
        course=progress(booking),
        course_requests=len(requests_in_course(booking)) if booking.course_id else 0,
        missed=missed_visits(
            db.session(),
            booking.patient_id,
            None if front_desk else [p.id for p in practitioners_visible_to(db.session(), user)],
        ),
        room_form=room_form or MoveRoomForm(formdata=None),
        free_rooms=rooms_free_for(db.session(), booking) if rooms_changeable else [],
        rooms_changeable=rooms_changeable,
        approve_form=approve_form or ApproveForm(formdata=None),
        decline_form=decline_form or DeclineForm(formdata=None),
    ), status


@blueprint.get("/<int:booking_id>")
@staff_only()
def detail(booking_id: int) -> ResponseReturnValue:
    """One booking: the visit, the patient, what can be done, and its history. Showing the
    patient's health answers is recorded in the audit trail."""
    booking = _booking_or_404(booking_id)
    if booking.patient.intake is not None and may_see_health(booking.practitioner_id):
        note_view(staff_actor(), Viewed.BOOKING_PAGE, booking.patient_id, booking.id)
    return _detail_page(booking)


@blueprint.post("/<int:booking_id>/status")
@staff_only()
def mark(booking_id: int) -> ResponseReturnValue:
    """Mark the visit arrived, completed or a no-show (or put it back to confirmed)."""
    clinic = clinic_or_503()
    booking = _booking_or_404(booking_id)
    form = StatusForm()
    if not form.validate_on_submit():
        return _detail_page(booking, status_form=form, status=422)
    try:
        wanted = BookingStatus(form.status.data)
    except ValueError:
        form.status.errors = ["Choose one of the buttons."]
        return _detail_page(booking, status_form=form, status=422)
    try:
        set_status(
            db.session(),
            clinic=clinic,
            booking=booking,
            status=wanted,
            now=now(),
            actor=staff_actor(),
        )
    except BookingError as exc:
        db.session.rollback()
        form.status.errors = [exc.message]
        return _detail_page(booking, status_form=form, status=422)
    db.session.commit()
    flash(gettext("Marked %(status)s.", status=label(wanted, "-")), "success")
    return redirect(url_for("bookings.detail", booking_id=booking.id), 303)


@blueprint.post("/<int:booking_id>/notes")
@staff_only()
def notes(booking_id: int) -> ResponseReturnValue:
    """Save the internal notes on a booking."""
    booking = _booking_or_404(booking_id)
    form = StaffNotesForm()
    if not form.validate_on_submit():
        return _detail_page(booking, notes_form=form, status=422)
    set_staff_notes(
        db.session(),
        booking=booking,
        text=form.staff_notes.data or "",
        now=now(),
        actor=staff_actor(),
    )
    db.session.commit()
    flash(gettext("Notes saved."), "success")
    return redirect(url_for("bookings.detail", booking_id=booking.id), 303)


@blueprint.post("/<int:booking_id>/cancel")
@staff_only(*FRONT_DESK)
def cancel(booking_id: int) -> ResponseReturnValue:
    """Cancel for the patient or for the clinic, with a reason; the patient is told."""
    clinic = clinic_or_503()
    booking = _booking_or_404(booking_id)
    form = StaffCancelForm()
    if not form.validate_on_submit():
        return _detail_page(booking, cancel_form=form, status=422)
    try:
        cancel_booking(
            db.session(),
            clinic=clinic,
            booking=booking,
            reason=form.reason.data or "",
            now=now(),
            actor=staff_actor(),
            by_clinic=bool(form.by_clinic.data),
        )
    except BookingError as exc:
        db.session.rollback()
        form.form_errors.append(exc.message)
        return _detail_page(booking, cancel_form=form, status=422)
    db.session.commit()
    if booking.late_cancellation:
        said = gettext(
            "The booking is cancelled and the patient will be told. "
            "It is recorded as a late cancellation."
        )
    else:
        said = gettext("The booking is cancelled and the patient will be told.")
    flash(said, "success")
    return redirect(url_for("bookings.detail", booking_id=booking.id), 303)


@blueprint.post("/<int:booking_id>/room")
@staff_only(*FRONT_DESK)
def move_room(booking_id: int) -> ResponseReturnValue:
    """Move the booking to another room for the same time; the patient is not told."""
    clinic = clinic_or_503()
    booking = _booking_or_404(booking_id)
    form = MoveRoomForm()
    if not form.validate_on_submit():
        return _detail_page(booking, room_form=form, status=422)
    raw = form.room.data or ""
    room = (
        db.session.get(Room, int(raw))
        if raw.isascii() and raw.isdigit() and len(raw) < 10
        else None
    )
    if room is None:
        form.room.errors = ["Choose a room from the list."]
        return _detail_page(booking, room_form=form, status=422)
    try:
        move_to_room(
            db.session(), clinic=clinic, booking=booking, room=room, now=now(), actor=staff_actor()
        )
    except BookingError as exc:
        db.session.rollback()
        form.room.errors = [exc.message]
        return _detail_page(
            booking, room_form=form, status=409 if isinstance(exc, RoomTaken) else 422
        )
    db.session.commit()
    flash(gettext("The booking is now in %(room)s.", room=room.name), "success")
    return redirect(url_for("bookings.detail", booking_id=booking.id), 303)


@blueprint.post("/<int:booking_id>/approve")
@staff_only(*FRONT_DESK)
def approve(booking_id: int) -> ResponseReturnValue:
    """Approve a booking request: the patient gets their confirmation and checklist."""
    clinic = clinic_or_503()
    booking = _booking_or_404(booking_id)
    form = ApproveForm()
    if not form.validate_on_submit():
        return _detail_page(booking, approve_form=form, status=422)
    actor = staff_actor()
    try:
        if request.form.get("whole_course") == "1":
            approved = approve_course(
                db.session(), clinic=clinic, booking=booking, now=now(), actor=actor
            )
        else:
            approved = [
                approve_booking(
                    db.session(), clinic=clinic, booking=booking, now=now(), actor=actor
                )
            ]
    except BookingError as exc:
        db.session.rollback()
        form.form_errors.append(exc.message)
        return _detail_page(booking, approve_form=form, status=409)
    db.session.commit()
    flash(
        gettext(
            "%(count)d sessions are approved; the patient is sent a confirmation for each.",
            count=len(approved),
        )
        if len(approved) > 1
        else gettext("The booking is approved; the patient is sent the confirmation."),
        "success",
    )
    return redirect(url_for("bookings.detail", booking_id=booking.id), 303)


@blueprint.post("/<int:booking_id>/decline")
@staff_only(*FRONT_DESK)
def decline(booking_id: int) -> ResponseReturnValue:
    """Decline a booking request with a reason: it is cancelled by the clinic, and the patient
    is told why."""
    clinic = clinic_or_503()
    booking = _booking_or_404(booking_id)
    form = DeclineForm()
    if not form.validate_on_submit():
        return _detail_page(booking, decline_form=form, status=422)
    try:
        decline_booking(
            db.session(),
            clinic=clinic,
            booking=booking,
            reason=form.reason.data or "",
            now=now(),
            actor=staff_actor(),
        )
    except BookingError as exc:
        db.session.rollback()
        form.form_errors.append(exc.message)
        return _detail_page(booking, decline_form=form, status=409)
    db.session.commit()
    flash(
        gettext("The request is declined and the booking cancelled; the patient is told why."),
        "success",
    )
    return redirect(url_for("bookings.detail", booking_id=booking.id), 303)


def _target_practitioner(booking: Booking, raw: str | None) -> Practitioner | None:
    """Read the practitioner to move a booking to: its own when not given, None when unknown."""
    if not raw or raw == str(booking.practitioner_id):
        return booking.practitioner
    candidate = db.session.get(Practitioner, int(raw)) if raw.isascii() and raw.isdigit() else None
    if candidate is None or not candidate.active or booking.treatment not in candidate.treatments:
        return None
    return candidate


@blueprint.route("/<int:booking_id>/reschedule", methods=["GET", "POST"])
@staff_only(*FRONT_DESK)
def reschedule(booking_id: int) -> ResponseReturnValue:
    """Pick a new time, with the same or another practitioner, and move the booking."""
    clinic = clinic_or_503()
    booking = _booking_or_404(booking_id)
    form = StaffRescheduleForm()
    posted = request.method == "POST"
    raw_practitioner = form.practitioner.data if posted else request.args.get("practitioner")
    target = _target_practitioner(booking, raw_practitioner)
    start = read_start(form.start.data if posted else request.args.get("start"))
    status = 200
    alternatives: list[Slot] = []
    if target is None:
        form.form_errors.append(
            f"Choose a practitioner who gives {booking.treatment.name} from the list."
        )
        target, status = booking.practitioner, 422
    elif form.validate_on_submit():
        if start is None:
            form.form_errors.append(gettext("Please choose a new time from the list."))
            status = 422
        else:
            try:
                reschedule_booking(
                    db.session(),
                    clinic=clinic,
                    booking=booking,
                    start=start,
                    now=now(),
                    practitioner=target,
                    actor=staff_actor(),
                )
            except BookingError as exc:
                status, alternatives = refuse(form, exc)
            else:
                db.session.commit()
                flash(gettext("The booking is moved and the patient will be told."), "success")
                return redirect(url_for("bookings.detail", booking_id=booking.id), 303)
    elif posted:
        status = 422
    if not is_changeable(booking, now()):
        status = 409 if posted else status
        return render_template(
            "staff/bookings/reschedule.html",
            clinic=clinic,
            booking=booking,
            form=form,
            changeable=False,
        ), status
    context: dict[str, object] = {
        "clinic": clinic,
        "booking": booking,
        "form": form,
        "start": start,
        "target": target,
        "alternatives": alternatives,
        "changeable": True,
        "practitioners": [
            p for p in booking.treatment.practitioners if p.active or p is booking.practitioner
        ],
    }
    if start is None or status != 200:
        context.update(
            picker(
                clinic,
                booking.treatment,
                target,
                request.args.get("from"),
                ignore=booking,
                by_staff=True,
            )
        )
    if start is not None:
        form.start.data = start.isoformat()
    form.practitioner.data = str(target.id)
    return render_template("staff/bookings/reschedule.html", **context), status


# --- Booking for a caller -----------------------------------------------------------------------


def _active_treatments() -> list[Treatment]:
    return list(
        db.session.scalars(
            select(Treatment).where(Treatment.active.is_(True)).order_by(Treatment.position)
        )
    )


def _patient_from(args: Mapping[str, str]) -> Patient | None:
    raw = args.get("patient", "")
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        return None
    patient = db.session.get(Patient, int(raw))
    return patient if patient is not None and patient.erased_at is None else None


@blueprint.get("/new")
@staff_only(*FRONT_DESK)
def new() -> ResponseReturnValue:
    """Book for a caller: choose the treatment and practitioner, then a free time."""
    clinic = clinic_or_503()
    choice = read_choice(request.args)
    asked = "service" in request.args
    patient = _patient_from(request.args)
    context: dict[str, object] = {
        "clinic": clinic,
        "treatments": _active_treatments(),
        "practitioners": db.session.scalars(
            select(Practitioner).where(Practitioner.active.is_(True)).order_by(Practitioner.name)
        ).all(),
        "choice": choice,
        "errors": choice.errors if asked else {},
        "patient": patient,
    }
    if choice.treatment is not None and not choice.errors:
        context.update(
            picker(
                clinic,
                choice.treatment,
                choice.practitioner,
                request.args.get("from"),
                by_staff=True,
            )
        )
    return render_template("staff/bookings/new.html", **context), (
        400 if asked and choice.errors else 200
    )


@blueprint.route("/new/details", methods=["GET", "POST"])
@staff_only(*FRONT_DESK)
def new_details() -> ResponseReturnValue:
    """The caller's details for the chosen time; ``POST`` books it as online, mail and all."""
    clinic = clinic_or_503()
    choice = read_choice(request.args)
    start = read_start(request.args.get("start"))
    if choice.errors or choice.treatment is None or start is None:
        flash(
            next(iter(choice.errors.values()), None)
            or gettext("Please choose a time from the list."),
            "warning",
        )
        args: dict[str, Any] = request.args.to_dict()
        return redirect(url_for("bookings.new", **args), 303)
    treatment = choice.treatment
    patient = _patient_from(request.args)
    form = CallerForm()
    if request.method == "GET" and patient is not None:
        form.full_name.data, form.email.data, form.phone.data = (
            patient.name,
            patient.email,
            patient.phone,
        )
    attempt = book_from_form(form, clinic, treatment, choice.practitioner, start, staff_actor())
    if attempt.booking is not None:
        flash(
            gettext(
                "Booked. The patient is sent the confirmation and checklist "
                "for each session of the course."
            )
            if attempt.booking.course_id
            else gettext("Booked. The patient is sent the confirmation and checklist."),
            "success",
        )
        return redirect(url_for("bookings.detail", booking_id=attempt.booking.id), 303)
    return render_template(
        "staff/bookings/details.html",
        clinic=clinic,
        treatment=treatment,
        practitioner=choice.practitioner,
        start=start,
        end=start + timedelta(minutes=treatment.duration_minutes),
        form=form,
        alternatives=attempt.alternatives,
        course=course_context(form, clinic, start, attempt.clashes),
        patient=patient,
    ), attempt.status
