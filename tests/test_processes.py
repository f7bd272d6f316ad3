"""The app as it runs in production, in real processes: gunicorn workers taking dozens of
bookings for one time at once, and dispatchers killed mid-batch while the mail server drops
connections and stalls.

Every database here is new: migrated and seeded through the CLI (``db upgrade``, ``demo
seed``) once per backend, then copied for each user. SQLite always; PostgreSQL as well when
the suite runs on it (``TEST_DATABASE_URL``), in scratch databases beside the suite's.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes
from pathlib import Path
from time import monotonic, sleep
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from scheduler import create_app
from scheduler.api.responses import BookingOut, CourseClashOut, CourseOut, SlotTakenOut
from scheduler.booking.models import Booking, BookingStatus
from scheduler.db import begin_write, utcnow
from scheduler.extensions import db
from scheduler.notifications.models import (
    AttemptOutcome,
    DeliveryAttempt,
    Notification,
    NotificationStatus,
)
from tests.processes import (
    BASE_URL,
    RUNNING,
    SECRET_KEY,
    Database,
    Processes,
    Server,
    processes,
    scratch_postgres,
    scratch_sqlite,
    stop_together,
)
from tests.smtp_server import Inbox, smtp_server

BACKENDS = ["sqlite"]
if os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"):
    BACKENDS.append("postgresql")

CLIENTS = 40  # clients racing for a time in each round
COURSE_CLIENTS = 24  # clients racing for overlapping courses in each round (each costs more)
FOLLOW_UP = "Follow-up treatment"  # 60 minutes and a 15-minute buffer in the demo clinic
MEI, JAMES = "Dr Mei Lin", "James Okafor"  # both work Monday to Saturday


# --- databases and the app server ------------------------------------------------------------


def _scratch(
    backend: str, suite_url: str, path: Path, suffix: str, template: Database | None = None
) -> Any:
    if backend == "sqlite":
        return scratch_sqlite(path, template)
    return scratch_postgres(suite_url, f"{make_url(suite_url).database}_procs{suffix}", template)


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest, test_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """A database migrated and seeded by the CLI, as an operator would; tests get copies."""
    folder = tmp_path_factory.mktemp(f"seeded-{request.param}")
    with _scratch(request.param, test_database_url, folder / "seeded.db", "_seeded") as database:
        with processes(folder / "logs", database) as cli:
            cli.command("db", "upgrade")
            cli.command("demo", "seed", "--admin-password", "seeded-in-a-test")
        yield database


@dataclass
class Clinic:
    """What the racing clients know of the demo clinic, read from the API."""

    zone: ZoneInfo
    service: int
    practitioners: dict[str, int]

    def at(self, day: date, hour: int, minute: int = 0) -> datetime:
        """A wall-clock time in the clinic, aware."""
        return datetime.combine(day, time(hour, minute), self.zone)

    def open_days(self, count: int) -> list[date]:
        """The first ``count`` days from the day after tomorrow that are not Sundays."""
        day = datetime.now(self.zone).date() + timedelta(days=2)
        days: list[date] = []
        while len(days) < count:
            if day.weekday() != 6:
                days.append(day)
            day += timedelta(days=1)
        return days


@dataclass
class Served:
    """Gunicorn with four workers on a database of its own."""

    server: Server
    database: Database
    started: Processes
    clinic: Clinic


@pytest.fixture(scope="module")
def served(
    seeded: Database, test_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """Gunicorn (four workers) on a copy of the seeded database, for the racing tests."""
    folder = tmp_path_factory.mktemp(f"served-{seeded.backend}")
    with ExitStack() as stack:
        database = stack.enter_context(
            _scratch(seeded.backend, test_database_url, folder / "app.db", "_app", seeded)
        )
        started = stack.enter_context(processes(folder / "logs", database))
        server = started.gunicorn(workers=4)
        yield Served(server, database, started, read_clinic(server))


def read_clinic(server: Server) -> Clinic:
    """Find the follow-up treatment, the practitioners and the time zone through the API."""
    status, services = server.request("GET", "/api/v1/services")
    assert status == 200, services
    service = next(item["id"] for item in services if item["name"] == FOLLOW_UP)
    status, practitioners = server.request("GET", "/api/v1/practitioners")
    assert status == 200, practitioners
    today = datetime.now(UTC).date().isoformat()  # any day: the answer names the zone
    status, slots = server.request(
        "GET", f"/api/v1/slots?service={service}&start={today}&end={today}"
    )
    assert status == 200, slots
    return Clinic(
        ZoneInfo(slots["timezone"]),
        service,
        {item["name"]: item["id"] for item in practitioners},
    )


def free_starts(server: Server, clinic: Clinic, practitioner: int, first: date, last: date) -> set:
    """The free start times the API offers with ``practitioner`` from ``first`` to ``last``."""
    status, answer = server.request(
        "GET",
        f"/api/v1/slots?service={clinic.service}&practitioner={practitioner}"
        f"&start={first.isoformat()}&end={last.isoformat()}",
    )
    assert status == 200, answer
    return {moment(slot["start"]) for slot in answer["slots"]}


def moment(timestamp: str) -> datetime:
    """An API timestamp as an aware datetime."""
    parsed = datetime.fromisoformat(timestamp)
    assert parsed.utcoffset() is not None, timestamp
    return parsed


def booking_body(clinic: Clinic, practitioner: int, start: datetime, who: str) -> dict[str, Any]:
    """A booking request for a follow-up, from a patient of one's own."""
    return {
        "service": clinic.service,
        "practitioner": practitioner,
        "start": start.isoformat(),
        "patient": {"name": who, "email": f"{who}@example.org", "phone": "+44 7700 900000"},
        "notes": "",
    }


