"""The outbox: one row per message to send, and a record of every attempt to send it."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.booking.models import Booking
from scheduler.db import Base, UTCDateTime, utcnow, value_enum
from scheduler.patients.models import Patient
from scheduler.staff.models import User
from scheduler.waitlist.models import WaitlistOffer


class NotificationKind(enum.StrEnum):
    """What a message is for."""

    CONFIRMATION = "confirmation"
    CHECKLIST = "checklist"
    UPDATE = "update"
    CANCELLATION = "cancellation"
    AFTERCARE = "aftercare"
    WAITLIST_OFFER = "waitlist_offer"  # a freed time offered to a waiting patient
    WAITLIST_GONE = "waitlist_gone"  # that time was booked by someone else first
    ACCOUNT = "account"  # to a staff member: their password, two-step login or role changed


class AccountChange(enum.IntEnum):
    """What an account notice tells a staff member (its ``variant``), so that a change they
    did not make does not go unseen (OWASP ASVS 2.2.3, 2.5.5)."""

    PASSWORD_CHANGED = 1
    PASSWORD_RESET = 2  # by an admin
    TWO_FACTOR_ON = 3
    TWO_FACTOR_OFF = 4
    TWO_FACTOR_REMOVED = 5  # by an admin, or on the command line
    RECOVERY_CODES = 6
    ROLE_CHANGED = 7  # by an admin: another role, or switched off or on
    SECURITY_KEY_ADDED = 8
    SECURITY_KEY_REMOVED = 9


class NotificationStatus(enum.StrEnum):
    """Where a message stands in the outbox."""

    PENDING = "pending"  # waiting for its time (or its next try)
    SENDING = "sending"  # claimed by a dispatcher until ``claimed_until``
    SENT = "sent"
    FAILED = "failed"  # refused for good; the reason is in ``last_error``
    SKIPPED = "skipped"  # no longer wanted (the visit was cancelled, or has passed)


OPEN_STATUSES = (NotificationStatus.PENDING, NotificationStatus.SENDING)
# A message is about exactly one thing.
ONE_SUBJECT = (
    "(CASE WHEN booking_id IS NULL THEN 0 ELSE 1 END)"
    " + (CASE WHEN waitlist_offer_id IS NULL THEN 0 ELSE 1 END)"
    " + (CASE WHEN user_id IS NULL THEN 0 ELSE 1 END) = 1"
)


class AttemptOutcome(enum.StrEnum):
    """What came of one attempt to send a message."""

    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"
    SKIPPED = "skipped"


class Notification(Base):
    """A message to a patient about a booking or a waitlist offer, or to a staff member about
    their account (exactly one of the three), queued with the change that causes it.

    ``(booking, kind, variant)`` is unique so nothing is queued twice: ``variant`` is the lead
    time in minutes for a checklist, the booking's sequence for an update, the
    :class:`AccountChange` of an account notice, and 0 otherwise; an offer has at most one
    message of each kind. The content is rendered when it is sent,
    from the booking or the offer as it is then.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("booking_id", "kind", "variant"),
        UniqueConstraint("waitlist_offer_id", "kind"),
        CheckConstraint(ONE_SUBJECT, name="one_subject"),
        Index("ix_notifications_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int | None] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), index=True, nullable=True
    )
    waitlist_offer_id: Mapped[int | None] = mapped_column(
        ForeignKey("waitlist_offers.id", ondelete="CASCADE"), index=True, nullable=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=True
    )
    kind: Mapped[NotificationKind] = mapped_column(
        value_enum(NotificationKind, "notification_kind")
    )
    variant: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[NotificationStatus] = mapped_column(
        value_enum(NotificationStatus, "notification_status"), default=NotificationStatus.PENDING
    )
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    # How many times it has gone out: a checklist re-armed by a reschedule goes again, under a
    # new Message-ID; a retry after a crash reuses the old one so mail clients can drop it.
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    recipient: Mapped[str] = mapped_column(String(254), default="")
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    booking: Mapped[Booking | None] = relationship()
    waitlist_offer: Mapped[WaitlistOffer | None] = relationship()
    user: Mapped[User | None] = relationship()
    history: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="notification",
        cascade="all, delete-orphan",
        order_by="DeliveryAttempt.id",
    )

    @property
    def addressee(self) -> tuple[str, str]:
        """The name and address the message goes to."""
        if self.user is not None:
            return ("", self.user.email)
        return (self.patient.name, self.patient.email)

    @property
    def patient(self) -> Patient:
        """Who the message is for."""
        if self.waitlist_offer is not None:
            return self.waitlist_offer.entry.patient
        if self.booking is None:
            raise ValueError("the message is about neither a booking nor a waitlist offer")
        return self.booking.patient


class DeliveryAttempt(Base):
    """One try at sending a notification, for the staff area to show."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[AttemptOutcome] = mapped_column(value_enum(AttemptOutcome, "attempt_outcome"))
    detail: Mapped[str] = mapped_column(Text, default="")
    dispatcher: Mapped[str] = mapped_column(String(100), default="")

    notification: Mapped[Notification] = relationship(back_populates="history")
