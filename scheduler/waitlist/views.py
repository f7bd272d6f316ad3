"""The waitlist's pages: join it, see or leave one's place, and book a freed time offered."""

from __future__ import annotations

from datetime import date, timedelta

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy import select

from scheduler.booking.forms import BookingForm
from scheduler.booking.operations import (
    BookingError,
    PatientDetails,
    SlotUnavailable,
    practitioners_for,
    rules_of,
)
from scheduler.booking.views import read_choice, refuse
from scheduler.clinic.models import Clinic, Practitioner, Treatment
from scheduler.errors import unknown_waitlist_link
from scheduler.extensions import db
from scheduler.ratelimit import BOOKING, CHANGES, WAITLIST, rate_limited
from scheduler.waitlist.forms import JoinForm, LeaveForm
from scheduler.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer
from scheduler.waitlist.operations import (
    OFFER_LIFETIME,
    OfferClosed,
    OfferState,
    WaitlistError,
    book_offer,
    bookable_days,
    describe_day,
    is_over,
    join_waitlist,
    leave_waitlist,
    offer_state,
)
from scheduler.web import clinic_or_503, now, token_shaped, uid_host

blueprint = Blueprint("waitlist", __name__)

# How many days ahead the join form offers to tick.
JOIN_DAYS = 14

# The status each state of an offer's page answers with.
OFFER_STATUS = {
    OfferState.OPEN: 200,
    OfferState.TAKEN: 200,
    OfferState.GONE: 409,
    OfferState.EXPIRED: 410,
    OfferState.WITHDRAWN: 410,
}


def day_choices(
    clinic: Clinic, treatment: Treatment, practitioner: Practitioner | None
) -> list[date]:
    """The days the join form offers: those of the next two weeks that can still be booked,
    when someone who gives ``treatment`` (or ``practitioner``) works."""
    moment = now()
    first, last = bookable_days(clinic, moment)
    earliest = (moment + rules_of(clinic).min_notice).astimezone(clinic.tz)
    givers = (
        [practitioner] if practitioner is not None else practitioners_for(db.session(), treatment)
    )
    hours = [hours for giver in givers for hours in giver.working_hours]

    def works(day: date) -> bool:
        return any(
            h.weekday == day.weekday() and (day > earliest.date() or h.end_time > earliest.time())
            for h in hours
        )

    days = (first + timedelta(days=offset) for offset in range(JOIN_DAYS))
    return [day for day in days if day <= last and works(day)]


