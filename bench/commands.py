"""``flask --app bench.app bench …``: the bench's data steps and in-process measurements.

Each measurement runs the project's own command in this process (its click callback, inside
the app context, as ``flask`` would run it) so that the time is the work and not the start
of a Python process, and prints one line of JSON for the driver (``bench/run.py``).
"""

from __future__ import annotations

import base64
import contextlib
import gc
import io
import json
import random
import secrets
import smtplib
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from icalendar import Calendar
from sqlalchemy import delete, func, insert, select

from bench.calendars import busy_calendar
from scheduler.booking.models import LIVE_STATUSES, Booking, BookingStatus
from scheduler.calendars.commands import calendar
from scheduler.calendars.feeds import feed_window
from scheduler.calendars.models import ExternalEvent
from scheduler.clinic.models import Clinic, Practitioner, Room, Treatment, WorkingHours
from scheduler.db import begin_write
from scheduler.demo.seed import SATURDAY_HOURS, WEEKDAY_HOURS
from scheduler.extensions import db
from scheduler.notifications.commands import notifications
from scheduler.notifications.models import (
    DeliveryAttempt,
    Notification,
    NotificationKind,
    NotificationStatus,
)
from scheduler.patients.models import Patient
from scheduler.timeutil import local_to_utc

# Two more practitioners make the five, beside the demo's three.
EXTRA_PRACTITIONERS: tuple[dict[str, Any], ...] = (
    {
        "name": "Ana Costa",
        "email": "ana.costa@example.com",
        "credentials": "BSc (Hons) Acupuncture",
        "licence": "Member of the British Acupuncture Council (MBAcC), no. 13020",
        "days": (0, 1, 2, 3, 4),
    },
    {
        "name": "Tom Reid",
        "email": "tom.reid@example.com",
        "credentials": "Lic.Ac., MSc Acupuncture",
        "licence": "Member of the British Acupuncture Council (MBAcC), no. 13377",
        "days": (1, 2, 3, 4, 5),
    },
)
IMPORT_UID_PREFIX = "bench-import-"
DUMP_RECIPIENT = "dump@bench.invalid"  # see bench/smtp_sink.py


@click.group()
def bench() -> None:
    """The bench's own steps (see bench/run.py)."""


def _now() -> datetime:
    clock: Callable[[], datetime] = current_app.config["CLOCK"]
    return clock()


def _clinic() -> Clinic:
    clinic = Clinic.get(db.session())
    if clinic is None:
        raise click.ClickException("no clinic: run `demo seed` first")
    return clinic


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value))


@bench.command("prepare")
@click.option("--feed-practitioner", required=True, help="Whose feed to fill, by email.")
@click.option("--feed-events", type=click.IntRange(0), required=True)
@click.option("--busy-events", type=click.IntRange(0), required=True)
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), required=True)
@with_appcontext
def prepare(feed_practitioner: str, feed_events: int, busy_events: int, folder: Path) -> None:
    """Add two practitioners, fill one practitioner's coming year, and import busy time.

    The busy time is BUSY_EVENTS events over two years, shared by all practitioners, each
    practitioner's written as a calendar file and imported by `calendar import`.
    """
    session = db.session()
    begin_write(session)
    clinic = _clinic()
    treatments = session.scalars(
        select(Treatment).where(Treatment.room_kind.is_(None)).order_by(Treatment.position)
    ).all()
    for data in EXTRA_PRACTITIONERS:
        practitioner = Practitioner(
            name=data["name"],
            email=data["email"],
            credentials=data["credentials"],
            licence=data["licence"],
            bio="",
            treatments=list(treatments),
        )
        for weekday in data["days"]:
            for start, end in SATURDAY_HOURS if weekday == 5 else WEEKDAY_HOURS:
                practitioner.working_hours.append(
                    WorkingHours(weekday=weekday, start_time=start, end_time=end)
                )
        session.add(practitioner)
    session.flush()
    owner = session.scalars(select(Practitioner).where(Practitioner.email == feed_practitioner))
    standing = _standing_bookings(clinic, owner.one(), feed_events, _now())
    session.commit()
    emails = session.scalars(select(Practitioner.email).order_by(Practitioner.id)).all()
    session.rollback()
    today = _now().astimezone(clinic.tz).date()
    each = busy_events // len(emails)
    for index, email in enumerate(emails):
        path = busy_calendar(
            folder / f"busy-{index}.ics",
            name=f"{email} diary",
            uid_prefix=f"bench-busy-{index}-",
            count=each,
            first=today - timedelta(days=30),
            days=730,
            seed=index,
        )
        said = _quietly(calendar, ["import", str(path), "--practitioner", email])
        if not said.startswith(f"imported {each},"):
            raise click.ClickException(f"importing {path.name} said {said.strip()!r}")
    _echo_json({"standing_bookings": standing, "busy_events_each": each, **_info()})


