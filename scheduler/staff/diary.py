"""The staff's day and week: columns of blocks (bookings, busy time, time off, hours) on a
wall-clock grid in the clinic's zone.

Building a grid only reads; the pages draw it. Each block says where it sits on the grid as a
share of the day shown, so the page needs no script to lay it out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import MAX_BOOKING_SPAN
from scheduler.calendars.models import BusyTime
from scheduler.clinic.models import Clinic, Practitioner, Room, TimeOff, WorkingHours
from scheduler.i18n import format_day
from scheduler.timeutil import day_bounds, local_to_utc

# The grid shows at least these wall-clock hours, and widens to whatever falls outside them.
FIRST_HOUR = 8
LAST_HOUR = 19


@dataclass(frozen=True)
class Block:
    """Something on the grid: ``kind`` is ``booking``, ``busy``, ``off`` or ``open``."""

    kind: str
    start: datetime
    end: datetime
    label: str
    booking: Booking | None = None

    @property
    def status(self) -> str:
        """The booking's status, for its colour ('' for anything else)."""
        return self.booking.status.value if self.booking is not None else ""


@dataclass
class Column:
    """One practitioner, room or day."""

    title: str
    day: date
    blocks: list[Block] = field(default_factory=list)
    opening: list[Block] = field(default_factory=list)


