"""Staff's answer to a booking request (see :mod:`scheduler.booking.policies`): approve it, and
the patient gets their confirmation and checklist as for any booking; or decline it, and the
booking is cancelled by the clinic, never counted as late, with the reason told to the patient.
"""

from __future__ import annotations

from datetime import datetime

from flask_babel import gettext
from sqlalchemy.orm import Session

from scheduler.audit import Actor, AuditAction
from scheduler.booking.models import Booking
from scheduler.booking.operations import BookingError, cancel_booking, record_change
from scheduler.clinic.models import Clinic
from scheduler.notifications.operations import queue_for_approval


def _check_awaiting(booking: Booking) -> None:
    if not booking.awaiting_approval:
        raise BookingError(gettext("This booking is not awaiting approval."))


def approve_booking(
    session: Session, *, clinic: Clinic, booking: Booking, now: datetime, actor: Actor
) -> Booking:
    """Approve a request: the booking is confirmed and the patient told, with an invite that
    turns the tentative visit in their calendar into a confirmed one."""
    _check_awaiting(booking)
    booking.approved_at = now
    booking.sequence += 1
    booking.updated_at = now
    session.flush()
    queue_for_approval(session, clinic=clinic, booking=booking, now=now)
    record_change(session, booking, actor, AuditAction.APPROVED, now)
    return booking


def requests_in_course(booking: Booking) -> list[Booking]:
    """Return the sessions of ``booking``'s course that await approval (just ``booking``, if
    it is not in a course)."""
    sessions = booking.course.sessions if booking.course is not None else [booking]
    return [s for s in sessions if s.awaiting_approval]


def approve_course(
    session: Session, *, clinic: Clinic, booking: Booking, now: datetime, actor: Actor
) -> list[Booking]:
    """Approve every session of ``booking``'s course that awaits approval, as one change."""
    _check_awaiting(booking)
    waiting = requests_in_course(booking)
    for item in waiting:
        approve_booking(session, clinic=clinic, booking=item, now=now, actor=actor)
    return waiting


def decline_booking(
    session: Session,
    *,
    clinic: Clinic,
    booking: Booking,
    reason: str,
    now: datetime,
    actor: Actor,
) -> Booking:
    """Decline a request: it is cancelled by the clinic (so never a late cancellation) and
    the patient is told why, in ``reason``."""
    _check_awaiting(booking)
    if booking.start_at <= now:
        raise BookingError(
            gettext(
                "The visit has already started, so it can no longer be declined; "
                "approve it or mark how it went."
            )
        )
    reason = reason.strip()
    if not reason:
        raise BookingError(gettext("Please give a reason; the patient is told it."), field="reason")
    record_change(session, booking, actor, AuditAction.DECLINED, now, reason)
    booking.declined_at = now
    return cancel_booking(
        session,
        clinic=clinic,
        booking=booking,
        reason=reason,
        now=now,
        actor=actor,
        by_clinic=True,
    )
