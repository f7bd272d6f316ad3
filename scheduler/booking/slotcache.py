"""The clinic's schedule version, and a per-worker cache of free slots keyed by it.

Every change that can move a free time (a booking, hours, time off, busy time, a room, a
treatment, a practitioner, the clinic's rules) bumps ``clinics.schedule_version`` in the same
transaction: a ``before_flush`` listener notes the change, bulk statements on those tables are
noted as they run (``do_orm_execute``), and the version is raised once, as the unit of work
commits. A rollback raises nothing.

A request reads the version first (one indexed read) and only then the diaries, so a slot list is
never kept under a version older than its data: a cached answer is right for every worker and app
server that reads the same version. Each worker keeps its own least-recently-used cache; a
transaction that has changed the schedule itself (its change not committed, so the version not
yet raised) neither reads from it nor writes to it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import event, select, update
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from scheduler.booking.availability import Rules, Slot
from scheduler.booking.models import Booking, Course
from scheduler.calendars.models import BusyTime, CalendarSubscription, ExternalEvent
from scheduler.clinic.models import Clinic, Practitioner, Room, TimeOff, Treatment, WorkingHours
from scheduler.unitofwork import OnCommit

# The models whose rows availability reads (scheduler.booking.operations._load_diaries and
# find_slots). Courses and subscriptions only reach it through bookings and busy times, but
# their changes come with those, so bumping for them costs nothing and guards the indirect ones.
SCHEDULE_MODELS: tuple[type, ...] = (
    Booking,
    Course,
    BusyTime,
    ExternalEvent,
    CalendarSubscription,
    Clinic,
    Practitioner,
    Room,
    TimeOff,
    Treatment,
    WorkingHours,
)

# Cached slots are computed for the start of a stretch of this length and filtered for the
# request's own moment, so the minimum notice and the horizon hold to the second.
TIME_BUCKET = timedelta(minutes=5)


def _raise_version(session: Session, changes: list[bool]) -> None:
    # Pending changes first, so that the clinic's row is locked (on PostgreSQL) only for the
    # commit itself and never while this transaction waits for another's rows.
    session.flush()
    session.connection().execute(
        update(Clinic).values(schedule_version=Clinic.schedule_version + 1)
    )


@event.listens_for(Session, "before_commit")
def _flush_before_noting(session: Session) -> None:
    # A commit flushes what is pending only after its before_commit hooks have run: flush it
    # here, first, so that the listener below notes those changes in time for the commit.
    if not session.in_nested_transaction():
        session.flush()


# Registered after the flush above, so that its hook sees what that flush noted.
_CHANGES: OnCommit[bool] = OnCommit("schedule_changes", before=_raise_version)


def bump(session: Session) -> None:
    """Raise the schedule version when ``session`` commits: for writes the listeners cannot
    see (statements on a connection, raw SQL)."""
    _CHANGES.note(session, True)


def changed_here(session: Session) -> bool:
    """Tell whether ``session``'s unit of work has changed the schedule and not yet committed."""
    return _CHANGES.pending(session)


@event.listens_for(Session, "before_flush")
def _note_flushed_changes(session: Session, context: UOWTransaction, instances: Any) -> None:
    if changed_here(session):
        return
    for instance in (*session.new, *session.dirty, *session.deleted):
        if isinstance(instance, SCHEDULE_MODELS) and (
            instance not in session.dirty or session.is_modified(instance)
        ):
            bump(session)
            return


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_changes(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    if mapper is not None and issubclass(mapper.class_, SCHEDULE_MODELS):
        bump(state.session)


def schedule_version(session: Session, clinic: Clinic) -> int:
    """Read the clinic's committed schedule version (not the one its object may hold)."""
    version = session.scalar(select(Clinic.schedule_version).where(Clinic.id == clinic.id))
    return int(version or 0)


def time_bucket(now: datetime) -> datetime:
    """Return the start of the stretch of :data:`TIME_BUCKET` that ``now`` falls in."""
    seconds = TIME_BUCKET.total_seconds()
    return datetime.fromtimestamp(now.timestamp() // seconds * seconds, tz=now.tzinfo)


def widened(rules: Rules) -> Rules:
    """Return ``rules`` with the horizon one bucket longer, for slots computed at a bucket's
    start that must hold every slot any moment of the bucket could see."""
    return Rules(step=rules.step, min_notice=rules.min_notice, horizon=rules.horizon + TIME_BUCKET)


def within(slots: Sequence[Slot], rules: Rules, now: datetime) -> list[Slot]:
    """Keep the slots that ``rules`` allow at ``now``: after the notice, within the horizon."""
    earliest = now + rules.min_notice
    latest = now + rules.horizon
    return [slot for slot in slots if earliest <= slot.start <= latest]


class SlotCache:
    """A least-recently-used map of computed slot lists, safe across threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._slots: OrderedDict[Hashable, list[Slot]] = OrderedDict()

    def get_or_compute(self, key: Hashable, compute: Callable[[], list[Slot]]) -> list[Slot]:
        """Return the slots kept under ``key``, computing and keeping them if there are none."""
        if self.size <= 0:
            return compute()
        with self._lock:
            found = self._slots.get(key)
            if found is not None:
                self._slots.move_to_end(key)
                return found
        slots = compute()
        with self._lock:
            self._slots[key] = slots
            self._slots.move_to_end(key)
            while len(self._slots) > self.size:
                self._slots.popitem(last=False)
        return slots

    def clear(self) -> None:
        """Forget every kept list."""
        with self._lock:
            self._slots.clear()

    def __len__(self) -> int:
        return len(self._slots)


def init_app(app: Flask) -> None:
    """Give the app its worker's slot cache, of ``SLOT_CACHE_SIZE`` lists (0: none)."""
    app.extensions["slot_cache"] = SlotCache(int(app.config.get("SLOT_CACHE_SIZE", 64)))


def slot_cache() -> SlotCache | None:
    """Return the current app's slot cache, or ``None`` when it is turned off."""
    cache: SlotCache | None = current_app.extensions.get("slot_cache")
    return cache if cache is not None and cache.size > 0 else None
