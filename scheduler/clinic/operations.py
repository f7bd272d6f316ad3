"""Setting the clinic up: its rules, treatments, practitioners with their hours and time off,
rooms, and checklists.

Each operation checks what only the domain can (a unique email, whether bookings still refer
to something, hours that overlap), changes the objects and flushes; the caller commits.
Nothing a booking refers to is ever deleted: it is archived instead, which takes it out of
what patients can book while past and future bookings keep their treatment, practitioner and
room.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from itertools import pairwise

from flask_babel import gettext
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from scheduler.booking.availability import WeeklyHours
from scheduler.booking.models import LIVE_STATUSES, Booking
from scheduler.clinic.colours import DEFAULT_BRAND_COLOUR, brand_colour_problem, normalise
from scheduler.clinic.models import (
    ChecklistItem,
    ChecklistSection,
    Clinic,
    Practitioner,
    Room,
    TimeOff,
    Treatment,
    WorkingHours,
)
from scheduler.timeutil import is_known_zone

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MAX_LEAD_TIMES = 3
LONGEST_LEAD_HOURS = 14 * 24
LONGEST_CHECKLIST_ITEM = 500
MAX_APPROVAL_THRESHOLD = 100
LONGEST_ROOM_KIND = 60


class SetupError(Exception):
    """A set-up change that cannot go ahead, with a message for the person making it.

    ``field`` names the form field the message belongs next to, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _flush_or_refuse(session: Session, change: Callable[[], None], error: SetupError) -> None:
    """Apply ``change`` and flush it in a savepoint; raise ``error`` if the database refuses.

    The checks before a change read first and write after, so a concurrent request can still
    slip in between; the database's constraints are the last word, and the savepoint keeps the
    caller's transaction usable when they speak.
    """
    try:
        with session.begin_nested():
            change()
    except IntegrityError as exc:
        raise error from exc


# --- The clinic -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClinicDetails:
    """What staff set about the clinic and its booking rules."""

    name: str
    address: str
    phone: str
    email: str
    timezone: str
    slot_step_minutes: int
    min_notice_minutes: int
    horizon_days: int
    late_cancel_hours: int
    checklist_lead_hours: tuple[int, ...]
    aftercare_delay_minutes: int
    approval_threshold: int | None = None  # see scheduler.booking.policies; None: never
    brand_colour: str = DEFAULT_BRAND_COLOUR  # see scheduler.clinic.colours


def check_lead_hours(hours: Sequence[int]) -> None:
    """Raise :class:`SetupError` unless ``hours`` are checklist lead times the clinic can use."""
    if len(hours) > MAX_LEAD_TIMES:
        raise SetupError(
            gettext("Please give at most %(most)d lead times.", most=MAX_LEAD_TIMES),
            field="checklist_lead_hours",
        )
    for value in hours:
        if not 1 <= value <= LONGEST_LEAD_HOURS:
            raise SetupError(
                gettext(
                    "%(value)d is not between 1 and %(most)d hours (two weeks).",
                    value=value,
                    most=LONGEST_LEAD_HOURS,
                ),
                field="checklist_lead_hours",
            )
    if len(set(hours)) != len(hours):
        raise SetupError(
            gettext("Each lead time may appear only once."), field="checklist_lead_hours"
        )


def update_clinic(session: Session, clinic: Clinic, details: ClinicDetails) -> None:
    """Change the clinic's details and booking rules."""
    if not is_known_zone(details.timezone):
        raise SetupError(
            gettext(
                "%(value)s is not a time zone; use a name such as Europe/London.",
                value=repr(details.timezone),
            ),
            field="timezone",
        )
    check_lead_hours(details.checklist_lead_hours)
    threshold = details.approval_threshold or None  # 0 means never, as empty does
    if threshold is not None and not 1 <= threshold <= MAX_APPROVAL_THRESHOLD:
        raise SetupError(
            gettext(
                "Please enter a number from 0 to %(most)d, or leave it empty.",
                most=MAX_APPROVAL_THRESHOLD,
            ),
            field="approval_threshold",
        )
    problem = brand_colour_problem(details.brand_colour)
    if problem is not None:
        raise SetupError(problem, field="brand_colour")
    clinic.name = details.name
    clinic.address = details.address
    clinic.phone = details.phone
    clinic.email = details.email
    clinic.timezone = details.timezone
    clinic.slot_step_minutes = details.slot_step_minutes
    clinic.min_notice_minutes = details.min_notice_minutes
    clinic.horizon_days = details.horizon_days
    clinic.late_cancel_hours = details.late_cancel_hours
    clinic.checklist_lead_hours = sorted(details.checklist_lead_hours, reverse=True)
    clinic.aftercare_delay_minutes = details.aftercare_delay_minutes
    clinic.approval_threshold = threshold
    clinic.brand_colour = normalise(details.brand_colour) or DEFAULT_BRAND_COLOUR
    session.flush()