def race(server: Server, bodies: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    """POST every body to /api/v1/bookings from a thread of its own, all released at once."""
    barrier = threading.Barrier(len(bodies))

    def attempt(body: dict[str, Any]) -> tuple[int, Any]:
        barrier.wait(timeout=60)
        return server.request("POST", "/api/v1/bookings", body)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(attempt, bodies))


def live_bookings(database: Database, practitioner: int) -> list[tuple[str, datetime, int | None]]:
    """Every booking holding a time with ``practitioner``: token, start and course."""
    with database.engine() as engine, Session(engine) as session:
        rows = session.execute(
            select(Booking.manage_token, Booking.start_at, Booking.course_id).where(
                Booking.practitioner_id == practitioner,
                Booking.status != BookingStatus.CANCELLED,
            )
        )
        return [(token, start, course) for token, start, course in rows]


# --- gunicorn races --------------------------------------------------------------------------


def test_dozens_of_clients_booking_one_time_under_gunicorn_get_one_201_and_the_rest_409(
    served: Served,
) -> None:
    clinic, server = served.clinic, served.server
    mei = clinic.practitioners[MEI]
    days = clinic.open_days(3)
    free = free_starts(server, clinic, mei, days[0], days[-1])
    won: dict[str, datetime] = {}

    for number, day in enumerate(days):
        start = clinic.at(day, 10)
        assert start in free, f"{start} is not free to race for"
        answers = race(
            server,
            [booking_body(clinic, mei, start, f"single{number}.{i}") for i in range(CLIENTS)],
        )

        statuses = Counter(status for status, _ in answers)
        assert statuses == {201: 1, 409: CLIENTS - 1}, (
            f"round {number}: {statuses}\n{answers}\n{served.started.report()}"
        )
        for status, answer in answers:
            if status == 409:
                refusal = SlotTakenOut.model_validate(answer)
                assert refusal.error
                assert "start" in refusal.fields
                assert start not in {moment(slot.start) for slot in refusal.alternatives}
        (booked,) = (BookingOut.model_validate(a) for s, a in answers if s == 201)
        assert (moment(booked.start), booked.practitioner) == (start, mei)
        won[booked.token] = start

    assert {token: start for token, start, _ in live_bookings(served.database, mei)} == won


