"""The patient's pages: pick a time, give details, then manage the booking from its link."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from itertools import groupby
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext, ngettext
from flask_wtf import FlaskForm
from sqlalchemy import select

from scheduler.audit import PATIENT, Actor
from scheduler.booking.availability import Slot
from scheduler.booking.courses import (
    Clash,
    CourseUnavailable,
    Instead,
    Repeat,
    book_course,
    cancel_rest_of_course,
    course_dates,
    move_rest_of_course,
    progress,
    rest_of_course,
)
from scheduler.booking.forms import BookingForm, CancelForm, RescheduleForm
from scheduler.booking.models import Booking
from scheduler.booking.operations import (
    BookingError,
    PatientDetails,
    SlotUnavailable,
    book_session,
    cancel_booking,
    find_slots,
    is_changeable,
    is_late_cancellation,
    pick_slot,
    reschedule_booking,
    rules_of,
)
from scheduler.calendars.export import booking_calendar
from scheduler.clinic.checklists import checklist_for
from scheduler.clinic.models import Clinic, Practitioner, Treatment
from scheduler.errors import unknown_booking
from scheduler.extensions import db
from scheduler.patients.forms import IntakeForm
from scheduler.patients.intake import IntakeError, record_intake
from scheduler.ratelimit import BOOKING, CHANGES, rate_limited
from scheduler.timeutil import parse_iso_datetime
from scheduler.web import clinic_or_503, now, token_shaped, uid_host

blueprint = Blueprint("booking", __name__)

DAYS_PER_PAGE = 7


@dataclass(frozen=True)
class Choice:
    """A treatment and a practitioner (``None``: anyone) read from the query string."""

    treatment: Treatment | None
    practitioner: Practitioner | None
    errors: Mapping[str, str]


def _read_id(args: Mapping[str, str], name: str) -> int | None:
    raw = args.get(name, "").strip()
    if not raw or raw == "any":
        return None
    # isdigit() alone admits digits such as "²" that int() refuses.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else -1


def read_choice(args: Mapping[str, str]) -> Choice:
    """Read ``service`` and ``practitioner`` from query arguments, explaining what is wrong."""
    errors: dict[str, str] = {}
    treatment = practitioner = None
    service_id = _read_id(args, "service")
    if service_id is None:
        errors["service"] = gettext("Please choose a treatment.")
    else:
        treatment = db.session.get(Treatment, service_id) if service_id > 0 else None
        if treatment is None or not treatment.active:
            errors["service"] = gettext(
                "That treatment is not offered; please choose one from the list."
            )
            treatment = None
    practitioner_id = _read_id(args, "practitioner")
    if practitioner_id is not None:
        practitioner = (
            db.session.get(Practitioner, practitioner_id) if practitioner_id > 0 else None
        )
        if practitioner is None or not practitioner.active:
            errors["practitioner"] = gettext(
                "That practitioner is not available; please choose another."
            )
            practitioner = None
        elif treatment is not None and treatment not in practitioner.treatments:
            errors["practitioner"] = gettext(
                "%(practitioner)s does not give %(treatment)s.",
                practitioner=practitioner.name,
                treatment=treatment.name,
            )
    return Choice(treatment, practitioner, errors)


def read_start(raw: str | None) -> datetime | None:
    """Parse the ``start`` argument; a ``+`` that arrived as a space is put back."""
    if not raw:
        return None
    try:
        return parse_iso_datetime(raw.replace(" ", "+"))
    except ValueError:
        return None


def _first_day(raw: str | None, today: date, horizon: timedelta) -> date:
    try:
        first = date.fromisoformat(raw) if raw else today
    except ValueError:
        first = today
    return min(max(first, today), today + horizon)


def _days_of_slots(clinic: Clinic, first: date, slots: list[Slot]) -> list[tuple[date, list[Slot]]]:
    by_day = {
        day: list(day_slots)
        for day, day_slots in groupby(slots, key=lambda s: s.start.astimezone(clinic.tz).date())
    }
    return [
        (first + timedelta(days=offset), by_day.get(first + timedelta(days=offset), []))
        for offset in range(DAYS_PER_PAGE)
    ]


def picker(
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner | None,
    raw_from: str | None,
    ignore: Booking | None = None,
    by_staff: bool = False,
) -> dict[str, object]:
    """Gather a week of free slots and the navigation around it, for the picker template."""
    moment = now()
    today = moment.astimezone(clinic.tz).date()
    horizon = rules_of(clinic, by_staff=by_staff).horizon
    first = _first_day(raw_from, today, horizon)
    last = first + timedelta(days=DAYS_PER_PAGE - 1)
    slots = find_slots(
        db.session(),
        clinic=clinic,
        treatment=treatment,
        practitioner=practitioner,
        first_day=first,
        last_day=last,
        now=moment,
        ignore=ignore,
        by_staff=by_staff,
    )
    previous = first - timedelta(days=DAYS_PER_PAGE)
    following = first + timedelta(days=DAYS_PER_PAGE)
    return {
        "days": _days_of_slots(clinic, first, slots),
        "previous_from": max(previous, today).isoformat() if first > today else None,
        "next_from": following.isoformat() if following <= today + horizon else None,
        "has_slots": bool(slots),
    }


@dataclass(frozen=True)
class Attempt:
    """What came of a details form: the booking made (the first session of a course), or the
    status with the nearby free times, or a course's clashing dates with theirs."""

    booking: Booking | None = None
    status: int = 200
    alternatives: list[Slot] = field(default_factory=list)
    clashes: list[Clash] = field(default_factory=list)


