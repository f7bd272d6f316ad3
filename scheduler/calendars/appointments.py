"""Bring another scheduler's calendar export over as bookings, for clinics moving to this one.

Each future event becomes a confirmed booking for the chosen practitioner: the patient from an
ATTENDEE (or an email address in the description), the treatment from its name in the summary
(or, failing that, from the event's length). The event's UID is kept, so that importing a later
export updates or cancels the same bookings, and a patient's calendar entry stays one entry.
Times that clash with a booking already here are reported, never forced.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.audit import CALENDAR_IMPORT, Actor, AuditAction, Detail
from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import (
    BookingError,
    PatientDetails,
    find_or_create_patient,
    place_imported_booking,
    record_change,
)
from scheduler.calendars.expansion import Expansion, Occurrence, Person, Series, version_key
from scheduler.calendars.imports import ImportReport
from scheduler.clinic.models import Clinic, Practitioner, Treatment
from scheduler.i18n import N_
from scheduler.timeutil import format_local

_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_LABELLED_NAME = re.compile(r"(?im)^\s*(?:patient|client|name)\s*:\s*([^\n<@]{2,200}?)\s*(?:<|$)")
MAX_UID_LENGTH = 255


def import_appointments(
    session: Session,
    *,
    clinic: Clinic,
    practitioner: Practitioner,
    expansion: Expansion,
    now: datetime,
    actor: Actor = CALENDAR_IMPORT,
) -> ImportReport:
    """Apply series read from a file (future events only) as the practitioner's bookings,
    recording ``actor`` in the audit trail of each one created, moved or cancelled."""
    report = ImportReport(
        errors=len(expansion.problems),
        problems=list(expansion.problems),
        notes=list(expansion.notes),
    )
    treatments = list(
        session.scalars(select(Treatment).where(Treatment.active.is_(True)).order_by(Treatment.id))
    )
    importer = _Importer(session, clinic, practitioner, treatments, now, report, actor)
    for series in expansion.series:
        importer.apply(series)
    session.flush()
    return report


class _Importer:
    def __init__(
        self,
        session: Session,
        clinic: Clinic,
        practitioner: Practitioner,
        treatments: Sequence[Treatment],
        now: datetime,
        report: ImportReport,
        actor: Actor,
    ) -> None:
        self.actor = actor
        self.session = session
        self.clinic = clinic
        self.practitioner = practitioner
        self.treatments = treatments
        self.now = now
        self.report = report

    def apply(self, series: Series) -> None:
        if series.cancelled:
            self._cancel_all(series)
            return
        several = len(series.occurrences) > 1 or not series.whole
        for occurrence in series.occurrences:
            uid = _booking_uid(series.uid, occurrence, several)
            if len(uid) > MAX_UID_LENGTH:
                self._problem(series, occurrence, f"its UID is longer than {MAX_UID_LENGTH}")
                continue
            existing = self.session.scalars(
                select(Booking).where(Booking.calendar_uid == uid)
            ).first()
            if occurrence.cancelled:
                self._cancel(existing, series)
            elif existing is not None:
                self._update(existing, series, occurrence)
            elif occurrence.start <= self.now:
                self.report.skipped += 1  # history stays in the old system
            else:
                self._create(uid, series, occurrence)

    def _problem(self, series: Series, occurrence: Occurrence | None, message: str) -> None:
        when = f" on {format_local(occurrence.start, self.clinic.tz)}" if occurrence else ""
        label = repr(series.summary) if series.summary else "an event"
        self.report.problems.append(f"event {label}{when}: {message}")
        self.report.errors += 1

    def _create(self, uid: str, series: Series, occurrence: Occurrence) -> None:
        patient = patient_of(occurrence, self.practitioner)
        if patient is None:
            self._problem(
                series,
                occurrence,
                "no patient: it has no ATTENDEE and no email address in its description",
            )
            return
        treatment = self._treatment(occurrence)
        if treatment is None:
            minutes = int((occurrence.end - occurrence.start).total_seconds() // 60)
            self._problem(
                series,
                occurrence,
                f"no treatment matches it by name or by its length ({minutes} minutes)",
            )
            return
        booking = Booking(
            treatment=treatment,
            practitioner=self.practitioner,
            patient=find_or_create_patient(self.session, patient, self.now),
            status=BookingStatus.CONFIRMED,
            manage_token=secrets.token_urlsafe(32),
            notes=occurrence.description[:2000],
            **patient.as_given(),
            calendar_uid=uid,
            sequence=occurrence.sequence,
            created_at=self.now,
            updated_at=self.now,
        )
        if self._place(booking, series, occurrence, "not imported"):
            self.report.imported += 1
            self._record(
                booking, AuditAction.IMPORTED, Detail(N_("from %(uid)s"), {"uid": series.uid})
            )

    def _place(self, booking: Booking, series: Series, occurrence: Occurrence, failed: str) -> bool:
        """Put the booking at the occurrence's time, or report the clash that prevents it."""
        try:
            place_imported_booking(
                self.session, booking=booking, start=occurrence.start, end=occurrence.end
            )
        except BookingError as exc:
            self._problem(series, occurrence, f"{failed}, it clashes: {exc.message}")
            return False
        return True

    def _update(self, booking: Booking, series: Series, occurrence: Occurrence) -> None:
        if booking.practitioner_id != self.practitioner.id:
            self._problem(
                series, occurrence, f"it was imported before for {booking.practitioner.name}"
            )
            return
        same = (booking.start_at, booking.end_at) == (occurrence.start, occurrence.end)
        stale = version_key(occurrence.sequence, None) < version_key(booking.sequence, None)
        if same or stale or not booking.is_live:
            self.report.skipped += 1
            return
        if not self._place(booking, series, occurrence, "not moved"):
            return
        booking.sequence = max(booking.sequence + 1, occurrence.sequence)
        booking.updated_at = self.now
        self.report.updated += 1
        self._record(booking, AuditAction.RESCHEDULED, Detail(N_("moved in the imported calendar")))

    def _cancel(self, booking: Booking | None, series: Series) -> None:
        if (
            booking is None
            or not booking.is_live
            or booking.practitioner_id != self.practitioner.id
        ):
            self.report.skipped += 1
            return
        booking.status = BookingStatus.CANCELLED
        booking.cancelled_at = self.now
        booking.cancellation_reason = "Cancelled in the imported calendar"
        booking.sequence = max(booking.sequence + 1, series.sequence)
        booking.updated_at = self.now
        self.report.cancelled += 1
        self._record(booking, AuditAction.CANCELLED, booking.cancellation_reason)

    def _record(self, booking: Booking, action: AuditAction, detail: str | Detail) -> None:
        record_change(self.session, booking, self.actor, action, self.now, detail)

    def _cancel_all(self, series: Series) -> None:
        bookings = self.session.scalars(
            select(Booking).where(
                (Booking.calendar_uid == series.uid)
                | Booking.calendar_uid.endswith(f"#{series.uid}", autoescape=True)
            )
        ).all()
        if not bookings:
            self.report.skipped += 1
        for booking in bookings:
            self._cancel(booking, series)

    def _treatment(self, occurrence: Occurrence) -> Treatment | None:
        text = f"{occurrence.summary}\n{occurrence.description}".casefold()
        named = [t for t in self.treatments if t.name.casefold() in text]
        if named:
            return max(named, key=lambda t: len(t.name))
        minutes = (occurrence.end - occurrence.start).total_seconds() / 60
        by_length = [t for t in self.treatments if t.duration_minutes == minutes]
        return by_length[0] if len(by_length) == 1 else None


def _booking_uid(uid: str, occurrence: Occurrence, several: bool) -> str:
    """Return the UID a booking keeps: the event's own, or per instance of a series."""
    if not several:
        return uid
    return f"{occurrence.key:%Y%m%dT%H%M%SZ}#{uid}"


def patient_of(occurrence: Occurrence, practitioner: Practitioner) -> PatientDetails | None:
    """Find who the appointment is for: an attendee who is not staff, or the description."""
    staff = {practitioner.email.lower()}
    if occurrence.organizer is not None:
        staff.add(occurrence.organizer.email)
    attendees: list[Person] = [
        a for a in occurrence.attendees if _EMAIL.fullmatch(a.email) and a.email not in staff
    ]
    if attendees:
        person = attendees[0]
        return PatientDetails(person.name or person.email.split("@")[0], person.email)
    match = _EMAIL.search(occurrence.description)
    if match is None:
        return None
    labelled = _LABELLED_NAME.search(occurrence.description)
    name = labelled.group(1).strip() if labelled else match.group(0).split("@")[0]
    return PatientDetails(name, match.group(0).lower())
