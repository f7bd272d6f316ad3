"""``flask --app scheduler users …``: staff accounts from the command line."""

from __future__ import annotations

import click
from email_validator import EmailNotValidError, validate_email
from flask.cli import with_appcontext
from sqlalchemy import select

from scheduler.clinic.models import Practitioner
from scheduler.commandline import database_errors
from scheduler.db import begin_write
from scheduler.extensions import db
from scheduler.staff.models import Role, User

MIN_PASSWORD_LENGTH = 10


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
    try:
        # Clinics may use internal domains (clinic.local), so special-use names are allowed.
        checked = validate_email(email, check_deliverability=False, globally_deliverable=False)
        email = checked.normalized.lower()
    except EmailNotValidError as exc:
        raise click.ClickException(f"{email!r} is not an email address: {exc}") from exc
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    session = db.session()
    begin_write(session)
    if session.scalars(select(User).where(User.email == email)).first() is not None:
        raise click.ClickException(f"an account for {email} already exists")
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
    user = User(email=email, role=Role(role), practitioner=practitioner)
    user.set_password(password)
    session.add(user)
    session.commit()
    click.echo(f"Created {role} account {email}.")
