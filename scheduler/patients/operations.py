"""Finding patients, correcting their details, exporting and erasing what is held about them.

Like the booking operations these take the session and everything else as arguments, flush,
and raise a :class:`PatientError` a person can act on; the caller commits. Each change is
written to the audit trail in the same transaction.

Where a practitioner is looking, ``practitioner_ids`` names the practitioners whose bookings
they may see (``None``: everyone's), and only patients and bookings with those are returned.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import gettext, ngettext
from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from scheduler.audit import Actor, AuditAction, AuditEvent, Detail, Labels, record, trail
from scheduler.booking.models import Booking, BookingStatus
from scheduler.i18n import N_
from scheduler.notifications.models import (
    OPEN_STATUSES,
    Notification,
)
from scheduler.notifications.operations import skip
from scheduler.patients.models import Patient
from scheduler.waitlist.models import EntryStatus, WaitlistEntry
from scheduler.waitlist.operations import leave_waitlist
from scheduler.webhooks.operations import forget_patient

PAGE_SIZE = 50
ERASED_NAME = "Erased patient"
ERASED_DOMAIN = "erased.invalid"
ERASED_REASON = "patient erased"
# Bookings that still hold a time the patient is expected to come for.
UPCOMING_STATUSES = (BookingStatus.CONFIRMED, BookingStatus.ARRIVED)
# Phone numbers are typed with spaces, dashes, dots and brackets; search ignores them.
_PHONE_PUNCTUATION = " -.()"
_MIN_PHONE_DIGITS = 3


class PatientError(Exception):
    """A patient step that cannot go ahead, with a message for the person asking."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ContactDetails:
    """A patient's details as staff typed them."""

    name: str
    email: str
    phone: str = ""


@dataclass(frozen=True)
class Counts:
    """What came of a patient's bookings."""

    completed: int = 0
    no_shows: int = 0
    late_cancellations: int = 0


@dataclass(frozen=True)
class PatientRow:
    """One patient in the list: their next visit and how their bookings went."""

    patient: Patient
    next_visit: datetime | None
    counts: Counts


@dataclass(frozen=True)
class PatientRecord:
    """What a patient's page shows."""

    patient: Patient
    upcoming: list[Booking]
    past: list[Booking]
    counts: Counts
    trail: list[AuditEvent]


def erased_email(patient_id: int) -> str:
    """Return the placeholder address an erased patient keeps (unique, and undeliverable)."""
    return f"erased-{patient_id}@{ERASED_DOMAIN}"


def _upcoming(now: datetime) -> ColumnElement[bool]:
    return and_(Booking.status.in_(UPCOMING_STATUSES), Booking.end_at > now)


def _in_scope(practitioner_ids: Collection[int] | None) -> ColumnElement[bool]:
    """Restrict bookings to the given practitioners' (no restriction for ``None``)."""
    if practitioner_ids is None:
        return true()
    return Booking.practitioner_id.in_(list(practitioner_ids))


# --- Reading ----------------------------------------------------------------------------------


def patient_matches(query: str) -> ColumnElement[bool]:
    """Match patients whose name, email or phone contains ``query``, in any case.

    A query with digits also matches phone numbers typed with other spacing.
    """
    # No stored detail holds a NUL, and PostgreSQL answers one with an error, not a miss.
    query = query.replace("\x00", "")
    matches = or_(
        Patient.name.icontains(query, autoescape=True),
        Patient.email.icontains(query, autoescape=True),
        Patient.phone.icontains(query, autoescape=True),
    )
    digits = re.sub(r"\D", "", query)
    if len(digits) >= _MIN_PHONE_DIGITS:
        bare_phone: ColumnElement[str] = Patient.phone.expression
        for mark in _PHONE_PUNCTUATION:
            bare_phone = func.replace(bare_phone, mark, "")
        matches = or_(matches, bare_phone.contains(digits, autoescape=True))
    return matches


