"""``/healthz``: what a load balancer and a monitor ask each app server.

Three checks, each cheap enough to run every few seconds:

* **database**: a ``SELECT 1`` answers;
* **migrations**: the database is at the migrations' head (an app server started before
  ``flask db upgrade`` finished, or after a failed one, is not ready);
* **backlog**: how long the longest-waiting due message or webhook delivery has waited, which
  grows when no dispatcher is running;
* **logins**: how many staff accounts are locked now after wrong passwords or codes, the sign
  of someone guessing (OWASP ASVS 8.1.4, 11.1.8).

The status code is for the load balancer: ``200`` while this server can serve bookings,
``503`` when the database is unreachable or not migrated (a database already upgraded by newer
code is ``"ahead"`` and still served, for rolling upgrades). A backlog past
``HEALTH_BACKLOG_SECONDS`` or a locked account does not take app servers out of rotation
(they still book fine); it turns ``status`` to ``"degraded"`` for a monitor to alert on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from scheduler.extensions import db
from scheduler.notifications import dispatch as mail
from scheduler.staff.models import User
from scheduler.webhooks import dispatch as webhooks

blueprint = Blueprint("health", __name__)


def _scripts() -> ScriptDirectory:
    """The project's migrations, read once per app."""
    scripts = current_app.extensions.get("migration_scripts")
    if scripts is None:
        config = current_app.extensions["migrate"].migrate.get_config()
        scripts = current_app.extensions["migration_scripts"] = ScriptDirectory.from_config(config)
    return scripts


def expected_heads() -> set[str]:
    """The head revisions of the project's migrations."""
    return set(_scripts().get_heads())


def migration_state(current: set[str]) -> str:
    """``ok`` at the head, ``behind`` before it, ``ahead`` when the database was upgraded by
    newer code than this (in a rolling upgrade, servers still on the old code keep serving
    until they are restarted; migrations only add what old code can ignore)."""
    if current == expected_heads():
        return "ok"
    known = set()
    for revision in current:
        try:
            known.add(_scripts().get_revision(revision) is not None)
        except CommandError:
            known.add(False)
    return "ahead" if current and known == {False} else "behind"


def _seconds_since(moment: datetime | None, now: datetime) -> int | None:
    return None if moment is None else max(0, int((now - moment).total_seconds()))


def backlog(session: Session, now: datetime, limit: int) -> dict[str, Any]:
    """How long due mail and webhook deliveries have waited, in seconds (``None``: none due)."""
    waited = {
        "mail_seconds": _seconds_since(mail.waiting_since(session, now), now),
        "webhooks_seconds": _seconds_since(webhooks.waiting_since(session, now), now),
    }
    longest = max((value for value in waited.values() if value is not None), default=0)
    return {"status": "ok" if longest <= limit else "behind", **waited, "limit_seconds": limit}


def logins(session: Session, now: datetime) -> dict[str, Any]:
    """How many staff accounts are locked now after failed logins."""
    locked = session.scalar(select(func.count()).select_from(User).where(User.locked_until > now))
    return {"status": "alert" if locked else "ok", "locked_accounts": int(locked or 0)}


def check(session: Session, now: datetime) -> tuple[int, dict[str, Any]]:
    """Run the checks and return the status code and the report."""
    try:
        session.execute(text("SELECT 1"))
        current = set(MigrationContext.configure(session.connection()).get_current_heads())
        expected = expected_heads()
        state = migration_state(current)
        migrated = state != "behind"
        # An unmigrated database may lack the outbox tables: there is no backlog to read.
        limit = current_app.config["HEALTH_BACKLOG_SECONDS"]
        waiting = backlog(session, now, limit) if migrated else None
        guessing = logins(session, now) if migrated else None
    except SQLAlchemyError as exc:
        current_app.logger.warning("health check: database unavailable: %s", exc)
        return 503, {"status": "failing", "database": {"status": "unreachable"}}
    finally:
        session.rollback()  # read only: end the transaction the checks opened
    report: dict[str, Any] = {
        "database": {"status": "ok"},
        "migrations": {
            "status": state,
            "current": sorted(current),
            "expected": sorted(expected),
        },
    }
    if waiting is None or guessing is None:
        return 503, {"status": "failing", **report}
    fine = waiting["status"] == "ok" and guessing["status"] == "ok"
    return 200, {
        "status": "ok" if fine else "degraded",
        **report,
        "backlog": waiting,
        "logins": guessing,
    }


@blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Answer whether this app server can serve, and how far the dispatchers are behind."""
    status, report = check(db.session(), current_app.config["CLOCK"]())
    response = jsonify(report)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
