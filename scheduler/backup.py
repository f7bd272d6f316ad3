"""``flask --app scheduler db backup FILE``: a consistent copy of a SQLite database, made while
the app servers and dispatchers keep using it.

Flask-Migrate owns the ``db`` group; :func:`init_app` gives the app a ``db`` group of its own
holding Flask-Migrate's commands and ``backup``, and leaves Flask-Migrate's group as it is.
PostgreSQL has ``pg_dump`` for this (``docs/deploy.md``).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import make_url


class BackupError(Exception):
    """The backup could not be made; ``str()`` says what to fix."""


def sqlite_path(database_uri: str) -> Path:
    """The file of the SQLite database at ``database_uri``; ``BackupError`` for any other."""
    url = make_url(database_uri)
    backend = url.get_backend_name()
    if backend != "sqlite":
        raise BackupError(
            f"db backup copies a SQLite database, and DATABASE_URL is {backend}: "
            "use pg_dump instead (see docs/deploy.md)"
        )
    if not url.database or url.database == ":memory:" or url.query.get("mode") == "memory":
        raise BackupError("the database is in memory; there is no file to back up")
    source = Path(url.database).resolve()
    if not source.is_file():
        raise BackupError(f"there is no SQLite database at {source}; check DATABASE_URL")
    return source


def backup_sqlite(source: Path, target: Path) -> None:
    """Copy the SQLite database ``source`` to the new file ``target`` with SQLite's online
    backup, while other connections read and write it.

    The copy is written beside ``target`` and renamed to it once checked, so a failed backup
    leaves nothing under that name; like the database, it is readable by its owner only.
    """
    if target.exists():
        raise BackupError(f"{target} already exists; give the backup a new file name")
    if not target.parent.is_dir():
        raise BackupError(f"the folder {target.parent} does not exist")
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        # The app's busy timeout: wait for a writer's commit rather than fail.
        with (
            closing(sqlite3.connect(source, timeout=30)) as database,
            closing(sqlite3.connect(partial)) as copy,
        ):
            database.backup(copy)
            # A plain single file, whatever the live database's journal (WAL) is.
            copy.execute("PRAGMA journal_mode = DELETE")
            (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise BackupError(f"the copy failed its check ({verdict}); nothing was written")
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite could not copy {source}: {exc}") from exc
    finally:
        Path(partial).unlink(missing_ok=True)


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def backup(file: Path) -> None:
    """Copy the SQLite database to a new FILE, online.

    The app servers and dispatchers keep running meanwhile. On PostgreSQL, use pg_dump.
    """
    try:
        source = sqlite_path(current_app.config["SQLALCHEMY_DATABASE_URI"])
        backup_sqlite(source, file)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Backed up {source} to {file} ({file.stat().st_size:,} bytes).")


def init_app(app: Flask) -> None:
    """Add ``backup`` and ``reseal`` to the app's ``db`` commands (after Flask-Migrate has
    added them)."""
    from scheduler.keys import reseal_command

    migrate_group = app.cli.commands.get("db")
    if not isinstance(migrate_group, click.Group):
        raise RuntimeError("Flask-Migrate's db commands must be registered before db backup")
    app.cli.add_command(
        click.Group(
            name=migrate_group.name,
            commands={**migrate_group.commands, "backup": backup, "reseal": reseal_command},
            params=migrate_group.params,
            callback=migrate_group.callback,
            help=migrate_group.help,
        )
    )
