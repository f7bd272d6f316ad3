"""The audit trail: who created, changed, cancelled, viewed, exported or erased what, and when.

Operations write an :class:`AuditEvent` beside each change in the same transaction, so the
trail can never say something happened that did not, or miss something that did.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import force_locale, gettext
from sqlalchemy import JSON, ForeignKey, Index, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from scheduler.db import Base, UTCDateTime, value_enum
from scheduler.i18n import N_, format_local, label


class AuditAction(enum.StrEnum):
    """What happened."""

    BOOKED = "booked"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"
    STATUS_CHANGED = "status_changed"
    NOTES_CHANGED = "notes_changed"
    IMPORTED = "imported"
    PATIENT_UPDATED = "patient_updated"
    PATIENT_EXPORTED = "patient_exported"
    RECORD_VIEWED = "record_viewed"
    PATIENT_ERASED = "patient_erased"
    INTAKE_UPDATED = "intake_updated"
    ROOM_CHANGED = "room_changed"
    APPROVED = "approved"
    DECLINED = "declined"


@dataclass(frozen=True)
class Actor:
    """Who did it: a staff account, or someone without one (the patient, an import)."""

    label: str
    user_id: int | None = None

    @property
    def is_staff(self) -> bool:
        """Whether a staff member acts, to whom the patients' notice and horizon do not apply."""
        return self.user_id is not None


PATIENT = Actor("patient")
CALENDAR_IMPORT = Actor("calendar import")
RETENTION = Actor("retention rule")


class AuditEvent(Base):
    """One entry of the trail, about a booking, a patient, or both.

    ``actor`` keeps the name as it was, so the trail still reads after an account is removed.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_booking_at", "booking_id", "at"),
        Index("ix_audit_events_patient_at", "patient_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[AuditAction] = mapped_column(value_enum(AuditAction, "audit_action"))
    actor: Mapped[str] = mapped_column(String(254))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    booking_id: Mapped[int | None] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), nullable=True
    )
    patient_id: Mapped[int | None] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), nullable=True
    )
    # What the entry says, in English (the API, exports and old entries have only this), and,
    # for entries written since revision 0021, the message and values it was written from,
    # so that each page says it in its reader's language (:func:`detail_text`).
    detail: Mapped[str] = mapped_column(String(1000), default="")
    detail_data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


@dataclass(frozen=True)
class At:
    """A moment in a :class:`Detail`, written in the clinic's zone for each reader."""

    moment: datetime
    tz: ZoneInfo


@dataclass(frozen=True)
class Labels:
    """Statuses, fields or places in a :class:`Detail`, each named in the reader's language
    (:func:`scheduler.i18n.label`), joined with commas."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class Detail:
    """What an entry says: a message of the catalogue (marked with ``N_``) and its values.

    Text values (names, a patient's own reason) are shown as they are; :class:`At` and
    :class:`Labels` are written in the reader's language.
    """

    message: str
    values: Mapping[str, str | int | At | Labels] = field(default_factory=dict)

    def stored(self) -> dict[str, Any]:
        """The message and values as JSON, for ``detail_data``."""
        return {"message": self.message, "values": {k: _store(v) for k, v in self.values.items()}}


def _store(value: str | int | At | Labels) -> Any:
    if isinstance(value, At):
        return {"at": value.moment.isoformat(), "tz": value.tz.key}
    if isinstance(value, Labels):
        return {"labels": list(value.values)}
    return value


def _shown(value: Any) -> Any:
    if isinstance(value, dict) and "at" in value:
        return format_local(datetime.fromisoformat(value["at"]), ZoneInfo(value["tz"]))
    if isinstance(value, dict) and "labels" in value:
        return ", ".join(label(each, "-") for each in value["labels"])
    return value


def render(data: dict[str, Any]) -> str:
    """Write stored detail data in the current language (a message without values is not
    formatted, so a ``%`` in it stays as it is)."""
    values = {name: _shown(value) for name, value in data.get("values", {}).items()}
    return gettext(data["message"], **values)


def detail_text(event: AuditEvent) -> str:
    """What ``event`` says, in the page's language when it was written from a message."""
    if not event.detail_data:
        return event.detail
    try:
        return render(event.detail_data)
    except (KeyError, TypeError, ValueError):  # a message or value this version cannot read
        return event.detail


def record(
    session: Session,
    *,
    actor: Actor,
    action: AuditAction,
    now: datetime,
    booking_id: int | None = None,
    patient_id: int | None = None,
    detail: str | Detail = "",
) -> AuditEvent:
    """Add an entry to the trail (flushed with the change it describes); a :class:`Detail`
    is kept as its message and values, and as English text."""
    data: dict[str, Any] | None = None
    if isinstance(detail, Detail):
        data = stored = detail.stored()
        with force_locale("en"):
            text = render(stored)
    else:
        text = detail
    event = AuditEvent(
        at=now,
        action=action,
        actor=actor.label[:254],
        user_id=actor.user_id,
        booking_id=booking_id,
        patient_id=patient_id,
        detail=text[:1000],
        detail_data=data,
    )
    session.add(event)
    return event


def trail(
    session: Session, *, booking_id: int | None = None, patient_id: int | None = None
) -> list[AuditEvent]:
    """Return the entries about a booking or a patient, oldest first."""
    query = select(AuditEvent).order_by(AuditEvent.at, AuditEvent.id)
    if booking_id is not None:
        query = query.where(AuditEvent.booking_id == booking_id)
    if patient_id is not None:
        query = query.where(AuditEvent.patient_id == patient_id)
    return list(session.scalars(query))


# A staff member who reloads a record, or opens it again a few minutes later, is still on the
# same look at it: one entry per person, record and place within this window keeps the trail
# readable without losing who looked, where, and about when.
VIEW_WINDOW = timedelta(minutes=10)


class Viewed(enum.StrEnum):
    """Where a patient's record, or its health answers, were shown."""

    PATIENT_PAGE = N_("patient page")
    PATIENT_API = N_("patient, through the staff API")
    BOOKING_PAGE = N_("health answers on the booking page")
    BOOKING_API = N_("health answers, through the staff API")


def record_view(
    session: Session,
    *,
    actor: Actor,
    where: Viewed,
    now: datetime,
    patient_id: int,
    booking_id: int | None = None,
) -> AuditEvent | None:
    """Note that a staff member was shown a patient's record; ``None`` when the same person
    saw the same thing in the same place within :data:`VIEW_WINDOW`."""
    recent = session.scalar(
        select(AuditEvent.id)
        .where(
            AuditEvent.action == AuditAction.RECORD_VIEWED,
            AuditEvent.patient_id == patient_id,
            AuditEvent.actor == actor.label[:254],
            AuditEvent.detail == where.value,
            AuditEvent.at > now - VIEW_WINDOW,
        )
        .limit(1)
    )
    if recent is not None:
        return None
    return record(
        session,
        actor=actor,
        action=AuditAction.RECORD_VIEWED,
        now=now,
        patient_id=patient_id,
        booking_id=booking_id,
        detail=Detail(where.value),
    )
