"""The clinic's booking policies: how a patient's missed visits are counted, and which online
bookings wait for staff to approve them.

A late cancellation (inside the clinic's window, and not by the clinic) and a no-show are each
one missed visit. When the clinic sets an approval threshold, a patient with at least that many
who books online gets a request: the booking holds its time, but the confirmation says it is
not confirmed yet and the checklist waits until staff approve it (see
:mod:`scheduler.booking.approvals`). Bookings staff make are never held back.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.orm import Session

from scheduler.audit import Actor
from scheduler.booking.models import Booking, BookingStatus
from scheduler.clinic.models import Clinic
from scheduler.patients.models import Patient


@dataclass(frozen=True)
class Missed:
    """A patient's late cancellations and no-shows."""

    late_cancellations: int = 0
    no_shows: int = 0

    @property
    def total(self) -> int:
        """Both together, as the approval threshold counts them."""
        return self.late_cancellations + self.no_shows


def missed_visits(
    session: Session, patient_id: int | None, practitioner_ids: Collection[int] | None = None
) -> Missed:
    """Count a patient's late cancellations and no-shows (with ``practitioner_ids`` only, when
    given: a practitioner sees their own)."""
    if patient_id is None:
        return Missed()
    late = and_(Booking.status == BookingStatus.CANCELLED, Booking.late_cancellation.is_(True))
    query = select(
        func.count(case((late, 1))),
        func.count(case((Booking.status == BookingStatus.NO_SHOW, 1))),
    ).where(Booking.patient_id == patient_id)
    if practitioner_ids is not None:
        query = query.where(Booking.practitioner_id.in_(list(practitioner_ids)))
    late_cancellations, no_shows = session.execute(query).one()
    return Missed(late_cancellations, no_shows)


def needs_approval(session: Session, *, clinic: Clinic, patient: Patient, actor: Actor) -> bool:
    """Tell whether a booking ``actor`` makes for ``patient`` must wait for staff to approve it:
    made online (not by staff) for a patient with at least the clinic's threshold of late
    cancellations and no-shows."""
    threshold = clinic.approval_threshold
    if actor.is_staff or not threshold:
        return False
    return missed_visits(session, patient.id).total >= threshold


def awaiting_approval() -> ColumnElement[bool]:
    """Match the bookings that are requests staff have yet to approve or decline."""
    return and_(
        Booking.status == BookingStatus.CONFIRMED,
        Booking.approval_requested_at.is_not(None),
        Booking.approved_at.is_(None),
        Booking.declined_at.is_(None),
    )


def pending_requests(practitioner_ids: Collection[int]) -> Select[Booking]:
    """Select the requests awaiting approval with these practitioners, soonest visit first."""
    return (
        select(Booking)
        .where(awaiting_approval(), Booking.practitioner_id.in_(list(practitioner_ids)))
        .order_by(Booking.start_at, Booking.id)
    )
