"""The dispatcher: claims due messages, sends them, and records what happened.

Any number of dispatchers can run side by side. A claim marks a batch as this dispatcher's
until a lease runs out: on PostgreSQL the claiming query skips rows another dispatcher has
locked (``FOR UPDATE SKIP LOCKED``); on SQLite the claim runs under the database's write lock.
Before each message the dispatcher renews its claim on it; a message whose claim has moved to
another dispatcher (because the lease ran out) is left to that one. A dispatcher killed between
claim and send leaves its batch to the next one once the lease runs out.

A message's outcome is recorded right after the server accepts it, in the transaction that
renews the claim on the next one and is committed before that one is sent (one commit a
message), so a crash can repeat at most the one message in flight, and that under the same
Message-ID. A batch's messages are read in a few queries when it is claimed; whether each one
still goes (its claim, its booking's state) is read afresh under the lock just before it.
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

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from scheduler import eventlog, leases
from scheduler.booking.models import Booking, BookingStatus, Course
from scheduler.clinic.checklists import Checklist
from scheduler.clinic.models import Clinic
from scheduler.db import begin_write
from scheduler.leases import claim_due, held
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


@dataclass(frozen=True)
class Done:
    """What came of sending one message, not yet recorded."""

    notification_id: int
    outcome: AttemptOutcome
    detail: str
    at: datetime


Logged = tuple[AttemptOutcome, datetime, dict[str, object]]


def _record(session: Session, done: Done, *, settings: Settings) -> Logged | None:
    """Record ``done`` in the open write transaction if the claim is still ours; return what
    to log once it is committed."""
    notification = held(
        session,
        Notification,
        done.notification_id,
        sending=NotificationStatus.SENDING,
        claimant=settings,
    )
    if notification is None:
        # A reschedule or a cancellation took the message back while it was being sent.
        return None
    outcome, detail, now = done.outcome, done.detail, done.at
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
    # Through the attempt's side of the relationship: the history is not loaded to add to it.
    session.add(
        DeliveryAttempt(
            notification=notification,
            at=now,
            outcome=outcome,
            detail=detail,
            dispatcher=settings.name,
        )
    )
    return (
        outcome,
        now,
        {
            "notification": done.notification_id,
            "kind": notification.kind.value,
            "booking": notification.booking_id,
            "failed_tries": notification.attempt_count,
            "dispatcher": settings.name,
            # Whom it was accepted for stays in the outbox; a failure says what went wrong.
            "detail": "" if outcome is AttemptOutcome.SENT else detail,
        },
    )


def _commit(session: Session, logged: list[Logged | None]) -> None:
    """Commit, then log what was recorded."""
    session.commit()
    for entry in logged:
        if entry is not None:
            outcome, at, fields = entry
            eventlog.emit(f"mail.{outcome.value}", at, **fields)


def _settle(session: Session, done: list[Done], *, settings: Settings) -> None:
    """Record each outcome whose claim is still ours, in one transaction."""
    if not done:
        return
    begin_write(session)
    _commit(session, [_record(session, each, settings=settings) for each in done])


@dataclass
class Batch:
    """What the messages of one batch share, read once: the clinic and its checklists."""

    clinic: Clinic | None = None
    checklists: dict[int | None, Checklist] = field(default_factory=dict)


def _prepare(
    session: Session,
    notification_id: int,
    *,
    settings: Settings,
    now: datetime,
    earlier: list[Done],
    batch: Batch,
) -> EmailMessage | str | None:
    """Record ``earlier`` outcomes, renew the claim and write the message, in one transaction;
    a string says why the message should not go out."""
    begin_write(session)
    logged = [_record(session, each, settings=settings) for each in earlier]
    notification = held(
        session,
        Notification,
        notification_id,
        sending=NotificationStatus.SENDING,
        claimant=settings,
    )
    if notification is None:
        _commit(session, logged)
        return None
    if notification.booking_id is not None:
        # What decides whether it still goes is read afresh, whatever the batch read before.
        session.execute(
            select(Booking)
            .where(Booking.id == notification.booking_id)
            .execution_options(populate_existing=True)
        )
    notification.claimed_until = now + settings.lease
    reason = unwanted(notification, now)
    if reason is not None:
        _commit(session, logged)
        return reason
    if batch.clinic is None:
        batch.clinic = Clinic.get(session)
    clinic = batch.clinic
    if clinic is None:  # pragma: no cover - a booking implies a clinic
        _commit(session, logged)
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
        checklists=batch.checklists,
    )
    notification.recipient = notification.addressee[1]
    _commit(session, logged)
    return message


def _send(
    session: Session,
    notification_id: int,
    *,
    mailer: Mailer,
    settings: Settings,
    clock: Callable[[], datetime],
    earlier: list[Done],
    batch: Batch,
) -> Done | None:
    """Record ``earlier``, then send one claimed message; return its outcome, not yet
    recorded (``None``: no longer ours).

    Recording the last outcome in the transaction that renews the next claim makes one commit
    a message, and still none is sent before the one before it is recorded.
    """
    try:
        prepared = _prepare(
            session, notification_id, settings=settings, now=clock(), earlier=earlier, batch=batch
        )
    except (ValueError, MessageError) as exc:
        session.rollback()
        failed = Done(
            notification_id,
            AttemptOutcome.FAILED,
            f"the message could not be written: {exc}",
            clock(),
        )
        _settle(session, [*earlier, failed], settings=settings)
        return None
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
    return Done(notification_id, outcome, detail, clock())


def deliver(
    session: Session,
    notification_id: int,
    *,
    mailer: Mailer,
    settings: Settings,
    clock: Callable[[], datetime],
) -> AttemptOutcome | None:
    """Send one claimed message and record the outcome (``None``: no longer ours)."""
    done = _send(
        session,
        notification_id,
        mailer=mailer,
        settings=settings,
        clock=clock,
        earlier=[],
        batch=Batch(),
    )
    if done is not None:
        _settle(session, [done], settings=settings)
        return done.outcome
    return None


def _read_batch(session: Session, ids: list[int]) -> None:
    """Load the batch's messages with what writing them reads, in a few queries."""
    session.scalars(
        select(Notification)
        .where(Notification.id.in_(ids))
        .options(
            selectinload(Notification.user),
            selectinload(Notification.waitlist_offer),
            selectinload(Notification.booking).options(
                selectinload(Booking.patient),
                selectinload(Booking.treatment),
                selectinload(Booking.practitioner),
                selectinload(Booking.room),
                selectinload(Booking.course).selectinload(Course.sessions),
            ),
        )
        .execution_options(populate_existing=True)
    ).all()
    session.commit()


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
    batch = Batch()
    pending: list[Done] = []
    # The batch is read once and kept across its commits; what decides whether a message
    # still goes (its claim, its booking) is read afresh under the lock before each one.
    keeps, session.expire_on_commit = session.expire_on_commit, False
    try:
        _read_batch(session, ids)
        with mailer_factory() as mailer:
            for position, notification_id in enumerate(ids):
                if stopping():
                    _settle(session, pending, settings=settings)
                    pending = []
                    release(session, ids[position:], settings=settings)
                    break
                done = _send(
                    session,
                    notification_id,
                    mailer=mailer,
                    settings=settings,
                    clock=clock,
                    earlier=pending,
                    batch=batch,
                )
                pending = [] if done is None else [done]
                if done is not None:
                    tally[done.outcome] += 1
            if pending:
                _settle(session, pending, settings=settings)
                pending = []
    finally:
        if pending:  # an error after a send: record it before the error goes on
            session.rollback()
            _settle(session, pending, settings=settings)
        session.expire_on_commit = keeps
        session.expire_all()
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
