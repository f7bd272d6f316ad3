"""The outbox: one row per message to send, and a record of every attempt to send it."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.booking.models import Booking
from scheduler.db import Base, UTCDateTime, utcnow, value_enum


class NotificationKind(enum.StrEnum):
    """What a message is for."""

    CONFIRMATION = "confirmation"
    CHECKLIST = "checklist"
    UPDATE = "update"
    CANCELLATION = "cancellation"
    AFTERCARE = "aftercare"


class NotificationStatus(enum.StrEnum):
    """Where a message stands in the outbox."""

    PENDING = "pending"  # waiting for its time (or its next try)
    SENDING = "sending"  # claimed by a dispatcher until ``claimed_until``
    SENT = "sent"
    FAILED = "failed"  # refused for good; the reason is in ``last_error``
    SKIPPED = "skipped"  # no longer wanted (the visit was cancelled, or has passed)


OPEN_STATUSES = (NotificationStatus.PENDING, NotificationStatus.SENDING)


class AttemptOutcome(enum.StrEnum):
    """What came of one attempt to send a message."""

    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"
    SKIPPED = "skipped"


class Notification(Base):
    """A message to a patient about a booking, queued with the change that causes it.

    ``(booking, kind, variant)`` is unique so nothing is queued twice: ``variant`` is the lead
    time in minutes for a checklist, the booking's sequence for an update, and 0 otherwise.
    The content is rendered when it is sent, from the booking as it is then.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("booking_id", "kind", "variant"),
        Index("ix_notifications_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), index=True
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

    booking: Mapped[Booking] = relationship()
    history: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="notification",
        cascade="all, delete-orphan",
        order_by="DeliveryAttempt.id",
    )


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