def _standing_bookings(
    clinic: Clinic, practitioner: Practitioner, target: int, now: datetime
) -> int:
    """Book the practitioner's shortest treatment, back to back, after their last booking,
    until their feed holds ``target`` events or the feed's year is full; return how many."""
    session = db.session()
    first, last = feed_window(clinic, now)
    live = session.scalar(
        select(func.count(Booking.id)).where(
            Booking.practitioner_id == practitioner.id,
            Booking.start_at >= first,
            Booking.start_at < last,
            Booking.status.in_(LIVE_STATUSES),
        )
    )
    wanted = target - (live or 0)
    if wanted <= 0:
        return 0
    treatment = min(
        (t for t in practitioner.treatments if t.active),
        key=lambda t: t.duration_minutes + t.buffer_minutes,
    )
    rooms = session.scalars(
        select(Room.id).where(
            Room.active.is_(True),
            *([Room.kind == treatment.room_kind] if treatment.room_kind else []),
        )
    ).all()
    latest = session.scalar(select(func.max(Booking.blocked_until))) or now
    busy: dict[int, list[tuple[datetime, datetime]]] = {room: [] for room in rooms}
    for room_id, start, until in session.execute(
        select(Booking.room_id, Booking.start_at, Booking.blocked_until).where(
            Booking.blocked_until > now, Booking.status.in_(LIVE_STATUSES)
        )
    ):
        busy.setdefault(room_id, []).append((start, until))
    rng = random.Random(10)
    patients = session.scalars(select(Patient.id)).all()
    tz = clinic.tz
    length = timedelta(minutes=treatment.duration_minutes)
    buffer = timedelta(minutes=treatment.buffer_minutes)
    rows: list[dict[str, Any]] = []
    day = max(latest, now).astimezone(tz).date() + timedelta(days=1)
    while len(rows) < wanted and local_to_utc(day, datetime.min.time(), tz) < last:
        for hours in practitioner.working_hours:
            if hours.weekday != day.weekday():
                continue
            cursor = local_to_utc(day, hours.start_time, tz)
            end = local_to_utc(day, hours.end_time, tz)
            while len(rows) < wanted and cursor + length + buffer <= end:
                until = cursor + length + buffer
                room = next(
                    (r for r in rooms if all(b <= cursor or a >= until for a, b in busy[r])),
                    None,
                )
                if room is not None:
                    busy[room].append((cursor, until))
                    rows.append(_row(treatment, practitioner, room, rng.choice(patients), cursor))
                cursor = until
        day += timedelta(days=1)
    if rows:
        session.execute(insert(Booking), rows)
    return len(rows)


def _row(
    treatment: Treatment, practitioner: Practitioner, room: int, patient: int, start: datetime
) -> dict[str, Any]:
    end = start + timedelta(minutes=treatment.duration_minutes)
    created = start - timedelta(days=200)
    return {
        "treatment_id": treatment.id,
        "practitioner_id": practitioner.id,
        "room_id": room,
        "patient_id": patient,
        "start_at": start,
        "end_at": end,
        "blocked_until": end + timedelta(minutes=treatment.buffer_minutes),
        "status": BookingStatus.CONFIRMED,
        "manage_token": secrets.token_urlsafe(32),
        "notes": "",
        "calendar_uid": f"booking-{uuid.uuid4()}@bench.invalid",
        "sequence": 0,
        "cancelled_at": None,
        "cancellation_reason": "",
        "late_cancellation": False,
        "created_at": created,
        "updated_at": created,
    }


@bench.command("info")
@with_appcontext
def info() -> None:
    """Print what the driver needs: services, practitioners, a few bookings, counts."""
    _echo_json(_info())


