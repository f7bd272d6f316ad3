"""Queueing: the rows a booking change adds to the outbox, in the change's own transaction.

The booking operations call these; they only add, re-time or skip rows and never send. The
dispatcher (:mod:`scheduler.notifications.dispatch`) sends what is due.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.booking.models import Booking, BookingStatus
from scheduler.clinic.models import Clinic
from scheduler.notifications.models import (
    OPEN_STATUSES,
    AttemptOutcome,
    DeliveryAttempt,
    Notification,
    NotificationKind,
    NotificationStatus,
)

Key = tuple[NotificationKind, int]


def _minutes(lead: timedelta) -> int:
    return int(lead.total_seconds() // 60)


def checklist_times(clinic: Clinic, start: datetime, now: datetime) -> dict[int, datetime]:
    """Return when each checklist for a visit at ``start`` is due, by lead time in minutes.

    A lead time that has already passed means "at once"; when several have, one message goes
    (the shortest lead's), not several identical ones.
    """
    times: dict[int, datetime] = {}
    overdue: int | None = None
    for lead in clinic.checklist_leads:  # longest first
        due = start - lead
        if due <= now:
            overdue = _minutes(lead)
        else:
            times[_minutes(lead)] = due
    if overdue is not None:
        times[overdue] = now
    return times


def _add(
    session: Session,
    booking: Booking,
    kind: NotificationKind,
    due: datetime,
    *,
    now: datetime,
    variant: int = 0,
) -> Notification:
    notification = Notification(
        booking=booking,
        kind=kind,
        variant=variant,
        status=NotificationStatus.PENDING,
        due_at=due,
        next_attempt_at=due,
        created_at=now,
    )
    session.add(notification)
    return notification


def skip(notification: Notification, reason: str, now: datetime) -> None:
    """Drop ``notification`` for good, saying why, taking it back from any dispatcher."""
    notification.status = NotificationStatus.SKIPPED
    notification.claimed_by = notification.claimed_until = None
    notification.last_error = reason
    notification.history.append(
        DeliveryAttempt(at=now, outcome=AttemptOutcome.SKIPPED, detail=reason)
    )


def _arm(notification: Notification, due: datetime) -> None:
    """Make ``notification`` wait for ``due``, taking it back from any dispatcher holding it."""
    notification.status = NotificationStatus.PENDING
    notification.due_at = notification.next_attempt_at = due
    notification.claimed_by = notification.claimed_until = None
    notification.last_error = ""


def queue_for_new_booking(
    session: Session, *, clinic: Clinic, booking: Booking, now: datetime
) -> None:
    """Queue the confirmation, the checklists and the aftercare of a new booking."""
    _add(session, booking, NotificationKind.CONFIRMATION, now, now=now)
    for lead, due in checklist_times(clinic, booking.start_at, now).items():
        _add(session, booking, NotificationKind.CHECKLIST, due, variant=lead, now=now)
    _add(
        session,
        booking,
        NotificationKind.AFTERCARE,
        booking.end_at + clinic.aftercare_delay,
        now=now,
    )
    session.flush()


def _queued(session: Session, booking: Booking) -> dict[Key, Notification]:
    rows = session.scalars(select(Notification).where(Notification.booking_id == booking.id))
    return {(row.kind, row.variant): row for row in rows}


def queue_for_reschedule(
    session: Session, *, clinic: Clinic, booking: Booking, previous_start: datetime, now: datetime
) -> None:
    """Queue the update of a moved booking and re-time its checklists and aftercare.

    A confirmation not yet sent will show the new time, so no update is added beside it; an
    update not yet sent is replaced by this one. A checklist already sent goes again before
    the new time when the visit moved to another day.
    """
    queued = _queued(session, booking)
    confirmation = queued.get((NotificationKind.CONFIRMATION, 0))
    if confirmation is None or confirmation.status not in OPEN_STATUSES:
        for (kind, _), row in queued.items():
            if kind is NotificationKind.UPDATE and row.status in OPEN_STATUSES:
                skip(row, "replaced by a later change", now)
        _add(session, booking, NotificationKind.UPDATE, now, variant=booking.sequence, now=now)

    tz = clinic.tz
    moved_day = previous_start.astimezone(tz).date() != booking.start_at.astimezone(tz).date()
    _retime(
        session,
        clinic=clinic,
        booking=booking,
        queued=queued,
        now=now,
        checklist_again=lambda row: (
            row.status in OPEN_STATUSES or (row.status is NotificationStatus.SENT and moved_day)
        ),
        aftercare_again=lambda row: row.status in OPEN_STATUSES,
        sooner="the new time is sooner; one checklist goes at once",
    )


def _retime(
    session: Session,
    *,
    clinic: Clinic,
    booking: Booking,
    queued: dict[Key, Notification],
    now: datetime,
    checklist_again: Callable[[Notification], bool],
    aftercare_again: Callable[[Notification], bool],
    sooner: str,
) -> None:
    """Time ``booking``'s checklists and aftercare for when it now is: rows the predicates pick
    wait for their new time, missing ones are added, and a checklist whose lead time has
    passed is skipped (``sooner`` says why) as another goes at once instead."""
    times = checklist_times(clinic, booking.start_at, now)
    for (kind, lead), row in queued.items():
        if kind is not NotificationKind.CHECKLIST:
            continue
        due = times.pop(lead, None)
        if due is None:
            if row.status in OPEN_STATUSES:
                skip(row, sooner, now)
        elif checklist_again(row):
            _arm(row, due)
    for lead, due in times.items():
        _add(session, booking, NotificationKind.CHECKLIST, due, variant=lead, now=now)

    aftercare = queued.get((NotificationKind.AFTERCARE, 0))
    due = booking.end_at + clinic.aftercare_delay
    if aftercare is None:
        _add(session, booking, NotificationKind.AFTERCARE, due, now=now)
    elif aftercare_again(aftercare):
        _arm(aftercare, max(due, now))
    session.flush()


def queue_for_cancellation(session: Session, *, booking: Booking, now: datetime) -> None:
    """Drop what is still to be sent about a cancelled booking and queue the cancellation."""
    for row in _queued(session, booking).values():
        if row.status in OPEN_STATUSES:
            skip(row, "the visit was cancelled", now)
    _add(session, booking, NotificationKind.CANCELLATION, now, now=now)
    session.flush()


NO_SHOW_REASON = "the patient did not come"


def queue_for_status(session: Session, *, booking: Booking, now: datetime) -> None:
    """Hold back the aftercare of a no-show, and bring it back when that was a mistake."""
    aftercare = _queued(session, booking).get((NotificationKind.AFTERCARE, 0))
    if aftercare is None:
        return
    if booking.status is BookingStatus.NO_SHOW:
        if aftercare.status in OPEN_STATUSES:
            skip(aftercare, NO_SHOW_REASON, now)
    elif aftercare.status is NotificationStatus.SKIPPED and aftercare.last_error == NO_SHOW_REASON:
        _arm(aftercare, max(aftercare.due_at, now))
    session.flush()


# Why the dispatcher holds back a request's checklists and aftercare until staff approve it.
AWAITING_APPROVAL = "the booking awaits the clinic's approval"


def queue_for_approval(
    session: Session, *, clinic: Clinic, booking: Booking, now: datetime
) -> None:
    """Queue the confirmation of a request staff approved, and bring back its checklists and
    aftercare if the dispatcher held them back while it waited.

    A confirmation not yet sent will say the booking is approved, so no second one is added
    beside it.
    """
    queued = _queued(session, booking)
    confirmation = queued.get((NotificationKind.CONFIRMATION, 0))
    if confirmation is None or confirmation.status not in OPEN_STATUSES:
        _add(
            session, booking, NotificationKind.CONFIRMATION, now, variant=booking.sequence, now=now
        )

    def held(row: Notification) -> bool:
        return row.status in OPEN_STATUSES or (
            row.status is NotificationStatus.SKIPPED and row.last_error == AWAITING_APPROVAL
        )

    _retime(
        session,
        clinic=clinic,
        booking=booking,
        queued=queued,
        now=now,
        checklist_again=held,
        aftercare_again=held,
        sooner="the visit is sooner; one checklist goes at once",
    )


def resend(notification: Notification, now: datetime) -> None:
    """Send ``notification`` again as soon as a dispatcher gets to it (from the staff area)."""
    _arm(notification, now)
    notification.attempt_count = 0
