"""Booking, rescheduling and cancelling: the steps a view or a command calls, one per unit.

Operations take the session and everything they need as arguments, re-check availability inside
the caller's transaction, flush, and raise a :class:`BookingError` a person can act on. They
never commit: the caller does, once, after deciding the unit of work succeeded.
"""

from __future__ import annotations

import secrets
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask_babel import gettext
from sqlalchemy import Select, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from scheduler import eventlog
from scheduler.audit import PATIENT, Actor, At, AuditAction, Detail, Labels, record
from scheduler.booking.availability import (
    Interval,
    PractitionerDiary,
    RoomDiary,
    Rules,
    Slot,
    WeeklyHours,
    free_slots,
    merge_anyone,
    nearest,
)
from scheduler.booking.models import Booking, BookingStatus, Course
from scheduler.booking.policies import needs_approval
from scheduler.calendars.models import BusyTime
from scheduler.clinic.models import (
    Clinic,
    Practitioner,
    Room,
    TimeOff,
    Treatment,
    WorkingHours,
    practitioner_treatments,
)
from scheduler.i18n import N_, label
from scheduler.i18n import format_local as local_words
from scheduler.notifications.operations import (
    queue_for_cancellation,
    queue_for_new_booking,
    queue_for_reschedule,
    queue_for_status,
)
from scheduler.patients.intake import IntakeAnswers, IntakeError, check_answers, record_intake
from scheduler.patients.models import Patient
from scheduler.timeutil import day_bounds
from scheduler.webhooks.operations import note_booking_change

# No booking is longer than this, so "bookings overlapping a range" can use the start index.
MAX_BOOKING_SPAN = timedelta(days=1)
ALTERNATIVES_BEFORE = timedelta(days=2)
ALTERNATIVES_AFTER = timedelta(days=7)

# PostgreSQL SQLSTATEs that mean "someone else took it first".
_CONFLICT_SQLSTATES = {"23P01", "40P01", "40001"}
# A deadlock does not mean that yet. Two claims that overlap, flushed at the same moment, each
# find the other's row not yet committed and wait for it; PostgreSQL aborts one of them. The
# other may still roll back (another of its times lost), leaving the time free: the aborted
# claim tries again, waiting this time for the other's outcome, a few times before giving up.
_DEADLOCK_SQLSTATE = "40P01"
CLAIM_ATTEMPTS = 3
# Raised by the SQLite triggers the migration creates.
_SQLITE_OVERLAP_MESSAGE = "booking overlaps"


