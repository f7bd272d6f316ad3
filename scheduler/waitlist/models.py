"""Waitlist entries (who waits for which treatment, practitioner and days) and the offers of
freed times made to them."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from scheduler.booking.models import Booking
from scheduler.clinic.models import Practitioner, Treatment
from scheduler.db import Base, UTCDateTime, utcnow, value_enum
from scheduler.patients.models import Patient


class EntryStatus(enum.StrEnum):
    """Where a place on the waitlist stands; one whose days have all passed is over too."""

    WAITING = "waiting"
    BOOKED = "booked"  # the patient booked a time offered to them
    LEFT = "left"  # the patient left the list


class OfferStatus(enum.StrEnum):
    """Where an offer stands; an open one past ``expires_at`` has expired."""

    OFFERED = "offered"
    TAKEN = "taken"  # booked from this offer
    GONE = "gone"  # someone else booked the time first
    WITHDRAWN = "withdrawn"  # the patient booked another offer or left the list


class WaitlistEntry(Base):
    """A patient waiting for ``treatment`` with ``practitioner`` (``None``: anyone) on some days.

    Entries are offered freed times in the order they joined (``created_at``, then ``id``).
    ``token`` is the secret in the patient's link to see and leave their place.
    """

    __tablename__ = "waitlist_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    treatment_id: Mapped[int] = mapped_column(ForeignKey("treatments.id"))
    practitioner_id: Mapped[int | None] = mapped_column(
        ForeignKey("practitioners.id"), nullable=True
    )
    status: Mapped[EntryStatus] = mapped_column(
        value_enum(EntryStatus, "waitlist_entry_status"), default=EntryStatus.WAITING
    )
    token: Mapped[str] = mapped_column(String(64), unique=True)
    # As typed when joining; shown on the place's own page and API answer (see Booking).
    given_name: Mapped[str] = mapped_column(String(200), default="")
    given_phone: Mapped[str] = mapped_column(String(50), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    patient: Mapped[Patient] = relationship()
    treatment: Mapped[Treatment] = relationship()
    practitioner: Mapped[Practitioner | None] = relationship()
    days: Mapped[list[WaitlistDay]] = relationship(
        cascade="all, delete-orphan", order_by="WaitlistDay.day"
    )
    offers: Mapped[list[WaitlistOffer]] = relationship(
        back_populates="entry", order_by="(WaitlistOffer.created_at, WaitlistOffer.id)"
    )

    @property
    def dates(self) -> list[date]:
        """The days the patient can come, in order."""
        return [day.day for day in self.days]


class WaitlistDay(Base):
    """One of the clinic's dates a waitlist entry can come on."""

    __tablename__ = "waitlist_days"

    entry_id: Mapped[int] = mapped_column(
        ForeignKey("waitlist_entries.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True, index=True)


class WaitlistOffer(Base):
    """A freed time offered to a waiting patient by mail: the first to book it has it.

    The offer goes out at ``offered_at`` (later for those who joined after others offered the
    same time, so that whoever joined first gets a head start) and can be booked until
    ``expires_at``. An entry is never offered the same time with the same practitioner twice.
    """

    __tablename__ = "waitlist_offers"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="ends_after_start"),
        CheckConstraint("expires_at > offered_at", name="expires_after_offered"),
        UniqueConstraint("entry_id", "practitioner_id", "start_at"),
        Index("ix_waitlist_offers_practitioner_start", "practitioner_id", "start_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("waitlist_entries.id", ondelete="CASCADE"))
    practitioner_id: Mapped[int] = mapped_column(ForeignKey("practitioners.id"))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[OfferStatus] = mapped_column(
        value_enum(OfferStatus, "waitlist_offer_status"), default=OfferStatus.OFFERED
    )
    token: Mapped[str] = mapped_column(String(64), unique=True)
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    entry: Mapped[WaitlistEntry] = relationship(back_populates="offers")
    practitioner: Mapped[Practitioner] = relationship()
    booking: Mapped[Booking | None] = relationship()

    def is_open(self, now: datetime) -> bool:
        """Whether the offer can still be booked (if the time is still free)."""
        return self.status is OfferStatus.OFFERED and self.offered_at <= now < self.expires_at