def search_patients(
    session: Session,
    *,
    query: str,
    practitioner_ids: Collection[int] | None,
    page: int,
    now: datetime,
) -> tuple[list[PatientRow], bool]:
    """Return a page of patients whose name, email or phone contains ``query``, any case.

    A query with digits also matches phone numbers typed with other spacing. Patients are in
    name order, erased ones last; the second value tells whether another page follows.
    """
    statement = (
        _matching(query, practitioner_ids)
        .order_by(Patient.erased_at.is_not(None), func.lower(Patient.name), Patient.id)
        .offset((max(page, 1) - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE + 1)
    )
    patients = list(session.scalars(statement))
    more = len(patients) > PAGE_SIZE
    return _rows(session, patients[:PAGE_SIZE], practitioner_ids, now), more


def patients_after(
    session: Session,
    *,
    query: str,
    practitioner_ids: Collection[int] | None,
    after: int | None,
    limit: int,
    now: datetime,
) -> tuple[list[PatientRow], bool]:
    """Return up to ``limit`` patients matching ``query`` (as :func:`search_patients` does) in
    the order they were added, from the one after patient ``after``: for paging by cursor,
    where a patient added meanwhile comes at the end and none is missed or repeated.

    The second value tells whether more follow.
    """
    statement = _matching(query, practitioner_ids)
    if after is not None:
        statement = statement.where(Patient.id > after)
    patients = list(session.scalars(statement.order_by(Patient.id).limit(limit + 1)))
    return _rows(session, patients[:limit], practitioner_ids, now), len(patients) > limit


def _matching(query: str, practitioner_ids: Collection[int] | None) -> Select[Patient]:
    """Select the patients matching ``query`` among those the practitioners have seen."""
    statement = select(Patient)
    query = query.strip()
    if query:
        statement = statement.where(patient_matches(query))
    if practitioner_ids is not None:
        statement = statement.where(
            Patient.id.in_(select(Booking.patient_id).where(_in_scope(practitioner_ids)))
        )
    return statement


def _rows(
    session: Session,
    patients: Sequence[Patient],
    practitioner_ids: Collection[int] | None,
    now: datetime,
) -> list[PatientRow]:
    summaries = _summaries(session, [p.id for p in patients], practitioner_ids, now)
    return [PatientRow(p, *summaries.get(p.id, (None, Counts()))) for p in patients]


def _summaries(
    session: Session,
    patient_ids: Sequence[int],
    practitioner_ids: Collection[int] | None,
    now: datetime,
) -> dict[int, tuple[datetime | None, Counts]]:
    """Return each patient's next visit and counts, in one query for the whole page."""
    if not patient_ids:
        return {}
    late = and_(Booking.status == BookingStatus.CANCELLED, Booking.late_cancellation.is_(True))
    statement = (
        select(
            Booking.patient_id,
            func.min(case((_upcoming(now), Booking.start_at))),
            func.count(case((Booking.status == BookingStatus.COMPLETED, 1))),
            func.count(case((Booking.status == BookingStatus.NO_SHOW, 1))),
            func.count(case((late, 1))),
        )
        .where(Booking.patient_id.in_(patient_ids), _in_scope(practitioner_ids))
        .group_by(Booking.patient_id)
    )
    return {
        patient_id: (next_visit, Counts(completed, no_shows, late_cancellations))
        for patient_id, next_visit, completed, no_shows, late_cancellations in session.execute(
            statement
        )
    }


def visible_patient(
    session: Session, patient_id: int, practitioner_ids: Collection[int] | None
) -> Patient | None:
    """Return the patient, if they exist and have a booking with one of the practitioners."""
    patient = session.get(Patient, patient_id)
    if patient is None or practitioner_ids is None:
        return patient
    seen = session.scalar(
        select(Booking.id)
        .where(Booking.patient_id == patient_id, _in_scope(practitioner_ids))
        .limit(1)
    )
    return patient if seen is not None else None


def _bookings_of(
    session: Session, patient: Patient, practitioner_ids: Collection[int] | None = None
) -> list[Booking]:
    statement = (
        select(Booking)
        .options(
            selectinload(Booking.treatment),
            selectinload(Booking.practitioner),
            selectinload(Booking.room),
        )
        .where(Booking.patient_id == patient.id, _in_scope(practitioner_ids))
        .order_by(Booking.start_at, Booking.id)
    )
    return list(session.scalars(statement))


def patient_record(
    session: Session,
    patient: Patient,
    *,
    practitioner_ids: Collection[int] | None,
    now: datetime,
) -> PatientRecord:
    """Gather a patient's visits, counts and audit trail, as far as the viewer may see them.

    A practitioner sees only the bookings with them, and only the entries of the trail about
    those bookings or about the patient as a whole.
    """
    bookings = _bookings_of(session, patient, practitioner_ids)
    upcoming = [b for b in bookings if b.status in UPCOMING_STATUSES and b.end_at > now]
    past = [b for b in reversed(bookings) if b not in upcoming]
    counts = Counts(
        completed=sum(b.status is BookingStatus.COMPLETED for b in bookings),
        no_shows=sum(b.status is BookingStatus.NO_SHOW for b in bookings),
        late_cancellations=sum(
            b.status is BookingStatus.CANCELLED and b.late_cancellation for b in bookings
        ),
    )
    events = trail(session, patient_id=patient.id)
    if practitioner_ids is not None:
        mine = {b.id for b in bookings}
        events = [e for e in events if e.booking_id is None or e.booking_id in mine]
    return PatientRecord(patient, upcoming, past, counts, events)


# --- Changing ---------------------------------------------------------------------------------


def _taken_message(email: str) -> str:
    return gettext(
        "Another patient already has %(email)s. If they are the same person, "
        "keep one record and correct the other's email.",
        email=email,
    )


def update_details(
    session: Session, *, patient: Patient, details: ContactDetails, actor: Actor, now: datetime
) -> list[str]:
    """Correct a patient's name, email and phone; return the names of the fields changed.

    The email is stored lower-cased and must be no other patient's. The audit trail names the
    fields changed, never their old or new values.
    """
    if patient.erased_at is not None:
        raise PatientError(gettext("This patient's details were erased; they cannot be edited."))
    name = details.name.strip()
    email = details.email.strip().lower()
    phone = details.phone.strip()
    if not name:
        raise PatientError(gettext("Please enter the patient's name."), field="name")
    if email.endswith("@" + ERASED_DOMAIN):
        raise PatientError(gettext("That address is kept for erased patients."), field="email")
    wanted = {"name": name, "email": email, "phone": phone}
    changed = [field for field, value in wanted.items() if getattr(patient, field) != value]
    if not changed:
        return []
    if "email" in changed:
        other = session.scalar(
            select(Patient.id).where(Patient.email == email, Patient.id != patient.id)
        )
        if other is not None:
            raise PatientError(_taken_message(email), field="email")
    try:
        with session.begin_nested():
            for field in changed:
                setattr(patient, field, wanted[field])
            session.flush()
    except IntegrityError:
        # Someone else gave another patient this address since the check above.
        raise PatientError(_taken_message(email), field="email") from None
    record(
        session,
        actor=actor,
        action=AuditAction.PATIENT_UPDATED,
        now=now,
        patient_id=patient.id,
        detail=Detail(N_("changed %(fields)s"), {"fields": Labels(tuple(changed))}),
    )
    session.flush()
    return changed


def _iso(moment: datetime | None, tz: ZoneInfo) -> str | None:
    return moment.astimezone(tz).isoformat() if moment is not None else None


def export_patient(
    session: Session,
    *,
    patient: Patient,
    tz: ZoneInfo,
    actor: Actor,
    now: datetime,
    with_health: bool = True,
) -> dict[str, Any]:
    """Record the export and return everything held about the patient, ready for JSON.

    Times are ISO 8601 in the clinic's zone, with their offset. The export's own entry is in
    the trail it contains. Without ``with_health`` the health answers are left out, saying
    only that they are on file (for staff who may not read them).
    """
    record(
        session,
        actor=actor,
        action=AuditAction.PATIENT_EXPORTED,
        now=now,
        patient_id=patient.id,
    )
    session.flush()
    bookings = _bookings_of(session, patient)
    entries = _waitlist_of(session, patient)
    offer_ids = [offer.id for entry in entries for offer in entry.offers]
    notifications = session.scalars(
        select(Notification)
        .where(
            or_(
                Notification.booking_id.in_([b.id for b in bookings]),
                Notification.waitlist_offer_id.in_(offer_ids),
            )
        )
        .order_by(Notification.created_at, Notification.id)
    )
    return {
        "exported_at": _iso(now, tz),
        "time_zone": tz.key,
        "patient": {
            "id": patient.id,
            "name": patient.name,
            "email": patient.email,
            "phone": patient.phone,
            "created_at": _iso(patient.created_at, tz),
            "erased_at": _iso(patient.erased_at, tz),
        },
        "intake": None
        if patient.intake is None
        else {"on_file": True, "withheld": "only an admin's export holds the health answers"}
        if not with_health
        else {
            "medications": patient.intake.medications,
            "conditions": list(patient.intake.conditions),
            "other_conditions": patient.intake.other_conditions,
            "consent_at": _iso(patient.intake.consent_at, tz),
            "updated_at": _iso(patient.intake.updated_at, tz),
        },
        "bookings": [
            {
                "id": b.id,
                "start": _iso(b.start_at, tz),
                "end": _iso(b.end_at, tz),
                "treatment": b.treatment.name,
                "practitioner": b.practitioner.name,
                "room": b.room.name,
                "status": b.status.value,
                "notes": b.notes,
                "staff_notes": b.staff_notes,
                "booked_as": {"name": b.given_name, "phone": b.given_phone},
                "booked_at": _iso(b.created_at, tz),
                "cancelled_at": _iso(b.cancelled_at, tz),
                "cancellation_reason": b.cancellation_reason,
                "late_cancellation": b.late_cancellation,
            }
            for b in bookings
        ],
        "waitlist": [
            {
                "treatment": entry.treatment.name,
                "practitioner": entry.practitioner.name if entry.practitioner else None,
                "dates": [day.isoformat() for day in entry.dates],
                "status": entry.status.value,
                "joined_as": {"name": entry.given_name, "phone": entry.given_phone},
                "joined_at": _iso(entry.created_at, tz),
                "left_at": _iso(entry.closed_at, tz),
                "offers": [
                    {
                        "start": _iso(offer.start_at, tz),
                        "status": offer.status.value,
                        "offered_at": _iso(offer.created_at, tz),
                    }
                    for offer in entry.offers
                ],
            }
            for entry in entries
        ],
        "notifications": [
            {
                "id": n.id,
                "booking_id": n.booking_id,
                "waitlist_offer_id": n.waitlist_offer_id,
                "kind": n.kind.value,
                "status": n.status.value,
                "due_at": _iso(n.due_at, tz),
                "sent_at": _iso(n.sent_at, tz),
                "recipient": n.recipient,
            }
            for n in notifications
        ],
        "audit_trail": [
            {
                "at": _iso(e.at, tz),
                "action": e.action.value,
                "actor": e.actor,
                "booking_id": e.booking_id,
                "detail": e.detail,
            }
            for e in trail(session, patient_id=patient.id)
        ],
    }


def upcoming_bookings(session: Session, patient: Patient, now: datetime) -> list[Booking]:
    """Return the patient's bookings still to come (or under way), soonest first."""
    return list(
        session.scalars(
            select(Booking)
            .where(Booking.patient_id == patient.id, _upcoming(now))
            .order_by(Booking.start_at)
        )
    )


def _waitlist_of(session: Session, patient: Patient) -> list[WaitlistEntry]:
    query = (
        select(WaitlistEntry)
        .options(selectinload(WaitlistEntry.offers), selectinload(WaitlistEntry.days))
        .where(WaitlistEntry.patient_id == patient.id)
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)
    )
    return list(session.scalars(query))


