"""The waitlist's steps: joining and leaving it, offering freed times, booking from an offer.

When a time frees up (a cancellation, a reschedule, new hours, time off removed) the booking
and set-up operations call :func:`offer_freed_time` or :func:`offer_new_hours` in their own
transaction. Each waiting entry for that practitioner (or anyone) and day is offered the free
slot for its treatment nearest the freed time, in the order the entries joined; where several
are offered the same time, each later one's mail goes :data:`HEAD_START` after the one before,
so whoever joined first has the first chance. The first to book has it: the database's overlap
guard settles a race, and the others who were told of it are told it has gone.

Like every operation these only flush; the caller commits.
"""

from __future__ import annotations

import enum
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from itertools import groupby

from flask_babel import gettext
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from scheduler.audit import PATIENT
from scheduler.booking.availability import Interval, Slot, WeeklyHours
from scheduler.booking.models import Booking
from scheduler.booking.operations import (
    MAX_BOOKING_SPAN,
    BookingError,
    PatientDetails,
    book_session,
    find_or_create_patient,
    find_slots,
    pick_slot,
    rules_of,
)
from scheduler.clinic.models import Clinic, Practitioner, TimeOff, Treatment
from scheduler.i18n import format_day
from scheduler.notifications.models import (
    OPEN_STATUSES,
    Notification,
    NotificationKind,
    NotificationStatus,
)
from scheduler.notifications.operations import skip
from scheduler.patients.intake import IntakeAnswers
from scheduler.patients.models import Patient
from scheduler.timeutil import local_to_utc
from scheduler.waitlist.models import (
    EntryStatus,
    OfferStatus,
    WaitlistDay,
    WaitlistEntry,
    WaitlistOffer,
)

# How long an offer stays open at most; it closes sooner when the clinic's minimum notice
# before the time would be reached.
OFFER_LIFETIME = timedelta(hours=3)
# How much sooner each patient hears of a time than the one who joined after them.
HEAD_START = timedelta(minutes=15)
# An offer that could stay open for less than this is not worth a mail.
SHORTEST_OFFER = timedelta(minutes=30)
# The most days one place on the list may name.
MAX_DAYS = 62


class WaitlistError(Exception):
    """A waitlist step that cannot go ahead, with a message for the person asking."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class OfferState(enum.Enum):
    """How an offer looks to the patient holding its link."""

    OPEN = "open"
    NOT_YET = "not_yet"  # its mail has not gone yet
    TAKEN = "taken"  # they booked it
    GONE = "gone"  # someone else booked the time, or it is no longer free
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"  # they booked another offer or left the list


class OfferClosed(WaitlistError):
    """The offer can no longer be booked; ``state`` says why."""

    def __init__(self, state: OfferState) -> None:
        super().__init__(f"This offer is {state.value}.")
        self.state = state


def describe_day(day: date) -> str:
    """Say a date the way the pages do: ``Tuesday 24 November 2026`` (in their language)."""
    return format_day(day)


# --- Joining and leaving ----------------------------------------------------------------------


def bookable_days(clinic: Clinic, now: datetime) -> tuple[date, date]:
    """Return the first and last of the clinic's dates a patient could book a time on now."""
    rules = rules_of(clinic)
    first = (now + rules.min_notice).astimezone(clinic.tz).date()
    last = (now + rules.horizon).astimezone(clinic.tz).date()
    return first, last


def check_days(clinic: Clinic, days: Iterable[date], now: datetime) -> list[date]:
    """Return ``days`` sorted without repeats, or raise why they cannot be waited for."""
    chosen = sorted(set(days))
    if not chosen:
        raise WaitlistError(gettext("Please choose at least one day."), field="dates")
    if len(chosen) > MAX_DAYS:
        raise WaitlistError(
            gettext("Please choose at most %(most)d days.", most=MAX_DAYS), field="dates"
        )
    first, last = bookable_days(clinic, now)
    for day in chosen:
        if day < first:
            hours = clinic.min_notice_minutes / 60
            raise WaitlistError(
                gettext(
                    "%(day)s has passed or is too soon: bookings need %(hours)s hours' notice. "
                    "Please choose a later day.",
                    day=describe_day(day),
                    hours=f"{hours:g}",
                ),
                field="dates",
            )
        if day > last:
            raise WaitlistError(
                gettext(
                    "%(day)s is too far ahead: bookings open %(days)d days ahead. "
                    "Please choose an earlier day.",
                    day=describe_day(day),
                    days=clinic.horizon_days,
                ),
                field="dates",
            )
    return chosen


