"""Two-step login for staff (a TOTP code or a recovery code after the password), the roles
that must use it, first passwords chosen by an admin, and API tokens that expire."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler import create_app
from scheduler.config import from_environment
from scheduler.extensions import db
from scheduler.staff.models import ApiToken, RecoveryCode, Role, User
from scheduler.staff.totp import seal, unseal
from tests.conftest import PASSWORD, Clock, csrf_token, log_in, london, token_of

KEY = "test-secret"


def enrol_page(client: FlaskClient) -> tuple[str, str]:
    """Open the set-up page; return the key it shows (spaces removed) and its CSRF token."""
    page = client.get("/staff/two-factor")
    assert page.status_code == 200
    match = re.search(r'<code class="secret">([A-Z2-7 ]+)</code>', page.text)
    assert match, "the page shows the key to type into an app"
    return match.group(1).replace(" ", ""), csrf_token(page.text)


def switch_on(client: FlaskClient, clock: Clock) -> tuple[str, list[str]]:
    """Set up two-step login as a person with an app would; return the secret and the
    recovery codes shown."""
    secret, token = enrol_page(client)
    answer = client.post(
        "/staff/two-factor", data={"code": pyotp.TOTP(secret).at(clock.now), "csrf_token": token}
    )
    assert answer.status_code == 201, answer.text
    codes = re.findall(r"<li><code>([a-z2-7-]+)</code></li>", answer.text)
    return secret, codes


def logged_in(app: Flask, user: User) -> FlaskClient:
    client = app.test_client()
    assert log_in(client, user.email).status_code == 303
    return client


def enter_code(client: FlaskClient, code: str) -> Any:
    page = client.get("/staff/login/code")
    return client.post(
        "/staff/login/code", data={"code": code, "csrf_token": csrf_token(page.text)}
    )


@pytest.fixture
def enrolled(
    app: Flask, make_user: Any, clock: Clock, session: Session
) -> tuple[User, str, list[str]]:
    """A receptionist with two-step login on: the account, its secret, its recovery codes."""
    user = make_user(Role.RECEPTION)
    secret, codes = switch_on(logged_in(app, user), clock)
    session.rollback()  # reading the user began a transaction: later ones see the app's writes
    return user, secret, codes


def test_switching_on_takes_a_code_from_the_app_and_gives_ten_recovery_codes(
    app, make_user, session: Session, clock
):
    user = make_user(Role.RECEPTION)
    client = logged_in(app, user)
    secret, token = enrol_page(client)
    qr = client.get("/staff/two-factor/qr.svg")
    assert qr.status_code == 200
    assert qr.mimetype == "image/svg+xml"
    assert qr.data.startswith(b'<svg xmlns="http://www.w3.org/2000/svg"'), "a document alone"

    wrong = client.post("/staff/two-factor", data={"code": "000000", "csrf_token": token})
    assert wrong.status_code == 422
    assert "That code does not match" in wrong.text
    session.rollback()
    assert session.get(User, user.id).totp_secret is None

    again, token = enrol_page(client)
    assert again == secret, "the same key until it is confirmed"
    answer = client.post(
        "/staff/two-factor", data={"code": pyotp.TOTP(secret).now(), "csrf_token": token}
    )
    # pyotp's now() is the real clock, the app's is the test's: only the app's counts.
    assert answer.status_code == 422
    _, codes = switch_on(client, clock)

    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}", code) for code in codes)
    assert client.get("/staff/").status_code == 200, "this session goes on"
    session.rollback()
    stored = session.get(User, user.id)
    assert stored.has_second_factor
    assert secret not in stored.totp_secret, "the secret is kept encrypted"
    assert unseal(stored.totp_secret, [KEY]) == secret
    hashes = session.scalars(select(RecoveryCode.code_hash)).all()
    assert len(hashes) == 10
    assert not any(code.replace("-", "") in h for code in codes for h in hashes)


def test_a_login_with_two_step_on_needs_the_code_after_the_password(app, enrolled, clock):
    user, secret, _ = enrolled
    client = app.test_client()
    answer = log_in(client, user.email)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/login/code"
    assert client.get("/staff/").status_code == 302, "the password alone logs nobody in"

    assert enter_code(client, "123456").status_code == 401
    clock.now += timedelta(seconds=30)
    done = enter_code(client, pyotp.TOTP(secret).at(clock.now))
    assert done.status_code == 303
    assert done.headers["Location"] == "/staff/"
    assert client.get("/staff/").status_code == 200


def test_the_code_page_keeps_where_the_login_was_going(app, enrolled, clock):
    user, secret, _ = enrolled
    client = app.test_client()
    log_in(client, user.email, next_url="/staff/week")
    clock.now += timedelta(seconds=30)
    assert enter_code(client, pyotp.TOTP(secret).at(clock.now)).headers["Location"] == "/staff/week"


def test_a_code_works_once(app, enrolled, clock):
    user, secret, _ = enrolled
    clock.now += timedelta(seconds=30)
    code = pyotp.TOTP(secret).at(clock.now)
    first = app.test_client()
    log_in(first, user.email)
    assert enter_code(first, code).status_code == 303
    second = app.test_client()
    log_in(second, user.email)
    assert enter_code(second, code).status_code == 401, "an overheard code is worth nothing"


def test_a_code_from_the_step_before_is_taken_for_a_phone_a_little_behind(app, enrolled, clock):
    user, secret, _ = enrolled
    clock.now += timedelta(minutes=5)
    client = app.test_client()
    log_in(client, user.email)
    assert (
        enter_code(client, pyotp.TOTP(secret).at(clock.now - timedelta(seconds=30))).status_code
        == 303
    )
    other = app.test_client()
    log_in(other, user.email)
    clock.now += timedelta(minutes=5)
    assert (
        enter_code(other, pyotp.TOTP(secret).at(clock.now - timedelta(minutes=2))).status_code
        == 401
    )


def test_wrong_codes_lock_the_account_and_a_good_password_does_not_unlock_it(
    app, enrolled, clock, session
):
    user, secret, _ = enrolled
    client = app.test_client()
    for _ in range(5):
        log_in(client, user.email)  # the password again each time, as a guesser would
        assert enter_code(client, "999999").status_code == 401
    session.rollback()
    locked = session.get(User, user.id)
    assert locked.failed_logins == 5
    assert locked.locked_until == clock.now + timedelta(seconds=30)
    assert log_in(client, user.email).status_code == 401, "locked, even with the password"
    assert client.get("/staff/login/code").status_code == 303, "and no code is asked for"
    clock.now += timedelta(seconds=31)
    log_in(client, user.email)
    assert enter_code(client, pyotp.TOTP(secret).at(clock.now)).status_code == 303
    session.rollback()
    assert session.get(User, user.id).failed_logins == 0


def test_the_code_page_waits_five_minutes_for_the_code(app, enrolled, later_clock):
    user, _secret, _ = enrolled
    client = app.test_client()
    log_in(client, user.email)
    later_clock[0] += 301
    page = client.get("/staff/login/code")
    assert page.status_code == 303
    assert page.headers["Location"] == "/staff/login"


def test_the_code_page_without_a_password_first_sends_to_the_login(app):
    answer = app.test_client().get("/staff/login/code")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/login"


def test_a_recovery_code_logs_in_once_and_says_how_many_are_left(app, enrolled, session):
    user, _, codes = enrolled
    client = app.test_client()
    log_in(client, user.email)
    done = enter_code(client, codes[3].upper().replace("-", " "))
    assert done.status_code == 303
    assert "9 are left" in client.get("/staff/").text
    other = app.test_client()
    log_in(other, user.email)
    assert enter_code(other, codes[3]).status_code == 401, "used already"
    session.rollback()
    assert session.scalars(select(RecoveryCode).where(RecoveryCode.used_at.is_not(None))).all()


def test_new_recovery_codes_replace_the_old_ones(app, enrolled, clock):
    user, secret, old = enrolled
    client = app.test_client()
    log_in(client, user.email)
    clock.now += timedelta(seconds=30)
    enter_code(client, pyotp.TOTP(secret).at(clock.now))
    token = token_of(client, "/staff/two-factor")
    refused = client.post(
        "/staff/two-factor/recovery-codes", data={"code": "111111", "csrf_token": token}
    )
    assert refused.status_code == 422
    clock.now += timedelta(seconds=30)
    answer = client.post(
        "/staff/two-factor/recovery-codes",
        data={"code": pyotp.TOTP(secret).at(clock.now), "csrf_token": token},
    )
    assert answer.status_code == 201
    new = re.findall(r"<li><code>([a-z2-7-]+)</code></li>", answer.text)
    assert len(new) == 10
    assert not set(new) & set(old)
    other = app.test_client()
    log_in(other, user.email)
    assert enter_code(other, old[0]).status_code == 401
    assert enter_code(other, new[0]).status_code == 303


def test_switching_off_takes_a_code_and_ends_other_sessions(app, enrolled, clock, session):
    user, secret, _ = enrolled
    phone, desk = app.test_client(), app.test_client()
    for client in (phone, desk):
        log_in(client, user.email)
        clock.now += timedelta(seconds=30)
        assert enter_code(client, pyotp.TOTP(secret).at(clock.now)).status_code == 303
    clock.now += timedelta(seconds=30)
    answer = desk.post(
        "/staff/two-factor/off",
        data={"code": pyotp.TOTP(secret).at(clock.now), "csrf_token": token_of(desk, "/staff/")},
    )
    assert answer.status_code == 303
    assert desk.get("/staff/").status_code == 200
    assert phone.get("/staff/").status_code == 302
    session.rollback()
    assert not session.get(User, user.id).has_second_factor
    assert session.scalars(select(RecoveryCode)).all() == []
    assert log_in(app.test_client(), user.email).headers["Location"] == "/staff/"


@pytest.fixture
def production(
    test_database_url: str, monkeypatch: pytest.MonkeyPatch, app: Flask, clock: Clock
) -> Iterator[Flask]:
    """An app with the settings a clinic gets by default (admins need two-step login)."""
    monkeypatch.setenv("SECRET_KEY", KEY)
    monkeypatch.delenv("STAFF_TWO_FACTOR_ROLES", raising=False)
    other = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": test_database_url,
            "CLOCK": clock,
            "BASE_URL": "https://clinic.test",
            "RATELIMIT_ENABLED": False,
        }
    )
    yield other
    with other.app_context():
        db.engine.dispose()


def test_an_admin_must_set_up_two_step_login_before_anything_else(production, make_user, clock):
    admin = make_user(Role.ADMIN)
    client = logged_in(production, admin)
    for path in ("/staff/", "/staff/users/", "/staff/setup/", "/staff/patients/", "/staff/tokens/"):
        answer = client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["Location"] == "/staff/two-factor", path
    assert "Your role needs two-step login" in client.get("/staff/two-factor").text
    assert client.get("/staff/password").status_code == 200
    switch_on(client, clock)
    assert client.get("/staff/users/").status_code == 200


def test_an_admin_cannot_switch_two_step_login_off(production, make_user, clock, session):
    admin = make_user(Role.ADMIN)
    client = logged_in(production, admin)
    secret, _ = switch_on(client, clock)
    page = client.get("/staff/two-factor")
    assert "Switch two-step login off" not in page.text
    clock.now += timedelta(seconds=30)
    answer = client.post(
        "/staff/two-factor/off",
        data={"code": pyotp.TOTP(secret).at(clock.now), "csrf_token": csrf_token(page.text)},
    )
    assert answer.status_code == 422
    session.rollback()
    assert session.get(User, admin.id).has_second_factor


def test_other_roles_choose_for_themselves_by_default(production, make_user):
    client = logged_in(production, make_user(Role.RECEPTION))
    assert client.get("/staff/").status_code == 200
    assert "Your role needs" not in client.get("/staff/two-factor").text


def test_the_roles_that_need_it_are_a_setting_checked_at_start(monkeypatch, tmp_path):
    monkeypatch.setenv("STAFF_TWO_FACTOR_ROLES", "admin, Reception")
    assert from_environment(str(tmp_path))["STAFF_TWO_FACTOR_ROLES"] == {"admin", "reception"}
    monkeypatch.setenv("STAFF_TWO_FACTOR_ROLES", "")
    assert from_environment(str(tmp_path))["STAFF_TWO_FACTOR_ROLES"] == frozenset()
    monkeypatch.setenv("STAFF_TWO_FACTOR_ROLES", "admin,doctor")
    with pytest.raises(ValueError, match="not doctor"):
        from_environment(str(tmp_path))


def test_an_admin_removes_the_two_step_login_of_someone_who_lost_their_phone(
    app, enrolled, make_user, session
):
    user, _, _ = enrolled
    admin = logged_in(app, make_user(Role.ADMIN))
    page = admin.get(f"/staff/users/{user.id}")
    assert "Remove two-step login" in page.text
    answer = admin.post(
        f"/staff/users/{user.id}/two-factor/reset", data={"csrf_token": csrf_token(page.text)}
    )
    assert answer.status_code == 303
    session.rollback()
    assert not session.get(User, user.id).has_second_factor
    assert log_in(app.test_client(), user.email).headers["Location"] == "/staff/"


def test_removing_two_step_login_needs_an_admin_and_the_csrf_token(
    app, enrolled, make_user, session
):
    user, _, _ = enrolled
    reception = logged_in(app, make_user(Role.RECEPTION, email="desk@clinic.example"))
    token = token_of(reception, "/staff/")
    assert (
        reception.post(
            f"/staff/users/{user.id}/two-factor/reset", data={"csrf_token": token}
        ).status_code
        == 403
    )
    admin = logged_in(app, make_user(Role.ADMIN))
    assert admin.post(f"/staff/users/{user.id}/two-factor/reset").status_code == 400
    session.rollback()
    assert session.get(User, user.id).has_second_factor


def test_the_command_line_removes_two_step_login_for_a_sole_admin(app, enrolled, session):
    user, _, _ = enrolled
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "reset-two-factor", user.email.upper()])
    assert result.exit_code == 0, result.output
    assert "Removed two-step login" in result.output
    session.rollback()
    assert not session.get(User, user.id).has_second_factor
    again = runner.invoke(args=["users", "reset-two-factor", user.email])
    assert again.exit_code != 0
    assert again.output.startswith("Error: ")
    assert "no two-step login" in again.output
    unknown = runner.invoke(args=["users", "reset-two-factor", "nobody@clinic.example"])
    assert unknown.exit_code != 0
    assert "Traceback" not in unknown.output


def test_secrets_sealed_under_an_earlier_key_open_while_the_key_is_rotated(
    app, enrolled, monkeypatch, clock
):
    user, secret, _ = enrolled
    monkeypatch.setitem(app.config, "SECRET_KEY", "a-new-key")
    client = app.test_client()
    log_in(client, user.email)
    clock.now += timedelta(seconds=30)
    assert enter_code(client, pyotp.TOTP(secret).at(clock.now)).status_code == 401
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", [KEY])
    log_in(client, user.email)
    clock.now += timedelta(seconds=30)
    assert enter_code(client, pyotp.TOTP(secret).at(clock.now)).status_code == 303
    assert unseal(seal("X", ["a-new-key"]), ["other", "a-new-key"]) == "X"
    assert unseal("not a sealed secret", [KEY]) is None


# --- first passwords chosen by an admin ---------------------------------------------------


def test_an_account_made_by_an_admin_chooses_its_own_password_first(app, make_user, session):
    admin = logged_in(app, make_user(Role.ADMIN))
    page = admin.get("/staff/users/new")
    answer = admin.post(
        "/staff/users/new",
        data={
            "email": "new@clinic.example",
            "role": "reception",
            "practitioner": "",
            "active": "y",
            "password": "chosen by the admin",
            "csrf_token": csrf_token(page.text),
        },
    )
    assert answer.status_code == 303
    newcomer = app.test_client()
    assert log_in(newcomer, "new@clinic.example", "chosen by the admin").status_code == 303
    for path in ("/staff/", "/staff/week", "/staff/two-factor", "/staff/tokens/"):
        answer = newcomer.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["Location"] == "/staff/password", path
    changed = newcomer.post(
        "/staff/password",
        data={
            "current": "chosen by the admin",
            "new": "my very own words",
            "confirm": "my very own words",
            "csrf_token": token_of(newcomer, "/staff/password"),
        },
    )
    assert changed.status_code == 303
    assert newcomer.get("/staff/").status_code == 200
    session.rollback()
    assert (
        not session.scalars(select(User).where(User.email == "new@clinic.example"))
        .one()
        .must_change_password
    )


def test_a_password_reset_by_an_admin_must_be_changed_too(app, make_user, session):
    user = make_user(Role.PRACTITIONER)
    admin = logged_in(app, make_user(Role.ADMIN))
    page = admin.get(f"/staff/users/{user.id}")
    admin.post(
        f"/staff/users/{user.id}/password",
        data={"password": "temporary words here", "csrf_token": csrf_token(page.text)},
    )
    client = app.test_client()
    log_in(client, user.email, "temporary words here")
    assert client.get("/staff/day").headers["Location"] == "/staff/password"


def test_an_account_made_on_the_command_line_keeps_its_password(app, setup):
    result = app.test_cli_runner().invoke(
        args=["users", "create", "owner@clinic.example", "--role", "admin", "--password", PASSWORD]
    )
    assert result.exit_code == 0, result.output
    client = app.test_client()
    log_in(client, "owner@clinic.example")
    assert client.get("/staff/").status_code == 200


# --- API tokens expire ---------------------------------------------------------------------


def create_token(client: FlaskClient, days: str) -> Any:
    return client.post(
        "/staff/tokens/",
        data={"name": "Website", "days": days, "csrf_token": token_of(client, "/staff/tokens/")},
    )


def test_an_api_token_works_until_it_expires(app, make_user, clock, session):
    client = logged_in(app, make_user(Role.RECEPTION))
    answer = create_token(client, "30")
    assert answer.status_code == 201
    secret = re.search(r'value="(sk_[^"]+)"', answer.text).group(1)
    session.rollback()
    token = session.scalars(select(ApiToken)).one()
    assert token.expires_at == clock.now + timedelta(days=30)
    headers = {"Authorization": f"Bearer {secret}"}
    clock.now += timedelta(days=29, hours=23)
    assert app.test_client().get("/api/v1/staff/bookings", headers=headers).status_code == 200
    clock.now += timedelta(hours=1)
    refused = app.test_client().get("/api/v1/staff/bookings", headers=headers)
    assert refused.status_code == 401
    assert "expired" in refused.get_json()["error"]
    session.rollback()
    listing = logged_in(app, make_user(Role.ADMIN)).get("/staff/tokens/")
    assert "Expired" in listing.text


def test_a_token_lasts_90_days_unless_told_and_no_other_length_is_taken(
    app, make_user, clock, session
):
    client = logged_in(app, make_user(Role.RECEPTION))
    page = client.get("/staff/tokens/")
    assert 'value="90" selected' in page.text or 'selected value="90"' in page.text
    assert create_token(client, "90").status_code == 201
    assert create_token(client, "3650").status_code == 422
    assert create_token(client, "forever").status_code == 422
    session.rollback()
    [token] = session.scalars(select(ApiToken)).all()
    assert token.expires_at == clock.now + timedelta(days=90)


# --- Confirming it is you before a high-value change ---------------------------------------


def confirm(client: FlaskClient, next_url: str, password: str, code: str = "") -> Any:
    page = client.get(f"/staff/confirm?next={next_url}")
    return client.post(
        f"/staff/confirm?next={next_url}",
        data={"password": password, "code": code, "csrf_token": csrf_token(page.text)},
    )


def test_account_changes_ask_for_the_password_again_after_a_while(
    app, make_user, session, later_clock
):
    user = make_user(Role.PRACTITIONER)
    admin = logged_in(app, make_user(Role.ADMIN))
    page = admin.get(f"/staff/users/{user.id}")
    assert page.status_code == 200, "just logged in: no need"
    token = csrf_token(page.text)

    later_clock[0] += 16 * 60
    assert admin.get(f"/staff/users/{user.id}").headers["Location"] == (
        f"/staff/confirm?next=/staff/users/{user.id}"
    )
    late = admin.post(
        f"/staff/users/{user.id}/password",
        data={"password": "temporary words here", "csrf_token": token},
        headers={"Referer": f"http://localhost/staff/users/{user.id}"},
    )
    assert late.status_code == 303
    assert late.headers["Location"] == f"/staff/confirm?next=/staff/users/{user.id}"
    session.rollback()
    assert session.get(User, user.id).check_password(PASSWORD), "a late POST changes nothing"

    assert confirm(admin, f"/staff/users/{user.id}", "not my password").status_code == 401
    done = confirm(admin, f"/staff/users/{user.id}", PASSWORD)
    assert done.status_code == 303
    assert done.headers["Location"] == f"/staff/users/{user.id}"
    assert admin.get(f"/staff/users/{user.id}").status_code == 200
    later_clock[0] += 14 * 60
    assert admin.get(f"/staff/users/{user.id}").status_code == 200, "15 minutes from then"


def test_confirming_with_two_step_login_needs_the_code_too(
    app, make_user, clock, later_clock, session
):
    user = make_user(Role.ADMIN)
    client = logged_in(app, user)
    secret, _ = switch_on(client, clock)
    later_clock[0] += 20 * 60
    assert client.get("/staff/users/").status_code == 200, "the list is not a change"
    assert client.get("/staff/users/new").status_code == 303
    assert confirm(client, "/staff/users/new", PASSWORD).status_code == 401
    clock.now += timedelta(seconds=30)
    done = confirm(client, "/staff/users/new", PASSWORD, pyotp.TOTP(secret).at(clock.now))
    assert done.status_code == 303
    assert client.get("/staff/users/new").status_code == 200


def test_exporting_and_erasing_a_patient_ask_for_the_password_after_a_while(
    app, make_user, book, setup, later_clock
):
    booking = book(london("2026-11-25", "10:00"))
    admin = logged_in(app, make_user(Role.ADMIN))
    page = admin.get(f"/staff/patients/{booking.patient_id}")
    token = csrf_token(page.text)
    later_clock[0] += 16 * 60
    for action in ("export", "erase"):
        answer = admin.post(
            f"/staff/patients/{booking.patient_id}/{action}",
            data={"csrf_token": token, "confirm": "ERASE"},
        )
        assert answer.status_code == 303, action
        assert answer.headers["Location"].startswith("/staff/confirm?next="), action