@dataclass
class Grid:
    """Columns on a shared wall-clock axis from ``first_hour`` to ``last_hour``."""

    tz: ZoneInfo
    columns: list[Column]
    first_hour: int = FIRST_HOUR
    last_hour: int = LAST_HOUR

    def __post_init__(self) -> None:
        for column in self.columns:
            for block in [*column.blocks, *column.opening]:
                start, end = (
                    self._minutes(block.start, column.day),
                    self._minutes(block.end, column.day),
                )
                self.first_hour = min(self.first_hour, max(int(start // 60), 0))
                self.last_hour = max(self.last_hour, min(int(-(-end // 60)), 24))

    def _minutes(self, moment: datetime, day: date) -> float:
        """Wall-clock minutes since the start of ``day``, clamped to that day."""
        local = moment.astimezone(self.tz)
        if local.date() < day:
            return 0
        if local.date() > day:
            return 24 * 60
        return local.hour * 60 + local.minute + local.second / 60

    @property
    def hours(self) -> list[int]:
        """The hour lines to draw."""
        return list(range(self.first_hour, self.last_hour))

    def top(self, block: Block, day: date) -> float:
        """Where ``block`` starts, as a percentage of the grid's height."""
        span = (self.last_hour - self.first_hour) * 60
        return round(100 * (self._minutes(block.start, day) - self.first_hour * 60) / span, 3)

    def height(self, block: Block, day: date) -> float:
        """How tall ``block`` is, as a percentage of the grid's height."""
        span = (self.last_hour - self.first_hour) * 60
        length = self._minutes(block.end, day) - self._minutes(block.start, day)
        return round(100 * max(length, 5) / span, 3)

    @property
    def frame(self) -> str:
        """The classes that tell ``static/grid.css`` which hours the grid spans."""
        return f"from-{self.first_hour} span-{self.last_hour - self.first_hour}"

    def place(self, block: Block, day: date) -> str:
        """The classes that place ``block`` on the grid (a ``style`` attribute would need the
        content security policy to allow inline styles): its start and length in whole hours
        and minutes, turned into a top and a height by ``static/grid.css``."""
        start = round(self._minutes(block.start, day))
        length = max(round(self._minutes(block.end, day)) - start, 5)
        return f"at-h{start // 60} at-m{start % 60} len-h{length // 60} len-m{length % 60}"


def _opening(hours: Sequence[WorkingHours], day: date, tz: ZoneInfo) -> list[Block]:
    return [
        Block("open", local_to_utc(day, h.start_time, tz), local_to_utc(day, h.end_time, tz), "")
        for h in hours
        if h.weekday == day.weekday()
    ]


def _bookings(
    session: Session, start: datetime, end: datetime, practitioner_ids: Sequence[int]
) -> list[Booking]:
    return list(
        session.scalars(
            select(Booking)
            .options(
                selectinload(Booking.patient),
                selectinload(Booking.treatment),
                selectinload(Booking.room),
            )
            .where(
                Booking.practitioner_id.in_(practitioner_ids),
                Booking.status != BookingStatus.CANCELLED,
                Booking.start_at >= start - MAX_BOOKING_SPAN,
                Booking.start_at < end,
                Booking.end_at > start,
            )
            .order_by(Booking.start_at)
        )
    )


def _booking_block(booking: Booking) -> Block:
    label = f"{booking.patient.name} · {booking.treatment.name}"
    return Block("booking", booking.start_at, booking.end_at, label, booking)


def _away(
    session: Session, start: datetime, end: datetime, practitioner_ids: Sequence[int]
) -> dict[int, list[Block]]:
    """Busy time and time off by practitioner, overlapping ``[start, end)``."""
    found: dict[int, list[Block]] = defaultdict(list)
    for busy in session.scalars(
        select(BusyTime).where(
            BusyTime.practitioner_id.in_(practitioner_ids),
            BusyTime.cancelled.is_(False),
            BusyTime.start_at < end,
            BusyTime.end_at > start,
        )
    ):
        found[busy.practitioner_id].append(
            Block("busy", busy.start_at, busy.end_at, busy.summary or "Busy")
        )
    for off in session.scalars(
        select(TimeOff).where(
            TimeOff.practitioner_id.in_(practitioner_ids),
            TimeOff.start_at < end,
            TimeOff.end_at > start,
        )
    ):
        found[off.practitioner_id].append(
            Block("off", off.start_at, off.end_at, off.reason or "Time off")
        )
    return found


def day_grid(
    session: Session,
    clinic: Clinic,
    day: date,
    practitioners: Sequence[Practitioner],
    *,
    by_room: bool = False,
) -> Grid:
    """Return one day: a column per practitioner, or per room with ``by_room``."""
    tz = clinic.tz
    start, end = day_bounds(day, day, tz)
    ids = [p.id for p in practitioners]
    bookings = _bookings(session, start, end, ids)
    if by_room:
        rooms = session.scalars(select(Room).where(Room.active.is_(True)).order_by(Room.id))
        room_columns = {room.id: Column(room.name, day) for room in rooms}
        for booking in bookings:
            column = room_columns.setdefault(booking.room_id, Column(booking.room.name, day))
            column.blocks.append(_booking_block(booking))
        return Grid(tz, list(room_columns.values()))
    away = _away(session, start, end, ids)
    columns = []
    for practitioner in practitioners:
        column = Column(practitioner.name, day)
        column.opening = _opening(practitioner.working_hours, day, tz)
        column.blocks = sorted(
            away[practitioner.id]
            + [_booking_block(b) for b in bookings if b.practitioner_id == practitioner.id],
            key=lambda block: block.start,
        )
        columns.append(column)
    return Grid(tz, columns)


def week_grid(session: Session, clinic: Clinic, monday: date, practitioner: Practitioner) -> Grid:
    """Return a practitioner's week from ``monday``: a column per day."""
    tz = clinic.tz
    days = [monday + timedelta(days=offset) for offset in range(7)]
    start, end = day_bounds(days[0], days[-1], tz)
    blocks = _away(session, start, end, [practitioner.id])[practitioner.id]
    blocks += [_booking_block(b) for b in _bookings(session, start, end, [practitioner.id])]
    columns = []
    for day in days:
        day_start, day_end = day_bounds(day, day, tz)
        column = Column(format_day(day, "short_day"), day)
        column.opening = _opening(practitioner.working_hours, day, tz)
        column.blocks = sorted(
            (b for b in blocks if b.start < day_end and b.end > day_start),
            key=lambda block: block.start,
        )
        columns.append(column)
    return Grid(tz, columns)


def day_sheet(
    session: Session, clinic: Clinic, day: date, practitioners: Sequence[Practitioner]
) -> list[tuple[Practitioner, list[Booking]]]:
    """Return each practitioner's bookings of the day, for the printed sheet."""
    start, end = day_bounds(day, day, clinic.tz)
    bookings = _bookings(session, start, end, [p.id for p in practitioners])
    return [(p, [b for b in bookings if b.practitioner_id == p.id]) for p in practitioners]


@dataclass(frozen=True)
class Agenda:
    """A practitioner's bookings (cancelled ones left out) and time away (``busy`` and
    ``off`` blocks) over some days, each in order of start."""

    practitioner: Practitioner
    bookings: list[Booking]
    away: list[Block]


def agendas(
    session: Session,
    clinic: Clinic,
    first: date,
    last: date,
    practitioners: Sequence[Practitioner],
    *,
    with_bookings: bool = True,
) -> list[Agenda]:
    """Return each practitioner's agenda: what overlaps the clinic's days ``first`` to
    ``last``, both inclusive (without bookings when not ``with_bookings``)."""
    start, end = day_bounds(first, last, clinic.tz)
    ids = [p.id for p in practitioners]
    bookings = _bookings(session, start, end, ids) if with_bookings else []
    away = _away(session, start, end, ids)
    return [
        Agenda(
            practitioner,
            [b for b in bookings if b.practitioner_id == practitioner.id],
            sorted(away[practitioner.id], key=lambda block: (block.start, block.end)),
        )
        for practitioner in practitioners
    ]