def erase_patient(session: Session, *, patient: Patient, actor: Actor, now: datetime) -> int:
    """Anonymise a patient; return how many bookings were kept, without their notes.

    Their bookings stay for the books, stripped of notes and cancellation reasons (also where
    the trail quotes a reason); they leave any waitlist; mail not yet sent to them is dropped,
    and the addresses and delivery details of all their mail are blanked. Refused while a
    visit is still to come.
    """
    if patient.erased_at is not None:
        raise PatientError(gettext("This patient's details are already erased."))
    upcoming = upcoming_bookings(session, patient, now)
    if upcoming:
        raise PatientError(
            ngettext(
                "%(name)s has %(num)d upcoming visit; cancel it first, then erase the details.",
                "%(name)s has %(num)d upcoming visits; cancel them first, then erase the details.",
                len(upcoming),
                name=patient.name,
            )
        )
    old_email = patient.email
    bookings = _bookings_of(session, patient)
    for booking in bookings:
        if booking.cancellation_reason:
            _scrub_trail(session, booking, booking.cancellation_reason)
        booking.notes = booking.staff_notes = booking.cancellation_reason = ""
        booking.given_name, booking.given_phone = ERASED_NAME, ""
        booking.updated_at = now
    entries = _waitlist_of(session, patient)
    for entry in entries:
        if entry.status is EntryStatus.WAITING:
            leave_waitlist(session, entry=entry, now=now)
        entry.given_name, entry.given_phone = ERASED_NAME, ""
    offer_ids = [offer.id for entry in entries for offer in entry.offers]
    notifications = session.scalars(
        select(Notification)
        .options(selectinload(Notification.history))
        .where(
            or_(
                Notification.booking_id.in_([b.id for b in bookings]),
                Notification.waitlist_offer_id.in_(offer_ids),
            )
        )
    )
    skipped = 0
    for notification in notifications:
        notification.recipient = ""
        for attempt in notification.history:
            attempt.detail = ""
        if notification.status in OPEN_STATUSES:
            skip(notification, ERASED_REASON, now)
            skipped += 1
        else:
            # A mail server's refusal often quotes the address.
            notification.last_error = _without(notification.last_error, old_email)
    patient.intake = None  # health answers go with the details (deleted as an orphan)
    patient.name = ERASED_NAME
    patient.email = erased_email(patient.id)
    patient.phone = ""
    patient.erased_at = now
    forget_patient(session, patient)  # the webhook payloads about their bookings
    record(
        session,
        actor=actor,
        action=AuditAction.PATIENT_ERASED,
        now=now,
        patient_id=patient.id,
        detail=Detail(
            N_("%(bookings)d bookings kept without notes; %(messages)d messages not sent"),
            {"bookings": len(bookings), "messages": skipped},
        ),
    )
    session.flush()
    return len(bookings)