def read_instead(
    data: Mapping[str, str], clinic: Clinic, start: datetime, repeat: Repeat
) -> dict[datetime, Instead]:
    """Read the alternatives taken for a course's clashing dates.

    Each clashing date ``i`` is a group of radio buttons ``instead-i`` whose values are
    ``START|PRACTITIONER`` or ``skip``; anything unreadable counts as not chosen.
    """
    instead: dict[datetime, Instead] = {}
    for index, day in enumerate(course_dates(clinic, start, repeat)):
        raw = data.get(f"instead-{index}", "")
        if raw == "skip":
            instead[day] = Instead(None)
            continue
        raw_start, _, raw_practitioner = raw.partition("|")
        chosen = read_start(raw_start)
        practitioner_id = _read_id({"practitioner": raw_practitioner}, "practitioner")
        if chosen is None or practitioner_id is None or practitioner_id < 0:
            continue
        practitioner = db.session.get(Practitioner, practitioner_id)
        if practitioner is not None:
            instead[day] = Instead(chosen, practitioner)
    return instead


def book_from_form(
    form: BookingForm,
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner | None,
    start: datetime,
    actor: Actor,
) -> Attempt:
    """Book from a posted details form and commit, or say why not.

    Shown before posting, it says at once when the time has gone, before anyone types.
    """
    if form.validate_on_submit():
        asked: dict[str, Any] = {
            "clinic": clinic,
            "treatment": treatment,
            "practitioner": practitioner,
            "start": start,
            "patient": PatientDetails(form.full_name.data, form.email.data, form.phone.data or ""),
            "notes": form.notes.data or "",
            "now": now(),
            "uid_host": uid_host(),
            "actor": actor,
            "intake": form.answers() if treatment.first_visit else None,
        }
        try:
            if form.sessions.data > 1:
                repeat = Repeat(form.sessions.data, form.every_weeks.data)
                repeat = replace(repeat, instead=read_instead(request.form, clinic, start, repeat))
                booking = book_course(db.session(), repeat=repeat, **asked).sessions[0]
            else:
                booking = book_session(db.session(), **asked)
        except CourseUnavailable as exc:
            refuse(form, exc)
            return Attempt(status=409, clashes=exc.clashes)
        except BookingError as exc:
            return Attempt(None, *refuse(form, exc))
        db.session.commit()
        return Attempt(booking)
    if request.method == "POST":
        return Attempt(status=422)
    try:
        pick_slot(
            db.session(),
            clinic=clinic,
            treatment=treatment,
            practitioner=practitioner,
            start=start,
            now=now(),
            by_staff=actor.is_staff,
        )
    except BookingError as exc:
        return Attempt(None, *refuse(form, exc))
    return Attempt()


def course_context(
    form: BookingForm, clinic: Clinic, start: datetime, clashes: list[Clash]
) -> dict[str, object]:
    """What ``booking/_course.html`` shows: each clashing date with its number in the course,
    the practitioners' names, and the alternatives already taken for other dates (kept as
    hidden fields so they are not lost)."""
    if not clashes or form.sessions.data is None or form.sessions.data < 2:
        return {"clashes": [], "names": {}, "kept": {}}
    dates = course_dates(clinic, start, Repeat(form.sessions.data, form.every_weeks.data or 1))
    numbered = [(dates.index(clash.start), clash) for clash in clashes if clash.start in dates]
    asked = {f"instead-{index}" for index, _ in numbered}
    kept = {
        name: value
        for name, value in request.form.items()
        if name.startswith("instead-") and name not in asked
    }
    ids = {slot.practitioner_id for clash in clashes for slot in clash.alternatives}
    names = {
        p.id: p.name
        for p in db.session.scalars(select(Practitioner).where(Practitioner.id.in_(ids)))
    }
    return {"clashes": numbered, "names": names, "kept": kept}


