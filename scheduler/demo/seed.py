"""The demo clinic: enough people, rooms, treatments and hours to try every page."""

from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from scheduler.booking.models import Booking, BookingStatus
from scheduler.clinic.checklists import default_items
from scheduler.clinic.models import Clinic, Practitioner, Room, Treatment, WorkingHours
from scheduler.patients.models import Patient
from scheduler.staff.models import Role, User
from scheduler.timeutil import local_to_utc

ADMIN_EMAIL = "admin@example.com"

WEEKDAY_HOURS = ((time(9), time(13)), (time(14), time(18)))
SATURDAY_HOURS = ((time(9), time(12, 30)), (time(13, 30), time(16)))

PRACTITIONERS: tuple[dict[str, Any], ...] = (
    {
        "name": "Dr Mei Lin",
        "email": "mei.lin@example.com",
        "credentials": "BSc (Hons) Acupuncture, MSc Chinese Medicine",
        "licence": "Member of the British Acupuncture Council (MBAcC), no. 10482",
        "bio": "Mei has practised for fifteen years, with a special interest in pain, "
        "fertility support and sleep.",
        "days": (0, 1, 2, 3, 4, 5),
    },
    {
        "name": "James Okafor",
        "email": "james.okafor@example.com",
        "credentials": "Lic.Ac., BSc (Hons) Acupuncture",
        "licence": "Member of the British Acupuncture Council (MBAcC), no. 11937",
        "bio": "James treats sports injuries, back and neck pain and stress.",
        "days": (0, 1, 2, 3, 4, 5),
    },
    {
        "name": "Sofia Rossi",
        "email": "sofia.rossi@example.com",
        "credentials": "BSc Acupuncture, Diploma in Tui Na",
        "licence": "Member of the British Acupuncture Council (MBAcC), no. 12305",
        "bio": "Sofia combines acupuncture with Tui Na massage and cupping.",
        "days": (1, 2, 3, 4, 5),
    },
)

FIRST_NAMES = (
    "Alice",
    "Ben",
    "Chloe",
    "David",
    "Emma",
    "Farah",
    "George",
    "Hana",
    "Isaac",
    "Jade",
    "Kofi",
    "Laura",
    "Mohammed",
    "Nina",
    "Oliver",
    "Priya",
    "Rory",
    "Sara",
)
LAST_NAMES = (
    "Adams",
    "Brown",
    "Chen",
    "Davies",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Iqbal",
    "Jones",
    "Khan",
    "Lewis",
    "Murphy",
    "Nowak",
    "Patel",
    "Smith",
    "Taylor",
)


def seed_demo(session: Session, *, admin_password: str, pepper: str = "") -> Clinic:
    """Create the demo clinic in an empty database and return it."""
    clinic = Clinic(
        name="Willow Acupuncture Clinic",
        address="12 Mill Lane, Cambridge CB2 1RX, United Kingdom",
        phone="+44 1223 555 010",
        email="hello@willow-acupuncture.example",
        timezone="Europe/London",
        slot_step_minutes=15,
        min_notice_minutes=12 * 60,
        horizon_days=60,
        late_cancel_hours=24,
    )
    initial = Treatment(
        name="Initial consultation and treatment",
        description="An in-depth consultation about your health, followed by your first "
        "acupuncture treatment.",
        duration_minutes=90,
        buffer_minutes=15,
        first_visit=True,
        position=1,
    )
    follow_up = Treatment(
        name="Follow-up treatment",
        description="A treatment as part of a course, for returning patients.",
        duration_minutes=60,
        buffer_minutes=15,
        position=2,
    )
    cupping = Treatment(
        name="Cupping",
        description="Cupping on its own, or as a short top-up between treatments.",
        duration_minutes=30,
        buffer_minutes=10,
        position=3,
        room_kind="cupping",  # the Studio has the cups and the ventilation
    )
    session.add_all([clinic, initial, follow_up, cupping])
    session.add_all(default_items(clinic))
    session.add_all(
        [
            Room(name="Garden room", kind="treatment"),
            Room(name="Courtyard room", kind="treatment"),
            Room(name="Studio", kind="cupping"),
        ]
    )
    for data in PRACTITIONERS:
        practitioner = Practitioner(
            name=data["name"],
            email=data["email"],
            credentials=data["credentials"],
            licence=data["licence"],
            bio=data["bio"],
            treatments=[initial, follow_up] + ([cupping] if data["name"] == "Sofia Rossi" else []),
        )
        for weekday in data["days"]:
            for start, end in SATURDAY_HOURS if weekday == 5 else WEEKDAY_HOURS:
                practitioner.working_hours.append(
                    WorkingHours(weekday=weekday, start_time=start, end_time=end)
                )
        session.add(practitioner)
    admin = User(email=ADMIN_EMAIL, role=Role.ADMIN)
    admin.set_password(admin_password, pepper=pepper)
    session.add(admin)
    session.flush()
    return clinic


