"""Setting the clinic up, in the staff area and for admins only: the clinic and its booking
rules, treatments, practitioners with their weekly hours and time off, rooms, and the
checklists, with a preview of the mail patients get."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.errors import MessageError
from email.message import EmailMessage
from typing import Any, TypeVar
from zoneinfo import available_timezones

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext, ngettext
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from scheduler.booking.models import Booking
from scheduler.booking.operations import find_slots, practitioners_for
from scheduler.clinic import operations
from scheduler.clinic.colours import DEFAULT_BRAND_COLOUR, normalise
from scheduler.clinic.forms import (
    ChecklistForm,
    ClinicForm,
    HoursForm,
    PractitionerForm,
    RoomForm,
    TimeOffForm,
    TreatmentForm,
    hours_text,
)
from scheduler.clinic.models import (
    ChecklistSection,
    Clinic,
    Practitioner,
    Room,
    TimeOff,
    Treatment,
)
from scheduler.clinic.operations import (
    WEEKDAYS,
    ClinicDetails,
    PractitionerDetails,
    SetupError,
    TreatmentDetails,
)
from scheduler.db import Base
from scheduler.extensions import db
from scheduler.i18n import format_clock, format_day
from scheduler.notifications.messages import compose, sample_letter
from scheduler.notifications.models import NotificationKind
from scheduler.security import email_document
from scheduler.staff.auth import staff_only
from scheduler.staff.models import Role
from scheduler.waitlist.operations import offer_after_time_off, offer_new_hours, weekly_hours
from scheduler.web import clinic_or_503, now

blueprint = Blueprint("setup", __name__, url_prefix="/staff/setup")

M = TypeVar("M", bound=Base)

# How far ahead the checklist preview looks for a free time for its sample visit.
PREVIEW_LOOKAHEAD = timedelta(days=14)


def _get_or_404(model: type[M], key: int) -> M:
    found = db.session.get(model, key)
    if found is None:
        abort(404)
    return found


def _refuse(form: FlaskForm, error: SetupError) -> None:
    """Undo what the operation began and show its message next to its field (or on top)."""
    db.session.rollback()
    if error.field and error.field in form:
        field = form[error.field]
        field.errors = [*field.errors, error.message]
    else:
        form.form_errors.append(error.message)


def _initial(values: dict[str, Any]) -> dict[str, Any] | None:
    """Return what a form starts with: ``values`` on GET; on POST nothing, so that a field
    missing from the request reads as empty instead of silently keeping what is stored."""
    return values if request.method == "GET" else None


def _status(form: FlaskForm) -> int:
    return 422 if form.is_submitted() else 200


def _bookings_stand(bookings: Sequence[Booking], clinic: Clinic, where: str) -> str:
    """Say that ``bookings`` still stand and which they are, for a flash message; ``where``
    is a translated phrase such as "outside the new hours"."""
    said = ngettext(
        "%(num)d coming booking %(where)s still stands; move or cancel it if needed",
        "%(num)d coming bookings %(where)s still stand; move or cancel them if needed",
        len(bookings),
        where=where,
    )
    return f"{said}: {_names(bookings, clinic)}."


def _names(bookings: Sequence[Booking], clinic: Clinic, shown: int = 5) -> str:
    """Say which bookings these are, briefly, for a flash message."""
    said = []
    for booking in bookings[:shown]:
        local = booking.start_at.astimezone(clinic.tz)
        said.append(
            f"{format_day(local, 'short_day')} {format_clock(local)} {booking.patient.name}"
        )
    if len(bookings) > shown:
        said.append(gettext("and %(count)d more", count=len(bookings) - shown))
    return "; ".join(said)


@blueprint.get("/")
@staff_only(Role.ADMIN)
def index() -> ResponseReturnValue:
    """Link every set-up page, with what there is of each."""
    clinic = clinic_or_503()

    def count(model: type[Treatment] | type[Practitioner] | type[Room]) -> int:
        query = select(func.count()).select_from(model).where(model.active.is_(True))
        return db.session.scalar(query) or 0

    return render_template(
        "staff/setup/index.html",
        clinic=clinic,
        treatments=count(Treatment),
        practitioners=count(Practitioner),
        rooms=count(Room),
    )


# --- The clinic -------------------------------------------------------------------------------


def _clinic_values(clinic: Clinic) -> dict[str, Any]:
    in_hours = clinic.min_notice_minutes % 60 == 0
    return {
        "name": clinic.name,
        "address": clinic.address,
        "phone": clinic.phone,
        "email": clinic.email,
        "timezone": clinic.timezone,
        "slot_step_minutes": clinic.slot_step_minutes,
        "min_notice": clinic.min_notice_minutes // 60 if in_hours else clinic.min_notice_minutes,
        "min_notice_unit": "hours" if in_hours else "minutes",
        "horizon_days": clinic.horizon_days,
        "late_cancel_hours": clinic.late_cancel_hours,
        "checklist_lead_hours": ", ".join(str(h) for h in clinic.checklist_lead_hours or []),
        "aftercare_delay_minutes": clinic.aftercare_delay_minutes,
        "approval_threshold": clinic.approval_threshold,
        "brand_colour": clinic.brand_colour,
    }


@blueprint.route("/clinic", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
def clinic() -> ResponseReturnValue:
    """Edit the clinic's details and booking rules."""
    clinic = clinic_or_503()
    form = ClinicForm(data=_initial(_clinic_values(clinic)))
    if form.validate_on_submit():
        details = ClinicDetails(
            name=form.name.data,
            address=form.address.data or "",
            phone=form.phone.data or "",
            email=form.email.data or "",
            timezone=form.timezone.data,
            slot_step_minutes=form.slot_step_minutes.number(),
            min_notice_minutes=form.notice_minutes(),
            horizon_days=form.horizon_days.number(),
            late_cancel_hours=form.late_cancel_hours.number(),
            checklist_lead_hours=form.lead_hours(),
            aftercare_delay_minutes=form.aftercare_delay_minutes.number(),
            approval_threshold=form.approval_threshold.data,
            brand_colour=form.brand_colour.data,
        )
        try:
            operations.update_clinic(db.session(), clinic, details)
        except SetupError as exc:
            _refuse(form, exc)
        else:
            db.session.commit()
            flash(gettext("The clinic's details and booking rules are saved."), "success")
            return redirect(url_for("setup.clinic"), code=303)
    return render_template(
        "staff/setup/clinic.html",
        clinic=clinic,
        form=form,
        zones=_zone_names(),
        # The picker shows the colour typed, refused or not, when it is one.
        picked=normalise(form.brand_colour.data or "") or clinic.brand_colour,
        default_colour=DEFAULT_BRAND_COLOUR,
    ), _status(form)