def refuse(form: FlaskForm, error: BookingError) -> tuple[int, list[Slot]]:
    """Undo the unit of work and show why on the form; return the status and alternatives."""
    db.session.rollback()
    field = getattr(form, error.field or "", None)
    if field is not None and error.field not in ("start", "csrf_token"):
        field.errors = [*field.errors, error.message]
    else:
        form.form_errors.append(error.message)
    if isinstance(error, SlotUnavailable):
        return 409, error.alternatives
    return 422, []


@blueprint.get("/book")
def choose() -> ResponseReturnValue:
    """Choose a treatment and practitioner, then a free time from a week of days."""
    clinic = clinic_or_503()
    treatments = db.session.scalars(
        select(Treatment).where(Treatment.active.is_(True)).order_by(Treatment.position)
    ).all()
    practitioners = db.session.scalars(
        select(Practitioner).where(Practitioner.active.is_(True)).order_by(Practitioner.id)
    ).all()
    choice = read_choice(request.args)
    asked = "service" in request.args
    context: dict[str, object] = {
        "clinic": clinic,
        "treatments": treatments,
        "practitioners": practitioners,
        "choice": choice,
        "errors": choice.errors if asked else {},
    }
    if choice.treatment is not None and not choice.errors:
        context.update(
            picker(clinic, choice.treatment, choice.practitioner, request.args.get("from"))
        )
    status = 400 if asked and choice.errors else 200
    return render_template("booking/choose.html", **context), status


@blueprint.route("/book/confirm", methods=["GET", "POST"])
@rate_limited(BOOKING)
def confirm() -> ResponseReturnValue:
    """Show the chosen time and ask for the patient's details; ``POST`` books it."""
    clinic = clinic_or_503()
    choice = read_choice(request.args)
    start = read_start(request.args.get("start"))
    if choice.errors or choice.treatment is None or start is None:
        message = next(iter(choice.errors.values()), None) or gettext(
            "Please choose a time from the list of free times."
        )
        return render_template("booking/invalid.html", clinic=clinic, message=message), 400
    treatment = choice.treatment
    form = BookingForm()
    attempt = book_from_form(form, clinic, treatment, choice.practitioner, start, PATIENT)
    if attempt.booking is not None:
        if attempt.booking.awaiting_approval:
            flash(gettext("Your request is received: the clinic will confirm it by email."), "info")
        else:
            flash(gettext("Your session is booked. We look forward to seeing you."), "success")
        return redirect(url_for("booking.manage", token=attempt.booking.manage_token), 303)
    status, alternatives = attempt.status, attempt.alternatives
    return (
        render_template(
            "booking/confirm.html",
            clinic=clinic,
            treatment=treatment,
            practitioner=choice.practitioner,
            start=start,
            end=start + timedelta(minutes=treatment.duration_minutes),
            form=form,
            alternatives=alternatives,
            course=course_context(form, clinic, start, attempt.clashes),
        ),
        status,
    )


def _booking_or_404(token: str) -> Booking:
    if not token_shaped(token):
        raise unknown_booking()
    booking = db.session.scalars(select(Booking).where(Booking.manage_token == token)).first()
    if booking is None:
        raise unknown_booking()
    return booking


@blueprint.get("/b/<token>")
def manage(token: str) -> ResponseReturnValue:
    """Show a booking with its checklist and the ways to change it."""
    clinic = clinic_or_503()
    booking = _booking_or_404(token)
    checklist = checklist_for(db.session(), clinic, booking.treatment).before(booking.treatment)
    moment = now()
    return render_template(
        "booking/manage.html",
        clinic=clinic,
        booking=booking,
        checklist=checklist,
        changeable=is_changeable(booking, moment),
        course=progress(booking),
        rest=rest_of_course(booking, moment),
    )


@blueprint.get("/b/<token>.ics")
def ics(token: str) -> Response:
    """Download the booking as a calendar file."""
    clinic = clinic_or_503()
    booking = _booking_or_404(token)
    body = booking_calendar(
        clinic,
        booking,
        base_url=current_app.config["BASE_URL"],
        now=now(),
        checklist=checklist_for(db.session(), clinic, booking.treatment).before(booking.treatment),
    )
    return Response(
        body,
        mimetype="text/calendar",
        headers={"Content-Disposition": 'attachment; filename="acupuncture.ics"'},
    )