class BookingError(Exception):
    """A booking step that cannot go ahead, with a message for the person asking."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class SlotUnavailable(BookingError):
    """The time is not free (or was just taken); ``alternatives`` are the nearest free ones."""

    def __init__(self, message: str, alternatives: Sequence[Slot]) -> None:
        super().__init__(message, field="start")
        self.alternatives = list(alternatives)


@dataclass(frozen=True)
class PatientDetails:
    """Who is booking, as they typed it."""

    name: str
    email: str
    phone: str = ""

    def as_given(self) -> dict[str, str]:
        """The name and phone to keep with the booking or waitlist place, as typed."""
        return {"given_name": self.name.strip(), "given_phone": self.phone.strip()}


# How far ahead staff may book, whatever the clinic's horizon for patients.
STAFF_HORIZON = timedelta(days=730)


def rules_of(clinic: Clinic, *, by_staff: bool = False) -> Rules:
    """Return the availability rules the clinic has set.

    The minimum notice and the horizon are for patients booking themselves: staff, who know
    the day, may book a caller in at short notice or far ahead.
    """
    return Rules(
        step=timedelta(minutes=clinic.slot_step_minutes),
        min_notice=timedelta(0) if by_staff else timedelta(minutes=clinic.min_notice_minutes),
        horizon=max(STAFF_HORIZON, timedelta(days=clinic.horizon_days))
        if by_staff
        else timedelta(days=clinic.horizon_days),
    )


def practitioners_for(session: Session, treatment: Treatment) -> list[Practitioner]:
    """Return the active practitioners who give ``treatment``, in a stable order."""
    query = (
        select(Practitioner)
        .join(practitioner_treatments)
        .where(
            practitioner_treatments.c.treatment_id == treatment.id,
            Practitioner.active.is_(True),
        )
        .order_by(Practitioner.id)
    )
    return list(session.scalars(query))


def find_slots(
    session: Session,
    *,
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner | None,
    first_day: date,
    last_day: date,
    now: datetime,
    ignore: Booking | None = None,
    by_staff: bool = False,
    merge: bool = True,
) -> list[Slot]:
    """Return the free slots for ``treatment`` between two of the clinic's dates, inclusive.

    With no ``practitioner`` the slots of everyone who gives the treatment are merged, one per
    start time, unless ``merge`` is false. ``ignore`` leaves a booking out of the busy time
    (when it is being moved).
    """
    if practitioner is None:
        candidates = practitioners_for(session, treatment)
    elif practitioner.active and treatment in practitioner.treatments:
        candidates = [practitioner]
    else:
        candidates = []
    if not candidates or last_day < first_day:
        return []
    start, end = day_bounds(first_day, last_day, clinic.tz)
    diaries, rooms = _load_diaries(session, candidates, start, end, ignore, treatment.room_kind)
    slots = free_slots(
        tz=clinic.tz,
        first_day=first_day,
        last_day=last_day,
        duration=timedelta(minutes=treatment.duration_minutes),
        buffer=timedelta(minutes=treatment.buffer_minutes),
        practitioners=diaries,
        rooms=rooms,
        rules=rules_of(clinic, by_staff=by_staff),
        now=now,
    )
    return merge_anyone(slots) if practitioner is None and merge else slots


def _load_diaries(
    session: Session,
    practitioners: Sequence[Practitioner],
    start: datetime,
    end: datetime,
    ignore: Booking | None,
    room_kind: str | None = None,
) -> tuple[list[PractitionerDiary], list[RoomDiary]]:
    """Read hours, time off, busy time, rooms and bookings for a range in five range queries.

    Only active rooms of ``room_kind`` are offered, when the treatment requires one.
    """
    ids = [p.id for p in practitioners]
    hours: dict[int, list[WeeklyHours]] = defaultdict(list)
    for row in session.execute(
        select(
            WorkingHours.practitioner_id,
            WorkingHours.weekday,
            WorkingHours.start_time,
            WorkingHours.end_time,
        ).where(WorkingHours.practitioner_id.in_(ids))
    ):
        hours[row.practitioner_id].append(WeeklyHours(row.weekday, row.start_time, row.end_time))

    busy: dict[int, list[Interval]] = defaultdict(list)
    for off in session.execute(
        select(TimeOff.practitioner_id, TimeOff.start_at, TimeOff.end_at).where(
            TimeOff.practitioner_id.in_(ids), TimeOff.start_at < end, TimeOff.end_at > start
        )
    ):
        busy[off.practitioner_id].append((off.start_at, off.end_at))
    for event in session.execute(
        select(BusyTime.practitioner_id, BusyTime.start_at, BusyTime.end_at).where(
            BusyTime.practitioner_id.in_(ids),
            BusyTime.cancelled.is_(False),
            BusyTime.start_at < end,
            BusyTime.end_at > start,
        )
    ):
        busy[event.practitioner_id].append((event.start_at, event.end_at))

    rooms_in_use = select(Room.id).where(Room.active.is_(True)).order_by(Room.id)
    if room_kind is not None:
        rooms_in_use = rooms_in_use.where(Room.kind == room_kind)
    room_ids = list(session.scalars(rooms_in_use))
    room_busy: dict[int, list[Interval]] = defaultdict(list)
    bookings = select(
        Booking.practitioner_id, Booking.room_id, Booking.start_at, Booking.blocked_until
    ).where(
        Booking.status != BookingStatus.CANCELLED,
        Booking.start_at >= start - MAX_BOOKING_SPAN,
        Booking.start_at < end,
    )
    if ignore is not None and ignore.id is not None:
        bookings = bookings.where(Booking.id != ignore.id)
    for taken in session.execute(bookings):
        interval = (taken.start_at, taken.blocked_until)
        busy[taken.practitioner_id].append(interval)
        room_busy[taken.room_id].append(interval)

    diaries = [PractitionerDiary(pid, hours[pid], busy[pid]) for pid in ids]
    rooms = [RoomDiary(rid, room_busy[rid]) for rid in room_ids]
    return diaries, rooms


def _check_rules(clinic: Clinic, start: datetime, now: datetime, *, by_staff: bool) -> None:
    """Explain why ``start`` breaks the clinic's rules, if it does."""
    rules = rules_of(clinic, by_staff=by_staff)
    if start <= now:
        raise BookingError(
            gettext("That time has already passed; please pick a later one."), field="start"
        )
    if start < now + rules.min_notice:
        hours = clinic.min_notice_minutes / 60
        raise BookingError(
            gettext(
                "Bookings need at least %(hours)s hours' notice; please pick a later time.",
                hours=f"{hours:g}",
            ),
            field="start",
        )
    if start > now + rules.horizon:
        raise BookingError(
            gettext(
                "Bookings open %(days)d days ahead; please pick an earlier time.",
                days=clinic.horizon_days,
            ),
            field="start",
        )


