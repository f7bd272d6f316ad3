"""``/healthz``: the database answers, the migrations are current, and how far the dispatchers
are behind."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade

from scheduler import create_app
from scheduler.extensions import db
from scheduler.staff.models import Role
from scheduler.webhooks.models import Webhook, WebhookEvent, WebhookSubscription
from tests.conftest import NOW, log_in, london

_SCRIPTS = ScriptDirectory(str(Path(__file__).parent.parent / "migrations"))
HEAD = _SCRIPTS.get_current_head()
BEFORE_HEAD = _SCRIPTS.get_revision(HEAD).down_revision


def health(client):
    answer = client.get("/healthz")
    assert answer.headers["Cache-Control"] == "no-store"
    return answer.status_code, answer.get_json()


def test_a_migrated_database_with_nothing_waiting_is_healthy(client, setup):
    status, report = health(client)

    assert status == 200
    assert report["status"] == "ok"
    assert report["database"] == {"status": "ok"}
    assert report["migrations"]["status"] == "ok"
    assert report["migrations"]["current"] == report["migrations"]["expected"] == [HEAD]
    assert report["backlog"] == {
        "status": "ok",
        "mail_seconds": None,
        "webhooks_seconds": None,
        "limit_seconds": 900,
    }


def test_mail_waiting_past_the_limit_is_degraded_but_still_serves(app, client, book, clock):
    book(london("2026-11-30", "10:00"))  # its confirmation is due at once
    assert health(client)[1]["backlog"]["mail_seconds"] == 0

    clock.now = NOW + timedelta(minutes=20)  # and no dispatcher ran
    status, report = health(client)

    assert status == 200, "app servers still serve bookings without a dispatcher"
    assert report["status"] == "degraded"
    assert report["backlog"]["status"] == "behind"
    assert report["backlog"]["mail_seconds"] == 20 * 60

    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert result.exit_code == 0, result.output
    status, report = health(client)
    assert (status, report["status"], report["backlog"]["mail_seconds"]) == (200, "ok", None)


def test_webhook_deliveries_waiting_count_unless_their_webhook_is_off(
    app, client, session, book, clock
):
    webhook = Webhook(url="https://hooks.example.org/in", secret="whsec_x", active=True)
    webhook.subscriptions.append(WebhookSubscription(event=WebhookEvent.BOOKING_CREATED))
    webhook.created_at = NOW
    session.add(webhook)
    session.commit()
    with app.app_context():  # the delivery's links are built from the app's BASE_URL
        book(london("2026-11-30", "10:00"))
    clock.now = NOW + timedelta(minutes=5)

    assert health(client)[1]["backlog"]["webhooks_seconds"] == 5 * 60

    webhook.active = False
    session.commit()
    assert health(client)[1]["backlog"]["webhooks_seconds"] is None, "it waits on purpose"


def test_a_database_behind_the_migrations_is_not_ready(app, client, setup):
    with app.app_context():
        db.session.remove()
        downgrade(revision="-1")
    try:
        status, report = health(client)
    finally:
        with app.app_context():
            upgrade()

    assert status == 503
    assert report["status"] == "failing"
    assert report["migrations"] == {
        "status": "behind",
        "current": [BEFORE_HEAD],
        "expected": [HEAD],
    }
    assert health(client)[0] == 200, "ready again once upgraded"


def test_an_unreachable_database_is_failing_without_a_traceback(tmp_path):
    # A SQLite file in a folder that does not exist cannot be opened.
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/missing/scheduler.db",
        }
    )

    answer = app.test_client().get("/healthz")

    assert answer.status_code == 503
    assert answer.get_json() == {"status": "failing", "database": {"status": "unreachable"}}
    with app.app_context():
        db.engine.dispose()


def test_a_database_upgraded_by_newer_code_is_ahead_and_still_served(app, client, setup):
    # In a rolling upgrade the old app servers see a revision their code does not know.
    with app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    try:
        status, report = health(client)
    finally:
        with app.app_context(), db.engine.begin() as connection:
            connection.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{HEAD}'")

    assert status == 200
    assert report["status"] == "ok"
    assert report["migrations"] == {"status": "ahead", "current": ["9999"], "expected": [HEAD]}


def test_a_locked_staff_account_is_degraded_for_the_monitor(app, client, setup, make_user, clock):
    user = make_user(Role.RECEPTION)
    guesser = app.test_client()
    assert health(client)[1]["logins"] == {"status": "ok", "locked_accounts": 0}
    for _ in range(5):
        log_in(guesser, user.email, "a wrong guess")

    status, report = health(client)

    assert status == 200, "still serving"
    assert report["status"] == "degraded"
    assert report["logins"] == {"status": "alert", "locked_accounts": 1}
    clock.now += timedelta(minutes=2)  # the lock runs out
    assert health(client)[1]["status"] == "ok"
