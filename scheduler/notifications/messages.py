"""The messages themselves: rendered at send time from the booking as it is then.

Every message is plain text plus HTML from the templates under ``templates/mail/``. Invites
(confirmation and update: METHOD:REQUEST; cancellation: METHOD:CANCEL) carry the calendar file
twice, as calendar clients expect: as a ``text/calendar; method=…`` alternative and attached as
``invite.ics``. Headers are set through :class:`~email.message.EmailMessage`, whose policy
refuses line breaks in a header, after names and subjects are reduced to one clean line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from flask_babel import gettext as _
from sqlalchemy.orm import Session

from scheduler.booking.courses import follow_up_for, progress
from scheduler.booking.models import Booking, BookingStatus
from scheduler.calendars.export import Method, booking_calendar, clean_text, manage_url
from scheduler.clinic.checklists import Checklist, checklist_for
from scheduler.clinic.models import Clinic, Practitioner, Treatment
from scheduler.i18n import format_local, greeting, in_mail_language
from scheduler.notifications.envelope import write_mail
from scheduler.notifications.models import Notification, NotificationKind
from scheduler.patients.models import Patient
from scheduler.staff.notices import compose_notice
from scheduler.waitlist.messages import compose_waitlist_mail

INVITE_METHODS = {
    NotificationKind.CONFIRMATION: Method.REQUEST,
    NotificationKind.UPDATE: Method.REQUEST,
    NotificationKind.CANCELLATION: Method.CANCEL,
}


@dataclass(frozen=True)
class Letter:
    """Everything a message says, gathered from the database before it is written."""

    notification: Notification
    clinic: Clinic
    booking: Booking
    items: tuple[str, ...]  # the checklist before a visit, the aftercare after it
    next_treatment: Treatment | None  # what the aftercare offers to book next
    base_url: str
    next_session: Booking | None = None  # the aftercare's link to the course's next session


def next_treatment(session: Session, booking: Booking) -> Treatment | None:
    """Return what to book after ``booking``: the same treatment, or a follow-up after a
    first visit (the first one the same practitioner gives)."""
    following = follow_up_for(session, booking.treatment, booking.practitioner)
    return following if following is not None and following.active else None


def gather(
    session: Session,
    notification: Notification,
    clinic: Clinic,
    base_url: str,
    *,
    checklists: dict[int | None, Checklist] | None = None,
) -> Letter:
    """Read what ``notification`` needs to be written; ``checklists`` keeps the checklists
    read, by treatment, for the next message of a batch."""
    booking = notification.booking
    if booking is None:
        raise ValueError("the message is not about a booking")
    if checklists is None:
        checklist = checklist_for(session, clinic, booking.treatment)
    else:
        key = booking.treatment.id
        if key not in checklists:
            checklists[key] = checklist_for(session, clinic, booking.treatment)
        checklist = checklists[key]
    if notification.kind is NotificationKind.AFTERCARE:
        items, following = checklist.aftercare, next_treatment(session, booking)
    else:
        items, following = checklist.before(booking.treatment), None
    return Letter(
        notification, clinic, booking, items, following, base_url, next_in_course(booking)
    )


def next_in_course(booking: Booking) -> Booking | None:
    """Return the next session of ``booking``'s course still to come, if it is in one."""
    if booking.course is None:
        return None
    later = (
        s
        for s in booking.course.sessions
        if s.start_at > booking.start_at and s.status is BookingStatus.CONFIRMED
    )
    return next(later, None)


SAMPLE_PATIENT = ("Alex Sample", "alex.sample@example.com")
# Stands in for a booking's secret in the sample's links, which lead nowhere.
SAMPLE_LINK = "sample"


def sample_letter(
    session: Session,
    *,
    kind: NotificationKind,
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner,
    start: datetime,
    base_url: str,
) -> Letter:
    """Gather a ``kind`` letter about a sample booking, so staff see a message as patients will.

    The booking, its patient and its notification are made up and never saved: nothing is
    added to ``session``. The letter goes through :func:`compose` like any other.
    """
    name, email = SAMPLE_PATIENT
    booking = Booking(
        treatment=treatment,
        treatment_id=treatment.id,
        practitioner=practitioner,
        practitioner_id=practitioner.id,
        patient=Patient(name=name, email=email),
        given_name=name,
        start_at=start,
        end_at=start + timedelta(minutes=treatment.duration_minutes),
        blocked_until=start
        + timedelta(minutes=treatment.duration_minutes + treatment.buffer_minutes),
        status=BookingStatus.CONFIRMED,
        manage_token=SAMPLE_LINK,
        sequence=0,
    )
    return gather(session, Notification(kind=kind, booking=booking), clinic, base_url)