def pick_slot(
    session: Session,
    *,
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner | None,
    start: datetime,
    now: datetime,
    ignore: Booking | None = None,
    by_staff: bool = False,
) -> Slot:
    """Return the free slot at ``start``, or raise why not (with the nearest alternatives)."""
    _check_rules(clinic, start, now, by_staff=by_staff)
    local_day = start.astimezone(clinic.tz).date()
    slots = find_slots(
        session,
        clinic=clinic,
        treatment=treatment,
        practitioner=practitioner,
        first_day=local_day,
        last_day=local_day,
        now=now,
        ignore=ignore,
        by_staff=by_staff,
    )
    for slot in slots:
        if slot.start == start:
            return slot
    raise SlotUnavailable(
        gettext(
            "%(time)s is not free for %(treatment)s.",
            time=local_words(start, clinic.tz),
            treatment=treatment.name,
        ),
        alternatives(
            session,
            clinic=clinic,
            treatment=treatment,
            practitioner=practitioner,
            around=start,
            now=now,
            ignore=ignore,
            by_staff=by_staff,
        ),
    )


def alternatives(
    session: Session,
    *,
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner | None,
    around: datetime,
    now: datetime,
    ignore: Booking | None = None,
    by_staff: bool = False,
    count: int = 5,
) -> list[Slot]:
    """Return the ``count`` free slots nearest to ``around``."""
    tz = clinic.tz
    slots = find_slots(
        session,
        clinic=clinic,
        treatment=treatment,
        practitioner=practitioner,
        first_day=(around - ALTERNATIVES_BEFORE).astimezone(tz).date(),
        last_day=(around + ALTERNATIVES_AFTER).astimezone(tz).date(),
        now=now,
        ignore=ignore,
        by_staff=by_staff,
    )
    return nearest(slots, around, count)


def _taken(exc: DBAPIError) -> bool:
    """Tell whether a database error means another booking got the time first."""
    return _sqlstate(exc) in _CONFLICT_SQLSTATES or _SQLITE_OVERLAP_MESSAGE in str(exc.orig)


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _flush_claim(
    session: Session,
    claim: Callable[[], None],
    *,
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner | None,
    start: datetime,
    now: datetime,
    ignore: Booking | None = None,
    by_staff: bool = False,
) -> None:
    """Apply ``claim`` (a booking taking ``start``); a lost race is :class:`SlotUnavailable`."""
    if not _claimed(session, claim):
        raise SlotUnavailable(
            gettext("Sorry, that time was just taken. These are the nearest free times."),
            alternatives(
                session,
                clinic=clinic,
                treatment=treatment,
                practitioner=practitioner,
                around=start,
                now=now,
                ignore=ignore,
                by_staff=by_staff,
            ),
        )


def _claimed(session: Session, claim: Callable[[], None]) -> bool:
    """Apply ``claim`` and flush it in a savepoint; tell whether the database let it through.

    On a lost race the savepoint's rollback returns the booking to what the database holds,
    so the caller's transaction stays usable; after a deadlock the claim is tried again.
    """
    left = CLAIM_ATTEMPTS
    while True:
        left -= 1
        try:
            with session.begin_nested():
                claim()
        except DBAPIError as exc:
            if not _taken(exc):
                raise
            if left and _sqlstate(exc) == _DEADLOCK_SQLSTATE:
                continue
            return False
        return True


