"""The schema comes only from the migrations, and they match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from scheduler.extensions import db


def _schema_diff() -> list:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_the_migrated_schema_matches_the_models(app):
    with app.app_context():
        assert _schema_diff() == []


def test_migrations_go_down_to_nothing_and_back_up(app):
    with app.app_context():
        db.session.remove()
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}

        upgrade()

        tables = set(inspect(db.engine).get_table_names())
        assert {"bookings", "clinics", "patients", "practitioners", "treatments"} <= tables
        assert _schema_diff() == []


def test_upgrading_gives_existing_practitioners_distinct_feed_tokens(app):
    with app.app_context():
        db.session.remove()
        downgrade(revision="0001")
        with db.engine.begin() as connection:
            for number in range(3):
                connection.exec_driver_sql(
                    "INSERT INTO practitioners (name, email, credentials, licence, bio, active) "
                    f"VALUES ('P{number}', 'p{number}@clinic.test', '', '', '', true)"
                )

        upgrade()

        with db.engine.connect() as connection:
            tokens = [
                row[0] for row in connection.exec_driver_sql("SELECT feed_token FROM practitioners")
            ]
        assert len(tokens) == 3
        assert len(set(tokens)) == 3
        assert all(len(token) >= 43 for token in tokens)


def test_after_migrating_every_sqlite_connection_enforces_foreign_keys(app):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            return
        db.session.remove()
        upgrade()
        connections = [db.engine.connect() for _ in range(4)]
        try:
            states = [c.exec_driver_sql("PRAGMA foreign_keys").scalar() for c in connections]
        finally:
            for connection in connections:
                connection.close()
        assert states == [1, 1, 1, 1]