def test_racing_courses_under_gunicorn_are_booked_whole_or_not_at_all_and_never_overlap(
    served: Served,
) -> None:
    clinic, server = served.clinic, served.server
    james = clinic.practitioners[JAMES]
    days = clinic.open_days(2)
    # Client i asks for four weekly sessions from week i % 5: its dates overlap its neighbours'.
    weeks = 5
    free = free_starts(server, clinic, james, days[0], days[-1] + timedelta(weeks=weeks + 3))
    booked: dict[frozenset[datetime], set[str]] = {}

    for number, day in enumerate(days):
        wanted = [
            [clinic.at(day + timedelta(weeks=i % weeks + k), 14) for k in range(4)]
            for i in range(COURSE_CLIENTS)
        ]
        assert set().union(*wanted) <= free, "the course dates are not all free to race for"
        answers = race(
            server,
            [
                booking_body(clinic, james, dates[0], f"course{number}.{i}")
                | {"repeat": {"count": 4, "every_weeks": 1}}
                for i, dates in enumerate(wanted)
            ],
        )

        statuses = Counter(status for status, _ in answers)
        report = f"round {number}: {statuses}\n{answers}\n{served.started.report()}"
        assert set(statuses) <= {201, 409}, report
        assert statuses[201] >= 1, report
        taken: dict[datetime, int] = {}
        for i, (status, answer) in enumerate(answers):
            if status != 201:
                continue
            course = CourseOut.model_validate(answer)
            assert [moment(session.start) for session in course.course] == wanted[i], report
            for start in wanted[i]:
                assert start not in taken, f"clients {taken[start]} and {i} both have {start}"
                taken[start] = i
            booked[frozenset(wanted[i])] = {session.token for session in course.course}
        for i, (status, answer) in enumerate(answers):
            if status != 409:
                continue
            refusal = CourseClashOut.model_validate(answer)
            clashes = {moment(conflict.start) for conflict in refusal.conflicts}
            # Refused only for dates a winner holds, and told which.
            assert clashes, (i, refusal, report)
            assert clashes <= set(wanted[i]) & set(taken), (i, refusal, report)

    courses: dict[int | None, set[tuple[str, datetime]]] = {}
    for token, start, course in live_bookings(served.database, james):
        courses.setdefault(course, set()).add((token, start))
    assert None not in courses, "a session was booked outside a course"
    held = {
        frozenset(start for _, start in rows): {t for t, _ in rows} for rows in courses.values()
    }
    assert held == booked


# --- dispatchers -----------------------------------------------------------------------------

VISITS = 40
# Long enough for a live dispatcher's slowest message here (a stall of STALL_SECONDS on a busy
# machine): a message still being sent when its lease runs out may be sent twice.
LEASE_SECONDS = 4
BATCH = "10"
STALL_SECONDS = 0.5
MESSAGE_ID = re.compile(r"<notification-(\d+)\.(\d+)@clinic\.test>")


@dataclass
class FlakyInbox(Inbox):
    """An inbox listening on two ports, misbehaving on each.

    On the main port the DATA commands numbered in ``faults`` go wrong: ``"drop"`` closes the
    connection without an answer, ``"stall"`` waits a while before accepting, anything else
    is the answer. On ``victim_port`` the ``hold_at``-th DATA is held unanswered until
    ``release`` is set (or its client goes away), then refused: that copy is never accepted.
    """

    faults: dict[int, str] = field(default_factory=dict)
    victim_port: int = 0
    hold_at: int = 3
    counts: Counter[str] = field(default_factory=Counter)
    fired: list[str] = field(default_factory=list)
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    held_message_id: str = ""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        port = server.transport.get_extra_info("sockname")[1]
        with self.lock:
            if port == self.victim_port:
                self.counts["victim"] += 1
                fault = "hold" if self.counts["victim"] == self.hold_at else None
            else:
                self.counts["main"] += 1
                fault = self.faults.get(self.counts["main"])
            if fault is not None:
                self.fired.append(fault)
        if fault == "hold":
            self.held_message_id = str(message_from_bytes(envelope.content)["Message-ID"])
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
            return "451 4.4.2 Gave up waiting"
        if fault == "stall":
            await asyncio.sleep(STALL_SECONDS)
        elif fault == "drop":
            server.transport.close()
            return "421 closing"
        elif fault is not None:
            return fault
        return await super().handle_DATA(server, session, envelope)

    def accepted_ids(self) -> Counter[str]:
        """How many times the server accepted each Message-ID."""
        return Counter(str(message["Message-ID"]) for message in self.messages())


