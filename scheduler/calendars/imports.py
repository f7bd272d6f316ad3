"""Apply what calendar files say to a practitioner's busy time, as iTIP (RFC 5546) means it.

A REQUEST or PUBLISH creates or updates a series by UID, or one instance by RECURRENCE-ID, only
when its SEQUENCE (then DTSTAMP) is not older than what is stored; a CANCEL removes the series
or one instance; a stale message changes nothing. Bookings that the new busy time overlaps are
listed, never touched. Like every operation, this only flushes: the caller commits.
"""

from __future__ import annotations

import time as monotonic_clock
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import accumulate
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from scheduler.booking.models import LIVE_STATUSES, Booking
from scheduler.calendars.expansion import (
    Expansion,
    Occurrence,
    Series,
    Window,
    expand,
    version_key,
)
from scheduler.calendars.models import BusyTime, CalendarSubscription, ExternalEvent
from scheduler.calendars.reading import Limits, read_calendar_file
from scheduler.clinic.models import Clinic, Practitioner

# Busy time is expanded from a month back (the staff views show the recent past) to this far
# ahead, whatever the clinic's booking horizon: a horizon may be lengthened later.
WINDOW_BEFORE = timedelta(days=31)
WINDOW_AFTER = timedelta(days=731)
_IN_CHUNKS = 500


def import_window(now: datetime) -> Window:
    """Return the window within which imported series are expanded."""
    return Window(now - WINDOW_BEFORE, now + WINDOW_AFTER)


@dataclass(frozen=True)
class Clash:
    """A booking that imported busy time now overlaps."""

    booking: Booking
    summary: str
    start: datetime
    end: datetime


@dataclass
class ImportReport:
    """What an import did, counted as the contract's one-line summary, with the details."""

    imported: int = 0
    updated: int = 0
    cancelled: int = 0
    skipped: int = 0
    errors: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    clashes: list[Clash] = field(default_factory=list)

    def summary(self) -> str:
        """Return ``imported N, updated N, cancelled N, skipped N, errors N``."""
        return (
            f"imported {self.imported}, updated {self.updated}, cancelled {self.cancelled}, "
            f"skipped {self.skipped}, errors {self.errors}"
        )

    def add(self, other: ImportReport) -> None:
        """Add another report's counts and details to this one."""
        self.imported += other.imported
        self.updated += other.updated
        self.cancelled += other.cancelled
        self.skipped += other.skipped
        self.errors += other.errors
        self.problems.extend(other.problems)
        self.notes.extend(other.notes)
        self.clashes.extend(other.clashes)


def read_series(
    data: bytes,
    *,
    name: str,
    tz: ZoneInfo,
    now: datetime,
    limits: Limits,
    progress: Callable[[int, int], None] | None = None,
) -> Expansion:
    """Read a file's series within the import window, under one time limit for both steps.

    This touches no database, so callers do it before taking the write lock. Raise
    :class:`~scheduler.calendars.reading.CalendarFileError` if the file is refused whole.
    """
    started = monotonic_clock.monotonic()
    parsed = read_calendar_file(data, name=name, limits=limits)
    expansion = expand(
        parsed.calendars,
        tz=tz,
        window=import_window(now),
        limits=limits,
        started=started,
        progress=progress,
    )
    expansion.notes[:0] = parsed.notes
    return expansion