@functools.cache
def _zone_names() -> list[str]:
    """The time zones to suggest: every Region/City name, and UTC."""
    return sorted(name for name in available_timezones() if "/" in name or name == "UTC")


# --- Treatments -------------------------------------------------------------------------------


def _treatments_page(problem: str | None = None, status: int = 200) -> ResponseReturnValue:
    rows = db.session.scalars(
        select(Treatment)
        .options(selectinload(Treatment.practitioners))
        .order_by(Treatment.active.desc(), Treatment.position, Treatment.id)
    ).all()
    return render_template(
        "staff/setup/treatments.html",
        clinic=clinic_or_503(),
        treatments=rows,
        used=operations.booking_counts(db.session(), Booking.treatment_id),
        problem=problem,
    ), status


@blueprint.get("/treatments")
@staff_only(Role.ADMIN)
def treatments() -> ResponseReturnValue:
    """List the treatments, bookable ones first, then archived ones."""
    return _treatments_page()


def _all_practitioners() -> list[Practitioner]:
    return list(
        db.session.scalars(
            select(Practitioner).order_by(Practitioner.active.desc(), Practitioner.name)
        )
    )


def _all_treatments() -> list[Treatment]:
    return list(
        db.session.scalars(
            select(Treatment).order_by(Treatment.active.desc(), Treatment.position, Treatment.id)
        )
    )


