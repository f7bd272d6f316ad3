"""Migrations with data in the tables: from every earlier revision up to the head and back.

For each revision the schema starts empty and goes up to that revision, where a clinic's rows
are written with only the columns it has. Up to the head, the rows must hold the values the
later migrations give them, the schema must be the one a fresh database gets (overlap guards
included) and match the models, the overlap guards must refuse overlaps and the booking
operation must book. Then, with a second clinic written at the head, down to the revision
again, where the rows and the guards must be as they were; and back up to the head.

Runs on the suite's database (SQLite, or PostgreSQL with TEST_DATABASE_URL), which it leaves
at the head: rebuilt from nothing if a test fails half-way through a migration.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import Connection, column, inspect, table, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler.booking.operations import PatientDetails, SlotUnavailable, book_session
from scheduler.clinic.models import Clinic, Practitioner, Treatment
from scheduler.extensions import db
from tests.conftest import NOW
from tests.migration_data import (
    COLUMN_SINCE,
    TABLE_SINCE,
    Dataset,
    Seeded,
    at,
    columns_at,
    insert_row,
    read_rows,
    tables_at,
    write_clinic,
)

_SCRIPTS = ScriptDirectory(str(Path(__file__).parent.parent / "migrations"))
REVISIONS = [script.revision for script in reversed(list(_SCRIPTS.walk_revisions()))]
HEAD = REVISIONS[-1]

Schema = dict[str, Any]


# --- the database -----------------------------------------------------------------------------


def empty_database() -> None:
    """Drop every table (and with them every index, trigger and constraint), as a downgrade
    to nothing does: PostgreSQL keeps its btree_gist extension."""
    db.session.remove()
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            names = connection.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            ).scalars()
            quoted = ", ".join(f'"{name}"' for name in names)
            if quoted:
                connection.exec_driver_sql(f"DROP TABLE {quoted} CASCADE")
            connection.commit()
            return
        # Outside a transaction, where the pragma works; the connection is then thrown away
        # rather than pooled with foreign keys off.
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA foreign_keys = OFF")
        names = driver.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        for (name,) in names:
            driver.execute(f'DROP TABLE "{name}"')
        connection.invalidate()


def migrate_from_nothing(revision: str) -> None:
    """Empty the database and upgrade it to ``revision``."""
    empty_database()
    upgrade(revision=revision)


@contextmanager
def rebuilt_at_head_if_it_fails() -> Iterator[None]:
    """Leave the shared database at the head even when the test fails, whatever its state."""
    finished = False
    try:
        yield
        finished = True
    finally:
        if not finished:
            migrate_from_nothing(HEAD)


def current_revision() -> str | None:
    """The revision the database is at."""
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


# --- the schema -------------------------------------------------------------------------------


def _sql(text: str | None) -> str | None:
    """SQL text without the spacing, quoting and outer brackets that vary with how it was made."""
    if text is None:
        return None
    text = re.sub(r"\s+", " ", str(text)).replace('"', "").strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return text


def schema_of(connection: Connection) -> Schema:
    """Everything about the schema a migration could get wrong, comparable across databases
    built by different paths: per table its columns, keys, indexes and CHECKs, and the
    overlap guards (triggers on SQLite, exclusion constraints on PostgreSQL)."""
    inspector = inspect(connection)

    def by_table(reflected: dict[tuple[str | None, str], Any]) -> dict[str, Any]:
        return {name: value for (_schema, name), value in reflected.items()}

    columns = by_table(inspector.get_multi_columns())
    keys = by_table(inspector.get_multi_pk_constraint())
    foreign = by_table(inspector.get_multi_foreign_keys())
    indexes = by_table(inspector.get_multi_indexes())
    uniques = by_table(inspector.get_multi_unique_constraints())
    checks = by_table(inspector.get_multi_check_constraints())
    tables = {
        name: {
            "columns": {
                c["name"]: (str(c["type"]), c["nullable"], _sql(c.get("default")))
                for c in columns[name]
            },
            "primary key": tuple(keys[name]["constrained_columns"]),
            "foreign keys": {
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    fk.get("options", {}).get("ondelete"),
                )
                for fk in foreign[name]
            },
            "indexes": {
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"])) for ix in indexes[name]
            },
            "uniques": {(uq["name"], tuple(uq["column_names"])) for uq in uniques[name]},
            "checks": {(ck["name"], _sql(ck["sqltext"])) for ck in checks[name]},
        }
        for name in columns
    }
    if connection.dialect.name == "postgresql":
        guards = connection.exec_driver_sql(
            "SELECT conname, conrelid::regclass::text, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype = 'x'"
        )
    else:
        guards = connection.exec_driver_sql(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'"
        )
    return {"tables": tables, "guards": {(name, on, _sql(sql)) for name, on, sql in guards}}


def current_schema() -> Schema:
    """The schema the database has now."""
    with db.engine.connect() as connection:
        return schema_of(connection)


def differences_from_the_models() -> list[Any]:
    """What autogenerate would change to make the schema the models' (as test_migrations)."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, db.metadata))


