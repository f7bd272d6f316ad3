"""``flask --app scheduler demo …``: set up the demo clinic."""

from __future__ import annotations

import secrets

import click
from flask import current_app
from flask.cli import with_appcontext

from scheduler.clinic.models import Clinic
from scheduler.commandline import database_errors
from scheduler.db import begin_write
from scheduler.demo.seed import ADMIN_EMAIL, add_demo_bookings, seed_demo
from scheduler.extensions import db
from scheduler.staff.auth import pepper_of


@click.group()
def demo() -> None:
    """Set up a demo clinic."""


@demo.command("seed")
@click.option("--admin-password", help=f"Password for {ADMIN_EMAIL} (default: random).")
@click.option(
    "--bookings",
    type=click.IntRange(0, 1_000_000),
    default=0,
    show_default=True,
    help="Also add this many realistic past and future bookings.",
)
@click.option(
    "--if-empty", is_flag=True, help="Do nothing, successfully, when a clinic already exists."
)
@with_appcontext
@database_errors
def seed(admin_password: str | None, bookings: int, if_empty: bool) -> None:
    """Create the demo clinic (Europe/London) in an empty database."""
    session = db.session()
    begin_write(session)
    if Clinic.get(session) is not None:
        session.rollback()
        if if_empty:
            click.echo("The database already has a clinic; nothing to seed.")
            return
        raise click.ClickException(
            "the database already has a clinic; seed an empty database "
            "(or pass --if-empty to skip quietly)"
        )
    password = admin_password or secrets.token_urlsafe(12)
    clinic = seed_demo(
        session,
        admin_password=password,
        pepper=pepper_of(),
    )
    added = add_demo_bookings(session, clinic, bookings, now=current_app.config["CLOCK"]())
    name = clinic.name
    session.commit()
    click.echo(f"Seeded {name} with {added} bookings.")
    if admin_password:
        click.echo(f"Staff login: {ADMIN_EMAIL} with the password you gave.")
    else:
        click.echo(f"Staff login: {ADMIN_EMAIL}, password {password} (shown only now).")
