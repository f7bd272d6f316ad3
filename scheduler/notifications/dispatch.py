"""The dispatcher: claims due messages, sends them, and records what happened.

Any number of dispatchers can run side by side. A claim marks a batch as this dispatcher's
until a lease runs out: on PostgreSQL the claiming query skips rows another dispatcher has
locked (``FOR UPDATE SKIP LOCKED``); on SQLite the claim runs under the database's write lock.
Before each message the dispatcher renews its claim on it; a message whose claim has moved to
another dispatcher (because the lease ran out) is left to that one. A dispatcher killed between
claim and send leaves its batch to the next one once the lease runs out.

Each message is marked sent in its own transaction right after the server accepts it, so a
crash can repeat at most the one message in flight, and that under the same Message-ID.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.errors import MessageError
from email.message import EmailMessage

from sqlalchemy.orm import Session

from scheduler import eventlog, leases
from scheduler.booking.models import BookingStatus
from scheduler.clinic.models import Clinic
from scheduler.leases import claim_due, still_held
from scheduler.mail import Mailer, PermanentFailure, TemporaryFailure
from scheduler.notifications.messages import write_message
from scheduler.notifications.models import (
    AttemptOutcome,
    DeliveryAttempt,
    Notification,
    NotificationKind,
    NotificationStatus,
)
from scheduler.notifications.operations import AWAITING_APPROVAL
from scheduler.waitlist.operations import unwanted_mail

FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)
# Aftercare that could not go out within this long after the visit is no longer worth sending.
AFTERCARE_KEEPS = timedelta(days=3)


def retry_delay(attempts: int) -> timedelta:
    """Return the wait before try ``attempts + 1``: 1, 2, 4 … minutes, at most an hour."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)


