"""`flask --app scheduler demo seed` makes a demo clinic people can book in at once."""

from __future__ import annotations

from datetime import time

from sqlalchemy import func, select

from scheduler.booking.models import Booking, BookingStatus
from scheduler.clinic.models import Clinic, Practitioner, Room, Treatment, WorkingHours
from scheduler.staff.models import Role, User
from tests.conftest import NOW


def test_demo_seed_makes_a_bookable_clinic(app, session):
    result = app.test_cli_runner().invoke(args=["demo", "seed", "--admin-password", "pw-123456"])

    assert result.exit_code == 0, result.output
    clinic = session.scalars(select(Clinic)).one()
    assert clinic.timezone == "Europe/London"
    practitioners = session.scalars(select(Practitioner)).all()
    assert len(practitioners) >= 2
    assert all(p.credentials and p.licence for p in practitioners)
    assert session.scalar(select(func.count()).select_from(Room)) >= 2
    treatments = {t.duration_minutes: t for t in session.scalars(select(Treatment))}
    assert treatments[90].first_visit
    assert not treatments[60].first_visit
    hours = session.scalars(
        select(WorkingHours).where(WorkingHours.practitioner_id == practitioners[0].id)
    ).all()
    assert {h.weekday for h in hours} == {0, 1, 2, 3, 4, 5}
    monday = sorted((h.start_time, h.end_time) for h in hours if h.weekday == 0)
    assert len(monday) == 2, "a lunch break splits the day"
    assert monday[0][1] < monday[1][0] <= time(15)
    admin = session.scalars(select(User).where(User.email == "admin@example.com")).one()
    assert admin.role is Role.ADMIN
    assert admin.check_password("pw-123456")


def test_demo_seed_without_a_password_prints_the_one_it_made(app, session):
    result = app.test_cli_runner().invoke(args=["demo", "seed"])

    assert result.exit_code == 0, result.output
    password = result.output.split("password ")[1].split(" ")[0]
    admin = session.scalars(select(User)).one()
    assert admin.check_password(password)


def test_demo_seed_refuses_a_database_that_has_a_clinic(app, session):
    runner = app.test_cli_runner()
    runner.invoke(args=["demo", "seed"])

    again = runner.invoke(args=["demo", "seed"])
    quiet = runner.invoke(args=["demo", "seed", "--if-empty"])

    assert again.exit_code == 1
    assert again.output.startswith("Error: the database already has a clinic")
    assert "Traceback" not in again.output
    assert quiet.exit_code == 0
    assert session.scalar(select(func.count()).select_from(Clinic)) == 1


def test_demo_seed_adds_realistic_bookings_past_and_future(app, session):
    result = app.test_cli_runner().invoke(args=["demo", "seed", "--bookings", "400"])

    assert result.exit_code == 0, result.output
    bookings = session.scalars(select(Booking)).all()
    assert len(bookings) == 400
    past = [b for b in bookings if b.start_at < NOW]
    future = [b for b in bookings if b.start_at > NOW]
    assert past
    assert future
    assert {b.status for b in past} <= {
        BookingStatus.COMPLETED,
        BookingStatus.NO_SHOW,
        BookingStatus.CANCELLED,
    }
    assert {b.status for b in future} <= {BookingStatus.CONFIRMED, BookingStatus.CANCELLED}


def test_demo_seed_rejects_a_negative_number_of_bookings(app, session):
    result = app.test_cli_runner().invoke(args=["demo", "seed", "--bookings", "-5"])

    assert result.exit_code == 2
    assert "Error: Invalid value for '--bookings'" in result.output
    assert session.scalar(select(func.count()).select_from(Clinic)) == 0


def test_commands_on_an_unmigrated_database_say_to_run_the_migrations(tmp_path):
    from scheduler import create_app

    empty = create_app(
        {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'empty.db'}", "SECRET_KEY": "x"}
    )
    runner = empty.test_cli_runner()

    for args in (
        ["demo", "seed"],
        [
            "calendar",
            "export",
            "--practitioner",
            "1",
            "--start",
            "2026-11-23",
            "--end",
            "2026-11-24",
        ],
        ["calendar", "feed-url", "--practitioner", "1"],
    ):
        result = runner.invoke(args=args)
        assert result.exit_code == 1, args
        assert result.output.startswith("Error: the database is not ready"), result.output
        assert "Traceback" not in result.output
    with empty.app_context():
        from scheduler.extensions import db

        db.engine.dispose()
