"""Fixtures: an app on a migrated database (SQLite, or PostgreSQL via TEST_DATABASE_URL),
a fixed clock, factories for clinic data, and a clean database for every test."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.orm import Session

from scheduler import create_app
from scheduler.booking.models import Booking
from scheduler.booking.operations import PatientDetails, book_session
from scheduler.clinic.checklists import default_items
from scheduler.clinic.models import Clinic, Practitioner, Room, TimeOff, Treatment, WorkingHours
from scheduler.config import database_url
from scheduler.extensions import db
from scheduler.patients.intake import IntakeAnswers
from scheduler.sealing import keys_of, use_outside_apps
from scheduler.staff.models import Role, User
from tests.smtp_server import Inbox, smtp_server

# Monday 23 November 2026, 08:00 in London (GMT, so also UTC).
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class Clock:
    """A clock the tests set; the app reads it wherever it needs "now"."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def reset_schema(url: str) -> None:
    """Empty the test database completely, so migrations start from nothing."""
    if url.startswith("postgresql"):
        from sqlalchemy import create_engine

        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()


@pytest.fixture(scope="session")
def test_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The database the suite runs on: TEST_DATABASE_URL, or a fresh SQLite file."""
    raw = os.environ.get("TEST_DATABASE_URL")
    if raw:
        return database_url(raw, "")
    return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.db")


@pytest.fixture(scope="session")
def clock() -> Clock:
    """The app's clock (reset to ``NOW`` before each test by ``_clean``)."""
    return Clock()


@pytest.fixture
def later_clock(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The session clock (how old a login is), to move on: ``later_clock[0] += seconds``."""
    seconds = [2_000_000.0]
    monkeypatch.setitem(app.config, "SESSION_CLOCK", lambda: seconds[0])
    return seconds


@pytest.fixture(scope="session")
def app(
    test_database_url: str, clock: Clock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flask]:
    """The app, on a database migrated from empty by the project's migrations."""
    reset_schema(test_database_url)
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": test_database_url,
            "SECRET_KEY": "test-secret",
            "BASE_URL": "https://clinic.test",
            "CLOCK": clock,
            "MAIL_FOLDER": str(tmp_path_factory.mktemp("mail")),
            # The webhook tests' receivers listen on 127.0.0.1; test_webhooks checks the rule.
            "WEBHOOK_ALLOW_PRIVATE": True,
            # Likewise the calendar servers of test_calendar_sync; it checks the rule too.
            "CALENDAR_ALLOW_PRIVATE": True,
            # Tests send many requests from one address; tests/test_rate_limits.py checks the
            # limits on apps of its own.
            "RATELIMIT_ENABLED": False,
            # Most tests log in without a second factor; tests/test_two_factor.py checks the
            # default (admins need one) on apps of its own.
            "STAFF_TWO_FACTOR_ROLES": frozenset(),
            # Room for the race tests' sixteen concurrent sessions.
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 20, "max_overflow": 10},
        }
    )
    with app.app_context():
        upgrade()
        db.session.remove()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest, clock: Clock) -> Iterator[None]:
    """Reset the clock, and after the test delete every row it wrote."""
    clock.now = NOW
    yield
    if "app" not in request.fixturenames:
        return
    app: Flask = request.getfixturevalue("app")
    with app.app_context():
        db.session.remove()
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    connection.execute(text(f"DELETE FROM {table}"))