def _info() -> dict[str, Any]:
    session = db.session()
    clinic = _clinic()
    now = _now()
    first, last = feed_window(clinic, now)
    practitioners = []
    for practitioner in session.scalars(select(Practitioner).order_by(Practitioner.id)):
        feed_events = session.scalar(
            select(func.count(Booking.id)).where(
                Booking.practitioner_id == practitioner.id,
                Booking.start_at >= first,
                Booking.start_at < last,
                Booking.status.in_(LIVE_STATUSES),
            )
        )
        practitioners.append(
            {
                "id": practitioner.id,
                "email": practitioner.email,
                "feed_token": practitioner.feed_token,
                "services": sorted(t.id for t in practitioner.treatments if t.active),
                "feed_events": feed_events,
            }
        )
    services = [
        {"id": t.id, "name": t.name, "first_visit": t.first_visit, "room_kind": t.room_kind}
        for t in session.scalars(select(Treatment).order_by(Treatment.position))
    ]
    live_future = select(Booking).where(Booking.start_at > now, Booking.status.in_(LIVE_STATUSES))
    tokens = session.scalars(
        live_future.with_only_columns(Booking.manage_token).order_by(Booking.start_at).limit(200)
    ).all()
    ids = session.scalars(select(Booking.id).order_by(Booking.id).limit(500)).all()
    return {
        "timezone": clinic.timezone,
        "today": now.astimezone(clinic.tz).date().isoformat(),
        "horizon_days": clinic.horizon_days,
        "services": services,
        "practitioners": practitioners,
        "booking_ids": ids,
        "tokens": tokens,
        "bookings": session.scalar(select(func.count(Booking.id))),
        "future_live": session.scalar(
            live_future.with_only_columns(func.count(Booking.id)).order_by(None)
        ),
        "external_events": session.scalar(select(func.count(ExternalEvent.id))),
    }


def _quietly(command: click.Command, args: list[str]) -> str:
    """Run one of the project's commands here, as ``flask`` would; return what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            command.main(args, prog_name=command.name, standalone_mode=False)
        except click.exceptions.Exit as exc:
            if exc.exit_code:
                raise click.ClickException(f"{command.name} {args} exited {exc.exit_code}") from exc
    return out.getvalue()


def _peak_bytes(work: Callable[[], object]) -> int:
    """The most memory Python held at once while ``work`` ran, beyond what it held before."""
    gc.collect()
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@bench.command("time-import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--practitioner", "email", required=True)
@click.option("--rounds", type=click.IntRange(1), default=3)
@with_appcontext
def time_import(path: Path, email: str, rounds: int) -> None:
    """Time `calendar import` of a file against icalendar's parse of it, then their peaks."""
    expected = f"imported {path.read_bytes().count(b'BEGIN:VEVENT')},"

    def parse() -> object:
        return Calendar.from_ical(path.read_bytes())

    def run_import() -> str:
        return _quietly(calendar, ["import", str(path), "--practitioner", email])

    def undo() -> None:
        session = db.session()
        session.rollback()
        begin_write(session)
        owner = session.scalars(select(Practitioner.id).where(Practitioner.email == email))
        session.execute(
            delete(ExternalEvent).where(
                ExternalEvent.practitioner_id == owner.one(),
                ExternalEvent.uid.startswith(IMPORT_UID_PREFIX),
            )
        )
        session.commit()
        db.session.remove()

    results = []
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        parse()
        parsed = time.perf_counter() - started
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        said = run_import()
        imported, import_cpu = time.perf_counter() - started, time.process_time() - cpu
        undo()
        if expected not in said:
            raise click.ClickException(f"the import said {said.strip()!r}, not {expected}…")
        results.append(
            {"import_seconds": imported, "import_cpu_seconds": import_cpu, "parse_seconds": parsed}
        )
    parse_peak = _peak_bytes(parse)
    import_peak = _peak_bytes(run_import)
    undo()
    _echo_json({"rounds": results, "parse_peak": parse_peak, "import_peak": import_peak})