@blueprint.route("/waitlist", methods=["GET", "POST"])
@rate_limited(WAITLIST)
def join() -> ResponseReturnValue:
    """Ask who is waiting and on which days; ``POST`` puts them on the list."""
    clinic = clinic_or_503()
    choice = read_choice(request.args)
    if choice.errors or choice.treatment is None:
        message = next(iter(choice.errors.values()), gettext("Please choose a treatment."))
        status = 422 if request.method == "POST" else 400
        return render_template("waitlist/invalid.html", clinic=clinic, message=message), status
    treatment, practitioner = choice.treatment, choice.practitioner
    form = JoinForm()
    form.days.choices = [
        (day.isoformat(), describe_day(day)) for day in day_choices(clinic, treatment, practitioner)
    ]
    status = 200
    if form.validate_on_submit():
        days = form.chosen_days()
        status = 422
        if days is not None:
            try:
                entry = join_waitlist(
                    db.session(),
                    clinic=clinic,
                    treatment=treatment,
                    practitioner=practitioner,
                    days=days,
                    patient=PatientDetails(
                        form.full_name.data, form.email.data, form.phone.data or ""
                    ),
                    now=now(),
                )
            except WaitlistError as exc:
                db.session.rollback()
                target = form.days if exc.field == "dates" else None
                if target is not None:
                    target.errors = [*target.errors, exc.message]
                else:
                    form.form_errors.append(exc.message)
            else:
                db.session.commit()
                flash(
                    gettext("You are on the waitlist. We will email you when a time comes free."),
                    "success",
                )
                return redirect(url_for("waitlist.entry", token=entry.token), 303)
    elif request.method == "POST":
        status = 422
    return render_template(
        "waitlist/join.html",
        clinic=clinic,
        treatment=treatment,
        practitioner=practitioner,
        form=form,
        lifetime_hours=int(OFFER_LIFETIME.total_seconds() // 3600),
    ), status


def _entry_or_404(token: str) -> WaitlistEntry:
    if not token_shaped(token):
        raise unknown_waitlist_link()
    entry = db.session.scalars(select(WaitlistEntry).where(WaitlistEntry.token == token)).first()
    if entry is None:
        raise unknown_waitlist_link()
    return entry


def _entry_page(entry: WaitlistEntry, form: LeaveForm, status: int = 200) -> ResponseReturnValue:
    clinic = clinic_or_503()
    moment = now()
    first, _ = bookable_days(clinic, moment)
    booked = next((offer for offer in entry.offers if offer.status is OfferStatus.TAKEN), None)
    return render_template(
        "waitlist/entry.html",
        clinic=clinic,
        entry=entry,
        form=form,
        first_day=first,
        over=is_over(entry, clinic, moment),
        booked=booked,
        open_offers=[offer for offer in entry.offers if offer.is_open(moment)],
        describe_day=describe_day,
    ), status


@blueprint.get("/waitlist/<token>")
def entry(token: str) -> ResponseReturnValue:
    """Show the patient's place on the waitlist: the days, offers open now, and a way out."""
    return _entry_page(_entry_or_404(token), LeaveForm())


@blueprint.post("/waitlist/<token>/leave")
@rate_limited(CHANGES)
def leave(token: str) -> ResponseReturnValue:
    """Take the patient off the waitlist."""
    entry = _entry_or_404(token)
    form = LeaveForm()
    if not form.validate_on_submit():
        return _entry_page(entry, form, 422)
    try:
        leave_waitlist(db.session(), entry=entry, now=now())
    except WaitlistError as exc:
        db.session.rollback()
        form.form_errors.append(exc.message)
        return _entry_page(entry, form, 409)
    db.session.commit()
    flash(gettext("You have left the waitlist. We will not write about it again."), "success")
    return redirect(url_for("waitlist.entry", token=token), 303)


def _offer_or_404(token: str) -> WaitlistOffer:
    if not token_shaped(token):
        raise unknown_waitlist_link()
    offer = db.session.scalars(select(WaitlistOffer).where(WaitlistOffer.token == token)).first()
    if offer is None:
        raise unknown_waitlist_link()
    return offer


@blueprint.route("/w/<token>", methods=["GET", "POST"])
@rate_limited(BOOKING)
def offer(token: str) -> ResponseReturnValue:
    """Show a freed time offered to a waiting patient and, while it is open, book it."""
    clinic = clinic_or_503()
    offer = _offer_or_404(token)
    moment = now()
    state = offer_state(db.session(), clinic, offer, moment)
    if state is OfferState.NOT_YET:
        raise unknown_waitlist_link()
    entry = offer.entry
    form = BookingForm()
    if request.method == "GET":
        patient = entry.patient
        form.full_name.data, form.email.data = patient.name, patient.email
        form.phone.data = patient.phone
    status = OFFER_STATUS[state]
    if state is OfferState.OPEN and form.validate_on_submit():
        try:
            booking = book_offer(
                db.session(),
                clinic=clinic,
                offer=offer,
                patient=PatientDetails(form.full_name.data, form.email.data, form.phone.data or ""),
                notes=form.notes.data or "",
                intake=form.answers() if entry.treatment.first_visit else None,
                now=moment,
                uid_host=uid_host(),
            )
        except SlotUnavailable:
            db.session.rollback()
            state = OfferState.GONE
            status = OFFER_STATUS[state]
        except OfferClosed as exc:
            db.session.rollback()
            state = exc.state
            status = OFFER_STATUS[state]
        except BookingError as exc:
            status, _ = refuse(form, exc)
        else:
            db.session.commit()
            flash(gettext("The time is yours: your session is booked."), "success")
            return redirect(url_for("booking.manage", token=booking.manage_token), 303)
    elif state is OfferState.OPEN and request.method == "POST":
        status = 422
    return render_template(
        "waitlist/offer.html",
        clinic=clinic,
        offer=offer,
        entry=entry,
        treatment=entry.treatment,
        state=state.value,
        form=form,
        waiting=entry.status is EntryStatus.WAITING and not is_over(entry, clinic, moment),
    ), status