def join_waitlist(
    session: Session,
    *,
    clinic: Clinic,
    treatment: Treatment,
    practitioner: Practitioner | None,
    days: Iterable[date],
    patient: PatientDetails,
    now: datetime,
) -> WaitlistEntry:
    """Put a patient on the waitlist for ``treatment`` with ``practitioner`` (``None``:
    anyone) on ``days``, after everyone already waiting."""
    if not treatment.active:
        raise WaitlistError(gettext("That treatment is no longer offered."), field="service")
    if practitioner is not None and (
        not practitioner.active or treatment not in practitioner.treatments
    ):
        raise WaitlistError(
            gettext(
                "%(practitioner)s does not give %(treatment)s.",
                practitioner=practitioner.name,
                treatment=treatment.name,
            ),
            field="practitioner",
        )
    chosen = check_days(clinic, days, now)
    entry = WaitlistEntry(
        patient=find_or_create_patient(session, patient, now),
        treatment=treatment,
        practitioner=practitioner,
        status=EntryStatus.WAITING,
        token=secrets.token_urlsafe(32),
        **patient.as_given(),
        created_at=now,
        days=[WaitlistDay(day=day) for day in chosen],
    )
    session.add(entry)
    session.flush()
    return entry


def is_over(entry: WaitlistEntry, clinic: Clinic, now: datetime) -> bool:
    """Tell whether a waiting entry's days have all passed, so nothing more can be offered."""
    first, _ = bookable_days(clinic, now)
    return entry.status is EntryStatus.WAITING and all(day < first for day in entry.dates)


def _withdraw(offer: WaitlistOffer, reason: str, now: datetime) -> None:
    """Close an open offer of an entry that no longer waits; its mail, if not yet sent, is
    dropped."""
    offer.status = OfferStatus.WITHDRAWN
    offer.closed_at = now
    mail = _mail(offer, NotificationKind.WAITLIST_OFFER)
    if mail is not None and mail.status in OPEN_STATUSES:
        skip(mail, reason, now)


def leave_waitlist(session: Session, *, entry: WaitlistEntry, now: datetime) -> None:
    """Take the patient off the waitlist; offers still open are withdrawn."""
    if entry.status is not EntryStatus.WAITING:
        raise WaitlistError(gettext("You are no longer on this waitlist."))
    entry.status = EntryStatus.LEFT
    entry.closed_at = now
    for offer in entry.offers:
        if offer.status is OfferStatus.OFFERED:
            _withdraw(offer, "the patient left the waitlist", now)
    session.flush()


# --- Offering freed times ---------------------------------------------------------------------


def offer_freed_time(
    session: Session,
    *,
    clinic: Clinic,
    practitioner: Practitioner,
    start: datetime,
    end: datetime,
    now: datetime,
) -> list[WaitlistOffer]:
    """Offer the time ``practitioner`` has free again in ``[start, end)`` to waiting patients.

    Returns the offers made; their mail is queued with them.
    """
    return _offer_windows(
        session, clinic=clinic, practitioner=practitioner, windows=[(start, end)], now=now
    )


def offer_freed_booking(
    session: Session,
    *,
    clinic: Clinic,
    booking: Booking,
    now: datetime,
    start: datetime | None = None,
    practitioner: Practitioner | None = None,
) -> list[WaitlistOffer]:
    """Offer the time ``booking`` held to waiting patients, once it is cancelled or moved.

    For a moved booking, ``start`` and ``practitioner`` say where it was.
    """
    start = start or booking.start_at
    return offer_freed_time(
        session,
        clinic=clinic,
        practitioner=practitioner or booking.practitioner,
        start=start,
        end=start + (booking.blocked_until - booking.start_at),
        now=now,
    )


def offer_after_time_off(
    session: Session, *, clinic: Clinic, off: TimeOff, now: datetime
) -> list[WaitlistOffer]:
    """Offer waiting patients the times that removing the time off ``off`` opened."""
    practitioner = session.get_one(Practitioner, off.practitioner_id)
    return offer_freed_time(
        session,
        clinic=clinic,
        practitioner=practitioner,
        start=off.start_at,
        end=off.end_at,
        now=now,
    )


def weekly_hours(practitioner: Practitioner) -> list[WeeklyHours]:
    """Return the practitioner's weekly hours as they are now (to compare with new ones)."""
    return [WeeklyHours(h.weekday, h.start_time, h.end_time) for h in practitioner.working_hours]