class Outbox:
    """The test's view of the notifications table, and its hands on the due times."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def hold_due(self) -> list[int]:
        """Put off every message due now, and return their ids."""
        with Session(self.engine) as session:
            begin_write(session)
            now = utcnow()
            ids = list(
                session.scalars(
                    select(Notification.id).where(
                        Notification.status == NotificationStatus.PENDING,
                        Notification.next_attempt_at <= now,
                    )
                )
            )
            self._due(session, ids, now + timedelta(days=365))
            return ids

    def release(self, ids: list[int]) -> None:
        """Make the messages due now, all at the same moment."""
        with Session(self.engine) as session:
            begin_write(session)
            self._due(session, ids, utcnow())

    def bring_retries_forward(self, ids: list[int]) -> None:
        """Make messages waiting to be tried again due now, instead of in a minute or more."""
        with Session(self.engine) as session:
            begin_write(session)
            now = utcnow()
            session.execute(
                update(Notification)
                .where(
                    Notification.id.in_(ids),
                    Notification.status == NotificationStatus.PENDING,
                    Notification.attempt_count > 0,
                    Notification.next_attempt_at > now,
                )
                .values(next_attempt_at=now)
            )
            session.commit()

    @staticmethod
    def _due(session: Session, ids: list[int], when: datetime) -> None:
        session.execute(
            update(Notification).where(Notification.id.in_(ids)).values(next_attempt_at=when)
        )
        session.commit()

    def claimed_by(self, dispatcher: str) -> dict[int, datetime]:
        """The messages ``dispatcher`` holds a claim on, with when each claim runs out."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(Notification.id, Notification.claimed_until).where(
                    Notification.status == NotificationStatus.SENDING,
                    Notification.claimed_by == dispatcher,
                )
            )
            return {row_id: until for row_id, until in rows if until is not None}

    def states(self) -> dict[int, tuple[NotificationStatus, int]]:
        """Every message's status and how many times it was sent."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(Notification.id, Notification.status, Notification.sent_count)
            )
            return {row_id: (status, sent) for row_id, status, sent in rows}

    def attempts(self) -> list[tuple[int, datetime, AttemptOutcome, str]]:
        """Every recorded attempt: message, when, outcome and dispatcher."""
        with Session(self.engine) as session:
            rows = session.execute(
                select(
                    DeliveryAttempt.notification_id,
                    DeliveryAttempt.at,
                    DeliveryAttempt.outcome,
                    DeliveryAttempt.dispatcher,
                ).order_by(DeliveryAttempt.id)
            )
            return [(row_id, at, outcome, name) for row_id, at, outcome, name in rows]


def book_visits(database: Database, mail_folder: Path, count: int) -> None:
    """Book ``count`` follow-ups through the API, each queueing its confirmation at once."""
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database.url,
            "SECRET_KEY": SECRET_KEY,
            "BASE_URL": BASE_URL,
            "MAIL_FOLDER": str(mail_folder),
            "RATELIMIT_ENABLED": False,
        }
    )
    try:
        client = app.test_client()
        service = next(
            s["id"] for s in client.get("/api/v1/services").json if s["name"] == FOLLOW_UP
        )
        practitioners = {p["name"]: p["id"] for p in client.get("/api/v1/practitioners").json}
        # Mei and James side by side, one visit after another: never more than the two
        # treatment rooms at a time, so every request is free.
        now = datetime.now(UTC)
        next_free = {practitioners[MEI]: now, practitioners[JAMES]: now}
        first = now.date() + timedelta(days=2)
        slots = client.get(
            f"/api/v1/slots?service={service}&start={first}&end={first + timedelta(days=20)}"
        ).json["slots"]
        booked = 0
        for slot in slots:
            start = datetime.fromisoformat(slot["start"])
            who = slot["practitioner"]
            if who not in next_free or start < next_free[who]:
                continue
            patient = {"name": f"Patient {booked}", "email": f"patient{booked}@example.org"}
            answer = client.post(
                "/api/v1/bookings",
                json={
                    "service": service,
                    "practitioner": who,
                    "start": slot["start"],
                    "patient": patient | {"phone": "+44 7700 900000"},
                },
            )
            assert answer.status_code == 201, answer.json
            next_free[who] = start + timedelta(minutes=75)
            booked += 1
            if booked == count:
                return
        raise AssertionError(f"only {booked} free times to book")
    finally:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def database(seeded: Database, test_database_url: str, tmp_path: Path) -> Iterator[Database]:
    """A copy of the seeded database for this test alone, dropped afterwards."""
    with _scratch(seeded.backend, test_database_url, tmp_path / "app.db", "", seeded) as copy:
        yield copy


@pytest.fixture
def running(database: Database, tmp_path: Path) -> Iterator[Processes]:
    """This test's processes, every one stopped at its end."""
    with processes(tmp_path / "processes", database) as started:
        yield started