@pytest.fixture(scope="module")
def head_schema(app: Flask) -> Schema:
    """The schema a database migrated from nothing to the head has: the models' schema.

    A schema equal to it matches the models too, which spares a test comparing each again.
    """
    with app.app_context():
        migrate_from_nothing(HEAD)
        assert differences_from_the_models() == []
        return current_schema()


# --- the checks -------------------------------------------------------------------------------


GUARDS = {
    "sqlite": {"bookings_no_overlap_insert", "bookings_no_overlap_update"},
    "postgresql": {"bookings_no_overlap_practitioner", "bookings_no_overlap_room"},
}


def assert_schema(revision: str, expected: Schema) -> None:
    """The database is at ``revision``, with exactly its tables and columns, the overlap
    guards, and the schema a database migrated there from nothing has."""
    assert current_revision() == revision
    schema = current_schema()
    tables = schema["tables"]
    assert set(tables) - {"alembic_version"} == tables_at(revision)
    for name in tables_at(revision):
        assert set(tables[name]["columns"]) == set(columns_at(name, revision)), name
    assert {name for name, _, _ in schema["guards"]} == GUARDS[db.engine.dialect.name]
    assert schema == expected


def assert_rows(data: Dataset, revision: str) -> None:
    """Every table holds exactly the rows written, with the values the migrations since
    should have left them (and 0005's default checklists, for clinics it found)."""
    with db.engine.connect() as connection:
        for name in sorted(tables_at(revision)):
            rows = read_rows(connection, name, revision)
            expected = data.expected(name, revision)
            for key, row in expected.items():
                assert rows.get(key) == row, f"{name} {key}"
            others = [row for key, row in rows.items() if key not in expected]
            if name == "checklist_items":
                fields = ("clinic_id", "treatment_id", "section", "text", "position")
                generated = sorted(tuple(row[field] for field in fields) for row in others)
                assert generated == data.expected_default_checklists()
            else:
                assert others == [], name
            if name == "practitioners" and "feed_token" in columns_at(name, revision):
                tokens = [row["feed_token"] for row in rows.values()]
                assert len(set(tokens)) == len(tokens)


OVERLAP_MESSAGES = {
    "sqlite": {"practitioner": "booking overlaps another live booking"},
    "postgresql": {
        "practitioner": "bookings_no_overlap_practitioner",
        "room": "bookings_no_overlap_room",
    },
}


def _in_rolled_back_transaction(change: Callable[[Connection], object]) -> None:
    """Make ``change`` and undo it, whether the database took it or not."""
    with db.engine.connect() as connection:
        connection.begin()
        try:
            change(connection)
        finally:
            connection.rollback()


def _update_booking(connection: Connection, booking_id: int, **values: Any) -> None:
    model = db.metadata.tables["bookings"]
    target = table("bookings", column("id"), *(column(k, model.c[k].type) for k in values))
    connection.execute(update(target).where(target.c.id == booking_id).values(values))