def _subject(letter: Letter) -> str:
    booking, tz = letter.booking, letter.clinic.tz
    when = format_local(booking.start_at, tz)
    treatment = booking.treatment.name
    kind = letter.notification.kind
    if kind is NotificationKind.CONFIRMATION and booking.awaiting_approval:
        subject = _("Requested: %(treatment)s on %(when)s", treatment=treatment, when=when)
    elif kind is NotificationKind.CONFIRMATION:
        subject = _("Booked: %(treatment)s on %(when)s", treatment=treatment, when=when)
    elif kind is NotificationKind.CHECKLIST:
        subject = _("Preparing for your visit on %(when)s", when=when)
    elif kind is NotificationKind.UPDATE:
        subject = _("Moved: %(treatment)s is now on %(when)s", treatment=treatment, when=when)
    elif kind is NotificationKind.CANCELLATION and booking.declined_at is not None:
        subject = _("Request declined: %(treatment)s on %(when)s", treatment=treatment, when=when)
    elif kind is NotificationKind.CANCELLATION:
        subject = _("Cancelled: %(treatment)s on %(when)s", treatment=treatment, when=when)
    elif kind is NotificationKind.AFTERCARE:
        subject = _("After your %(treatment)s today", treatment=treatment.lower())
    else:
        raise ValueError(f"a booking has no {kind.value} message")
    return clean_text(subject)


def book_url(letter: Letter, treatment: Treatment | None) -> str:
    """The booking page, for ``treatment`` with the same practitioner when there is one."""
    if treatment is None:
        return f"{letter.base_url}/book"
    return (
        f"{letter.base_url}/book?service={treatment.id}"
        f"&practitioner={letter.booking.practitioner_id}"
    )


def compose(letter: Letter, *, mail_from: str, now: datetime, message_id: str) -> EmailMessage:
    """Write the message for ``letter``, in the language of patient mail."""
    with in_mail_language():
        return _compose(letter, mail_from=mail_from, now=now, message_id=message_id)


def _compose(letter: Letter, *, mail_from: str, now: datetime, message_id: str) -> EmailMessage:
    notification, clinic, booking = letter.notification, letter.clinic, letter.booking
    context = {
        "kind": notification.kind.value,
        "clinic": clinic,
        "booking": booking,
        "patient_name": clean_text(booking.patient.name) or "there",
        "greeting": greeting(clean_text(booking.patient.name)),
        "items": letter.items,
        "first_visit": booking.treatment.first_visit,
        "manage_url": manage_url(letter.base_url, booking),
        "book_again_url": book_url(letter, booking.treatment),
        "next_url": book_url(letter, letter.next_treatment),
        "next_treatment": letter.next_treatment,
        "course": progress(booking),
        "next_session": letter.next_session,
        "next_session_url": letter.next_session
        and manage_url(letter.base_url, letter.next_session),
    }
    message = write_mail(
        notification.kind,
        clinic=clinic,
        to=(booking.patient.name, booking.patient.email),
        subject=_subject(letter),
        context=context,
        mail_from=mail_from,
        now=now,
        message_id=message_id,
    )
    method = INVITE_METHODS.get(notification.kind)
    if method is not None:
        invite = booking_calendar(
            clinic,
            booking,
            base_url=letter.base_url,
            now=now,
            method=method,
            checklist=letter.items if method is Method.REQUEST else (),
        ).decode()
        message.add_alternative(invite, subtype="calendar", params={"method": method.value})
        message.add_attachment(
            invite.encode(),
            maintype="application",
            subtype="ics",
            filename="invite.ics",
        )
    return message


def write_message(
    session: Session,
    notification: Notification,
    clinic: Clinic,
    *,
    base_url: str,
    mail_from: str,
    now: datetime,
    message_id: str,
    checklists: dict[int | None, Checklist] | None = None,
) -> EmailMessage:
    """Write ``notification``'s message as it would go out now, about a booking, an offer or
    a staff account (``checklists``: see :func:`gather`)."""
    if notification.kind is NotificationKind.ACCOUNT:
        return compose_notice(
            notification,
            clinic,
            base_url=base_url,
            mail_from=mail_from,
            now=now,
            message_id=message_id,
        )
    if notification.waitlist_offer is not None:
        return compose_waitlist_mail(
            notification.kind,
            notification.waitlist_offer,
            clinic,
            base_url=base_url,
            mail_from=mail_from,
            now=now,
            message_id=message_id,
        )
    letter = gather(session, notification, clinic, base_url, checklists=checklists)
    return compose(letter, mail_from=mail_from, now=now, message_id=message_id)