def _added_hours(
    before: Sequence[WeeklyHours], after: Sequence[WeeklyHours]
) -> dict[int, list[tuple[time, time]]]:
    """Return, by weekday, the wall-clock intervals ``after`` covers and ``before`` did not."""
    added: dict[int, list[tuple[time, time]]] = defaultdict(list)
    for hours in after:
        pieces = [(hours.start, hours.end)]
        for old in before:
            if old.weekday != hours.weekday:
                continue
            pieces = [
                piece
                for start, end in pieces
                for piece in ((start, min(end, old.start)), (max(start, old.end), end))
                if piece[0] < piece[1]
            ]
        added[hours.weekday].extend(pieces)
    return {weekday: pieces for weekday, pieces in added.items() if pieces}


def offer_new_hours(
    session: Session,
    *,
    clinic: Clinic,
    practitioner: Practitioner,
    before: Sequence[WeeklyHours],
    now: datetime,
) -> list[WaitlistOffer]:
    """Offer waiting patients the times the practitioner's new weekly hours opened.

    ``before`` is what :func:`weekly_hours` returned before the hours changed.
    """
    added = _added_hours(before, weekly_hours(practitioner))
    if not added:
        return []
    first, last = bookable_days(clinic, now)
    waited_for = session.scalars(
        select(WaitlistDay.day)
        .join(WaitlistEntry)
        .where(
            WaitlistEntry.status == EntryStatus.WAITING,
            WaitlistDay.day >= first,
            WaitlistDay.day <= last,
        )
        .distinct()
    )
    windows = [
        (local_to_utc(day, start, clinic.tz), local_to_utc(day, end, clinic.tz))
        for day in waited_for
        for start, end in added.get(day.weekday(), [])
    ]
    return _offer_windows(
        session, clinic=clinic, practitioner=practitioner, windows=windows, now=now
    )


def _days_of(
    windows: Iterable[Interval], clinic: Clinic, now: datetime
) -> dict[date, list[Interval]]:
    """Sort freed intervals by the clinic's dates they touch, keeping only bookable dates."""
    first, last = bookable_days(clinic, now)
    tz = clinic.tz
    by_day: dict[date, list[Interval]] = defaultdict(list)
    for start, end in windows:
        if end <= start:
            continue
        day = max(start.astimezone(tz).date(), first)
        final = min((end - timedelta(microseconds=1)).astimezone(tz).date(), last)
        while day <= final:
            by_day[day].append((start, end))
            day += timedelta(days=1)
    return by_day


def _blocks(start: datetime, end: datetime, treatment: Treatment) -> Interval:
    """The time a session holds: its length and the buffer after it."""
    return start, end + timedelta(minutes=treatment.buffer_minutes)


def _overlap(first: Interval, second: Interval) -> bool:
    return first[0] < second[1] and second[0] < first[1]


