"""Security keys and passkeys (WebAuthn) as the second step of a staff login: adding one,
logging in and confirming with it, and everything a key's answer must not get away with
(another site, another account, a replayed or copied key, a late answer).

The key is tests/webauthn_device.py's key in software; the browser test in
tests/browser/test_security_key.py does the same with Chromium's virtual authenticator."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from webauthn.helpers import bytes_to_base64url

from scheduler.notifications.models import AccountChange, Notification, NotificationKind
from scheduler.staff.models import Role, SecurityKey, User
from scheduler.staff.security_keys import site_of
from tests.conftest import PASSWORD, Clock, csrf_token, log_in
from tests.test_two_factor import enter_code, logged_in, switch_on
from tests.webauthn_device import SoftKey


def options_on(page: str, ceremony: str) -> str:
    """The options a page's security-key button gives the browser."""
    match = re.search(rf'data-webauthn="{ceremony}" data-options="([^"]*)"', page)
    assert match, f"the page has a button to {ceremony} a key"
    return html.unescape(match.group(1))


def add(client: FlaskClient, key: SoftKey, name: str = "Blue key") -> Any:
    """Add ``key`` as a person on the two-step login page would."""
    page = client.get("/staff/two-factor")
    answer = key.create(options_on(page.text, "create"))
    return client.post(
        "/staff/two-factor/keys",
        data={"name": name, "credential": answer, "csrf_token": csrf_token(page.text)},
    )


def key_login(client: FlaskClient, key: SoftKey, **kwargs: Any) -> Any:
    """Finish a login on the code page with ``key``."""
    page = client.get("/staff/login/code")
    answer = key.get(options_on(page.text, "get"), **kwargs)
    return client.post(
        "/staff/login/key", data={"credential": answer, "csrf_token": csrf_token(page.text)}
    )


@pytest.fixture
def with_key(
    app: Flask, make_user: Any, clock: Clock, session: Session
) -> tuple[User, str, SoftKey]:
    """A receptionist with two-step login on and a security key added."""
    user = make_user(Role.RECEPTION)
    client = logged_in(app, user)
    secret, _ = switch_on(client, clock)
    key = SoftKey()
    assert add(client, key).status_code == 303
    session.rollback()
    return user, secret, key


def notices(session: Session, user: User) -> list[AccountChange]:
    session.rollback()
    return [
        AccountChange(n.variant)
        for n in session.scalars(
            select(Notification)
            .where(Notification.user_id == user.id, Notification.kind == NotificationKind.ACCOUNT)
            .order_by(Notification.id)
        )
    ]


def test_a_key_is_added_with_a_name_and_kept_as_its_public_key(app, make_user, clock, session):
    user = make_user(Role.RECEPTION)
    client = logged_in(app, user)
    page = client.get("/staff/two-factor")
    assert "Security keys" not in page.text, "a key is added beside the app, once it is on"
    switch_on(client, clock)

    page = client.get("/staff/two-factor")
    assert "No security keys yet." in page.text
    options = json.loads(options_on(page.text, "create"))
    assert options["rp"]["id"] == "clinic.test", "BASE_URL's host"
    assert user.email not in options["user"]["id"], "the key keeps no address as the user's id"
    key = SoftKey()
    answer = add(client, key, name="  Blue   key ")
    assert answer.status_code == 303
    assert "The key “Blue key” is added" in client.get("/staff/two-factor").text

    session.rollback()
    [stored] = session.scalars(select(SecurityKey)).all()
    assert stored.user_id == user.id
    assert stored.name == "Blue key"
    assert stored.transports == "usb,nfc"
    assert stored.sign_count == 0
    assert stored.last_used_at is None
    assert AccountChange.SECURITY_KEY_ADDED in notices(session, user)

    again = json.loads(options_on(client.get("/staff/two-factor").text, "create"))
    assert [c["id"] for c in again["excludeCredentials"]] == [stored.credential_id], (
        "the browser is told not to make the same key twice"
    )
    assert add(client, key, name="Same key").status_code == 422, "nor is it taken twice"


def test_logging_in_with_the_key_instead_of_a_code(app, with_key, clock, session):
    user, _, key = with_key
    client = app.test_client()
    assert log_in(client, user.email).headers["Location"] == "/staff/login/code"
    answer = key_login(client, key)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/"
    assert client.get("/staff/").status_code == 200
    session.rollback()
    stored = session.scalars(select(SecurityKey)).one()
    assert stored.sign_count == 1
    assert stored.last_used_at == clock.now


def test_an_answer_works_once_and_a_refused_one_counts_towards_the_lock(app, with_key, session):
    user, _, key = with_key
    client = app.test_client()
    log_in(client, user.email)
    page = client.get("/staff/login/code")
    answer = key.get(options_on(page.text, "get"))
    form = {"credential": answer, "csrf_token": csrf_token(page.text)}
    assert client.post("/staff/login/key", data=form).status_code == 303

    thief = app.test_client()
    log_in(thief, user.email)
    token = csrf_token(thief.get("/staff/login/code").text)
    replayed = thief.post("/staff/login/key", data={"credential": answer, "csrf_token": token})
    assert replayed.status_code == 401
    assert "That key is not one of this account's" in html.unescape(replayed.text)
    assert thief.get("/staff/").status_code == 302
    session.rollback()
    assert session.get(User, user.id).failed_logins == 1


