"""Database plumbing: the declarative base, a UTC datetime type and transaction helpers."""

from __future__ import annotations

import enum
import sqlite3
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, Engine, Enum, MetaData, event
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base class of every model; constraint names are stable for migrations."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that only accepts aware datetimes and always returns them in UTC.

    PostgreSQL stores it as ``timestamptz``; SQLite, which has no zone support, as naive UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored; attach a time zone")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def value_enum(enum_class: type[enum.StrEnum], name: str) -> Enum:
    """Return a column type storing ``enum_class`` by value, checked by a named constraint.

    A string rather than a native enum, so adding a value needs no ``ALTER TYPE`` on PostgreSQL.
    """
    return Enum(
        enum_class,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda members: [member.value for member in members],
        name=name,
    )


def utcnow() -> datetime:
    """Return the current time, aware, in UTC (a callable for column defaults)."""
    return datetime.now(UTC)


WRITE_LOCK = "scheduler_write_lock"


def begin_write(session: Session) -> None:
    """Start the session's transaction holding the database's write lock.

    On SQLite this is ``BEGIN IMMEDIATE``: concurrent writers queue at the start of their unit of
    work instead of failing when they upgrade a read lock. On PostgreSQL it changes nothing; the
    exclusion constraints settle races there. Call it before the unit of work's first query.
    """
    session.connection(execution_options={WRITE_LOCK: True})


SQLITE_SYNCHRONOUS = ("normal", "full")


def configure_engine(engine: Engine, *, synchronous: str = "normal") -> None:
    """Make SQLite behave: foreign keys on, WAL, a busy timeout and explicit ``BEGIN``s.

    ``synchronous`` is SQLite's pragma of that name, ``normal`` by default: in WAL mode a commit
    then waits for no ``fsync`` (the WAL is synced at checkpoints), which SQLite recommends for
    WAL. It survives the app crashing or being killed; a power cut or an operating system crash
    may lose the last commits, never corrupt the file. ``full`` syncs at every commit.
    """
    if engine.dialect.name != "sqlite":
        return
    if synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SQLITE_SYNCHRONOUS}, not {synchronous!r}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, below, emit BEGIN instead of pysqlite's own guesswork.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(WRITE_LOCK):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")
