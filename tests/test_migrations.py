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