def test_a_copied_key_whose_count_does_not_go_up_is_refused(app, with_key, session):
    user, _, key = with_key
    client = app.test_client()
    log_in(client, user.email)
    assert key_login(client, key).status_code == 303  # count 1
    copy = app.test_client()
    log_in(copy, user.email)
    assert key_login(copy, key, count_up=False).status_code == 401
    assert copy.get("/staff/").status_code == 302


def test_a_key_made_for_another_site_is_refused(app, make_user, clock, session):
    user = make_user(Role.RECEPTION)
    client = logged_in(app, user)
    switch_on(client, clock)
    phished = SoftKey(origin="https://clinic-test.example")
    answer = add(client, phished)
    assert answer.status_code == 422
    assert "The key's answer could not be checked" in html.unescape(answer.text)
    session.rollback()
    assert session.scalars(select(SecurityKey)).all() == []


def test_another_accounts_key_does_not_log_in(app, with_key, make_user, clock, session):
    _, _, key = with_key
    other = make_user(Role.RECEPTION, email="other@clinic.example")
    other_client = logged_in(app, other)
    switch_on(other_client, clock)
    mine = SoftKey()
    assert add(other_client, mine).status_code == 303

    client = app.test_client()
    log_in(client, other.email)
    page = client.get("/staff/login/code")
    options = json.loads(options_on(page.text, "get"))
    # The receptionist's key signs the other account's challenge, as if it were allowed.
    options["allowCredentials"].append(
        {"id": bytes_to_base64url(key.credential_id), "type": "public-key"}
    )
    answer = key.get(options)
    refused = client.post(
        "/staff/login/key", data={"credential": answer, "csrf_token": csrf_token(page.text)}
    )
    assert refused.status_code == 401
    assert client.get("/staff/").status_code == 302


def test_a_late_answer_is_refused(app, with_key, later_clock):
    user, _, key = with_key
    client = app.test_client()
    log_in(client, user.email)
    page = client.get("/staff/login/code")
    answer = key.get(options_on(page.text, "get"))
    later_clock[0] += 301
    late = client.post(
        "/staff/login/key", data={"credential": answer, "csrf_token": csrf_token(page.text)}
    )
    assert late.status_code == 303
    assert late.headers["Location"] == "/staff/login", "the password waits five minutes only"


@pytest.mark.parametrize(
    ("credential", "status"),
    [
        ("", 400),
        ("not json", 401),
        ("{}", 401),
        ('{"rawId": 5, "response": []}', 401),
        ("x" * 20_001, 400),
    ],
)
def test_a_broken_answer_gets_a_clear_refusal(app, with_key, credential, status):
    user, _, _ = with_key
    client = app.test_client()
    log_in(client, user.email)
    token = csrf_token(client.get("/staff/login/code").text)
    answer = client.post("/staff/login/key", data={"credential": credential, "csrf_token": token})
    assert answer.status_code == status
    assert "Traceback" not in answer.text
    assert 'role="alert"' in answer.text
    assert "Enter your code" in answer.text, "the code still works from the same page"


def test_adding_a_key_refuses_bad_input_and_writes_nothing(app, make_user, clock, session):
    user = make_user(Role.RECEPTION)
    client = logged_in(app, user)
    switch_on(client, clock)
    page = client.get("/staff/two-factor")
    token = csrf_token(page.text)
    answer = SoftKey().create(options_on(page.text, "create"))
    cases = [
        ({"name": "", "credential": answer}, "Please give the key a name"),
        ({"name": "x" * 61, "credential": answer}, "Please keep the key"),
        ({"name": "Key", "credential": ""}, "did not send the key"),
        ({"name": "Key", "credential": "{broken"}, "could not be checked"),
    ]
    for data, message in cases:
        client.get("/staff/two-factor")  # a fresh challenge each time
        refused = client.post("/staff/two-factor/keys", data={**data, "csrf_token": token})
        assert refused.status_code == 422, data
        assert message in html.unescape(refused.text), data
    session.rollback()
    assert session.scalars(select(SecurityKey)).all() == []
    assert AccountChange.SECURITY_KEY_ADDED not in notices(session, user)


def test_an_answer_for_another_pages_challenge_is_refused(app, make_user, clock, session):
    user = make_user(Role.RECEPTION)
    client = logged_in(app, user)
    switch_on(client, clock)
    page = client.get("/staff/two-factor")
    answer = SoftKey().create(options_on(page.text, "create"))
    client.get("/staff/confirm")  # that page asks for nothing: no key yet
    token = csrf_token(page.text)
    first = client.post(
        "/staff/two-factor/keys",
        data={"name": "Key", "credential": answer, "csrf_token": token},
    )
    assert first.status_code == 303
    second = client.post(
        "/staff/two-factor/keys",
        data={"name": "Key", "credential": answer, "csrf_token": token},
    )
    assert second.status_code == 422, "the challenge was used"
    assert "came too late or from another page" in html.unescape(second.text)