def _label(thing: Treatment | Practitioner) -> str:
    return thing.name if thing.active else f"{thing.name} (archived)"


def _treatment_form(treatment: Treatment | None) -> tuple[TreatmentForm, list[Practitioner]]:
    """The form, filled from ``treatment`` until submitted, offering every practitioner."""
    data: dict[str, Any] = {"duration_minutes": 60, "buffer_minutes": 15, "position": 0}
    if treatment is not None:
        data = {
            "name": treatment.name,
            "description": treatment.description,
            "duration_minutes": treatment.duration_minutes,
            "buffer_minutes": treatment.buffer_minutes,
            "first_visit": treatment.first_visit,
            "position": treatment.position,
            "room_kind": treatment.room_kind or "",
            "practitioners": [p.id for p in treatment.practitioners],
        }
    form = TreatmentForm(data=_initial(data))
    everyone = _all_practitioners()
    form.practitioners.choices = [(p.id, _label(p)) for p in everyone]
    kinds = set(operations.room_kinds(db.session()))
    if treatment is not None and treatment.room_kind:
        kinds.add(treatment.room_kind)  # still offered when no room has it any more
    form.offer_room_kinds(sorted(kinds))
    return form, everyone


def _treatment_details(form: TreatmentForm) -> TreatmentDetails:
    return TreatmentDetails(
        name=form.name.data,
        description=form.description.data or "",
        duration_minutes=form.duration_minutes.number(),
        buffer_minutes=form.buffer_minutes.number(),
        first_visit=bool(form.first_visit.data),
        position=form.position.number(),
        room_kind=form.room_kind.data or None,
    )


def _warn_of_missing_rooms() -> None:
    """Warn when a bookable treatment needs a kind of room no room in use is."""
    for kind, needing in operations.unbookable_for_rooms(db.session()).items():
        names = ", ".join(t.name for t in needing)
        flash(
            gettext(
                "No room in use is of the kind %(kind)s, so %(names)s cannot be booked until "
                "one is: set a room's kind under Rooms.",
                kind=kind,
                names=names,
            ),
            "warning",
        )