# --- What bookings refer to -------------------------------------------------------------------


def booking_counts(session: Session, column: InstrumentedAttribute[int]) -> dict[int, int]:
    """Return how many bookings (of any status) refer to each id in ``column``.

    ``column`` is ``Booking.treatment_id``, ``Booking.practitioner_id`` or ``Booking.room_id``.
    """
    rows = session.execute(select(column, func.count()).group_by(column))
    return {row[0]: row[1] for row in rows}


def _is_referenced(session: Session, column: InstrumentedAttribute[int], key: int) -> bool:
    return session.scalars(select(Booking.id).where(column == key).limit(1)).first() is not None


def upcoming_bookings(
    session: Session, column: InstrumentedAttribute[int], key: int, now: datetime
) -> list[Booking]:
    """Return the live bookings from ``now`` on whose ``column`` is ``key``, soonest first."""
    query = (
        select(Booking)
        .where(column == key, Booking.status.in_(LIVE_STATUSES), Booking.end_at > now)
        .order_by(Booking.start_at)
    )
    return list(session.scalars(query))


# --- Treatments -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreatmentDetails:
    """What staff set about a treatment."""

    name: str
    description: str
    duration_minutes: int
    buffer_minutes: int
    first_visit: bool
    position: int
    room_kind: str | None = None  # the kind of room it needs; None: any room


def _apply_treatment(
    treatment: Treatment, details: TreatmentDetails, practitioners: Sequence[Practitioner]
) -> None:
    treatment.name = details.name
    treatment.description = details.description
    treatment.duration_minutes = details.duration_minutes
    treatment.buffer_minutes = details.buffer_minutes
    treatment.first_visit = details.first_visit
    treatment.position = details.position
    treatment.room_kind = room_kind_of(details.room_kind or "") or None
    treatment.practitioners = list(practitioners)


def add_treatment(
    session: Session, details: TreatmentDetails, practitioners: Sequence[Practitioner]
) -> Treatment:
    """Add a treatment given by ``practitioners``; it is bookable at once."""
    treatment = Treatment(active=True)
    _apply_treatment(treatment, details, practitioners)
    session.add(treatment)
    session.flush()
    return treatment


def update_treatment(
    session: Session,
    treatment: Treatment,
    details: TreatmentDetails,
    practitioners: Sequence[Practitioner],
) -> None:
    """Change a treatment; bookings already made keep their times."""
    _apply_treatment(treatment, details, practitioners)
    session.flush()


def set_treatment_active(session: Session, treatment: Treatment, active: bool) -> None:
    """Archive a treatment (patients can no longer book it) or bring it back."""
    treatment.active = active
    session.flush()


def delete_treatment(session: Session, treatment: Treatment) -> None:
    """Delete a treatment no booking refers to, with its own checklist items."""
    refused = SetupError(
        gettext(
            "%(treatment)s has bookings, so it cannot be deleted; archive it instead.",
            treatment=treatment.name,
        )
    )
    if _is_referenced(session, Booking.treatment_id, treatment.id):
        raise refused

    def change() -> None:
        # The foreign key cascades too; saying it here does not depend on SQLite's pragma.
        session.execute(delete(ChecklistItem).where(ChecklistItem.treatment_id == treatment.id))
        session.delete(treatment)

    _flush_or_refuse(session, change, refused)


# --- Practitioners ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PractitionerDetails:
    """What staff set about a practitioner."""

    name: str
    email: str
    credentials: str
    licence: str
    bio: str


def _email_holder(session: Session, email: str, practitioner: Practitioner) -> str | None:
    """Return the name of another practitioner who uses ``email``, if any."""
    query = select(Practitioner.name).where(func.lower(Practitioner.email) == email.lower())
    if practitioner.id is not None:
        query = query.where(Practitioner.id != practitioner.id)
    return session.scalars(query.limit(1)).first()


def _email_in_use(email: str, holder: str) -> SetupError:
    return SetupError(
        gettext(
            "%(holder)s already uses %(email)s; each practitioner needs an email address of "
            "their own.",
            holder=holder,
            email=email,
        ),
        field="email",
    )


def _save_practitioner(
    session: Session,
    practitioner: Practitioner,
    details: PractitionerDetails,
    treatments: Sequence[Treatment],
) -> None:
    email = details.email.strip().lower()
    holder = _email_holder(session, email, practitioner)
    if holder is not None:
        raise _email_in_use(email, holder)

    def change() -> None:
        practitioner.name = details.name
        practitioner.email = email
        practitioner.credentials = details.credentials
        practitioner.licence = details.licence
        practitioner.bio = details.bio
        practitioner.treatments = list(treatments)
        session.add(practitioner)

    _flush_or_refuse(session, change, _email_in_use(email, "Another practitioner"))