def dispatcher_name() -> str:
    """Return a name for this dispatcher that no other running one shares."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Settings:
    """What a dispatcher needs to know besides the database and the mailer."""

    base_url: str
    mail_from: str
    message_host: str
    name: str = field(default_factory=dispatcher_name)
    batch_size: int = 50
    lease: timedelta = timedelta(minutes=5)


# What a request waiting for staff to approve it does not get yet.
_AFTER_APPROVAL = (NotificationKind.CHECKLIST, NotificationKind.AFTERCARE)


def unwanted(notification: Notification, now: datetime) -> str | None:
    """Say why ``notification`` should no longer go out, if it should not."""
    if notification.kind is NotificationKind.ACCOUNT:
        # An account notice goes even to an account switched off: that may be the news.
        return None if notification.user is not None else "the account no longer exists"
    if notification.waitlist_offer is not None:
        return unwanted_mail(notification.kind, notification.waitlist_offer, now)
    booking = notification.booking
    if booking is None:
        return "the message is about neither a booking nor an offer"
    kind = notification.kind
    if kind is NotificationKind.CANCELLATION:
        if booking.status is not BookingStatus.CANCELLED:
            return "the booking is no longer cancelled"
        return "the visit's time has passed" if booking.start_at <= now else None
    if booking.status is BookingStatus.CANCELLED:
        return "the visit was cancelled"
    if booking.awaiting_approval and kind in _AFTER_APPROVAL:
        return AWAITING_APPROVAL  # brought back when staff approve it
    if kind is NotificationKind.AFTERCARE:
        if booking.status is BookingStatus.NO_SHOW:
            return "the patient did not come"
        if now > booking.end_at + AFTERCARE_KEEPS:
            return "too long after the visit"
        return None
    # Confirmations, updates and checklists are about a visit still to come.
    return "the visit has already started" if booking.start_at <= now else None


def claim(session: Session, *, settings: Settings, now: datetime) -> list[int]:
    """Claim up to a batch of due messages for this dispatcher and return their ids."""
    return claim_due(
        session,
        Notification,
        pending=NotificationStatus.PENDING,
        sending=NotificationStatus.SENDING,
        claimant=settings,
        now=now,
    )


def waiting_since(session: Session, now: datetime) -> datetime | None:
    """Since when the longest-waiting due message has waited (``None``: nothing is due)."""
    return leases.waiting_since(
        session,
        Notification,
        pending=NotificationStatus.PENDING,
        sending=NotificationStatus.SENDING,
        now=now,
    )


def _mine(session: Session, notification_id: int, settings: Settings) -> Notification | None:
    """Lock and return the notification if this dispatcher still holds its claim."""
    return still_held(
        session,
        Notification,
        notification_id,
        sending=NotificationStatus.SENDING,
        claimant=settings,
    )


def _settle(
    session: Session,
    notification_id: int,
    outcome: AttemptOutcome,
    detail: str,
    *,
    settings: Settings,
    now: datetime,
) -> AttemptOutcome:
    """Record ``outcome`` if the claim is still ours; return what was recorded."""
    notification = _mine(session, notification_id, settings)
    if notification is None:
        # A reschedule or a cancellation took the message back while it was being sent.
        return outcome
    notification.claimed_by = notification.claimed_until = None
    notification.last_error = "" if outcome is AttemptOutcome.SENT else detail
    if outcome is AttemptOutcome.SENT:
        notification.status = NotificationStatus.SENT
        notification.sent_at = now
        notification.sent_count += 1
    elif outcome is AttemptOutcome.RETRYING:
        notification.attempt_count += 1
        notification.status = NotificationStatus.PENDING
        wait = retry_delay(notification.attempt_count)
        notification.next_attempt_at = now + wait
        detail = f"{detail}; next try in {int(wait.total_seconds() // 60)} min"
    elif outcome is AttemptOutcome.FAILED:
        notification.attempt_count += 1
        notification.status = NotificationStatus.FAILED
    else:
        notification.status = NotificationStatus.SKIPPED
    notification.history.append(
        DeliveryAttempt(at=now, outcome=outcome, detail=detail, dispatcher=settings.name)
    )
    logged = {
        "notification": notification_id,
        "kind": notification.kind.value,
        "booking": notification.booking_id,
        "failed_tries": notification.attempt_count,
        "dispatcher": settings.name,
        # Whom it was accepted for stays in the outbox; a failure says what went wrong.
        "detail": "" if outcome is AttemptOutcome.SENT else detail,
    }
    session.commit()
    eventlog.emit(f"mail.{outcome.value}", now, **logged)
    return outcome


def _prepare(
    session: Session, notification_id: int, *, settings: Settings, now: datetime
) -> EmailMessage | str | None:
    """Renew the claim and write the message; a string says why it should not go out."""
    notification = _mine(session, notification_id, settings)
    if notification is None:
        return None
    notification.claimed_until = now + settings.lease
    reason = unwanted(notification, now)
    if reason is not None:
        session.commit()
        return reason
    clinic = Clinic.get(session)
    if clinic is None:  # pragma: no cover - a booking implies a clinic
        session.commit()
        return "the clinic has not been set up"
    message_id = (
        f"<notification-{notification.id}.{notification.sent_count + 1}@{settings.message_host}>"
    )
    message = write_message(
        session,
        notification,
        clinic,
        base_url=settings.base_url,
        mail_from=settings.mail_from,
        now=now,
        message_id=message_id,
    )
    notification.recipient = notification.addressee[1]
    session.commit()
    return message


def deliver(
    session: Session,
    notification_id: int,
    *,
    mailer: Mailer,
    settings: Settings,
    clock: Callable[[], datetime],
) -> AttemptOutcome | None:
    """Send one claimed message and record the outcome (``None``: no longer ours)."""
    try:
        prepared = _prepare(session, notification_id, settings=settings, now=clock())
    except (ValueError, MessageError) as exc:
        session.rollback()
        return _settle(
            session,
            notification_id,
            AttemptOutcome.FAILED,
            f"the message could not be written: {exc}",
            settings=settings,
            now=clock(),
        )
    if prepared is None:
        return None
    if isinstance(prepared, str):
        outcome, detail = AttemptOutcome.SKIPPED, prepared
    else:
        try:
            mailer.send(prepared)
        except TemporaryFailure as exc:
            outcome, detail = AttemptOutcome.RETRYING, str(exc)
        except PermanentFailure as exc:
            outcome, detail = AttemptOutcome.FAILED, str(exc)
        else:
            outcome, detail = AttemptOutcome.SENT, f"accepted for {prepared['To']}"
    return _settle(session, notification_id, outcome, detail, settings=settings, now=clock())


def release(session: Session, ids: list[int], *, settings: Settings) -> None:
    """Give back claimed messages this dispatcher will not send, for others to take at once."""
    leases.release(
        session,
        Notification,
        ids,
        pending=NotificationStatus.PENDING,
        sending=NotificationStatus.SENDING,
        claimant=settings,
    )


def run_batch(
    session: Session,
    *,
    mailer_factory: Callable[[], Mailer],
    settings: Settings,
    clock: Callable[[], datetime],
    stopping: Callable[[], bool] = lambda: False,
) -> Counter[AttemptOutcome] | None:
    """Claim and send one batch; return the outcomes, or ``None`` when nothing was due.

    When ``stopping()`` turns true the rest of the batch is given back unsent.
    """
    ids = claim(session, settings=settings, now=clock())
    if not ids:
        return None
    tally: Counter[AttemptOutcome] = Counter()
    with mailer_factory() as mailer:
        for position, notification_id in enumerate(ids):
            if stopping():
                release(session, ids[position:], settings=settings)
                break
            outcome = deliver(
                session, notification_id, mailer=mailer, settings=settings, clock=clock
            )
            if outcome is not None:
                tally[outcome] += 1
    return tally


def send_due(
    session: Session,
    *,
    mailer_factory: Callable[[], Mailer],
    settings: Settings,
    clock: Callable[[], datetime],
) -> Counter[AttemptOutcome]:
    """Send everything due now, batch after batch, and return the outcomes."""
    total: Counter[AttemptOutcome] = Counter()
    while (
        tally := run_batch(session, mailer_factory=mailer_factory, settings=settings, clock=clock)
    ) is not None:
        total.update(tally)
    return total


def summary(tally: Counter[AttemptOutcome]) -> str:
    """One line for the operator: ``sent 3, retrying 0, failed 0, skipped 1``."""
    return ", ".join(f"{outcome.value} {tally[outcome]}" for outcome in AttemptOutcome)