def add_demo_bookings(
    session: Session, clinic: Clinic, count: int, *, now: datetime, seed: int = 2026
) -> int:
    """Add ``count`` realistic bookings around ``now``: the horizon's future, the rest past.

    Days are filled alternately forward and back from today, so the near future is as busy as
    a real clinic's and the rest reaches back into the past. Returns how many were added.
    """
    rng = random.Random(seed)
    tz = clinic.tz
    practitioners = session.query(Practitioner).order_by(Practitioner.id).all()
    rooms = session.query(Room).order_by(Room.id).all()
    room_ids = [room.id for room in rooms]
    kind_of = {room.id: room.kind for room in rooms}
    patients = _demo_patients(session, rng, max(10, count // 6))
    today = now.astimezone(tz).date()
    rows: list[dict[str, Any]] = []
    for day in _days_around(today, clinic.horizon_days):
        if len(rows) >= count:
            break
        rooms_busy: dict[int, list[tuple[datetime, datetime]]] = {rid: [] for rid in room_ids}
        for practitioner in practitioners:
            treatments = [t for t in practitioner.treatments if t.active]
            for hours in practitioner.working_hours:
                if hours.weekday != day.weekday():
                    continue
                cursor = local_to_utc(day, hours.start_time, tz)
                end = local_to_utc(day, hours.end_time, tz)
                while len(rows) < count:
                    if rng.random() < 0.2:
                        cursor += timedelta(minutes=30)
                    treatment = rng.choice(treatments)
                    start = cursor
                    finish = start + timedelta(minutes=treatment.duration_minutes)
                    blocked = finish + timedelta(minutes=treatment.buffer_minutes)
                    if blocked > end:
                        break
                    room = next(
                        (
                            rid
                            for rid in room_ids
                            if treatment.room_kind in (None, kind_of[rid])
                            and all(b <= start or a >= blocked for a, b in rooms_busy[rid])
                        ),
                        None,
                    )
                    if room is None:
                        cursor += timedelta(minutes=15)
                        continue
                    rooms_busy[room].append((start, blocked))
                    rows.append(
                        _booking_row(rng, treatment, practitioner, room, patients, start, now)
                    )
                    cursor = blocked
    if rows:
        session.execute(insert(Booking), rows)
    return len(rows)


def _days_around(today: date, horizon_days: int) -> Iterator[date]:
    """Yield tomorrow, yesterday, the day after, the day before… (future up to the horizon)."""
    offset = 1
    while offset < 3650:
        if offset <= horizon_days:
            yield today + timedelta(days=offset)
        yield today - timedelta(days=offset)
        offset += 1


def _demo_patients(session: Session, rng: random.Random, count: int) -> list[int]:
    rows = []
    for index in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        rows.append(
            {
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}.{index}@example.net",
                "phone": f"+44 7700 9{index % 100000:05d}",
            }
        )
    session.execute(insert(Patient), rows)
    return [pid for (pid,) in session.query(Patient.id).order_by(Patient.id)]


def _booking_row(
    rng: random.Random,
    treatment: Treatment,
    practitioner: Practitioner,
    room_id: int,
    patients: list[int],
    start: datetime,
    now: datetime,
) -> dict[str, Any]:
    roll = rng.random()
    if start < now:
        status = (
            BookingStatus.CANCELLED
            if roll < 0.06
            else BookingStatus.NO_SHOW
            if roll < 0.09
            else BookingStatus.COMPLETED
        )
    else:
        status = BookingStatus.CANCELLED if roll < 0.05 else BookingStatus.CONFIRMED
    end = start + timedelta(minutes=treatment.duration_minutes)
    created = min(now, start) - timedelta(days=rng.randint(1, 30))
    return {
        "treatment_id": treatment.id,
        "practitioner_id": practitioner.id,
        "room_id": room_id,
        "patient_id": rng.choice(patients),
        "start_at": start,
        "end_at": end,
        "blocked_until": end + timedelta(minutes=treatment.buffer_minutes),
        "status": status,
        "manage_token": secrets.token_urlsafe(32),
        "notes": "",
        "calendar_uid": f"booking-{uuid.uuid4()}@demo.invalid",
        "sequence": 0,
        "cancelled_at": created if status == BookingStatus.CANCELLED else None,
        "cancellation_reason": "",
        "late_cancellation": False,
        "created_at": created,
        "updated_at": created,
    }