def add_practitioner(
    session: Session, details: PractitionerDetails, treatments: Sequence[Treatment]
) -> Practitioner:
    """Add a practitioner who gives ``treatments``; they have no hours until some are set."""
    practitioner = Practitioner(active=True)
    _save_practitioner(session, practitioner, details, treatments)
    return practitioner


def update_practitioner(
    session: Session,
    practitioner: Practitioner,
    details: PractitionerDetails,
    treatments: Sequence[Treatment],
) -> None:
    """Change a practitioner's details and the treatments they give."""
    _save_practitioner(session, practitioner, details, treatments)


def set_practitioner_active(session: Session, practitioner: Practitioner, active: bool) -> None:
    """Archive a practitioner (patients can no longer book them) or bring them back.

    Their bookings stand either way; staff move or cancel those themselves.
    """
    practitioner.active = active
    session.flush()


# --- Weekly hours -----------------------------------------------------------------------------


def check_intervals(intervals: Sequence[tuple[time, time]]) -> None:
    """Raise :class:`SetupError` unless each interval ends after it starts and none overlap."""
    for start, end in intervals:
        if end <= start:
            raise SetupError(
                gettext(
                    "%(start)s-%(end)s ends before it starts.",
                    start=f"{start:%H:%M}",
                    end=f"{end:%H:%M}",
                )
            )
    ordered = sorted(intervals)
    for (start, end), (next_start, next_end) in pairwise(ordered):
        if next_start < end:
            raise SetupError(
                gettext(
                    "%(first)s and %(second)s overlap.",
                    first=f"{start:%H:%M}-{end:%H:%M}",
                    second=f"{next_start:%H:%M}-{next_end:%H:%M}",
                )
            )


def replace_working_hours(
    session: Session, practitioner: Practitioner, hours: Sequence[WeeklyHours]
) -> None:
    """Replace all of a practitioner's weekly hours with ``hours`` in one go."""
    for weekday, name in enumerate(WEEKDAYS):
        try:
            check_intervals([(h.start, h.end) for h in hours if h.weekday == weekday])
        except SetupError as exc:
            raise SetupError(exc.message, field=name.lower()) from exc
    practitioner.working_hours = [
        WorkingHours(weekday=h.weekday, start_time=h.start, end_time=h.end)
        for h in sorted(hours, key=lambda h: (h.weekday, h.start))
    ]
    session.flush()


def bookings_outside_hours(
    session: Session, clinic: Clinic, practitioner: Practitioner, now: datetime
) -> list[Booking]:
    """Return the practitioner's coming live bookings that their weekly hours no longer cover."""
    tz = clinic.tz
    outside = []
    for booking in upcoming_bookings(session, Booking.practitioner_id, practitioner.id, now):
        start, end = booking.start_at.astimezone(tz), booking.end_at.astimezone(tz)
        covered = start.date() == end.date() and any(
            h.weekday == start.weekday()
            and h.start_time <= start.time()
            and end.time() <= h.end_time
            for h in practitioner.working_hours
        )
        if not covered:
            outside.append(booking)
    return outside


# --- Time off ---------------------------------------------------------------------------------


def bookings_during(
    session: Session, practitioner: Practitioner, start: datetime, end: datetime
) -> list[Booking]:
    """Return the practitioner's live bookings that overlap ``[start, end)``, soonest first."""
    query = (
        select(Booking)
        .where(
            Booking.practitioner_id == practitioner.id,
            Booking.status.in_(LIVE_STATUSES),
            Booking.start_at < end,
            Booking.end_at > start,
        )
        .order_by(Booking.start_at)
    )
    return list(session.scalars(query))


def add_time_off(
    session: Session, *, practitioner: Practitioner, start: datetime, end: datetime, reason: str
) -> TimeOff:
    """Add time off; bookings inside it stand until staff move or cancel them."""
    if end <= start:
        raise SetupError(gettext("The time off must end after it starts."), field="end_date")
    off = TimeOff(practitioner_id=practitioner.id, start_at=start, end_at=end, reason=reason)
    session.add(off)
    session.flush()
    return off


def remove_time_off(session: Session, off: TimeOff) -> None:
    """Remove time off; the practitioner's hours apply again."""
    session.delete(off)
    session.flush()


# --- Rooms ------------------------------------------------------------------------------------


def room_kind_of(text: str) -> str:
    """Return a kind of room as it is kept: one line, single spaces, lower case, so that
    "Cupping " and "cupping" are the same kind."""
    kind = " ".join(text.split()).lower()
    if len(kind) > LONGEST_ROOM_KIND:
        raise SetupError(
            gettext("Please keep the kind to %(most)d characters.", most=LONGEST_ROOM_KIND),
            field="kind",
        )
    return kind


