"""Bookings: one patient, one treatment, one practitioner and one room at one time."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.clinic.models import Practitioner, Room, Treatment
from scheduler.db import Base, UTCDateTime, utcnow, value_enum
from scheduler.patients.models import Patient


class BookingStatus(enum.StrEnum):
    """Where a booking stands; every status but ``cancelled`` holds its time."""

    CONFIRMED = "confirmed"
    ARRIVED = "arrived"
    COMPLETED = "completed"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"


LIVE_STATUSES = frozenset(BookingStatus) - {BookingStatus.CANCELLED}


class Course(Base):
    """A course of treatment: sessions booked together, every few weeks at the same time.

    Its sessions are ordinary bookings pointing here; each can be moved or cancelled on its
    own, and ``session_count`` and ``every_weeks`` keep what was asked for.
    """

    __tablename__ = "courses"
    __table_args__ = (
        CheckConstraint("session_count >= 2", name="at_least_two_sessions"),
        CheckConstraint("every_weeks >= 1", name="every_weeks_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    treatment_id: Mapped[int] = mapped_column(ForeignKey("treatments.id"))
    session_count: Mapped[int] = mapped_column(Integer)
    every_weeks: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    treatment: Mapped[Treatment] = relationship()
    patient: Mapped[Patient] = relationship()
    sessions: Mapped[list[Booking]] = relationship(
        back_populates="course", order_by="(Booking.start_at, Booking.id)"
    )


class Booking(Base):
    """A session booked for a patient.

    ``blocked_until`` is the end plus the treatment's buffer (cleaning and notes): the time the
    practitioner and the room are taken, which the database keeps from overlapping.
    """

    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="ends_after_start"),
        CheckConstraint("blocked_until >= end_at", name="blocked_through_end"),
        CheckConstraint("sequence >= 0", name="sequence_not_negative"),
        Index("ix_bookings_practitioner_start", "practitioner_id", "start_at"),
        Index("ix_bookings_room_start", "room_id", "start_at"),
        Index("ix_bookings_start", "start_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    treatment_id: Mapped[int] = mapped_column(ForeignKey("treatments.id"))
    practitioner_id: Mapped[int] = mapped_column(ForeignKey("practitioners.id"))
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    course_id: Mapped[int | None] = mapped_column(
        ForeignKey("courses.id"), index=True, nullable=True
    )
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    blocked_until: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[BookingStatus] = mapped_column(
        value_enum(BookingStatus, "booking_status"),
        default=BookingStatus.CONFIRMED,
    )
    manage_token: Mapped[str] = mapped_column(String(64), unique=True)
    notes: Mapped[str] = mapped_column(Text, default="")  # from the patient, when booking
    # The name and phone number typed when booking, which the booking's own pages and API
    # answer show: whoever books with an address already on file must not see the name and
    # number kept for it (staff and webhooks see the patient's record).
    given_name: Mapped[str] = mapped_column(String(200), default="")
    given_phone: Mapped[str] = mapped_column(String(50), default="")
    staff_notes: Mapped[str] = mapped_column(Text, default="")  # internal; never shown to them
    calendar_uid: Mapped[str] = mapped_column(String(255), unique=True)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancellation_reason: Mapped[str] = mapped_column(String(500), default="")
    late_cancellation: Mapped[bool] = mapped_column(Boolean, default=False)
    # Booked online by a patient the clinic's policy asks staff to approve: the time is held
    # meanwhile; staff approve it (``approved_at``) or decline it, which cancels it.
    approval_requested_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, index=True, nullable=True
    )
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    declined_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    treatment: Mapped[Treatment] = relationship()
    practitioner: Mapped[Practitioner] = relationship()
    room: Mapped[Room] = relationship()
    patient: Mapped[Patient] = relationship()
    course: Mapped[Course | None] = relationship(back_populates="sessions")

    @property
    def is_live(self) -> bool:
        """Whether the booking still holds its time."""
        return self.status in LIVE_STATUSES

    @property
    def awaiting_approval(self) -> bool:
        """Whether the booking is a request staff have yet to approve or decline."""
        return (
            self.approval_requested_at is not None
            and self.approved_at is None
            and self.declined_at is None
            and self.status is BookingStatus.CONFIRMED
        )