def find_or_create_patient(session: Session, details: PatientDetails, now: datetime) -> Patient:
    """Return the patient with this email address, creating them on their first booking.

    An existing patient's name and phone are not overwritten from a public form; staff can
    correct them.
    """
    email = details.email.strip().lower()
    query = select(Patient).where(Patient.email == email)  # stored lower-cased
    patient = session.scalars(query).first()
    if patient is not None:
        if not patient.phone and details.phone:
            patient.phone = details.phone
        return patient
    patient = Patient(
        name=details.name.strip(), email=email, phone=details.phone.strip(), created_at=now
    )
    try:
        with session.begin_nested():
            session.add(patient)
    except IntegrityError:
        # The same person booking twice at once: the other request created them.
        patient = session.scalars(query).one()
    return patient


def check_request(
    treatment: Treatment, practitioner: Practitioner | None, intake: IntakeAnswers | None
) -> None:
    """Refuse a booking request for a treatment no longer offered, a practitioner who does not
    give it, a first visit without the intake answers and consent, or intake answers (which
    any booking may bring, to be kept) that cannot be kept."""
    if not treatment.active:
        raise BookingError(gettext("That treatment is no longer offered."), field="service")
    if treatment.first_visit or intake is not None:
        try:
            check_answers(intake)
        except IntakeError as exc:
            raise BookingError(exc.message, field=exc.field) from exc
    if practitioner is not None and treatment not in practitioner.treatments:
        raise BookingError(
            gettext(
                "%(practitioner)s does not give %(treatment)s.",
                practitioner=practitioner.name,
                treatment=treatment.name,
            ),
            field="practitioner",
        )


def book_session(
    session: Session,
    *,
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner | None,
    start: datetime,
    patient: PatientDetails,
    notes: str = "",
    now: datetime,
    uid_host: str,
    actor: Actor = PATIENT,
    intake: IntakeAnswers | None = None,
) -> Booking:
    """Book ``treatment`` at ``start`` with ``practitioner`` (``None``: anyone free).

    Raises :class:`BookingError` when the request breaks a rule and :class:`SlotUnavailable`
    when the time is not free, including when another booking wins a race for it. The
    confirmation, checklists and aftercare are queued with the booking, and ``actor`` is
    recorded as the one who booked it. A first visit needs the ``intake`` answers, with
    consent; they are kept with the patient.
    """
    check_request(treatment, practitioner, intake)
    slot = pick_slot(
        session,
        clinic=clinic,
        treatment=treatment,
        practitioner=practitioner,
        start=start,
        now=now,
        by_staff=actor.is_staff,
    )
    booking = place_new_booking(
        session,
        clinic=clinic,
        treatment=treatment,
        slot=slot,
        asked_for=practitioner,
        patient=find_or_create_patient(session, patient, now),
        given=patient,
        notes=notes,
        now=now,
        uid_host=uid_host,
        actor=actor,
    )
    if intake is not None:
        record_intake(session, patient=booking.patient, answers=intake, actor=actor, now=now)
    return booking


