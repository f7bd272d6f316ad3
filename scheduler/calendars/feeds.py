"""Practitioners' subscription feeds: what they hold and a cheap version to answer 304s."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, selectinload

from scheduler.booking.models import Booking, BookingStatus
from scheduler.clinic.models import Clinic, Practitioner
from scheduler.timeutil import day_bounds

FEED_PAST = timedelta(days=31)
FEED_FUTURE = timedelta(days=365)


@dataclass(frozen=True)
class FeedVersion:
    """Identifies a feed's content without building it."""

    etag: str
    last_modified: datetime | None


def feed_window(clinic: Clinic, now: datetime) -> tuple[datetime, datetime]:
    """The stretch a feed covers: the last month and the next twelve, by whole local days."""
    today = now.astimezone(clinic.tz).date()
    return day_bounds(today - FEED_PAST, today + FEED_FUTURE, clinic.tz)


def _in_window(
    practitioner: Practitioner, start: datetime, end: datetime
) -> tuple[ColumnElement[bool], ...]:
    return (
        Booking.practitioner_id == practitioner.id,
        Booking.start_at >= start,
        Booking.start_at < end,
    )


def feed_version(
    session: Session, clinic: Clinic, practitioner: Practitioner, now: datetime
) -> FeedVersion:
    """Return the feed's ETag and Last-Modified from one aggregate query.

    Any booking made, moved or cancelled in the window changes the count or the latest
    ``updated_at``; the window's first day, the clinic's details and the practitioner's name
    are in the hash too, since the feed shows them.
    """
    start, end = feed_window(clinic, now)
    count, latest = session.execute(
        select(func.count(Booking.id), func.max(Booking.updated_at)).where(
            *_in_window(practitioner, start, end)
        )
    ).one()
    parts = [
        start.isoformat(),
        str(count),
        latest.isoformat() if latest else "",
        practitioner.name,
        clinic.name,
        clinic.address,
        clinic.email,
        clinic.timezone,
    ]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return FeedVersion(etag=digest, last_modified=latest)


def feed_bookings(
    session: Session, practitioner: Practitioner, first: datetime, last: datetime
) -> list[Booking]:
    """Return the practitioner's live bookings starting in ``[first, last)``, in order."""
    return list(
        session.scalars(
            select(Booking)
            .where(
                *_in_window(practitioner, first, last),
                Booking.status != BookingStatus.CANCELLED,
            )
            .options(
                selectinload(Booking.treatment),
                selectinload(Booking.patient),
                selectinload(Booking.practitioner),
            )
            .order_by(Booking.start_at)
        )
    )
