"""``flask --app scheduler patients …``: the clinic's retention rule from the command line."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import current_app
from flask.cli import with_appcontext

from scheduler.audit import RETENTION
from scheduler.commandline import database_errors
from scheduler.db import begin_write
from scheduler.extensions import db
from scheduler.patients.operations import erase_patient, lapsed_patients

# Days in a year, leap years included, for "no visit in N years".
YEAR = timedelta(days=365.25)


@click.group()
def patients() -> None:
    """Patients' records."""


@patients.command("purge")
@click.option(
    "--years",
    type=click.IntRange(1, 100),
    required=True,
    help="Erase those with no visit, booking or waitlist place in this many years.",
)
@click.option("--dry-run", is_flag=True, help="Only count them; erase nothing.")
@with_appcontext
@database_errors
def purge(years: int, dry_run: bool) -> None:
    """Erase the details of patients the clinic has not seen for ``--years`` (the same
    erasure as the staff area's: bookings stay for the books, anonymised). Run it from the
    same timer as ``calendar sync`` to keep records no longer than the clinic's rule."""
    now = current_app.config["CLOCK"]()
    since = now - years * YEAR
    session = db.session()
    begin_write(session)
    lapsed = lapsed_patients(session, since=since, now=now)
    if dry_run:
        session.rollback()
        click.echo(f"would erase {len(lapsed)} patients with nothing since {since.date()}")
        return
    for patient in lapsed:
        erase_patient(session, patient=patient, actor=RETENTION, now=now)
    session.commit()
    click.echo(f"erased {len(lapsed)} patients with nothing since {since.date()}")