def test_dispatchers_killed_mid_batch_on_a_flaky_mail_server_deliver_every_message_once(
    database: Database, running: Processes, tmp_path: Path
) -> None:
    book_visits(database, tmp_path / "mail", VISITS)
    inbox = FlakyInbox(
        faults={
            3: "drop",
            7: "421 4.3.2 Too busy, try later",
            12: "stall",
            16: "drop",
            21: "421 4.7.0 Try again later",
        }
    )
    options = ("--poll", "0.1", "--batch-size", BATCH)
    lease = {"DISPATCHER_LEASE_SECONDS": str(LEASE_SECONDS), "SMTP_TIMEOUT": "10"}
    with ExitStack() as stack:
        engine = stack.enter_context(database.engine())
        _, main_port = stack.enter_context(smtp_server(inbox=inbox))
        _, inbox.victim_port = stack.enter_context(smtp_server(inbox=inbox))
        stack.callback(inbox.release.set)  # never leave the server holding a DATA
        outbox = Outbox(engine)
        # Held back until both dispatchers poll, so that both claim a batch.
        due = outbox.hold_due()
        assert len(due) >= VISITS, due

        main = {"SMTP_URL": f"smtp://127.0.0.1:{main_port}", **lease}
        victim = running.dispatcher(
            "victim", *options, SMTP_URL=f"smtp://127.0.0.1:{inbox.victim_port}", **lease
        )
        first = running.dispatcher("first", *options, **main)
        victim_name = victim.wait_for(RUNNING)
        first.wait_for(RUNNING)
        outbox.release(due)

        # The victim dies mid-batch, its third message sent but not yet accepted: before the
        # server's 250, so outside the window (accepted, not yet recorded) where a crash must
        # send one message twice. None may go twice here.
        assert inbox.holding.wait(timeout=60), f"the victim never sent\n{running.report()}"
        held = outbox.claimed_by(victim_name)
        victim.kill()
        inbox.release.set()
        second = running.dispatcher("second", *options, **main)

        def everything_sent() -> bool:
            outbox.bring_retries_forward(due)
            states = outbox.states()
            return all(states[row][0] is NotificationStatus.SENT for row in due)

        deadline = monotonic() + 60
        while not everything_sent():
            assert monotonic() < deadline, f"not all sent\n{outbox.states()}\n{running.report()}"
            sleep(0.2)
        second.wait_for(RUNNING)  # so that it stops as an operator's SIGTERM stops it
        codes = dict(zip(("first", "second"), stop_together(first, second), strict=True))
        states, attempts = outbox.states(), outbox.attempts()

    report = running.report()
    assert codes == {"first": 0, "second": 0}, report
    # Every fault happened: two dropped connections, two 421s, a stall; and the kill.
    assert sorted(inbox.fired) == sorted([*inbox.faults.values(), "hold"]), report
    # The victim held its message in flight and the rest of its batch.
    in_flight = MESSAGE_ID.fullmatch(inbox.held_message_id)
    assert in_flight, inbox.held_message_id
    assert int(in_flight[1]) in held, (held, report)
    assert len(held) >= 2, (held, report)

    # Exactly once: every message due went, each under its first Message-ID, none twice.
    accepted = inbox.accepted_ids()
    assert [mid for mid, times in accepted.items() if times > 1] == [], report
    numbers = [MESSAGE_ID.fullmatch(mid) for mid in accepted]
    assert all(numbers), accepted
    sent = sorted((int(match[1]), match[2]) for match in numbers if match)
    assert sent == [(row, "1") for row in sorted(due)], (accepted, report)
    assert {row: states[row] for row in due} == dict.fromkeys(due, (NotificationStatus.SENT, 1))
    outcomes = Counter(outcome for _, _, outcome, _ in attempts)
    assert outcomes == {AttemptOutcome.SENT: len(due), AttemptOutcome.RETRYING: 4}, attempts

    # What the victim held went out once its lease ran out, from the others.
    for row, until in held.items():
        (went,) = [
            (at, name) for r, at, o, name in attempts if r == row and o is AttemptOutcome.SENT
        ]
        assert went[1] != victim_name, (row, went)
        assert went[0] > until, (row, until, went)