def _offer_windows(
    session: Session,
    *,
    clinic: Clinic,
    practitioner: Practitioner,
    windows: Iterable[Interval],
    now: datetime,
) -> list[WaitlistOffer]:
    """Offer waiting entries a slot with ``practitioner`` that uses some of ``windows``."""
    by_day = _days_of(windows, clinic, now)
    if not by_day or not practitioner.active:
        return []
    waiting = session.execute(
        select(WaitlistEntry, WaitlistDay.day)
        .join(WaitlistEntry.days)
        .join(WaitlistEntry.patient)
        .where(
            WaitlistDay.day.in_(sorted(by_day)),
            WaitlistEntry.status == EntryStatus.WAITING,
            or_(
                WaitlistEntry.practitioner_id.is_(None),
                WaitlistEntry.practitioner_id == practitioner.id,
            ),
            Patient.erased_at.is_(None),
        )
        .order_by(WaitlistDay.day, WaitlistEntry.created_at, WaitlistEntry.id)
    )
    rows = list(waiting)
    if not rows:
        return []
    # An entry is not offered again a time it was offered before (or one overlapping it).
    already: dict[int, list[Interval]] = defaultdict(list)
    for earlier in session.scalars(
        select(WaitlistOffer).where(
            WaitlistOffer.entry_id.in_({entry.id for entry, _ in rows}),
            WaitlistOffer.practitioner_id == practitioner.id,
        )
    ):
        already[earlier.entry_id].append(
            _blocks(earlier.start_at, earlier.end_at, earlier.entry.treatment)
        )
    min_notice = rules_of(clinic).min_notice
    made: list[WaitlistOffer] = []
    patients: set[int] = set()  # one offer per patient for one freed time, on the earliest day
    for day, day_rows in groupby(rows, key=lambda row: row[1]):
        freed = by_day[day]
        slots: dict[int, list[Slot]] = {}
        this_day: list[Interval] = []  # the times offered so far, with their buffers
        for entry, _ in day_rows:
            treatment = entry.treatment
            if entry.patient_id in patients or not treatment.active:
                continue
            if treatment.id not in slots:
                slots[treatment.id] = find_slots(
                    session,
                    clinic=clinic,
                    treatment=treatment,
                    practitioner=practitioner,
                    first_day=day,
                    last_day=day,
                    now=now,
                )
            candidates = [
                slot
                for slot in slots[treatment.id]
                if any(_overlap(_blocks(slot.start, slot.end, treatment), w) for w in freed)
                and not any(
                    _overlap(_blocks(slot.start, slot.end, treatment), old)
                    for old in already[entry.id]
                )
            ]
            if not candidates:
                continue
            slot, rivals = _choose(candidates, treatment, freed, this_day)
            offered_at = now + HEAD_START * rivals
            expires_at = min(offered_at + OFFER_LIFETIME, slot.start - min_notice)
            if expires_at - offered_at < SHORTEST_OFFER:
                continue
            offer = _make_offer(session, entry, practitioner, slot, offered_at, expires_at, now)
            if offer is None:
                continue
            held = _blocks(slot.start, slot.end, treatment)
            already[entry.id].append(held)
            patients.add(entry.patient_id)
            this_day.append(held)
            made.append(offer)
    return made


def _choose(
    candidates: Sequence[Slot],
    treatment: Treatment,
    freed: Sequence[Interval],
    offered: Sequence[Interval],
) -> tuple[Slot, int]:
    """Pick the slot to offer and say how many were offered an overlapping time before.

    A time nobody else was just offered comes first, then the one nearest the freed time.
    """

    def rank(slot: Slot) -> tuple[int, timedelta, datetime]:
        held = _blocks(slot.start, slot.end, treatment)
        rivals = sum(1 for other in offered if _overlap(held, other))
        return rivals, min(abs(slot.start - start) for start, _ in freed), slot.start

    best = min(candidates, key=rank)
    return best, rank(best)[0]