def _without(text: str, secret: str) -> str:
    """Return ``text`` with every occurrence of ``secret`` (any case) replaced."""
    if not text or not secret:
        return text
    return re.sub(re.escape(secret), "[erased]", text, flags=re.IGNORECASE)


def _scrub_trail(session: Session, booking: Booking, secret: str) -> None:
    """Remove free text the patient wrote from the trail's entries about ``booking``."""
    for event in trail(session, booking_id=booking.id):
        event.detail = _without(event.detail, secret)


def lapsed_patients(session: Session, *, since: datetime, now: datetime) -> list[Patient]:
    """Return the patients not yet erased with nothing since ``since``: no booking that began
    after it (or is still to come), no waitlist place joined after it, and on file since
    before it; oldest first."""
    recent_visit = select(Booking.id).where(
        Booking.patient_id == Patient.id, or_(Booking.start_at >= since, _upcoming(now))
    )
    recent_wait = select(WaitlistEntry.id).where(
        WaitlistEntry.patient_id == Patient.id, WaitlistEntry.created_at >= since
    )
    return list(
        session.scalars(
            select(Patient)
            .where(
                Patient.erased_at.is_(None),
                Patient.created_at < since,
                ~recent_visit.exists(),
                ~recent_wait.exists(),
            )
            .order_by(Patient.created_at, Patient.id)
        )
    )