def place_new_booking(
    session: Session,
    *,
    clinic: Clinic,
    treatment: Treatment,
    slot: Slot,
    asked_for: Practitioner | None,
    patient: Patient,
    given: PatientDetails,
    notes: str,
    now: datetime,
    uid_host: str,
    actor: Actor,
    course: Course | None = None,
) -> Booking:
    """Book ``slot`` (found free in this transaction) for ``patient`` (who typed ``given``),
    queue its mail and record who booked it. ``asked_for`` is the practitioner the patient
    chose (``None``: anyone), for the alternatives offered when another booking wins a race
    for the time.
    A session of a ``course`` (already flushed) belongs to it.
    """
    booking = Booking(
        treatment=treatment,
        practitioner=session.get_one(Practitioner, slot.practitioner_id),
        room=session.get_one(Room, slot.room_id),
        patient=patient,
        course_id=None if course is None else course.id,
        start_at=slot.start,
        end_at=slot.end,
        blocked_until=slot.end + timedelta(minutes=treatment.buffer_minutes),
        status=BookingStatus.CONFIRMED,
        manage_token=secrets.token_urlsafe(32),
        notes=notes.strip(),
        **given.as_given(),
        calendar_uid=f"booking-{uuid.uuid4()}@{uid_host}",
        sequence=0,
        created_at=now,
        updated_at=now,
        approval_requested_at=now
        if needs_approval(session, clinic=clinic, patient=patient, actor=actor)
        else None,
    )
    _flush_claim(
        session,
        lambda: session.add(booking),
        clinic=clinic,
        treatment=treatment,
        practitioner=asked_for,
        start=slot.start,
        now=now,
        by_staff=actor.is_staff,
    )
    queue_for_new_booking(session, clinic=clinic, booking=booking, now=now)
    record_change(
        session,
        booking,
        actor,
        AuditAction.BOOKED,
        now,
        Detail(
            N_("%(treatment)s with %(practitioner)s, %(when)s, awaiting approval")
            if booking.awaiting_approval
            else N_("%(treatment)s with %(practitioner)s, %(when)s"),
            {
                "treatment": treatment.name,
                "practitioner": booking.practitioner.name,
                "when": At(slot.start, clinic.tz),
            },
        ),
    )
    return booking


def _cancelled(booking: Booking, by_clinic: bool) -> str | Detail:
    """What the trail says of a cancellation: by whom or how late, and the reason given."""
    reason = booking.cancellation_reason
    given = {"reason": reason} if reason else {}
    if by_clinic:
        return Detail(N_("by the clinic: %(reason)s") if reason else N_("by the clinic"), given)
    if booking.late_cancellation:
        return Detail(N_("late: %(reason)s") if reason else N_("late"), given)
    return reason


def record_change(
    session: Session,
    booking: Booking,
    actor: Actor,
    action: AuditAction,
    now: datetime,
    detail: str | Detail = "",
) -> None:
    """Add an entry about ``booking`` to the audit trail, flushing first so a new one has its id,
    and note the change for the webhooks (their deliveries are written at commit) and the
    event log."""
    session.flush()
    record(
        session,
        actor=actor,
        action=action,
        now=now,
        booking_id=booking.id,
        patient_id=booking.patient_id,
        detail=detail,
    )
    note_booking_change(session, booking, action, now)
    eventlog.booking_changed(session, booking, actor, action, now)


def is_changeable(booking: Booking, now: datetime) -> bool:
    """Tell whether the patient may still move or cancel ``booking`` themselves."""
    return booking.status == BookingStatus.CONFIRMED and booking.start_at > now


def check_changeable(booking: Booking, now: datetime) -> None:
    """Say why the patient may no longer move or cancel ``booking``, if they may not."""
    if booking.status != BookingStatus.CONFIRMED:
        raise BookingError(gettext("This booking is %(status)s.", status=label(booking.status)))
    if booking.start_at <= now:
        raise BookingError(
            gettext("This visit has already started; please call the clinic to change it.")
        )