def _queue_confirmations(count: int, now: datetime) -> int:
    """Empty the outbox and queue a confirmation, due now, for ``count`` coming bookings."""
    session = db.session()
    session.rollback()
    begin_write(session)
    session.execute(delete(DeliveryAttempt))
    session.execute(delete(Notification))
    bookings = session.scalars(
        select(Booking.id)
        .where(Booking.start_at > now + timedelta(hours=1), Booking.status.in_(LIVE_STATUSES))
        .order_by(Booking.start_at)
        .limit(count)
    ).all()
    due = now - timedelta(seconds=1)
    if bookings:
        session.execute(
            insert(Notification),
            [
                {
                    "booking_id": booking,
                    "kind": NotificationKind.CONFIRMATION,
                    "variant": 0,
                    "status": NotificationStatus.PENDING,
                    "due_at": due,
                    "next_attempt_at": due,
                    "created_at": due,
                }
                for booking in bookings
            ],
        )
    session.commit()
    db.session.remove()
    return len(bookings)


def _wait_for(path: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise click.ClickException(f"the SMTP sink wrote no {path}")
        time.sleep(0.05)


@bench.command("time-dispatch")
@click.option("--count", type=click.IntRange(1), required=True)
@click.option("--rounds", type=click.IntRange(1), default=3)
@click.option("--port", type=int, required=True, help="The SMTP sink's port.")
@click.option("--dump", type=click.Path(path_type=Path), required=True)
@with_appcontext
def time_dispatch(count: int, rounds: int, port: int, dump: Path) -> None:
    """Time `notifications run --once` on COUNT due messages against smtplib sending the
    same bytes over one connection, round after round."""
    results = []
    messages: list[dict[str, Any]] = []
    for _ in range(rounds):
        queued = _queue_confirmations(count, _now())
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        said = _quietly(notifications, ["run", "--once"])
        dispatched, dispatch_cpu = time.perf_counter() - started, time.process_time() - cpu
        if not said.startswith(f"sent {queued},"):
            raise click.ClickException(f"the dispatcher said {said.strip()!r}, not sent {queued}")
        if not messages:
            with smtplib.SMTP("127.0.0.1", port) as smtp:  # ask the sink for what it kept
                smtp.sendmail("bench@bench.invalid", [DUMP_RECIPIENT], b"Subject: dump\r\n\r\n")
            _wait_for(dump)
            messages = [json.loads(line) for line in dump.read_text().splitlines()]
            for message in messages:
                message["data"] = base64.b64decode(message["data"])
        gc.collect()
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            for message in messages[:queued]:
                smtp.sendmail(message["from"], message["to"], message["data"])
        sent = time.perf_counter() - started
        results.append(
            {
                "messages": queued,
                "dispatch_seconds": dispatched,
                "dispatch_cpu_seconds": dispatch_cpu,
                "smtplib_seconds": sent,
            }
        )
    _echo_json({"rounds": results})


@bench.command("profile")
@click.argument("path")
@click.option("--repeat", type=click.IntRange(1), default=100, show_default=True)
@click.option("--method", default="GET", show_default=True)
@click.option("--body", default=None, help="A JSON body to send.")
@with_appcontext
def profile(path: str, repeat: int, method: str, body: str | None) -> None:
    """Send PATH to the app in this process REPEAT times under pyinstrument; print the CPU
    time per request, against the floor's, and where it went."""
    from pyinstrument import Profiler

    client = current_app.test_client()
    floor = f"/bench/floor/{db.session.scalar(select(func.min(Booking.id)))}"
    db.session.remove()

    def send(target: str, verb: str = "GET") -> int:
        data = body.encode() if body is not None and verb != "GET" else None
        answer = client.open(target, method=verb, data=data, content_type="application/json")
        return answer.status_code

    first = send(path, method)
    for _ in range(min(repeat, 10)):  # warm caches (compiled SQL, templates) as a worker has
        send(floor)
        send(path, method)

    def cpu_ms(target: str, verb: str) -> float:
        started = time.process_time()
        for _ in range(repeat):
            send(target, verb)
        return (time.process_time() - started) / repeat * 1000

    floor_ms = cpu_ms(floor, "GET")
    profiler = Profiler(interval=0.0005)
    profiler.start()
    path_ms = cpu_ms(path, method)
    profiler.stop()
    click.echo(
        f"{method} {path}: {first}; {path_ms:.2f} ms CPU a request (profiled),"
        f" floor {floor_ms:.2f} ms"
    )
    click.echo(profiler.output_text(unicode=True, color=False))