@blueprint.route("/treatments/new", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
def new_treatment() -> ResponseReturnValue:
    """Add a treatment."""
    form, everyone = _treatment_form(None)
    if form.validate_on_submit():
        chosen = [p for p in everyone if p.id in form.practitioners.data]
        treatment = operations.add_treatment(db.session(), _treatment_details(form), chosen)
        db.session.commit()
        flash(gettext("%(name)s is added and can be booked.", name=treatment.name), "success")
        _warn_of_missing_rooms()
        return redirect(url_for("setup.treatments"), code=303)
    return render_template(
        "staff/setup/treatment.html", clinic=clinic_or_503(), form=form, treatment=None
    ), _status(form)


@blueprint.route("/treatments/<int:treatment_id>", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
def treatment(treatment_id: int) -> ResponseReturnValue:
    """Edit a treatment."""
    treatment = _get_or_404(Treatment, treatment_id)
    form, everyone = _treatment_form(treatment)
    if form.validate_on_submit():
        chosen = [p for p in everyone if p.id in form.practitioners.data]
        operations.update_treatment(db.session(), treatment, _treatment_details(form), chosen)
        db.session.commit()
        flash(gettext("%(name)s is saved.", name=treatment.name), "success")
        _warn_of_missing_rooms()
        return redirect(url_for("setup.treatments"), code=303)
    return render_template(
        "staff/setup/treatment.html", clinic=clinic_or_503(), form=form, treatment=treatment
    ), _status(form)


@blueprint.post("/treatments/<int:treatment_id>/archive")
@staff_only(Role.ADMIN)
def archive_treatment(treatment_id: int) -> ResponseReturnValue:
    """Archive a treatment: patients can no longer book it; its bookings stand."""
    treatment = _get_or_404(Treatment, treatment_id)
    operations.set_treatment_active(db.session(), treatment, False)
    db.session.commit()
    flash(
        gettext("%(name)s is archived: patients can no longer book it.", name=treatment.name),
        "success",
    )
    return redirect(url_for("setup.treatments"), code=303)


@blueprint.post("/treatments/<int:treatment_id>/restore")
@staff_only(Role.ADMIN)
def restore_treatment(treatment_id: int) -> ResponseReturnValue:
    """Make an archived treatment bookable again."""
    treatment = _get_or_404(Treatment, treatment_id)
    operations.set_treatment_active(db.session(), treatment, True)
    db.session.commit()
    flash(gettext("%(name)s can be booked again.", name=treatment.name), "success")
    _warn_of_missing_rooms()
    return redirect(url_for("setup.treatments"), code=303)


@blueprint.post("/treatments/<int:treatment_id>/delete")
@staff_only(Role.ADMIN)
def delete_treatment(treatment_id: int) -> ResponseReturnValue:
    """Delete a treatment that no booking refers to."""
    treatment = _get_or_404(Treatment, treatment_id)
    name = treatment.name
    try:
        operations.delete_treatment(db.session(), treatment)
    except SetupError as exc:
        db.session.rollback()
        return _treatments_page(problem=exc.message, status=409)
    db.session.commit()
    flash(gettext("%(name)s is deleted.", name=name), "success")
    return redirect(url_for("setup.treatments"), code=303)


# --- Practitioners ----------------------------------------------------------------------------


@blueprint.get("/practitioners")
@staff_only(Role.ADMIN)
def practitioners() -> ResponseReturnValue:
    """List the practitioners, working ones first, then archived ones."""
    rows = db.session.scalars(
        select(Practitioner)
        .options(selectinload(Practitioner.treatments), selectinload(Practitioner.working_hours))
        .order_by(Practitioner.active.desc(), Practitioner.name)
    ).all()
    return render_template(
        "staff/setup/practitioners.html",
        clinic=clinic_or_503(),
        practitioners=rows,
    )


def _practitioner_form(
    practitioner: Practitioner | None,
) -> tuple[PractitionerForm, list[Treatment]]:
    """The form, filled from ``practitioner`` until submitted, offering every treatment."""
    data: dict[str, Any] = {}
    if practitioner is not None:
        data = {
            "name": practitioner.name,
            "email": practitioner.email,
            "credentials": practitioner.credentials,
            "licence": practitioner.licence,
            "bio": practitioner.bio,
            "treatments": [t.id for t in practitioner.treatments],
        }
    form = PractitionerForm(data=_initial(data))
    everything = _all_treatments()
    form.treatments.choices = [(t.id, _label(t)) for t in everything]
    return form, everything


def _practitioner_details(form: PractitionerForm) -> PractitionerDetails:
    return PractitionerDetails(
        name=form.name.data,
        email=form.email.data,
        credentials=form.credentials.data or "",
        licence=form.licence.data or "",
        bio=form.bio.data or "",
    )


@blueprint.route("/practitioners/new", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
def new_practitioner() -> ResponseReturnValue:
    """Add a practitioner, then go on to their weekly hours."""
    form, everything = _practitioner_form(None)
    if form.validate_on_submit():
        chosen = [t for t in everything if t.id in form.treatments.data]
        try:
            added = operations.add_practitioner(db.session(), _practitioner_details(form), chosen)
        except SetupError as exc:
            _refuse(form, exc)
        else:
            db.session.commit()
            flash(
                gettext("%(name)s is added. Now set their weekly hours.", name=added.name),
                "success",
            )
            return redirect(url_for("setup.hours", practitioner_id=added.id), code=303)
    return render_template(
        "staff/setup/practitioner.html", clinic=clinic_or_503(), form=form, practitioner=None
    ), _status(form)


@blueprint.route("/practitioners/<int:practitioner_id>", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
def practitioner(practitioner_id: int) -> ResponseReturnValue:
    """Edit a practitioner."""
    practitioner = _get_or_404(Practitioner, practitioner_id)
    form, everything = _practitioner_form(practitioner)
    if form.validate_on_submit():
        chosen = [t for t in everything if t.id in form.treatments.data]
        try:
            operations.update_practitioner(
                db.session(), practitioner, _practitioner_details(form), chosen
            )
        except SetupError as exc:
            _refuse(form, exc)
        else:
            db.session.commit()
            flash(gettext("%(name)s is saved.", name=practitioner.name), "success")
            return redirect(url_for("setup.practitioners"), code=303)
    return render_template(
        "staff/setup/practitioner.html",
        clinic=clinic_or_503(),
        form=form,
        practitioner=practitioner,
    ), _status(form)


@blueprint.post("/practitioners/<int:practitioner_id>/archive")
@staff_only(Role.ADMIN)
def archive_practitioner(practitioner_id: int) -> ResponseReturnValue:
    """Archive a practitioner: patients can no longer book them; their bookings stand."""
    clinic = clinic_or_503()
    practitioner = _get_or_404(Practitioner, practitioner_id)
    operations.set_practitioner_active(db.session(), practitioner, False)
    coming = operations.upcoming_bookings(
        db.session(), Booking.practitioner_id, practitioner.id, now()
    )
    db.session.commit()
    flash(
        gettext("%(name)s is archived: patients can no longer book them.", name=practitioner.name),
        "success",
    )
    if coming:
        flash(
            _bookings_stand(coming, clinic, gettext("with %(name)s", name=practitioner.name)),
            "warning",
        )
    return redirect(url_for("setup.practitioners"), code=303)


@blueprint.post("/practitioners/<int:practitioner_id>/restore")
@staff_only(Role.ADMIN)
def restore_practitioner(practitioner_id: int) -> ResponseReturnValue:
    """Make an archived practitioner bookable again."""
    practitioner = _get_or_404(Practitioner, practitioner_id)
    operations.set_practitioner_active(db.session(), practitioner, True)
    db.session.commit()
    flash(gettext("%(name)s can be booked again.", name=practitioner.name), "success")
    return redirect(url_for("setup.practitioners"), code=303)


@blueprint.route("/practitioners/<int:practitioner_id>/hours", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
def hours(practitioner_id: int) -> ResponseReturnValue:
    """Replace a practitioner's weekly hours, every day in one form."""
    clinic = clinic_or_503()
    practitioner = _get_or_404(Practitioner, practitioner_id)
    form = HoursForm(
        data=_initial(
            {
                name.lower(): hours_text(
                    (h.start_time, h.end_time)
                    for h in practitioner.working_hours
                    if h.weekday == weekday
                )
                for weekday, name in enumerate(WEEKDAYS)
            }
        )
    )
    if form.validate_on_submit():
        before = weekly_hours(practitioner)
        try:
            operations.replace_working_hours(db.session(), practitioner, form.weekly())
        except SetupError as exc:
            _refuse(form, exc)
        else:
            offer_new_hours(
                db.session(), clinic=clinic, practitioner=practitioner, before=before, now=now()
            )
            outside = operations.bookings_outside_hours(db.session(), clinic, practitioner, now())
            db.session.commit()
            flash(gettext("%(name)s's weekly hours are saved.", name=practitioner.name), "success")
            if outside:
                flash(_bookings_stand(outside, clinic, gettext("outside the new hours")), "warning")
            return redirect(url_for("setup.hours", practitioner_id=practitioner.id), code=303)
    return render_template(
        "staff/setup/hours.html", clinic=clinic, form=form, practitioner=practitioner
    ), _status(form)


@dataclass(frozen=True)
class _Absence:
    """Time off with the live bookings inside it."""

    off: TimeOff
    clashes: list[Booking]


def _time_off_page(
    clinic: Clinic,
    practitioner: Practitioner,
    form: TimeOffForm,
    clashes: Sequence[Booking] = (),
    status: int = 200,
) -> ResponseReturnValue:
    coming = db.session.scalars(
        select(TimeOff)
        .where(TimeOff.practitioner_id == practitioner.id, TimeOff.end_at > now())
        .order_by(TimeOff.start_at)
    ).all()
    absences = [
        _Absence(
            off, operations.bookings_during(db.session(), practitioner, off.start_at, off.end_at)
        )
        for off in coming
    ]
    return render_template(
        "staff/setup/time_off.html",
        clinic=clinic,
        practitioner=practitioner,
        form=form,
        absences=absences,
        clashes=clashes,
    ), status


@blueprint.route("/practitioners/<int:practitioner_id>/time-off", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
def time_off(practitioner_id: int) -> ResponseReturnValue:
    """List a practitioner's coming time off and add more.

    When live bookings fall inside the new time off, nothing is saved until staff confirm;
    the bookings are never cancelled here.
    """
    clinic = clinic_or_503()
    practitioner = _get_or_404(Practitioner, practitioner_id)
    form = TimeOffForm(tz=clinic.tz)
    if not form.validate_on_submit():
        return _time_off_page(clinic, practitioner, form, status=_status(form))
    start, end = form.start(), form.end()
    clashes = operations.bookings_during(db.session(), practitioner, start, end)
    if clashes and not form.despite_bookings.data:
        return _time_off_page(clinic, practitioner, form, clashes=clashes, status=409)
    operations.add_time_off(
        db.session(), practitioner=practitioner, start=start, end=end, reason=form.reason.data
    )
    db.session.commit()
    flash(gettext("Time off for %(name)s is added.", name=practitioner.name), "success")
    if clashes:
        flash(_bookings_stand(clashes, clinic, gettext("inside it")), "warning")
    return redirect(url_for("setup.time_off", practitioner_id=practitioner.id), code=303)


@blueprint.post("/practitioners/<int:practitioner_id>/time-off/<int:time_off_id>/delete")
@staff_only(Role.ADMIN)
def remove_time_off(practitioner_id: int, time_off_id: int) -> ResponseReturnValue:
    """Remove time off; the practitioner's hours apply again."""
    off = _get_or_404(TimeOff, time_off_id)
    if off.practitioner_id != practitioner_id:
        abort(404)
    operations.remove_time_off(db.session(), off)
    offer_after_time_off(db.session(), clinic=clinic_or_503(), off=off, now=now())
    db.session.commit()
    flash(gettext("The time off is removed."), "success")
    return redirect(url_for("setup.time_off", practitioner_id=practitioner_id), code=303)


# --- Rooms ------------------------------------------------------------------------------------


def _rooms_page(
    form: RoomForm | None = None, problem: str | None = None, status: int = 200
) -> ResponseReturnValue:
    rows = db.session.scalars(select(Room).order_by(Room.active.desc(), Room.name)).all()
    return render_template(
        "staff/setup/rooms.html",
        clinic=clinic_or_503(),
        rooms=rows,
        used=operations.booking_counts(db.session(), Booking.room_id),
        form=form or RoomForm(formdata=None),
        kinds=operations.room_kinds(db.session()),
        problem=problem,
    ), status


@blueprint.get("/rooms")
@staff_only(Role.ADMIN)
def rooms() -> ResponseReturnValue:
    """List the rooms, in use ones first, with a form to add one."""
    return _rooms_page()


@blueprint.post("/rooms")
@staff_only(Role.ADMIN)
def add_room() -> ResponseReturnValue:
    """Add a room."""
    form = RoomForm()
    if not form.validate_on_submit():
        return _rooms_page(form=form, status=422)
    room = operations.add_room(db.session(), form.name.data, form.kind.data or "")
    db.session.commit()
    flash(gettext("%(room)s is added.", room=room.name), "success")
    return redirect(url_for("setup.rooms"), code=303)


@blueprint.route("/rooms/<int:room_id>", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
def room(room_id: int) -> ResponseReturnValue:
    """Rename a room or change its kind, saying which coming bookings now need another room."""
    clinic = clinic_or_503()
    room = _get_or_404(Room, room_id)
    form = RoomForm(data=_initial({"name": room.name, "kind": room.kind}))
    if form.validate_on_submit():
        operations.update_room(db.session(), room, name=form.name.data, kind=form.kind.data or "")
        misplaced = operations.bookings_in_other_kind(db.session(), room, now())
        db.session.commit()
        flash(gettext("%(room)s is saved.", room=room.name), "success")
        if misplaced:
            flash(
                _bookings_stand(
                    misplaced,
                    clinic,
                    gettext("in %(room)s for another kind of room", room=room.name),
                ),
                "warning",
            )
        _warn_of_missing_rooms()
        return redirect(url_for("setup.rooms"), code=303)
    return render_template(
        "staff/setup/room.html",
        clinic=clinic,
        form=form,
        room=room,
        kinds=operations.room_kinds(db.session()),
    ), _status(form)


@blueprint.post("/rooms/<int:room_id>/archive")
@staff_only(Role.ADMIN)
def archive_room(room_id: int) -> ResponseReturnValue:
    """Archive a room: new bookings no longer use it; its bookings stand."""
    room = _get_or_404(Room, room_id)
    operations.set_room_active(db.session(), room, False)
    left = db.session.scalar(select(func.count()).select_from(Room).where(Room.active.is_(True)))
    db.session.commit()
    flash(
        gettext("%(room)s is archived: new bookings no longer use it.", room=room.name), "success"
    )
    if not left:
        flash(gettext("No room is left in use, so nothing can be booked."), "warning")
    else:
        _warn_of_missing_rooms()
    return redirect(url_for("setup.rooms"), code=303)


@blueprint.post("/rooms/<int:room_id>/restore")
@staff_only(Role.ADMIN)
def restore_room(room_id: int) -> ResponseReturnValue:
    """Put an archived room back in use."""
    room = _get_or_404(Room, room_id)
    operations.set_room_active(db.session(), room, True)
    db.session.commit()
    flash(gettext("%(room)s is in use again.", room=room.name), "success")
    return redirect(url_for("setup.rooms"), code=303)


@blueprint.post("/rooms/<int:room_id>/delete")
@staff_only(Role.ADMIN)
def delete_room(room_id: int) -> ResponseReturnValue:
    """Delete a room that no booking refers to."""
    room = _get_or_404(Room, room_id)
    name = room.name
    try:
        operations.delete_room(db.session(), room)
    except SetupError as exc:
        db.session.rollback()
        return _rooms_page(problem=exc.message, status=409)
    db.session.commit()
    flash(gettext("%(name)s is deleted.", name=name), "success")
    return redirect(url_for("setup.rooms"), code=303)


# --- Checklists and the preview of patients' mail ----------------------------------------------


@dataclass(frozen=True)
class MailPreview:
    """One message as a patient would get it, or why it cannot be shown."""

    title: str
    subject: str = ""
    text: str = ""
    html: str = ""
    problem: str | None = None
    kind: str = ""


@dataclass(frozen=True)
class Sample:
    """The made-up visit the previews are about."""

    treatment: Treatment
    practitioner: Practitioner
    start: datetime
    made_up_practitioner: bool


def _sample(clinic: Clinic, treatment: Treatment) -> Sample:
    """The next time ``treatment`` could be booked, with the first practitioner who gives it."""
    givers = practitioners_for(db.session(), treatment)
    practitioner = givers[0] if givers else Practitioner(name="Your practitioner")
    start = None
    if givers:
        today = now().astimezone(clinic.tz).date()
        slots = find_slots(
            db.session(),
            clinic=clinic,
            treatment=treatment,
            practitioner=practitioner,
            first_day=today,
            last_day=today + PREVIEW_LOOKAHEAD,
            now=now(),
        )
        start = slots[0].start if slots else None
    if start is None:  # no free time: the next whole hour after the notice
        earliest = (now() + timedelta(minutes=clinic.min_notice_minutes)).astimezone(clinic.tz)
        hour = earliest.replace(minute=0, second=0, microsecond=0)
        start = hour if hour == earliest else hour + timedelta(hours=1)
    return Sample(treatment, practitioner, start, made_up_practitioner=not givers)


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    return "" if part is None else str(part.get_content())


def _previews(clinic: Clinic, sample: Sample) -> list[MailPreview]:
    """Write the checklist and the aftercare mail for ``sample`` as the dispatcher would."""
    titles = {
        NotificationKind.CHECKLIST: gettext("The preparation checklist"),
        NotificationKind.AFTERCARE: gettext("The aftercare advice"),
    }
    previews = []
    for kind, title in titles.items():
        letter = sample_letter(
            db.session(),
            kind=kind,
            clinic=clinic,
            treatment=sample.treatment,
            practitioner=sample.practitioner,
            start=sample.start,
            base_url=current_app.config["BASE_URL"],
        )
        try:
            message = compose(
                letter,
                mail_from=current_app.config["MAIL_FROM"],
                now=now(),
                message_id="<setup-preview@localhost>",
            )
        except (ValueError, MessageError) as exc:
            previews.append(
                MailPreview(
                    title,
                    problem=gettext("the message cannot be written (%(reason)s)", reason=exc),
                    kind=kind.value,
                )
            )
            continue
        previews.append(
            MailPreview(
                title,
                subject=str(message["Subject"]),
                text=_body(message, "plain"),
                html=_body(message, "html"),
                kind=kind.value,
            )
        )
    return previews


def _preview_treatment(requested: str | None) -> Treatment | None:
    """The treatment the clinic's checklist is previewed with: the one asked for, or the
    first bookable first visit (whose mail shows every section)."""
    if requested and requested.isdigit() and len(requested) < 10:
        chosen = db.session.get(Treatment, int(requested))
        if chosen is not None:
            return chosen
    return db.session.scalars(
        select(Treatment)
        .order_by(
            Treatment.active.desc(),
            Treatment.first_visit.desc(),
            Treatment.position,
            Treatment.id,
        )
        .limit(1)
    ).first()


def _checklist_page(
    clinic: Clinic, treatment: Treatment | None, action: str
) -> ResponseReturnValue:
    """Show and save the clinic's checklist (``treatment`` is ``None``) or a treatment's own."""
    own = operations.own_checklist(db.session(), clinic, treatment)
    form = ChecklistForm(data=_initial({section.value: "\n".join(own[section]) for section in own}))
    if form.validate_on_submit():
        try:
            for section, _ in form.sections():
                operations.replace_checklist(
                    db.session(),
                    clinic=clinic,
                    treatment=treatment,
                    section=section,
                    texts=form.items(section),
                )
        except SetupError as exc:
            _refuse(form, exc)
        else:
            db.session.commit()
            flash(gettext("The checklist is saved; the preview below shows it."), "success")
            return redirect(action, code=303)
    shown = treatment or _preview_treatment(request.args.get("treatment"))
    sample = _sample(clinic, shown) if shown is not None else None
    return render_template(
        "staff/setup/checklists.html",
        clinic=clinic,
        form=form,
        treatment=treatment,
        clinic_items=operations.own_checklist(db.session(), clinic, None),
        sections=list(ChecklistSection),
        action=action,
        sample=sample,
        previews=_previews(clinic, sample) if sample is not None else [],
        treatments=_all_treatments() if treatment is None else [],
    ), _status(form)


@blueprint.route("/checklists", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
def checklists() -> ResponseReturnValue:
    """Edit the clinic's checklists, with a preview of the mail for a chosen treatment."""
    return _checklist_page(clinic_or_503(), None, url_for("setup.checklists"))


@blueprint.get("/checklists/mail/<kind>")
@email_document
@staff_only(Role.ADMIN)
def checklist_mail(kind: str) -> ResponseReturnValue:
    """The HTML of one previewed mail (``?treatment=ID``), for the frame on a checklist page."""
    clinic = clinic_or_503()
    shown = _preview_treatment(request.args.get("treatment"))
    if shown is None:
        abort(404)
    for preview in _previews(clinic, _sample(clinic, shown)):
        if preview.kind == kind and preview.html:
            return preview.html
    abort(404)


@blueprint.route("/treatments/<int:treatment_id>/checklists", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
def treatment_checklists(treatment_id: int) -> ResponseReturnValue:
    """Edit a treatment's own checklists; an empty section uses the clinic's."""
    clinic = clinic_or_503()
    treatment = _get_or_404(Treatment, treatment_id)
    return _checklist_page(
        clinic, treatment, url_for("setup.treatment_checklists", treatment_id=treatment.id)
    )