def reschedule_booking(
    session: Session,
    *,
    clinic: Clinic,
    booking: Booking,
    start: datetime,
    now: datetime,
    practitioner: Practitioner | None = None,
    actor: Actor = PATIENT,
) -> Booking:
    """Move ``booking`` to ``start``, keeping its identity, with the same practitioner or,
    when staff move it, with ``practitioner``.

    The update is queued, the checklists and aftercare re-timed with the move, and ``actor``
    recorded as the one who moved it.
    """
    check_changeable(booking, now)
    target = practitioner or booking.practitioner
    if start == booking.start_at and target is booking.practitioner:
        raise BookingError(gettext("The booking is already at that time."), field="start")
    if target is not booking.practitioner and booking.treatment not in target.treatments:
        raise BookingError(
            gettext(
                "%(practitioner)s does not give %(treatment)s.",
                practitioner=target.name,
                treatment=booking.treatment.name,
            ),
            field="practitioner",
        )
    slot = pick_slot(
        session,
        clinic=clinic,
        treatment=booking.treatment,
        practitioner=target,
        start=start,
        now=now,
        ignore=booking,
        by_staff=actor.is_staff,
    )
    room = session.get_one(Room, slot.room_id)
    previous_start = booking.start_at
    previous_practitioner = booking.practitioner

    def move() -> None:
        booking.practitioner = target
        booking.start_at = slot.start
        booking.end_at = slot.end
        booking.blocked_until = slot.end + timedelta(minutes=booking.treatment.buffer_minutes)
        booking.room = room
        booking.sequence += 1
        booking.updated_at = now

    _flush_claim(
        session,
        move,
        clinic=clinic,
        treatment=booking.treatment,
        practitioner=target,
        start=start,
        now=now,
        ignore=booking,
        by_staff=actor.is_staff,
    )
    queue_for_reschedule(
        session, clinic=clinic, booking=booking, previous_start=previous_start, now=now
    )
    moved = {"before": At(previous_start, clinic.tz), "after": At(slot.start, clinic.tz)}
    if target is previous_practitioner:
        detail = Detail(N_("from %(before)s to %(after)s"), moved)
    else:
        detail = Detail(
            N_("from %(before)s to %(after)s, from %(practitioner)s to %(target)s"),
            {**moved, "practitioner": previous_practitioner.name, "target": target.name},
        )
    record_change(session, booking, actor, AuditAction.RESCHEDULED, now, detail)
    from scheduler.waitlist.operations import offer_freed_booking  # it books through this module

    offer_freed_booking(
        session,
        clinic=clinic,
        booking=booking,
        start=previous_start,
        practitioner=previous_practitioner,
        now=now,
    )
    return booking


def is_late_cancellation(clinic: Clinic, booking: Booking, now: datetime) -> bool:
    """Tell whether cancelling now falls inside the clinic's late-cancellation window."""
    return booking.start_at - now < timedelta(hours=clinic.late_cancel_hours)


def cancel_booking(
    session: Session,
    *,
    clinic: Clinic,
    booking: Booking,
    reason: str = "",
    now: datetime,
    actor: Actor = PATIENT,
    by_clinic: bool = False,
) -> Booking:
    """Cancel ``booking``, freeing its time; inside the late window it is recorded as late,
    unless the clinic cancelled it (``by_clinic``), which is never the patient's fault.

    What was still to be sent about the visit is dropped and the cancellation queued.
    """
    check_changeable(booking, now)
    booking.status = BookingStatus.CANCELLED
    booking.cancelled_at = now
    booking.cancellation_reason = reason.strip()
    booking.late_cancellation = not by_clinic and is_late_cancellation(clinic, booking, now)
    booking.sequence += 1
    booking.updated_at = now
    session.flush()
    queue_for_cancellation(session, booking=booking, now=now)
    record_change(
        session, booking, actor, AuditAction.CANCELLED, now, _cancelled(booking, by_clinic)
    )
    from scheduler.waitlist.operations import offer_freed_booking  # it books through this module

    offer_freed_booking(session, clinic=clinic, booking=booking, now=now)
    return booking


# Which statuses staff may set a booking to, from which.
_STATUS_FROM = {
    BookingStatus.ARRIVED: {BookingStatus.CONFIRMED, BookingStatus.NO_SHOW},
    BookingStatus.COMPLETED: {
        BookingStatus.CONFIRMED,
        BookingStatus.ARRIVED,
        BookingStatus.NO_SHOW,
    },
    BookingStatus.NO_SHOW: {BookingStatus.CONFIRMED, BookingStatus.ARRIVED},
    BookingStatus.CONFIRMED: {
        BookingStatus.ARRIVED,
        BookingStatus.COMPLETED,
        BookingStatus.NO_SHOW,
    },
}


def describe_status(status: BookingStatus) -> str:
    """Return the status as staff read it ("no-show" rather than "no_show"), in English, as
    the audit trail keeps it; :func:`scheduler.i18n.label` names it on pages."""
    return status.value.replace("_", "-") if status is BookingStatus.NO_SHOW else status.value


