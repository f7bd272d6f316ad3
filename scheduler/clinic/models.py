"""The clinic and what it offers: practitioners, rooms, treatments, working hours, time off,
and the checklists patients receive around each visit."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    Time,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from scheduler.clinic.colours import DEFAULT_BRAND_COLOUR
from scheduler.db import Base, UTCDateTime, value_enum
from scheduler.timeutil import zone

practitioner_treatments = Table(
    "practitioner_treatments",
    Base.metadata,
    Column(
        "practitioner_id",
        ForeignKey("practitioners.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("treatment_id", ForeignKey("treatments.id", ondelete="CASCADE"), primary_key=True),
)


def new_feed_token() -> str:
    """Return an unguessable token (256 bits) for a calendar feed's address."""
    return secrets.token_urlsafe(32)


class Clinic(Base):
    """The clinic this installation serves, with its booking rules."""

    __tablename__ = "clinics"
    __table_args__ = (
        CheckConstraint("slot_step_minutes BETWEEN 5 AND 240", name="slot_step_range"),
        CheckConstraint("min_notice_minutes >= 0", name="min_notice_not_negative"),
        CheckConstraint("horizon_days BETWEEN 1 AND 730", name="horizon_range"),
        CheckConstraint("late_cancel_hours >= 0", name="late_cancel_not_negative"),
        CheckConstraint("aftercare_delay_minutes >= 0", name="aftercare_delay_not_negative"),
        CheckConstraint(
            "approval_threshold IS NULL OR approval_threshold BETWEEN 1 AND 100",
            name="approval_threshold_range",
        ),
        # "#rrggbb"; scheduler.clinic.colours checks the digits and the contrast.
        CheckConstraint(
            "length(brand_colour) = 7 AND substr(brand_colour, 1, 1) = '#'",
            name="brand_colour_hex",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500), default="")
    phone: Mapped[str] = mapped_column(String(50), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/London")
    slot_step_minutes: Mapped[int] = mapped_column(Integer, default=15)
    min_notice_minutes: Mapped[int] = mapped_column(Integer, default=12 * 60)
    horizon_days: Mapped[int] = mapped_column(Integer, default=60)
    late_cancel_hours: Mapped[int] = mapped_column(Integer, default=24)
    # How long before a visit the preparation checklist goes out; one message per lead time.
    checklist_lead_hours: Mapped[list[int]] = mapped_column(JSON, default=lambda: [24])
    # How long after a visit ends the aftercare message goes out.
    aftercare_delay_minutes: Mapped[int] = mapped_column(Integer, default=120)
    # Online bookings by patients with at least this many late cancellations and no-shows
    # wait for staff to approve them; ``None``: never.
    approval_threshold: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The colour of buttons, links and the clinic's name on the pages and in mail, as
    # ``#rrggbb``; the default is the stylesheet's own.
    brand_colour: Mapped[str] = mapped_column(String(7), default=DEFAULT_BRAND_COLOUR)

    @property
    def tz(self) -> ZoneInfo:
        """The clinic's time zone."""
        return zone(self.timezone)

    @property
    def checklist_leads(self) -> list[timedelta]:
        """The checklist lead times, longest first, ignoring anything that is not whole hours."""
        hours = {h for h in self.checklist_lead_hours or [] if isinstance(h, int) and h > 0}
        return [timedelta(hours=h) for h in sorted(hours, reverse=True)]

    @property
    def aftercare_delay(self) -> timedelta:
        """How long after a visit ends its aftercare message is due."""
        return timedelta(minutes=self.aftercare_delay_minutes)

    @classmethod
    def get(cls, session: Session) -> Clinic | None:
        """Return the clinic, or ``None`` before the database is set up."""
        return session.scalars(select(cls).order_by(cls.id).limit(1)).first()


class Treatment(Base):
    """Something a patient can book: how long it takes and what it needs after."""

    __tablename__ = "treatments"
    __table_args__ = (
        CheckConstraint("duration_minutes BETWEEN 5 AND 480", name="duration_range"),
        CheckConstraint("buffer_minutes BETWEEN 0 AND 240", name="buffer_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    duration_minutes: Mapped[int] = mapped_column(Integer)
    buffer_minutes: Mapped[int] = mapped_column(Integer, default=0)
    first_visit: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # The kind of room it needs (a room's ``kind``, e.g. "cupping"); ``None``: any room.
    room_kind: Mapped[str | None] = mapped_column(String(60), nullable=True)

    practitioners: Mapped[list[Practitioner]] = relationship(
        secondary=practitioner_treatments, back_populates="treatments"
    )


class Practitioner(Base):
    """An acupuncturist who treats patients."""

    __tablename__ = "practitioners"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    credentials: Mapped[str] = mapped_column(String(300), default="")
    licence: Mapped[str] = mapped_column(String(300), default="")
    bio: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The secret in the address of the practitioner's calendar feed; rotating it revokes
    # every copy of the old address.
    feed_token: Mapped[str] = mapped_column(String(64), unique=True, default=new_feed_token)

    treatments: Mapped[list[Treatment]] = relationship(
        secondary=practitioner_treatments, back_populates="practitioners"
    )
    working_hours: Mapped[list[WorkingHours]] = relationship(
        back_populates="practitioner",
        cascade="all, delete-orphan",
        order_by="(WorkingHours.weekday, WorkingHours.start_time)",
    )


class Room(Base):
    """A treatment room; each session needs one for its whole length and buffer.

    ``kind`` says what it is equipped for (lower case, e.g. "electro-acupuncture"; empty for
    an ordinary room); a treatment that requires a kind is only booked into rooms of it.
    """

    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    kind: Mapped[str] = mapped_column(String(60), default="")


class WorkingHours(Base):
    """One interval of a practitioner's weekly hours, in the clinic's wall-clock time."""

    __tablename__ = "working_hours"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),
        CheckConstraint("end_time > start_time", name="ends_after_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    practitioner_id: Mapped[int] = mapped_column(
        ForeignKey("practitioners.id", ondelete="CASCADE"), index=True
    )
    weekday: Mapped[int] = mapped_column(Integer)  # Monday is 0, as in date.weekday()
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)

    practitioner: Mapped[Practitioner] = relationship(back_populates="working_hours")


class TimeOff(Base):
    """A stretch when a practitioner does not work (holiday, training, illness)."""

    __tablename__ = "time_off"
    __table_args__ = (CheckConstraint("end_at > start_at", name="ends_after_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    practitioner_id: Mapped[int] = mapped_column(
        ForeignKey("practitioners.id", ondelete="CASCADE"), index=True
    )
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(200), default="")


class ChecklistSection(enum.StrEnum):
    """Which message a checklist item belongs to."""

    PREPARATION = "preparation"  # before every visit
    FIRST_VISIT = "first_visit"  # added before a first visit
    AFTERCARE = "aftercare"  # after a visit


class ChecklistItem(Base):
    """One line of a checklist, for the whole clinic or for one treatment.

    A treatment with items of its own in a section uses those instead of the clinic's.
    """

    __tablename__ = "checklist_items"
    __table_args__ = (CheckConstraint("length(text) > 0", name="text_not_empty"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id", ondelete="CASCADE"), index=True)
    treatment_id: Mapped[int | None] = mapped_column(
        ForeignKey("treatments.id", ondelete="CASCADE"), index=True, nullable=True
    )
    section: Mapped[ChecklistSection] = mapped_column(
        value_enum(ChecklistSection, "checklist_section")
    )
    text: Mapped[str] = mapped_column(String(500))
    position: Mapped[int] = mapped_column(Integer, default=0)

    clinic: Mapped[Clinic] = relationship()