def test_removing_a_key_takes_only_ones_own(app, with_key, make_user, clock, session):
    user, _, key = with_key
    stored = session.scalars(select(SecurityKey)).one()
    other = logged_in(app, make_user(Role.ADMIN, email="boss@clinic.example"))
    token = csrf_token(other.get("/staff/").text)
    assert (
        other.post(
            f"/staff/two-factor/keys/{stored.id}/remove", data={"csrf_token": token}
        ).status_code
        == 404
    )
    client = app.test_client()
    log_in(client, user.email)
    assert key_login(client, key).status_code == 303
    page = client.get("/staff/two-factor")
    assert "Blue key" in page.text
    assert client.post(f"/staff/two-factor/keys/{stored.id}/remove").status_code == 400
    gone = client.post(
        f"/staff/two-factor/keys/{stored.id}/remove", data={"csrf_token": csrf_token(page.text)}
    )
    assert gone.status_code == 303
    assert "The key “Blue key” is removed." in client.get("/staff/two-factor").text
    session.rollback()
    assert session.scalars(select(SecurityKey)).all() == []
    assert notices(session, user)[-1] is AccountChange.SECURITY_KEY_REMOVED
    fresh = app.test_client()
    log_in(fresh, user.email)
    assert "data-webauthn" not in fresh.get("/staff/login/code").text


def test_switching_two_step_login_off_removes_the_keys(app, with_key, clock, session):
    user, secret, _ = with_key
    client = app.test_client()
    log_in(client, user.email)
    clock.now = clock.now.replace(second=30)
    assert enter_code(client, pyotp.TOTP(secret).at(clock.now)).status_code == 303
    page = client.get("/staff/two-factor")
    clock.now = clock.now.replace(minute=clock.now.minute + 1)
    off = client.post(
        "/staff/two-factor/off",
        data={"code": pyotp.TOTP(secret).at(clock.now), "csrf_token": csrf_token(page.text)},
    )
    assert off.status_code == 303
    session.rollback()
    assert session.scalars(select(SecurityKey)).all() == []


def test_an_admins_reset_and_the_command_line_remove_the_keys(app, with_key, make_user, session):
    user, _, _ = with_key
    result = app.test_cli_runner().invoke(args=["users", "reset-two-factor", user.email])
    assert result.exit_code == 0, result.output
    session.rollback()
    assert session.scalars(select(SecurityKey)).all() == []


def test_confirming_a_change_with_the_key(app, with_key, session, later_clock):
    user, _, key = with_key
    client = app.test_client()
    log_in(client, user.email)
    assert key_login(client, key).status_code == 303
    later_clock[0] += 20 * 60
    page = client.get("/staff/two-factor")
    assert "Confirm it is you to add a key" in page.text
    assert 'data-webauthn="create"' not in page.text
    confirm = client.get("/staff/confirm?next=/staff/two-factor")
    answer = key.get(options_on(confirm.text, "get"))
    wrong = client.post(
        "/staff/confirm?next=/staff/two-factor",
        data={"password": "wrong", "credential": answer, "csrf_token": csrf_token(confirm.text)},
    )
    assert wrong.status_code == 401, "the key does not stand in for the password"
    confirm = client.get("/staff/confirm?next=/staff/two-factor")
    answer = key.get(options_on(confirm.text, "get"))
    done = client.post(
        "/staff/confirm?next=/staff/two-factor",
        data={"password": PASSWORD, "credential": answer, "csrf_token": csrf_token(confirm.text)},
    )
    assert done.status_code == 303
    assert done.headers["Location"] == "/staff/two-factor"
    assert 'data-webauthn="create"' in client.get("/staff/two-factor").text


@pytest.mark.parametrize(
    ("base_url", "rp_id"),
    [
        ("https://clinic.example", "clinic.example"),
        ("https://book.clinic.example:8443/", "book.clinic.example"),
        ("http://localhost:5000", "localhost"),
        ("http://127.0.0.1:5000", None),
        ("https://[::1]", None),
        ("http://clinic.example", None),
        ("ftp://clinic.example", None),
    ],
)
def test_keys_work_at_a_named_https_address_or_localhost(base_url, rp_id):
    site = site_of(base_url)
    assert (site.rp_id if site else None) == rp_id
    if site:
        assert site.origin == base_url.rstrip("/")


def test_the_page_says_why_keys_cannot_work_at_an_address(app, make_user, clock, monkeypatch):
    client = logged_in(app, make_user(Role.RECEPTION))
    switch_on(client, clock)
    monkeypatch.setitem(app.config, "BASE_URL", "http://127.0.0.1:5000")
    page = client.get("/staff/two-factor")
    assert "this one's address is http://127.0.0.1:5000" in html.unescape(page.text)
    assert "data-webauthn" not in page.text
