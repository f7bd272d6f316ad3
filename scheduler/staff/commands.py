"""``flask --app scheduler users …``: staff accounts from the command line."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from scheduler.clinic.models import Practitioner
from scheduler.commandline import database_errors
from scheduler.db import begin_write
from scheduler.extensions import db
from scheduler.notifications.models import AccountChange
from scheduler.staff.auth import pepper_of
from scheduler.staff.models import Role, User
from scheduler.staff.operations import AccountError, create_user
from scheduler.staff.totp import switch_off


@click.group()
def users() -> None:
    """Staff accounts."""


@users.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Asked for when not given.",
)
@click.option(
    "--practitioner",
    "practitioner_email",
    default=None,
    help="For --role practitioner: whose schedule it is (default: the same email).",
)
@with_appcontext
@database_errors
def create(email: str, role: str, password: str, practitioner_email: str | None) -> None:
    """Create a staff account that can log in at /staff/login."""
    session = db.session()
    begin_write(session)
    practitioner = None
    if Role(role) is Role.PRACTITIONER:
        wanted = (practitioner_email or email).strip().lower()
        practitioner = session.scalars(
            select(Practitioner).where(Practitioner.email == wanted)
        ).first()
        if practitioner is None:
            raise click.ClickException(
                f"no practitioner has the email {wanted}; pass --practitioner EMAIL"
            )
    elif practitioner_email:
        raise click.ClickException("--practitioner is only for --role practitioner")
    try:
        user = create_user(
            session,
            email=email,
            role=Role(role),
            password=password,
            practitioner=practitioner,
            pepper=pepper_of(),
        )
    except AccountError as exc:
        raise click.ClickException(exc.message[0].lower() + exc.message[1:].rstrip(".")) from exc
    session.commit()
    click.echo(f"Created {role} account {user.email}.")


@users.command("reset-two-factor")
@click.argument("email")
@with_appcontext
@database_errors
def reset_two_factor(email: str) -> None:
    """Remove an account's two-step login (a lost phone and lost recovery codes, when no other
    admin can do it in the staff area); it logs in with its password and sets it up again."""
    session = db.session()
    begin_write(session)
    user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        raise click.ClickException(f"no staff account has the email {email.strip()}")
    if not user.has_second_factor:
        raise click.ClickException(f"{user.email} has no two-step login to remove")
    switch_off(session, user, current_app.config["CLOCK"](), AccountChange.TWO_FACTOR_REMOVED)
    session.commit()
    click.echo(f"Removed two-step login from {user.email}; its sessions are logged out.")