def assert_overlaps_refused(data: Dataset, seeded: Seeded, revision: str) -> None:
    """The overlap guards refuse a second live booking for Mei, or for the garden room, while
    the live booking (10:00, blocked until 11:15) holds it, and allow one at 11:15."""
    live = data.expected("bookings", revision)[(seeded.live,)]
    dialect = db.engine.dialect.name
    messages = OVERLAP_MESSAGES[dialect]

    def another(minutes_later: int, **changes: Any) -> Callable[[Connection], object]:
        later = timedelta(minutes=minutes_later)
        values = {key: value for key, value in live.items() if key != "id"}
        values |= {
            "start_at": live["start_at"] + later,
            "end_at": live["end_at"] + later,
            "blocked_until": live["blocked_until"] + later,
            "manage_token": "overlap-check",
            "calendar_uid": "overlap-check@clinic.test",
        }
        return lambda connection: insert_row(connection, revision, "bookings", values | changes)

    with pytest.raises(IntegrityError, match=messages["practitioner"]):
        _in_rolled_back_transaction(another(30, room_id=seeded.courtyard))
    with pytest.raises(IntegrityError, match=messages.get("room", messages["practitioner"])):
        _in_rolled_back_transaction(another(30, practitioner_id=seeded.james))
    with pytest.raises(IntegrityError, match=messages["practitioner"]):
        _in_rolled_back_transaction(
            lambda connection: _update_booking(connection, seeded.cancelled, status="confirmed")
        )

    # Where the live booking's buffer ends, and with the cancelled one moved clear of it, the
    # guards let a booking through: they refuse overlaps, not every booking.
    _in_rolled_back_transaction(another(75))

    def revive_later(connection: Connection) -> None:
        cancelled = data.expected("bookings", revision)[(seeded.cancelled,)]
        later = timedelta(hours=2)
        _update_booking(
            connection,
            seeded.cancelled,
            status="confirmed",
            start_at=cancelled["start_at"] + later,
            end_at=cancelled["end_at"] + later,
            blocked_until=cancelled["blocked_until"] + later,
        )

    _in_rolled_back_transaction(revive_later)


def assert_booking_works(seeded: Seeded) -> None:
    """The booking operation books a free time with Mei and refuses her booked one (undone)."""
    with Session(db.engine) as session:
        clinic = session.get_one(Clinic, seeded.clinic)
        treatment = session.get_one(Treatment, seeded.follow_up)
        mei = session.get_one(Practitioner, seeded.mei)

        def book(start: str) -> Any:
            return book_session(
                session,
                clinic=clinic,
                treatment=treatment,
                practitioner=mei,
                start=at(start),
                patient=PatientDetails("Robin", "robin@example.org", ""),
                now=NOW,
                uid_host="clinic.test",
            )

        booking = book("2026-11-27 10:00")
        assert booking.id is not None
        assert booking.room_id in {seeded.garden, seeded.courtyard}
        with pytest.raises(SlotUnavailable):
            book("2026-11-24 10:00")
        session.rollback()


# --- the tests --------------------------------------------------------------------------------


def test_the_data_knows_every_table_and_revision() -> None:
    assert sorted(REVISIONS) == REVISIONS  # the checks compare revisions as text
    assert tables_at(HEAD) == set(db.metadata.tables)
    assert set(TABLE_SINCE.values()) | {since for since, _ in COLUMN_SINCE.values()} <= set(
        REVISIONS
    )


@pytest.mark.parametrize("revision", REVISIONS[:-1])
def test_data_written_at_a_revision_survives_upgrading_and_downgrading_back(
    app: Flask, head_schema: Schema, revision: str
) -> None:
    with app.app_context(), rebuilt_at_head_if_it_fails():
        migrate_from_nothing(revision)
        schema_at_revision = current_schema()
        data = Dataset()
        with db.engine.begin() as connection:
            first = write_clinic(data, connection, revision, batch=1)

        upgrade()
        data.upgraded(revision)
        assert_schema(HEAD, head_schema)
        assert_rows(data, HEAD)
        assert_overlaps_refused(data, first, HEAD)
        assert_booking_works(first)

        with db.engine.begin() as connection:
            write_clinic(data, connection, HEAD, batch=2)
        downgrade(revision=revision)
        data.downgraded(revision)
        assert_schema(revision, schema_at_revision)
        assert_rows(data, revision)
        assert_overlaps_refused(data, first, revision)

        upgrade()
        data.upgraded(revision)
        assert_schema(HEAD, head_schema)
        assert_rows(data, HEAD)
        assert_overlaps_refused(data, first, HEAD)
        assert_booking_works(first)


def test_downgrading_to_nothing_drops_tables_full_of_data(app: Flask) -> None:
    with app.app_context(), rebuilt_at_head_if_it_fails():
        db.session.remove()
        with db.engine.begin() as connection:
            write_clinic(Dataset(), connection, HEAD, batch=1)

        downgrade(revision="base")

        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()