@blueprint.route("/b/<token>/reschedule", methods=["GET", "POST"])
@rate_limited(CHANGES)
def reschedule(token: str) -> ResponseReturnValue:
    """Pick a new time with the same practitioner, confirm it, and move the booking.

    With ``?rest=1`` a session of a course moves with every later one, by as many days and to
    the same new time of day.
    """
    clinic = clinic_or_503()
    booking = _booking_or_404(token)
    rest = request.args.get("rest") == "1" and booking.course_id is not None
    form = RescheduleForm()
    raw_start = form.start.data if request.method == "POST" else request.args.get("start")
    start = read_start(raw_start)
    status = 200
    alternatives: list[Slot] = []
    if form.validate_on_submit():
        if start is None:
            form.form_errors.append(gettext("Please choose a new time from the list."))
            status = 422
        else:
            try:
                if rest:
                    moved = move_rest_of_course(
                        db.session(), clinic=clinic, booking=booking, start=start, now=now()
                    )
                else:
                    moved = [
                        reschedule_booking(
                            db.session(), clinic=clinic, booking=booking, start=start, now=now()
                        )
                    ]
            except CourseUnavailable as exc:
                refuse(form, exc)
                form.form_errors.extend(clash.message for clash in exc.clashes)
                status = 409
            except BookingError as exc:
                status, alternatives = refuse(form, exc)
            else:
                db.session.commit()
                flash(
                    gettext("Your %(count)d sessions have been moved.", count=len(moved))
                    if len(moved) > 1
                    else gettext("Your booking has been moved."),
                    "success",
                )
                return redirect(url_for("booking.manage", token=token), 303)
    elif request.method == "POST":
        status = 422
    context: dict[str, object] = {
        "clinic": clinic,
        "booking": booking,
        "form": form,
        "start": start,
        "alternatives": alternatives,
        "changeable": is_changeable(booking, now()),
        "rest": rest_of_course(booking, now()) if rest else [],
    }
    if start is None or status != 200:
        context.update(
            picker(
                clinic,
                booking.treatment,
                booking.practitioner,
                request.args.get("from"),
                ignore=booking,
            )
        )
    if start is not None:
        form.start.data = start.isoformat()
    return render_template("booking/reschedule.html", **context), status


@blueprint.route("/b/<token>/cancel", methods=["GET", "POST"])
@rate_limited(CHANGES)
def cancel(token: str) -> ResponseReturnValue:
    """Ask for confirmation, then cancel; late cancellations are said to be late.

    With ``?rest=1`` a session of a course is cancelled with every later one.
    """
    clinic = clinic_or_503()
    booking = _booking_or_404(token)
    form = CancelForm()
    moment = now()
    rest = request.args.get("rest") == "1" and booking.course_id is not None
    sessions = rest_of_course(booking, moment) if rest else [booking]
    status = 200
    if form.validate_on_submit():
        try:
            if rest:
                cancel_rest_of_course(
                    db.session(),
                    clinic=clinic,
                    booking=booking,
                    reason=form.reason.data,
                    now=moment,
                )
            else:
                cancel_booking(
                    db.session(),
                    clinic=clinic,
                    booking=booking,
                    reason=form.reason.data,
                    now=moment,
                )
        except BookingError as exc:
            status, _ = refuse(form, exc)
        else:
            db.session.commit()
            count = len(sessions)
            if booking.late_cancellation:
                flash(
                    ngettext(
                        "Your booking is cancelled. As it was less than %(hours)d hours before "
                        "the visit, it is recorded as a late cancellation.",
                        "Your %(num)d sessions are cancelled. As it was less than %(hours)d hours "
                        "before the visit, it is recorded as a late cancellation.",
                        count,
                        hours=clinic.late_cancel_hours,
                    ),
                    "warning",
                )
            else:
                flash(
                    ngettext(
                        "Your booking is cancelled.", "Your %(num)d sessions are cancelled.", count
                    ),
                    "success",
                )
            return redirect(url_for("booking.manage", token=token), 303)
    elif request.method == "POST":
        status = 422
    return (
        render_template(
            "booking/cancel.html",
            clinic=clinic,
            booking=booking,
            form=form,
            late=is_late_cancellation(clinic, booking, moment),
            changeable=is_changeable(booking, moment),
            sessions=sessions,
        ),
        status,
    )


@blueprint.route("/b/<token>/intake", methods=["GET", "POST"])
@rate_limited(CHANGES)
def intake(token: str) -> ResponseReturnValue:
    """Let the patient add to their health answers before the visit (consent is asked again)."""
    clinic = clinic_or_503()
    booking = _booking_or_404(token)
    changeable = is_changeable(booking, now())
    form = IntakeForm()
    status = 200
    if changeable and form.validate_on_submit():
        try:
            record_intake(
                db.session(),
                patient=booking.patient,
                answers=form.answers(),
                actor=PATIENT,
                now=now(),
            )
        except IntakeError as exc:
            db.session.rollback()
            getattr(form, exc.field).errors.append(exc.message)
            status = 422
        else:
            db.session.commit()
            flash(gettext("Thank you: your answers are updated."), "success")
            return redirect(url_for("booking.manage", token=token), 303)
    elif form.is_submitted():
        status = 422 if changeable else 409
    # The form starts empty: the answers on file are never shown here, since whoever books
    # with a patient's email address holds a link like this one.
    return render_template(
        "booking/intake.html", clinic=clinic, booking=booking, form=form, changeable=changeable
    ), status
