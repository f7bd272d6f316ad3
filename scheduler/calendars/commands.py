"""``flask --app scheduler calendar …``: export sessions, show or rotate a feed's address."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.calendars.export import practitioner_feed
from scheduler.calendars.feeds import feed_bookings
from scheduler.clinic.models import Clinic, Practitioner, new_feed_token
from scheduler.commandline import database_errors
from scheduler.db import begin_write
from scheduler.extensions import db
from scheduler.timeutil import day_bounds


@click.group()
def calendar() -> None:
    """Calendar files and feeds."""


def _practitioner(session: Session, key: str) -> Practitioner:
    """Find a practitioner by email address or id, or fail with what was not found."""
    query = select(Practitioner)
    if key.isascii() and key.isdigit():
        query = query.where(Practitioner.id == int(key))
    else:
        query = query.where(Practitioner.email == key.strip().lower())
    practitioner = session.scalars(query).first()
    if practitioner is None:
        raise click.ClickException(f"no practitioner has the email address or id {key!r}")
    return practitioner


def _clinic(session: Session) -> Clinic:
    clinic = Clinic.get(session)
    if clinic is None:
        raise click.ClickException("the clinic is not set up; run `demo seed` or set it up first")
    return clinic


@calendar.command("export")
@click.option("--practitioner", "key", required=True, help="Email address or id.")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First day.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last day.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of to standard output.",
)
@with_appcontext
@database_errors
def export(key: str, start: datetime, end: datetime, output: Path | None) -> None:
    """Write an .ics of a practitioner's sessions between two dates, both inclusive."""
    if end < start:
        raise click.ClickException("--end is before --start")
    session = db.session()
    clinic = _clinic(session)
    practitioner = _practitioner(session, key)
    first, last = day_bounds(start.date(), end.date(), clinic.tz)
    bookings = feed_bookings(session, practitioner, first, last)
    body = practitioner_feed(
        clinic, practitioner, bookings, base_url=current_app.config["BASE_URL"]
    )
    if output is None:
        click.echo(body, nl=False)
        return
    try:
        output.write_bytes(body)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror}") from exc
    click.echo(f"Wrote {len(bookings)} sessions to {output}.", err=True)


@calendar.command("feed-url")
@click.option("--practitioner", "key", required=True, help="Email address or id.")
@click.option("--rotate", is_flag=True, help="Give the feed a new address; the old one stops.")
@with_appcontext
@database_errors
def feed_url(key: str, rotate: bool) -> None:
    """Print the address of a practitioner's subscription feed."""
    session = db.session()
    begin_write(session)
    practitioner = _practitioner(session, key)
    if rotate:
        practitioner.feed_token = new_feed_token()
    token = practitioner.feed_token
    session.commit()
    click.echo(f"{current_app.config['BASE_URL']}/feeds/{token}.ics")