def import_calendar_file(
    session: Session,
    *,
    clinic: Clinic,
    practitioner: Practitioner,
    data: bytes,
    name: str,
    now: datetime,
    limits: Limits,
    subscription: CalendarSubscription | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Read a file and apply it as the practitioner's busy time.

    Raise :class:`~scheduler.calendars.reading.CalendarFileError` before anything is written
    if the file is refused whole; a bad event in a good file is skipped and reported.
    """
    expansion = read_series(
        data, name=name, tz=clinic.tz, now=now, limits=limits, progress=progress
    )
    return import_busy(
        session, practitioner=practitioner, expansion=expansion, subscription=subscription
    )


def import_busy(
    session: Session,
    *,
    practitioner: Practitioner,
    expansion: Expansion,
    subscription: CalendarSubscription | None = None,
) -> ImportReport:
    """Apply series read from a file as the practitioner's busy time, with the file's notes.

    For a subscription, its events that the file no longer holds are removed.
    """
    report = apply_busy(
        session, practitioner=practitioner, series=expansion.series, subscription=subscription
    )
    report.errors += len(expansion.problems)
    report.problems.extend(expansion.problems)
    report.notes[:0] = expansion.notes
    if subscription is not None:
        report.add(remove_missing(session, subscription, {s.uid for s in expansion.series}))
    return report


def apply_busy(
    session: Session,
    *,
    practitioner: Practitioner,
    series: Sequence[Series],
    subscription: CalendarSubscription | None = None,
) -> ImportReport:
    """Create, update or cancel the practitioner's busy time as each series says."""
    report = ImportReport()
    stored = _stored_events(session, practitioner, [s.uid for s in series])
    added: list[BusyTime] = []
    seen: set[str] = set()
    for one in series:
        if one.uid in seen:
            session.flush()  # a second message about the same event in one file: apply in turn
        seen.add(one.uid)
        event = stored.get(one.uid)
        if event is None:
            event = ExternalEvent(
                practitioner_id=practitioner.id,
                uid=one.uid,
                subscription_id=subscription.id if subscription else None,
            )
            if not one.whole or one.occurrences or one.cancelled:
                session.add(event)
                stored[one.uid] = event
        if one.whole:
            _apply_whole(event, one, report, added)
        else:
            _apply_instances(event, one, report, added)
    session.flush()
    report.clashes = find_clashes(session, practitioner, added)
    return report


def _stored_events(
    session: Session, practitioner: Practitioner, uids: Sequence[str]
) -> dict[str, ExternalEvent]:
    found: dict[str, ExternalEvent] = {}
    unique = sorted(set(uids))
    for index in range(0, len(unique), _IN_CHUNKS):
        chunk = unique[index : index + _IN_CHUNKS]
        query = (
            select(ExternalEvent)
            .where(ExternalEvent.practitioner_id == practitioner.id, ExternalEvent.uid.in_(chunk))
            .options(selectinload(ExternalEvent.busy_times))
        )
        found.update((event.uid, event) for event in session.scalars(query))
    return found


def _is_stale(sequence: int, dtstamp: datetime | None, stored: ExternalEvent | BusyTime) -> bool:
    if stored.id is None:
        return False
    return version_key(sequence, dtstamp) < version_key(stored.sequence, stored.dtstamp)


def _apply_whole(
    event: ExternalEvent, series: Series, report: ImportReport, added: list[BusyTime]
) -> None:
    """Replace the whole series, or cancel it, unless the message is older than what we have."""
    if _is_stale(series.sequence, series.dtstamp, event):
        report.skipped += 1
        return
    was_live = event.id is not None and not event.cancelled
    event.sequence, event.dtstamp = series.sequence, series.dtstamp
    event.summary = series.summary
    if series.cancelled:
        live = [busy for busy in event.busy_times if not busy.cancelled] if was_live else []
        event.cancelled = True
        event.busy_times.clear()
        if live:
            report.cancelled += 1
        else:
            report.skipped += 1
        return
    if not was_live and not any(not o.cancelled for o in series.occurrences):
        report.skipped += 1  # nothing within the window, and nothing to take away
        return
    changed = _replace_occurrences(event, series, added)
    if not was_live:
        event.cancelled = False
        report.imported += 1
    elif changed:
        report.updated += 1
    else:
        report.skipped += 1


def _replace_occurrences(event: ExternalEvent, series: Series, added: list[BusyTime]) -> bool:
    """Make the stored instances those of ``series``, in place; tell whether anything changed.

    An instance changed by a later message (a moved or cancelled one with a higher SEQUENCE)
    keeps that change: an older copy of the whole series does not undo it.
    """
    incoming = version_key(series.sequence, series.dtstamp)
    wanted = {o.key: o for o in series.occurrences if not o.cancelled}
    rows = {busy.occurrence: busy for busy in event.busy_times}
    changed = False
    for key, gone in rows.items():
        if key not in wanted and version_key(gone.sequence, gone.dtstamp) <= incoming:
            event.busy_times.remove(gone)
            changed = changed or not gone.cancelled
    for key, occurrence in wanted.items():
        busy = rows.get(key)
        if busy is None:
            busy = _busy(event, occurrence)
            event.busy_times.append(busy)
        elif version_key(busy.sequence, busy.dtstamp) > incoming:
            continue
        elif not busy.cancelled and _shape(busy) == _shape(occurrence):
            busy.sequence, busy.dtstamp = occurrence.sequence, occurrence.dtstamp
            continue
        else:
            _copy(busy, occurrence)
        added.append(busy)
        changed = True
    return changed


def _apply_instances(
    event: ExternalEvent, series: Series, report: ImportReport, added: list[BusyTime]
) -> None:
    """Move, add or cancel the instances a message lists on their own, each by its version."""
    by_key = {busy.occurrence: busy for busy in event.busy_times} if event.id else {}
    if event.id is None:
        event.sequence, event.dtstamp = series.sequence, series.dtstamp
        event.summary = series.summary
    for occurrence in series.occurrences:
        busy = by_key.get(occurrence.key)
        if busy is not None and _is_stale(occurrence.sequence, occurrence.dtstamp, busy):
            report.skipped += 1
        elif occurrence.cancelled:
            if busy is None or busy.cancelled:
                report.skipped += 1  # nothing was blocked; the instance is kept as cancelled
            else:
                report.cancelled += 1
            if busy is None:
                busy = _busy(event, occurrence)
                event.busy_times.append(busy)
            busy.cancelled = True
            busy.sequence, busy.dtstamp = occurrence.sequence, occurrence.dtstamp
        elif busy is not None and not busy.cancelled and _shape(busy) == _shape(occurrence):
            report.skipped += 1
        else:
            if busy is None:
                busy = _busy(event, occurrence)
                event.busy_times.append(busy)
                report.imported += 1
            else:
                _copy(busy, occurrence)
                report.updated += 1
            event.cancelled = False
            added.append(busy)


def _busy(event: ExternalEvent, occurrence: Occurrence) -> BusyTime:
    busy = BusyTime(practitioner_id=event.practitioner_id, occurrence=occurrence.key)
    _copy(busy, occurrence)
    return busy


def _copy(busy: BusyTime, occurrence: Occurrence) -> None:
    busy.start_at, busy.end_at = occurrence.start, occurrence.end
    busy.summary = occurrence.summary
    busy.all_day = occurrence.all_day
    busy.sequence, busy.dtstamp = occurrence.sequence, occurrence.dtstamp
    busy.cancelled = occurrence.cancelled


def _shape(item: BusyTime | Occurrence) -> tuple[datetime, datetime, str]:
    """Return what a calendar shows of an instance: when, and what it is called."""
    if isinstance(item, BusyTime):
        return item.start_at, item.end_at, item.summary
    return item.start, item.end, item.summary


def remove_missing(
    session: Session, subscription: CalendarSubscription, present: set[str]
) -> ImportReport:
    """Cancel the subscription's events that its calendar no longer holds."""
    report = ImportReport()
    query = select(ExternalEvent).where(
        ExternalEvent.subscription_id == subscription.id, ExternalEvent.cancelled.is_(False)
    )
    for event in session.scalars(query):
        if event.uid in present:
            continue
        if any(not busy.cancelled for busy in event.busy_times):
            report.cancelled += 1
        session.delete(event)
    session.flush()
    return report


def find_clashes(
    session: Session, practitioner: Practitioner, busy_times: Sequence[BusyTime]
) -> list[Clash]:
    """Return the practitioner's live bookings that overlap any of ``busy_times``."""
    busy = sorted((b for b in busy_times if not b.cancelled), key=lambda b: b.start_at)
    if not busy:
        return []
    first = min(b.start_at for b in busy)
    last = max(b.end_at for b in busy)
    bookings = session.scalars(
        select(Booking)
        .where(
            Booking.practitioner_id == practitioner.id,
            Booking.status.in_(LIVE_STATUSES),
            Booking.start_at < last,
            Booking.end_at > first,
        )
        .order_by(Booking.start_at)
    ).all()
    starts = [b.start_at for b in busy]
    reach = list(accumulate((b.end_at for b in busy), max))  # the latest end so far
    clashes: list[Clash] = []
    for booking in bookings:
        # Busy times starting before the booking ends, latest first, until one reaches into it.
        for index in range(bisect_left(starts, booking.end_at) - 1, -1, -1):
            one = busy[index]
            if one.end_at > booking.start_at:
                clashes.append(Clash(booking, one.summary, one.start_at, one.end_at))
                break
            if reach[index] <= booking.start_at:
                break  # nothing that starts earlier reaches the booking either
    return clashes
