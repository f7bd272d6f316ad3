"""Busy time imported from practitioners' own calendars, and the calendars they subscribe to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.clinic.models import Practitioner
from scheduler.db import Base, UTCDateTime, utcnow


class CalendarSubscription(Base):
    """An outside calendar (such as a Google secret address) that ``calendar sync`` fetches."""

    __tablename__ = "calendar_subscriptions"
    __table_args__ = (UniqueConstraint("practitioner_id", "url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    practitioner_id: Mapped[int] = mapped_column(
        ForeignKey("practitioners.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    url: Mapped[str] = mapped_column(String(2000))
    # What the server said last time, sent back so that it can answer 304 Not Modified.
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    practitioner: Mapped[Practitioner] = relationship()


class ExternalEvent(Base):
    """One series (one UID) from a practitioner's calendar, and the version last applied.

    A cancelled series is kept, without busy time, so that an older copy of its invite arriving
    late cannot bring it back.
    """

    __tablename__ = "external_events"
    __table_args__ = (
        UniqueConstraint("practitioner_id", "uid"),
        CheckConstraint("sequence >= 0", name="sequence_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    practitioner_id: Mapped[int] = mapped_column(ForeignKey("practitioners.id", ondelete="CASCADE"))
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("calendar_subscriptions.id", ondelete="CASCADE"), index=True
    )
    uid: Mapped[str] = mapped_column(String(500))
    summary: Mapped[str] = mapped_column(String(500), default="")
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    dtstamp: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    busy_times: Mapped[list[BusyTime]] = relationship(
        back_populates="event", cascade="all, delete-orphan", passive_deletes=True
    )


class BusyTime(Base):
    """One occurrence of an outside event: time the practitioner cannot be booked.

    ``occurrence`` is the instance's original start (its RECURRENCE-ID), which stays the same
    when the instance is moved. A cancelled instance is kept, not busy, for the same reason as a
    cancelled series.
    """

    __tablename__ = "busy_times"
    __table_args__ = (
        UniqueConstraint("event_id", "occurrence"),
        CheckConstraint("end_at > start_at", name="ends_after_start"),
        CheckConstraint("sequence >= 0", name="sequence_not_negative"),
        Index("ix_busy_times_practitioner_start", "practitioner_id", "start_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("external_events.id", ondelete="CASCADE"))
    practitioner_id: Mapped[int] = mapped_column(ForeignKey("practitioners.id", ondelete="CASCADE"))
    occurrence: Mapped[datetime] = mapped_column(UTCDateTime)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    summary: Mapped[str] = mapped_column(String(500), default="")
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    dtstamp: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)

    event: Mapped[ExternalEvent] = relationship(back_populates="busy_times")