def _make_offer(
    session: Session,
    entry: WaitlistEntry,
    practitioner: Practitioner,
    slot: Slot,
    offered_at: datetime,
    expires_at: datetime,
    now: datetime,
) -> WaitlistOffer | None:
    """Add an offer and queue its mail; ``None`` when a concurrent change made the same one."""
    offer = WaitlistOffer(
        entry_id=entry.id,
        practitioner_id=practitioner.id,
        start_at=slot.start,
        end_at=slot.end,
        status=OfferStatus.OFFERED,
        token=secrets.token_urlsafe(32),
        offered_at=offered_at,
        expires_at=expires_at,
        created_at=now,
    )
    mail = Notification(
        waitlist_offer=offer,
        kind=NotificationKind.WAITLIST_OFFER,
        status=NotificationStatus.PENDING,
        due_at=offered_at,
        next_attempt_at=offered_at,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add_all([offer, mail])
    except IntegrityError:
        return None
    return offer


# --- Booking from an offer --------------------------------------------------------------------


def _mail(offer: WaitlistOffer, kind: NotificationKind) -> Notification | None:
    session = object_session(offer)
    if session is None or offer.id is None:
        return None
    return session.scalars(
        select(Notification).where(
            Notification.waitlist_offer_id == offer.id, Notification.kind == kind
        )
    ).first()


def _still_free(session: Session, clinic: Clinic, offer: WaitlistOffer, now: datetime) -> bool:
    """Tell whether the offered time could be booked now."""
    try:
        pick_slot(
            session,
            clinic=clinic,
            treatment=offer.entry.treatment,
            practitioner=offer.practitioner,
            start=offer.start_at,
            now=now,
        )
    except BookingError:
        return False
    return True


_CLOSED = {
    OfferStatus.TAKEN: OfferState.TAKEN,
    OfferStatus.GONE: OfferState.GONE,
    OfferStatus.WITHDRAWN: OfferState.WITHDRAWN,
}


def _recorded_state(offer: WaitlistOffer, now: datetime) -> OfferState:
    """The offer's state from what is stored, before looking at whether the time is free."""
    if offer.status in _CLOSED:
        return _CLOSED[offer.status]
    if offer.entry.patient.erased_at is not None:
        return OfferState.WITHDRAWN
    if now < offer.offered_at:
        return OfferState.NOT_YET
    if now >= offer.expires_at:
        return OfferState.EXPIRED
    return OfferState.OPEN


def offer_state(
    session: Session, clinic: Clinic, offer: WaitlistOffer, now: datetime
) -> OfferState:
    """Return how the offer stands now, including whether its time is still free."""
    state = _recorded_state(offer, now)
    if state is OfferState.OPEN and not _still_free(session, clinic, offer, now):
        return OfferState.GONE
    return state


def book_offer(
    session: Session,
    *,
    clinic: Clinic,
    offer: WaitlistOffer,
    patient: PatientDetails,
    notes: str = "",
    intake: IntakeAnswers | None = None,
    now: datetime,
    uid_host: str,
) -> Booking:
    """Book the offered time for the patient holding the offer; the first to book has it.

    Raises :class:`OfferClosed` when the offer is no longer open, and the booking's own errors
    (:class:`~scheduler.booking.operations.SlotUnavailable` when someone else got the time
    first). The entry is then booked, its other offers withdrawn, and everyone else offered
    the time is told it has gone.
    """
    state = _recorded_state(offer, now)
    if state is not OfferState.OPEN:
        raise OfferClosed(state)
    entry = offer.entry
    booking = book_session(
        session,
        clinic=clinic,
        treatment=entry.treatment,
        practitioner=offer.practitioner,
        start=offer.start_at,
        patient=patient,
        notes=notes,
        now=now,
        uid_host=uid_host,
        actor=PATIENT,
        intake=intake,
    )
    offer.status = OfferStatus.TAKEN
    offer.booking = booking
    offer.closed_at = now
    entry.status = EntryStatus.BOOKED
    entry.closed_at = now
    for other in entry.offers:
        if other is not offer and other.status is OfferStatus.OFFERED:
            _withdraw(other, "the patient booked another time", now)
    _tell_the_others(session, booking, now)
    session.flush()
    return booking


def _tell_the_others(session: Session, booking: Booking, now: datetime) -> None:
    """Close the open offers whose time ``booking`` took, telling those who heard of them."""
    taken = (booking.start_at, booking.blocked_until)
    rivals = session.scalars(
        select(WaitlistOffer).where(
            WaitlistOffer.practitioner_id == booking.practitioner_id,
            WaitlistOffer.status == OfferStatus.OFFERED,
            WaitlistOffer.expires_at > now,
            WaitlistOffer.start_at < booking.blocked_until,
            WaitlistOffer.start_at >= booking.start_at - MAX_BOOKING_SPAN,
        )
    )
    for rival in rivals:
        if not _overlap(_blocks(rival.start_at, rival.end_at, rival.entry.treatment), taken):
            continue
        rival.status = OfferStatus.GONE
        rival.closed_at = now
        mail = _mail(rival, NotificationKind.WAITLIST_OFFER)
        if mail is None:
            continue
        if mail.status is NotificationStatus.PENDING:
            # They have not heard of it, so there is nothing to tell them.
            skip(mail, "someone else booked the time first", now)
        elif mail.status in (NotificationStatus.SENT, NotificationStatus.SENDING):
            session.add(
                Notification(
                    waitlist_offer=rival,
                    kind=NotificationKind.WAITLIST_GONE,
                    status=NotificationStatus.PENDING,
                    due_at=now,
                    next_attempt_at=now,
                    created_at=now,
                )
            )


def unwanted_mail(kind: NotificationKind, offer: WaitlistOffer, now: datetime) -> str | None:
    """Say why a waitlist message should no longer go out, if it should not."""
    if offer.entry.patient.erased_at is not None:
        return "the patient's details were erased"
    if kind is NotificationKind.WAITLIST_GONE:
        return "the offered time has passed" if offer.start_at <= now else None
    reasons = {
        OfferState.TAKEN: "the patient booked the time",
        OfferState.GONE: "someone else booked the time first",
        OfferState.WITHDRAWN: "the patient booked another time or left the waitlist",
        OfferState.EXPIRED: "the offer has expired",
    }
    state = _recorded_state(offer, now)
    if state in reasons:
        return reasons[state]
    session = object_session(offer)
    clinic = Clinic.get(session) if session is not None else None
    if session is not None and clinic is not None and not _still_free(session, clinic, offer, now):
        return "the time is no longer free"
    return None