def set_status(
    session: Session,
    *,
    clinic: Clinic,
    booking: Booking,
    status: BookingStatus,
    now: datetime,
    actor: Actor,
) -> Booking:
    """Mark ``booking`` arrived, completed or a no-show, or put it back to confirmed.

    Arrived and completed are possible from the day of the visit, a no-show once it has
    started. A no-show's aftercare is not sent; putting it back brings the aftercare back.
    """
    if status is BookingStatus.CANCELLED:
        raise BookingError(
            gettext("Use Cancel to cancel a booking; it tells the patient."), field="status"
        )
    if booking.status is status:
        raise BookingError(
            gettext("The booking is already %(status)s.", status=label(status, "-")),
            field="status",
        )
    if booking.status not in _STATUS_FROM[status]:
        raise BookingError(
            gettext(
                "A booking that is %(status)s cannot be marked %(wanted)s.",
                status=label(booking.status, "-"),
                wanted=label(status, "-"),
            ),
            field="status",
        )
    visit_day = booking.start_at.astimezone(clinic.tz).date()
    if status is not BookingStatus.CONFIRMED and now.astimezone(clinic.tz).date() < visit_day:
        raise BookingError(
            gettext("The visit is on a later day; mark it on the day."), field="status"
        )
    if status is BookingStatus.NO_SHOW and now < booking.start_at:
        raise BookingError(
            gettext("The visit has not started yet; it cannot be a no-show."), field="status"
        )
    previous = booking.status
    booking.status = status
    booking.updated_at = now
    session.flush()
    queue_for_status(session, booking=booking, now=now)
    record_change(
        session,
        booking,
        actor,
        AuditAction.STATUS_CHANGED,
        now,
        Detail(
            N_("from %(before)s to %(after)s"),
            {
                "before": Labels((describe_status(previous),)),
                "after": Labels((describe_status(status),)),
            },
        ),
    )
    return booking


def set_staff_notes(
    session: Session, *, booking: Booking, text: str, now: datetime, actor: Actor
) -> Booking:
    """Replace the staff's internal notes on ``booking`` (never shown to the patient)."""
    text = text.strip()
    if text == booking.staff_notes:
        return booking
    booking.staff_notes = text
    booking.updated_at = now
    record_change(session, booking, actor, AuditAction.NOTES_CHANGED, now)
    return booking


def _free_rooms(
    start: datetime, blocked_until: datetime, ignore: Booking | None, room_kind: str | None
) -> Select[Room]:
    """Select the active rooms (of ``room_kind``, if given) with no live booking but ``ignore``
    in ``[start, blocked_until)``."""
    taken = select(Booking.room_id).where(
        Booking.status != BookingStatus.CANCELLED,
        Booking.start_at >= start - MAX_BOOKING_SPAN,
        Booking.start_at < blocked_until,
        Booking.blocked_until > start,
    )
    if ignore is not None and ignore.id is not None:
        taken = taken.where(Booking.id != ignore.id)
    free = select(Room).where(Room.active.is_(True), Room.id.not_in(taken))
    if room_kind is not None:
        free = free.where(Room.kind == room_kind)
    return free


def _free_room(
    session: Session,
    start: datetime,
    blocked_until: datetime,
    ignore: Booking | None,
    room_kind: str | None = None,
) -> Room | None:
    """Return an active room (of ``room_kind``, if given) with no live booking in
    ``[start, blocked_until)``, if any."""
    free = _free_rooms(start, blocked_until, ignore, room_kind)
    if ignore is not None and ignore.room_id is not None:
        # Keep a moved booking in its room when the room is still free.
        preferred = session.scalars(free.where(Room.id == ignore.room_id)).first()
        if preferred is not None:
            return preferred
    return session.scalars(free.order_by(Room.id)).first()


def place_imported_booking(
    session: Session,
    *,
    booking: Booking,
    start: datetime,
    end: datetime,
) -> Booking:
    """Put a booking brought over from another scheduler at ``start``–``end``, as it was there.

    The clinic's rules (hours, notice, horizon) are not applied: the visit was already agreed.
    Only what the database guarantees holds: no overlap for the practitioner or the room.
    Raises :class:`SlotUnavailable` (with no alternatives) when either is taken.
    """
    blocked_until = end + timedelta(minutes=booking.treatment.buffer_minutes)
    kind = booking.treatment.room_kind
    room = _free_room(session, start, blocked_until, booking, kind)
    if room is None:
        raise SlotUnavailable(
            gettext("no %(kind)s room is free then", kind=kind)
            if kind
            else gettext("no room is free then"),
            [],
        )

    def place() -> None:
        booking.start_at, booking.end_at = start, end
        booking.blocked_until = blocked_until
        booking.room = room
        if booking.id is None:
            session.add(booking)

    if not _claimed(session, place):
        raise SlotUnavailable(
            gettext("%(name)s already has a booking then", name=booking.practitioner.name), []
        )
    return booking


