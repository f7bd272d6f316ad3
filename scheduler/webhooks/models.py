"""Webhooks, the events each is subscribed to, and the outbox of deliveries with every attempt."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.db import Base, UTCDateTime, utcnow, value_enum


class WebhookEvent(enum.StrEnum):
    """What a webhook can be told about."""

    BOOKING_CREATED = "booking.created"
    BOOKING_RESCHEDULED = "booking.rescheduled"
    BOOKING_CANCELLED = "booking.cancelled"
    BOOKING_STATUS_CHANGED = "booking.status_changed"


def event_type() -> Enum:
    """The column type of an event name, by value and checked (longer than ``value_enum``'s)."""
    return Enum(
        WebhookEvent,
        native_enum=False,
        create_constraint=True,
        length=40,
        values_callable=lambda members: [member.value for member in members],
        name="webhook_event",
    )


class DeliveryStatus(enum.StrEnum):
    """Where a delivery stands in the outbox."""

    PENDING = "pending"  # waiting for its time (or its next try)
    SENDING = "sending"  # claimed by a dispatcher until ``claimed_until``
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every try failed; the last answer is kept


class AttemptResult(enum.StrEnum):
    """What came of one try at delivering."""

    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"


class Webhook(Base):
    """An address the clinic's admin registered to receive booking events, signed with
    ``secret``.

    After a rotation the previous secret still signs, beside the new one, until
    ``previous_secret_until``, so receivers can switch without losing a delivery.
    """

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    subscriptions: Mapped[list[WebhookSubscription]] = relationship(
        back_populates="webhook",
        cascade="all, delete-orphan",
        order_by="WebhookSubscription.event",
    )
    deliveries: Mapped[list[WebhookDelivery]] = relationship(
        back_populates="webhook", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def events(self) -> list[WebhookEvent]:
        """The events this webhook is subscribed to, in the order they are listed."""
        chosen = {subscription.event for subscription in self.subscriptions}
        return [event for event in WebhookEvent if event in chosen]


class WebhookSubscription(Base):
    """One event a webhook is subscribed to."""

    __tablename__ = "webhook_subscriptions"

    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), primary_key=True
    )
    event: Mapped[WebhookEvent] = mapped_column(event_type(), primary_key=True)

    webhook: Mapped[Webhook] = relationship(back_populates="subscriptions")


class WebhookDelivery(Base):
    """One event to deliver to one webhook, queued with the booking change that caused it.

    ``payload`` is the request body, written when the change was committed and sent as it is
    on every try and replay. ``attempts`` counts the tries since it was queued or replayed;
    ``history`` keeps every try.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook_created", "webhook_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    # The booking the event is about, while it exists (to find the deliveries about it).
    booking_id: Mapped[int | None] = mapped_column(
        ForeignKey("bookings.id", ondelete="SET NULL"), index=True, nullable=True
    )
    event: Mapped[WebhookEvent] = mapped_column(event_type())
    # The event's id, also in the payload: the same on every try, replay and webhook.
    event_id: Mapped[str] = mapped_column(String(36))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        value_enum(DeliveryStatus, "webhook_delivery_status"), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_response: Mapped[str] = mapped_column(Text, default="")
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    webhook: Mapped[Webhook] = relationship(back_populates="deliveries")
    history: Mapped[list[WebhookAttempt]] = relationship(
        back_populates="delivery",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="WebhookAttempt.id",
    )


class WebhookAttempt(Base):
    """One try at a delivery: what the receiver answered (a truncated body), or what failed."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    result: Mapped[AttemptResult] = mapped_column(
        value_enum(AttemptResult, "webhook_attempt_result")
    )
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    dispatcher: Mapped[str] = mapped_column(String(100), default="")

    delivery: Mapped[WebhookDelivery] = relationship(back_populates="history")
