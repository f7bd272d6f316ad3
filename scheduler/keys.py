"""``flask --app scheduler db reseal``: after a new ``SECRET_KEY``, seal everything sealed
again under it, so that the old key (kept meanwhile in ``SECRET_KEY_FALLBACKS``) can go."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.orm.attributes import flag_modified

from scheduler.commandline import database_errors
from scheduler.db import begin_write
from scheduler.extensions import db
from scheduler.patients.models import Intake
from scheduler.sealing import TOTP, Unreadable, keys_of, reseal
from scheduler.staff.models import User


@click.command("reseal")
@with_appcontext
@database_errors
def reseal_command() -> None:
    """Seal the health answers and two-step secrets again under the current SECRET_KEY."""
    session = db.session()
    begin_write(session)
    keys = keys_of(current_app.config)
    try:
        intakes = list(session.scalars(select(Intake)))
        for intake in intakes:
            # Read with any key, written with the first: marking them is enough.
            for name in ("medications", "conditions", "other_conditions"):
                flag_modified(intake, name)
        users = list(session.scalars(select(User).where(User.totp_secret.is_not(None))))
        for user in users:
            user.totp_secret = reseal(user.totp_secret or "", keys, TOTP)
        session.commit()
    except Unreadable as exc:
        session.rollback()
        raise click.ClickException(f"nothing was changed: {exc}") from exc
    click.echo(f"Sealed {len(intakes)} intakes and {len(users)} two-step secrets again.")
