"""Courses of treatment: several sessions every few weeks, booked together or not at all.

A course is planned first: each date in its rhythm (the same wall-clock time, so a course
crossing a daylight-saving change keeps its hour) is checked like a single booking. A course
that starts with a first visit (the in-depth consultation) continues with the practitioner's
follow-up treatment. When some
dates are not free the plan fails with every clash and, for each, the nearest alternatives: other
times that day, other practitioners, the day before or after. The patient takes alternatives
(or leaves dates out) and asks again. Booking then places every session in the caller's
transaction; if another booking wins a race for any of them the caller rolls back, so the
course is all or nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask_babel import gettext
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.audit import PATIENT, Actor
from scheduler.booking.availability import Slot
from scheduler.booking.models import Booking, BookingStatus, Course
from scheduler.booking.operations import (
    BookingError,
    PatientDetails,
    SlotUnavailable,
    cancel_booking,
    check_changeable,
    check_request,
    find_or_create_patient,
    find_slots,
    is_changeable,
    pick_slot,
    place_new_booking,
    practitioners_for,
    reschedule_booking,
)
from scheduler.clinic.models import Clinic, Practitioner, Treatment
from scheduler.i18n import format_local as local_words
from scheduler.patients.intake import IntakeAnswers, record_intake
from scheduler.timeutil import local_to_utc

MAX_SESSIONS = 12
MAX_EVERY_WEEKS = 4
# How many alternatives of each sort a clash offers.
SAME_DAY = 3
OTHER_PRACTITIONERS = 2


@dataclass(frozen=True)
class Instead:
    """What to do on one date of the course instead of its usual time: another ``start``
    (with ``practitioner``, or the course's when ``None``), or, with no ``start``, nothing."""

    start: datetime | None
    practitioner: Practitioner | None = None


@dataclass(frozen=True)
class Repeat:
    """How often: ``count`` sessions, ``every_weeks`` apart, with changes to some dates.

    ``instead`` is keyed by the date's usual start, as :func:`course_dates` gives it.
    """

    count: int
    every_weeks: int
    instead: Mapping[datetime, Instead] = field(default_factory=dict)


@dataclass(frozen=True)
class Clash:
    """A date of the course that is not free, why, and the nearest times that are."""

    start: datetime
    message: str
    alternatives: list[Slot]


class CourseUnavailable(BookingError):
    """Some dates of the course are not free; ``clashes`` says which, with alternatives."""

    def __init__(self, message: str, clashes: Sequence[Clash]) -> None:
        super().__init__(message, field="start")
        self.clashes = list(clashes)


def course_dates(clinic: Clinic, start: datetime, repeat: Repeat) -> list[datetime]:
    """Return the usual start of each session: ``start``'s wall-clock time every few weeks."""
    local = start.astimezone(clinic.tz)
    return [
        local_to_utc(
            local.date() + timedelta(weeks=index * repeat.every_weeks), local.time(), clinic.tz
        )
        for index in range(repeat.count)
    ]


def check_repeat(repeat: Repeat, dates: Sequence[datetime]) -> None:
    """Refuse a course that is too long, too sparse, or changes dates it does not have."""
    if not 2 <= repeat.count <= MAX_SESSIONS:
        raise BookingError(
            gettext("A course has 2 to %(most)d sessions.", most=MAX_SESSIONS), field="sessions"
        )
    if not 1 <= repeat.every_weeks <= MAX_EVERY_WEEKS:
        raise BookingError(
            gettext("Sessions of a course are 1 to %(most)d weeks apart.", most=MAX_EVERY_WEEKS),
            field="every_weeks",
        )
    unknown = set(repeat.instead) - set(dates)
    if unknown:
        raise BookingError(
            gettext(
                "A change was asked for a date that is not in the course; "
                "please choose again from the dates listed."
            ),
            field="start",
        )
    # A course is two sessions or more (the database holds it to that too); one is a visit.
    if sum(1 for day in dates if _kept(repeat, day)) < 2:
        raise BookingError(
            gettext(
                "Please keep at least two dates of the course, or book a single visit instead."
            ),
            field="start",
        )


def _kept(repeat: Repeat, day: datetime) -> bool:
    instead = repeat.instead.get(day)
    return instead is None or instead.start is not None


def follow_up_for(
    session: Session, treatment: Treatment, practitioner: Practitioner
) -> Treatment | None:
    """Return what follows ``treatment`` in a course with ``practitioner``: the treatment
    itself, or after a first visit the first follow-up (not a first visit) they give."""
    if not treatment.first_visit:
        return treatment
    query = (
        select(Treatment)
        .join(Treatment.practitioners)
        .where(
            Practitioner.id == practitioner.id,
            Treatment.active.is_(True),
            Treatment.first_visit.is_(False),
        )
        .order_by(Treatment.position, Treatment.id)
    )
    return session.scalars(query).first()


def _course_practitioner(
    session: Session,
    *,
    clinic: Clinic,
    treatment: Treatment,
    dates: Sequence[datetime],
    now: datetime,
    by_staff: bool,
) -> Practitioner | None:
    """For "anyone", choose who sees the patient: the practitioner free on the most dates
    (the first in the usual order among equals); ``None`` when nobody gives the course."""
    first_day = dates[0].astimezone(clinic.tz).date()
    last_day = dates[-1].astimezone(clinic.tz).date()

    def free_starts(kind: Treatment, candidate: Practitioner) -> set[datetime]:
        found = find_slots(
            session,
            clinic=clinic,
            treatment=kind,
            practitioner=candidate,
            first_day=first_day,
            last_day=last_day,
            now=now,
            by_staff=by_staff,
        )
        return {slot.start for slot in found}

    best: tuple[int, Practitioner] | None = None
    for candidate in practitioners_for(session, treatment):
        follow_up = follow_up_for(session, treatment, candidate)
        if follow_up is None:
            continue
        free = int(dates[0] in free_starts(treatment, candidate))
        free += sum(1 for day in dates[1:] if day in free_starts(follow_up, candidate))
        if best is None or free > best[0]:
            best = (free, candidate)
    return None if best is None else best[1]


def clash_alternatives(
    session: Session,
    *,
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner,
    around: datetime,
    now: datetime,
    by_staff: bool = False,
) -> list[Slot]:
    """Return the nearest free times to ``around`` for a course's session, in start order:
    other times that day with the same practitioner, other practitioners that day, and the
    same practitioner on the day before and the day after, nearest the usual time."""
    tz = clinic.tz
    day = around.astimezone(tz).date()
    slots = find_slots(
        session,
        clinic=clinic,
        treatment=treatment,
        practitioner=None,
        first_day=day - timedelta(days=1),
        last_day=day + timedelta(days=1),
        now=now,
        by_staff=by_staff,
        merge=False,
    )

    def closest(candidates: list[Slot], target: datetime, count: int) -> list[Slot]:
        return sorted(candidates, key=lambda slot: (abs(slot.start - target), slot.start))[:count]

    def on(offset: int) -> list[Slot]:
        wanted = day + timedelta(days=offset)
        return [slot for slot in slots if slot.start.astimezone(tz).date() == wanted]

    own = [slot for slot in on(0) if slot.practitioner_id == practitioner.id]
    others: dict[int, Slot] = {}
    for slot in closest([s for s in on(0) if s.practitioner_id != practitioner.id], around, 50):
        others.setdefault(slot.practitioner_id, slot)  # the nearest time of each practitioner
    chosen = closest(own, around, SAME_DAY)
    chosen += closest(list(others.values()), around, OTHER_PRACTITIONERS)
    for offset in (-1, 1):
        mine = [slot for slot in on(offset) if slot.practitioner_id == practitioner.id]
        chosen += closest(mine, around + timedelta(days=offset), 1)
    return sorted(set(chosen))


@dataclass(frozen=True)
class Planned:
    """One session of a planned course: its date's usual start, its free slot, its treatment."""

    day: datetime
    slot: Slot
    treatment: Treatment


def plan_course(
    session: Session,
    *,
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner | None,
    start: datetime,
    repeat: Repeat,
    now: datetime,
    by_staff: bool = False,
) -> list[Planned]:
    """Check every date of the course and return a free slot for each date kept, in order.

    A course that starts with a first visit continues with the practitioner's follow-up
    treatment. Raises :class:`CourseUnavailable` listing every date that is not free (with
    alternatives), or :class:`BookingError` when the request itself is wrong.
    """
    dates = course_dates(clinic, start, repeat)
    check_repeat(repeat, dates)
    if practitioner is None:
        practitioner = _course_practitioner(
            session, clinic=clinic, treatment=treatment, dates=dates, now=now, by_staff=by_staff
        )
        if practitioner is None:
            raise BookingError(gettext("Nobody gives that course at the moment."), field="service")
    plan: list[Planned] = []
    clashes: list[Clash] = []
    first = True
    for day in dates:
        instead = repeat.instead.get(day)
        if instead is not None and instead.start is None:
            continue  # left out
        target = day if instead is None else instead.start
        assert target is not None
        who = instead.practitioner if instead is not None and instead.practitioner else practitioner
        kind = treatment if first else follow_up_for(session, treatment, who)
        first = False
        if kind is None or kind not in who.treatments:
            if kind is None:
                message = gettext(
                    "%(practitioner)s does not give a follow-up to %(treatment)s.",
                    practitioner=who.name,
                    treatment=treatment.name,
                )
            else:
                message = gettext(
                    "%(practitioner)s does not give %(treatment)s.",
                    practitioner=who.name,
                    treatment=kind.name,
                )
            raise BookingError(message, field="practitioner")
        try:
            slot = pick_slot(
                session,
                clinic=clinic,
                treatment=kind,
                practitioner=who,
                start=target,
                now=now,
                by_staff=by_staff,
            )
        except SlotUnavailable:
            clashes.append(
                _clash(session, clinic, kind, who, day, target, now=now, by_staff=by_staff)
            )
        except BookingError as exc:  # too soon, or beyond the horizon: no time that day will do
            clashes.append(Clash(day, exc.message, []))
        else:
            plan.append(Planned(day, slot, kind))
    if clashes:
        raise CourseUnavailable(_clash_summary(len(clashes), len(dates)), clashes)
    return plan


def _clash(
    session: Session,
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner,
    day: datetime,
    target: datetime,
    *,
    now: datetime,
    by_staff: bool,
) -> Clash:
    return Clash(
        day,
        gettext(
            "%(time)s is not free with %(practitioner)s.",
            time=local_words(target, clinic.tz),
            practitioner=practitioner.name,
        ),
        clash_alternatives(
            session,
            clinic=clinic,
            treatment=treatment,
            practitioner=practitioner,
            around=target,
            now=now,
            by_staff=by_staff,
        ),
    )


def _clash_summary(clashes: int, dates: int) -> str:
    if clashes == 1:
        return f"One of the {dates} dates is not free: please choose another time for it."
    return f"{clashes} of the {dates} dates are not free: please choose other times for them."


def book_course(
    session: Session,
    *,
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner | None,
    start: datetime,
    repeat: Repeat,
    patient: PatientDetails,
    notes: str = "",
    now: datetime,
    uid_host: str,
    actor: Actor = PATIENT,
    intake: IntakeAnswers | None = None,
) -> Course:
    """Book a course of ``treatment`` starting at ``start``, every session or none.

    Each session is an ordinary booking with its own invite, checklists and aftercare. Raises
    :class:`CourseUnavailable` when dates clash (including a race lost while booking, after
    which the caller must roll back) and :class:`BookingError` for a wrong request.
    """
    check_request(treatment, practitioner, intake)
    plan = plan_course(
        session,
        clinic=clinic,
        treatment=treatment,
        practitioner=practitioner,
        start=start,
        repeat=repeat,
        now=now,
        by_staff=actor.is_staff,
    )
    person = find_or_create_patient(session, patient, now)
    course = Course(
        patient=person,
        treatment=treatment,
        session_count=len(plan),
        every_weeks=repeat.every_weeks,
        created_at=now,
    )
    session.add(course)
    session.flush()
    for planned in plan:
        slot = planned.slot
        try:
            place_new_booking(
                session,
                clinic=clinic,
                treatment=planned.treatment,
                slot=slot,
                asked_for=session.get_one(Practitioner, slot.practitioner_id),
                patient=person,
                given=patient,
                notes=notes,
                now=now,
                uid_host=uid_host,
                actor=actor,
                course=course,
            )
        except SlotUnavailable as exc:
            taken = session.get_one(Practitioner, slot.practitioner_id)
            clash = _clash(
                session,
                clinic,
                planned.treatment,
                taken,
                planned.day,
                slot.start,
                now=now,
                by_staff=actor.is_staff,
            )
            raise CourseUnavailable(
                "Sorry, one of the times was just taken; nothing was booked. "
                "Please choose another time for it.",
                [clash],
            ) from exc
    if intake is not None:
        record_intake(session, patient=person, answers=intake, actor=actor, now=now)
    return course


@dataclass(frozen=True)
class Progress:
    """Where a session stands in its course, for the pages that show it."""

    course: Course
    sessions: list[Booking]  # every session not cancelled, in order
    cancelled: list[Booking]
    position: int | None  # this session's number among them, or None if it is cancelled
    done: int  # sessions attended

    @property
    def total(self) -> int:
        """How many sessions the course has now."""
        return len(self.sessions)


def progress(booking: Booking) -> Progress | None:
    """Return ``booking``'s place in its course, or ``None`` for a single session."""
    course = booking.course
    if course is None:
        return None
    live = [s for s in course.sessions if s.status is not BookingStatus.CANCELLED]
    cancelled = [s for s in course.sessions if s.status is BookingStatus.CANCELLED]
    done = sum(1 for s in live if s.status in (BookingStatus.ARRIVED, BookingStatus.COMPLETED))
    position = live.index(booking) + 1 if booking in live else None
    return Progress(course, live, cancelled, position, done)


def rest_of_course(booking: Booking, now: datetime) -> list[Booking]:
    """Return ``booking`` and the later sessions of its course that can still be cancelled."""
    if booking.course is None:
        return [booking] if is_changeable(booking, now) else []
    return [
        s
        for s in booking.course.sessions
        if s.start_at >= booking.start_at and is_changeable(s, now)
    ]


def cancel_rest_of_course(
    session: Session,
    *,
    clinic: Clinic,
    booking: Booking,
    reason: str = "",
    now: datetime,
    actor: Actor = PATIENT,
    by_clinic: bool = False,
) -> list[Booking]:
    """Cancel ``booking`` and every later session of its course; return what was cancelled.

    Each session is cancelled as on its own (its own cancellation goes out, and a late one is
    counted as late), all in the caller's transaction.
    """
    sessions = rest_of_course(booking, now)
    if booking not in sessions:
        check_changeable(booking, now)  # says why not
    for item in sessions:
        cancel_booking(
            session,
            clinic=clinic,
            booking=item,
            reason=reason,
            now=now,
            actor=actor,
            by_clinic=by_clinic,
        )
    return sessions


def move_rest_of_course(
    session: Session,
    *,
    clinic: Clinic,
    booking: Booking,
    start: datetime,
    now: datetime,
    actor: Actor = PATIENT,
) -> list[Booking]:
    """Move ``booking`` to ``start`` and every later session of its course by as many days, to
    the same new time of day, each with its own practitioner; all of them or none.

    Raises :class:`CourseUnavailable` listing every session whose new time is not free, and,
    when another booking wins a race for one of them, :class:`SlotUnavailable`, after which the
    caller rolls back. Each session is moved as on its own (its update goes out).
    """
    sessions = rest_of_course(booking, now)
    if booking not in sessions:
        check_changeable(booking, now)
    tz = clinic.tz
    new = start.astimezone(tz)
    shift = new.date() - booking.start_at.astimezone(tz).date()
    targets = {
        item.id: local_to_utc(item.start_at.astimezone(tz).date() + shift, new.time(), tz)
        for item in sessions
    }
    clashes: list[Clash] = []
    for item in sessions:
        target = targets[item.id]
        try:
            pick_slot(
                session,
                clinic=clinic,
                treatment=item.treatment,
                practitioner=item.practitioner,
                start=target,
                now=now,
                ignore=item,
                by_staff=actor.is_staff,
            )
        except SlotUnavailable:
            clashes.append(
                Clash(
                    target,
                    gettext(
                        "%(time)s is not free with %(practitioner)s.",
                        time=local_words(target, tz),
                        practitioner=item.practitioner.name,
                    ),
                    [],
                )
            )
        except BookingError as exc:
            clashes.append(Clash(target, exc.message, []))
    if clashes:
        raise CourseUnavailable(_clash_summary(len(clashes), len(sessions)), clashes)
    # Moving later, the last session moves first, so none lands on one not yet moved.
    later = targets[booking.id] > booking.start_at
    for item in sorted(sessions, key=lambda s: s.start_at, reverse=later):
        reschedule_booking(
            session, clinic=clinic, booking=item, start=targets[item.id], now=now, actor=actor
        )
    return sessions