class TestSession(Session):
    """A session whose rollback always forgets what it read, so that a test calls it to see
    what the app wrote since, even when no transaction of its own was open."""

    def rollback(self) -> None:
        super().rollback()
        self.expire_all()


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    """The test's own database session.

    It is not the app's ``db.session`` and pushes no app context, so every request and command
    a test makes gets its own context and session, as it would in production.
    """
    with app.app_context():
        engine = db.engine
    # It reads and writes the health answers sealed with the app's keys.
    use_outside_apps(keys_of(app.config))
    own = TestSession(engine)
    yield own
    own.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client (CSRF protection on, as in production)."""
    return app.test_client()


WEEKDAY_HOURS = ((time(9), time(13)), (time(14), time(18)))


@pytest.fixture
def make_clinic(session: Session) -> Callable[..., Clinic]:
    """Create the clinic: London, 15-minute steps, 12 h notice, 60 days, 24 h late window."""

    def make(**params: Any) -> Clinic:
        values: dict[str, Any] = {
            "name": "Test Acupuncture",
            "address": "1 High Street, Cambridge",
            "phone": "+44 1223 000000",
            "email": "clinic@clinic.test",
            "timezone": "Europe/London",
            "slot_step_minutes": 15,
            "min_notice_minutes": 12 * 60,
            "horizon_days": 60,
            "late_cancel_hours": 24,
        }
        values.update(params)
        clinic = Clinic(**values)
        session.add(clinic)
        session.add_all(default_items(clinic))
        session.commit()
        return clinic

    return make


@pytest.fixture
def make_treatment(session: Session) -> Callable[..., Treatment]:
    """Create a treatment (60 minutes with a 15-minute buffer unless told otherwise)."""

    def make(**params: Any) -> Treatment:
        values: dict[str, Any] = {
            "name": "Follow-up treatment",
            "duration_minutes": 60,
            "buffer_minutes": 15,
        }
        values.update(params)
        treatment = Treatment(**values)
        session.add(treatment)
        session.commit()
        return treatment

    return make


@pytest.fixture
def make_room(session: Session) -> Callable[..., Room]:
    """Create a room."""

    def make(name: str = "Room", **params: Any) -> Room:
        room = Room(name=name, **params)
        session.add(room)
        session.commit()
        return room

    return make


@pytest.fixture
def make_practitioner(session: Session) -> Callable[..., Practitioner]:
    """Create a practitioner working Monday–Saturday 9–13 and 14–18 unless told otherwise."""
    counter = iter(range(1, 1000))

    def make(
        *,
        treatments: list[Treatment],
        hours: dict[int, tuple[tuple[time, time], ...]] | None = None,
        **params: Any,
    ) -> Practitioner:
        number = next(counter)
        values: dict[str, Any] = {
            "name": f"Practitioner {number}",
            "email": f"practitioner{number}@clinic.test",
            "credentials": "BSc (Hons) Acupuncture",
            "licence": "MBAcC",
        }
        values.update(params)
        practitioner = Practitioner(**values, treatments=list(treatments))
        weekly = hours if hours is not None else dict.fromkeys(range(6), WEEKDAY_HOURS)
        for weekday, intervals in weekly.items():
            for start, end in intervals:
                practitioner.working_hours.append(
                    WorkingHours(weekday=weekday, start_time=start, end_time=end)
                )
        session.add(practitioner)
        session.commit()
        return practitioner

    return make


@pytest.fixture
def make_time_off(session: Session) -> Callable[..., TimeOff]:
    """Create time off for a practitioner."""

    def make(practitioner: Practitioner, start: datetime, end: datetime) -> TimeOff:
        off = TimeOff(practitioner_id=practitioner.id, start_at=start, end_at=end)
        session.add(off)
        session.commit()
        return off

    return make


class Setup:
    """A small clinic: two practitioners, two rooms, a first visit and a follow-up."""

    def __init__(self, **items: Any) -> None:
        self.__dict__.update(items)

    clinic: Clinic
    initial: Treatment
    follow_up: Treatment
    mei: Practitioner
    james: Practitioner
    rooms: list[Room]


@pytest.fixture
def setup(
    make_clinic: Callable[..., Clinic],
    make_treatment: Callable[..., Treatment],
    make_room: Callable[..., Room],
    make_practitioner: Callable[..., Practitioner],
) -> Setup:
    """The small clinic most tests book in."""
    clinic = make_clinic()
    initial = make_treatment(
        name="Initial consultation", duration_minutes=90, buffer_minutes=15, first_visit=True
    )
    follow_up = make_treatment(name="Follow-up treatment", duration_minutes=60, buffer_minutes=15)
    rooms = [make_room("Garden room"), make_room("Courtyard room")]
    mei = make_practitioner(name="Mei Lin", treatments=[initial, follow_up])
    james = make_practitioner(name="James Okafor", treatments=[initial, follow_up])
    return Setup(
        clinic=clinic, initial=initial, follow_up=follow_up, mei=mei, james=james, rooms=rooms
    )


@pytest.fixture
def book(session: Session, setup: Setup, clock: Clock) -> Callable[..., Booking]:
    """Book through the real operation and commit: ``book(start, practitioner=…, …)``."""
    counter = iter(range(1, 10_000))

    def make(
        start: datetime,
        *,
        practitioner: Practitioner | None = None,
        treatment: Treatment | None = None,
        email: str | None = None,
        name: str | None = None,
    ) -> Booking:
        number = next(counter)
        booking = book_session(
            session,
            clinic=setup.clinic,
            treatment=treatment or setup.follow_up,
            practitioner=practitioner,
            start=start,
            patient=PatientDetails(
                name or f"Patient {number}",
                email or f"patient{number}@example.org",
                "+44 7700 900000",
            ),
            now=clock(),
            uid_host="clinic.test",
            intake=IntakeAnswers(consent=True)
            if (treatment or setup.follow_up).first_visit
            else None,
        )
        session.commit()
        return booking

    return make


@pytest.fixture
def smtp(app: Flask) -> Iterator[Inbox]:
    """A real SMTP server, with the app's SMTP_URL pointing at it for this test."""
    with smtp_server() as (inbox, port):
        app.config["SMTP_URL"] = f"smtp://127.0.0.1:{port}"
        try:
            yield inbox
        finally:
            app.config["SMTP_URL"] = ""


