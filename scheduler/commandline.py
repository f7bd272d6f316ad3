"""What every ``flask --app scheduler`` command shares: database trouble as a one-line error."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from scheduler.extensions import db

P = ParamSpec("P")
R = TypeVar("R")


def database_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Roll back and explain a database error in one line instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except IntegrityError as exc:
            db.session.rollback()
            detail = str(exc.orig).splitlines()[0][:200]
            raise click.ClickException(
                f"the database refused the change, so nothing was saved ({detail})"
            ) from exc
        except SQLAlchemyError as exc:
            db.session.rollback()
            raise click.ClickException(
                f"the database is not ready ({type(exc).__name__}); check DATABASE_URL and run "
                "`flask --app scheduler db upgrade` first"
            ) from exc

    return wrapper