# --- Rooms ----------------------------------------------------------------------------------


def rooms_free_for(session: Session, booking: Booking) -> list[Room]:
    """Return the rooms ``booking`` could move to: in use, of the kind its treatment needs,
    and free for its whole time and buffer; by name, its own room left out."""
    free = _free_rooms(
        booking.start_at, booking.blocked_until, booking, booking.treatment.room_kind
    ).where(Room.id != booking.room_id)
    return list(session.scalars(free.order_by(Room.name, Room.id)))


def _room_is_free(session: Session, room: Room, booking: Booking) -> bool:
    """Tell whether ``room`` has no live booking but ``booking`` in its time and buffer."""
    free = _free_rooms(booking.start_at, booking.blocked_until, booking, None)
    return session.scalars(free.where(Room.id == room.id)).first() is not None


# Bookings whose room can still change: the visit is to come or under way.
_ROOM_CHANGEABLE = (BookingStatus.CONFIRMED, BookingStatus.ARRIVED)


class RoomTaken(BookingError):
    """The room asked for has another booking at the time (or one just took it)."""


def _check_room_changeable(clinic: Clinic, booking: Booking, now: datetime) -> None:
    """Say why ``booking`` can no longer change rooms, if it cannot."""
    if booking.status is BookingStatus.CANCELLED:
        raise BookingError(
            gettext("This booking is cancelled; it has no room to change."), field="room"
        )
    if booking.status not in _ROOM_CHANGEABLE:
        raise BookingError(
            gettext(
                "This visit is %(status)s; its room can no longer change.",
                status=label(booking.status, "-"),
            ),
            field="room",
        )
    tz = clinic.tz
    if booking.start_at.astimezone(tz).date() < now.astimezone(tz).date():
        raise BookingError(
            gettext("This visit was on an earlier day; its room can no longer change."),
            field="room",
        )


def room_can_change(clinic: Clinic, booking: Booking, now: datetime) -> bool:
    """Tell whether staff may still move ``booking`` to another room (today or later)."""
    try:
        _check_room_changeable(clinic, booking, now)
    except BookingError:
        return False
    return True


def move_to_room(
    session: Session,
    *,
    clinic: Clinic,
    booking: Booking,
    room: Room,
    now: datetime,
    actor: Actor,
) -> Booking:
    """Move ``booking`` to ``room`` for the same time, a visit of today or later.

    The room must be in use, of the kind the treatment needs and free for the booking's whole
    time and buffer; the database's overlap guard settles a race for it. Nothing is sent to
    the patient: neither their mail nor their calendar names the room.
    """
    _check_room_changeable(clinic, booking, now)
    if room.id == booking.room_id:
        raise BookingError(
            gettext("The booking is already in %(room)s.", room=room.name), field="room"
        )
    if not room.active:
        raise BookingError(
            gettext("%(room)s is archived; choose a room in use.", room=room.name), field="room"
        )
    kind = booking.treatment.room_kind
    if kind is not None and room.kind != kind:
        raise BookingError(
            gettext(
                "%(treatment)s needs a %(kind)s room, and %(room)s is not one.",
                treatment=booking.treatment.name,
                kind=kind,
                room=room.name,
            ),
            field="room",
        )
    if not _room_is_free(session, room, booking):
        raise RoomTaken(
            gettext("%(room)s is taken at that time; choose another room.", room=room.name),
            field="room",
        )
    previous = booking.room.name

    def move() -> None:
        booking.room = room
        booking.updated_at = now

    if not _claimed(session, move):
        raise RoomTaken(
            gettext(
                "%(room)s was just taken by another booking; choose another room.", room=room.name
            ),
            field="room",
        )
    record_change(
        session,
        booking,
        actor,
        AuditAction.ROOM_CHANGED,
        now,
        Detail(N_("from %(before)s to %(after)s"), {"before": previous, "after": room.name}),
    )
    return booking