PASSWORD = "correct horse battery"


@pytest.fixture
def make_user(session: Session, setup: Setup) -> Callable[..., User]:
    """Create a staff account with ``PASSWORD``; a practitioner's is Mei's unless told."""

    def make(
        role: Role, email: str | None = None, practitioner: Practitioner | None = None
    ) -> User:
        user = User(
            email=email or f"{role.value}@clinic.example",
            role=role,
            practitioner_id=(practitioner or setup.mei).id if role is Role.PRACTITIONER else None,
        )
        user.set_password(PASSWORD)
        session.add(user)
        # Keep what was just written loaded: reading it again would begin a transaction whose
        # snapshot (on SQLite) the logins this user then makes, which write, leave behind.
        session.expire_on_commit = False
        try:
            session.commit()
        finally:
            session.expire_on_commit = True
        return user

    return make


def log_in(
    client: FlaskClient, email: str, password: str = PASSWORD, next_url: str | None = None
) -> Any:
    """Log in through the login form, as a browser would."""
    page = client.get("/staff/login")
    url = "/staff/login" + (f"?next={next_url}" if next_url else "")
    return client.post(
        url,
        data={"email": email, "password": password, "csrf_token": csrf_token(page.text)},
    )


def token_of(client: FlaskClient, path: str = "/staff/calendars") -> str:
    """The CSRF token of a staff page, for a form posted by a logged-in client."""
    return csrf_token(client.get(path).text)


def london(day: str, hhmm: str) -> datetime:
    """An aware datetime for a London wall time, e.g. ``london("2026-11-24", "10:00")``."""
    from zoneinfo import ZoneInfo

    hour, minute = (int(part) for part in hhmm.split(":"))
    naive = datetime.fromisoformat(day).replace(hour=hour, minute=minute)
    return naive.replace(tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)


def csrf_token(html: str) -> str:
    """The CSRF token a rendered form carries."""
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', html
    )
    assert match, "the page has no CSRF token"
    return match.group(1)


def later(days: int = 0, hours: int = 0) -> timedelta:
    """A readable timedelta."""
    return timedelta(days=days, hours=hours)
