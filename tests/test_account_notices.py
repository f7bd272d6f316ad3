"""Mail to staff when their password, two-step login or role changes (OWASP ASVS 2.2.3,
2.5.5), through the outbox and the real dispatcher to a real SMTP server."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.notifications.models import Notification, NotificationKind
from scheduler.staff.models import Role, User
from tests.conftest import PASSWORD, Clock, csrf_token, log_in, token_of
from tests.smtp_server import Inbox
from tests.test_two_factor import enter_code, switch_on


def dispatch(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert result.exit_code == 0, result.output


def notices(app: Flask, inbox: Inbox, email: str) -> list[tuple[str, str]]:
    """Send what is due; return the subject and text of each message ``email`` received."""
    dispatch(app)
    found = []
    for received in inbox.received:
        if email in received.rcpt_tos:
            message = received.message
            text = message.get_body(preferencelist=("plain",))
            found.append((str(message["Subject"]), text.get_content() if text else ""))
    return found


def logged_in(app: Flask, user: User) -> FlaskClient:
    client = app.test_client()
    assert log_in(client, user.email).status_code == 303
    return client


def test_changing_ones_password_is_mailed_to_the_account(app, make_user, smtp, setup):
    user = make_user(Role.PRACTITIONER)
    client = logged_in(app, user)
    answer = client.post(
        "/staff/password",
        data={
            "current": PASSWORD,
            "new": "a brand new passphrase",
            "confirm": "a brand new passphrase",
            "csrf_token": token_of(client, "/staff/password"),
        },
    )
    assert answer.status_code == 303

    [(subject, text)] = notices(app, smtp, user.email)
    assert subject == f"Your staff account at {setup.clinic.name} changed"
    assert "The password of your staff account was changed." in text
    assert user.email in text
    assert "a brand new passphrase" not in text, "never the password"
    assert "https://clinic.test/staff/login" in text


def test_a_refused_password_change_sends_nothing(app, make_user, smtp):
    user = make_user(Role.RECEPTION)
    client = logged_in(app, user)
    client.post(
        "/staff/password",
        data={
            "current": "not my password at all",
            "new": "a brand new passphrase",
            "confirm": "a brand new passphrase",
            "csrf_token": token_of(client, "/staff/password"),
        },
    )
    assert notices(app, smtp, user.email) == []


def test_an_admins_reset_and_role_change_are_mailed_to_the_account(app, make_user, smtp):
    user = make_user(Role.PRACTITIONER)
    admin = logged_in(app, make_user(Role.ADMIN))
    page = admin.get(f"/staff/users/{user.id}")
    admin.post(
        f"/staff/users/{user.id}/password",
        data={"password": "temporary words here", "csrf_token": csrf_token(page.text)},
    )
    admin.post(
        f"/staff/users/{user.id}",
        data={"role": "reception", "practitioner": "", "csrf_token": csrf_token(page.text)},
    )

    texts = [text for _, text in notices(app, smtp, user.email)]
    assert len(texts) == 2
    assert "An admin set a new password for your staff account" in texts[0]
    assert "An admin changed your staff account's role" in texts[1]
    assert "temporary words here" not in texts[0]


def test_saving_an_account_without_a_change_sends_nothing(app, make_user, smtp, setup):
    user = make_user(Role.PRACTITIONER)
    admin = logged_in(app, make_user(Role.ADMIN))
    page = admin.get(f"/staff/users/{user.id}")
    answer = admin.post(
        f"/staff/users/{user.id}",
        data={
            "role": "practitioner",
            "practitioner": str(setup.mei.id),
            "active": "y",
            "csrf_token": csrf_token(page.text),
        },
    )
    assert answer.status_code == 303
    assert notices(app, smtp, user.email) == []


def test_each_change_to_two_step_login_is_mailed(
    app: Flask, make_user: Any, smtp: Inbox, clock: Clock, session: Session
):
    user = make_user(Role.RECEPTION)
    client = logged_in(app, user)
    secret, codes = switch_on(client, clock)
    assert "Two-step login was switched on" in notices(app, smtp, user.email)[-1][1]
    assert codes[0] not in str([m.data for m in smtp.received]), "never a recovery code"

    clock.now += timedelta(seconds=30)
    client.post(
        "/staff/two-factor/recovery-codes",
        data={
            "code": pyotp.TOTP(secret).at(clock.now),
            "csrf_token": token_of(client, "/staff/two-factor"),
        },
    )
    assert "New recovery codes were made" in notices(app, smtp, user.email)[-1][1]

    clock.now += timedelta(seconds=30)
    client.post(
        "/staff/two-factor/off",
        data={
            "code": pyotp.TOTP(secret).at(clock.now),
            "csrf_token": token_of(client, "/staff/two-factor"),
        },
    )
    assert "Two-step login was switched off" in notices(app, smtp, user.email)[-1][1]
    assert len(notices(app, smtp, user.email)) == 3


def test_an_admin_removing_two_step_login_is_mailed(app, make_user, smtp, clock, session):
    user = make_user(Role.RECEPTION)
    switch_on(logged_in(app, user), clock)
    session.rollback()  # reading the user began a transaction; the next write needs a new one
    admin = logged_in(app, make_user(Role.ADMIN))
    page = admin.get(f"/staff/users/{user.id}")
    admin.post(
        f"/staff/users/{user.id}/two-factor/reset", data={"csrf_token": csrf_token(page.text)}
    )
    texts = [text for _, text in notices(app, smtp, user.email)]
    assert "Two-step login was removed from your staff account" in texts[-1]


def test_account_notices_are_not_listed_as_patient_mail(app, make_user, smtp, session):
    user = make_user(Role.RECEPTION)
    admin = logged_in(app, make_user(Role.ADMIN))
    page = admin.get(f"/staff/users/{user.id}")
    admin.post(
        f"/staff/users/{user.id}/password",
        data={"password": "temporary words here", "csrf_token": csrf_token(page.text)},
    )
    dispatch(app)
    session.rollback()
    [notice] = session.scalars(
        select(Notification).where(Notification.kind == NotificationKind.ACCOUNT)
    ).all()
    assert notice.user_id == user.id
    assert notice.recipient == user.email
    outbox = admin.get("/staff/notifications/")
    assert f"/staff/notifications/{notice.id}" not in outbox.text
    assert admin.get(f"/staff/notifications/{notice.id}").status_code == 404


def test_a_login_with_a_recovery_code_is_not_a_change_and_sends_nothing(
    app, make_user, smtp, clock
):
    user = make_user(Role.RECEPTION)
    _, codes = switch_on(logged_in(app, user), clock)
    before = len(notices(app, smtp, user.email))
    client = app.test_client()
    log_in(client, user.email)
    assert enter_code(client, codes[0]).status_code == 303
    assert len(notices(app, smtp, user.email)) == before
    assert re.search("switched on", notices(app, smtp, user.email)[0][1])