def add_room(session: Session, name: str, kind: str = "") -> Room:
    """Add a room of ``kind`` (empty: an ordinary room); bookings can use it at once."""
    room = Room(name=name, kind=room_kind_of(kind), active=True)
    session.add(room)
    session.flush()
    return room


def update_room(session: Session, room: Room, *, name: str, kind: str) -> None:
    """Rename a room and set its kind; its bookings stay where they are."""
    room.name = name
    room.kind = room_kind_of(kind)
    session.flush()


def room_kinds(session: Session) -> list[str]:
    """Return every kind of room the clinic has named, in use or archived, alphabetically."""
    query = select(Room.kind).where(Room.kind != "").distinct().order_by(Room.kind)
    return list(session.scalars(query))


def unbookable_for_rooms(session: Session) -> dict[str, list[Treatment]]:
    """Return the bookable treatments that need a kind of room no room in use is, by kind."""
    in_use = select(Room.kind).where(Room.active.is_(True))
    query = (
        select(Treatment)
        .where(
            Treatment.active.is_(True),
            Treatment.room_kind.is_not(None),
            Treatment.room_kind.not_in(in_use),
        )
        .order_by(Treatment.room_kind, Treatment.position, Treatment.id)
    )
    found: dict[str, list[Treatment]] = {}
    for treatment in session.scalars(query):
        found.setdefault(treatment.room_kind or "", []).append(treatment)
    return found


def bookings_in_other_kind(session: Session, room: Room, now: datetime) -> list[Booking]:
    """Return the coming live bookings in ``room`` whose treatment needs another kind of room."""
    return [
        booking
        for booking in upcoming_bookings(session, Booking.room_id, room.id, now)
        if booking.treatment.room_kind is not None and booking.treatment.room_kind != room.kind
    ]


def set_room_active(session: Session, room: Room, active: bool) -> None:
    """Archive a room (new bookings no longer use it) or bring it back."""
    room.active = active
    session.flush()


def delete_room(session: Session, room: Room) -> None:
    """Delete a room no booking refers to."""
    refused = SetupError(
        gettext(
            "%(room)s has bookings, so it cannot be deleted; archive it instead.", room=room.name
        )
    )
    if _is_referenced(session, Booking.room_id, room.id):
        raise refused
    _flush_or_refuse(session, lambda: session.delete(room), refused)


# --- Checklists -------------------------------------------------------------------------------


def own_checklist(
    session: Session, clinic: Clinic, treatment: Treatment | None
) -> dict[ChecklistSection, list[str]]:
    """Return the items set for ``treatment`` itself (``None``: the clinic's), by section.

    Unlike :func:`~scheduler.clinic.checklists.checklist_for`, a treatment's empty section
    stays empty here rather than showing the clinic's items it falls back to.
    """
    owner = (
        ChecklistItem.treatment_id.is_(None)
        if treatment is None
        else ChecklistItem.treatment_id == treatment.id
    )
    query = (
        select(ChecklistItem)
        .where(ChecklistItem.clinic_id == clinic.id, owner)
        .order_by(ChecklistItem.position, ChecklistItem.id)
    )
    found: dict[ChecklistSection, list[str]] = {section: [] for section in ChecklistSection}
    for item in session.scalars(query):
        found[item.section].append(item.text)
    return found


def replace_checklist(
    session: Session,
    *,
    clinic: Clinic,
    treatment: Treatment | None,
    section: ChecklistSection,
    texts: Sequence[str],
) -> None:
    """Replace one section of the clinic's (or a treatment's own) checklist with ``texts``.

    For a treatment, no texts means the clinic's items apply; for the clinic, that nothing is
    said in that section.
    """
    for text in texts:
        if not text or len(text) > LONGEST_CHECKLIST_ITEM:
            raise SetupError(
                gettext("Each item needs 1 to %(most)d characters.", most=LONGEST_CHECKLIST_ITEM),
                field=section.value,
            )
    owner = (
        ChecklistItem.treatment_id.is_(None)
        if treatment is None
        else ChecklistItem.treatment_id == treatment.id
    )
    old = session.scalars(
        select(ChecklistItem).where(
            ChecklistItem.clinic_id == clinic.id, ChecklistItem.section == section, owner
        )
    )
    for item in old:
        session.delete(item)
    session.add_all(
        ChecklistItem(
            clinic_id=clinic.id,
            treatment_id=None if treatment is None else treatment.id,
            section=section,
            text=text,
            position=position,
        )
        for position, text in enumerate(texts)
    )
    session.flush()
