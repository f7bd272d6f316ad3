"""The admin's page of staff accounts: add, change role, switch off, set a new password."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from scheduler.staff.models import Role, User
from tests.conftest import PASSWORD, log_in, token_of


@pytest.fixture
def admin(app, make_user):
    make_user(Role.ADMIN)
    client = app.test_client()
    log_in(client, "admin@clinic.example")
    return client


def post(client, path, **data):
    return client.post(path, data={"csrf_token": token_of(client, "/staff/users/new"), **data})


def account(session, email):
    session.rollback()
    return session.scalars(select(User).where(User.email == email)).one()


def test_the_admin_adds_a_practitioner_account_that_can_log_in(app, admin, session, setup):
    answer = post(
        admin,
        "/staff/users/new",
        email="Mei@Clinic.Example",
        role="practitioner",
        practitioner=str(setup.mei.id),
        active="y",
        password="a good long password",
    )
    assert answer.status_code == 303
    assert "mei@clinic.example" in admin.get("/staff/users/").text

    mei = app.test_client()
    assert log_in(mei, "mei@clinic.example", "a good long password").status_code == 303
    assert account(session, "mei@clinic.example").practitioner_id == setup.mei.id


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"email": "nobody", "role": "reception"}, "is not an email address"),
        ({"email": "admin@clinic.example", "role": "reception"}, "already exists"),
        ({"email": "p@clinic.example", "role": "practitioner"}, "needs the practitioner"),
        ({"email": "r@clinic.example", "role": "reception", "password": "short"}, "12 characters"),
        ({"email": "r@clinic.example", "role": "owner"}, "Not a valid choice"),
    ],
)
def test_a_bad_account_is_refused_beside_the_field_and_nothing_is_written(
    admin, session, fields, message
):
    data = {"password": "a good long password", "active": "y", **fields}
    answer = post(admin, "/staff/users/new", **data)
    assert answer.status_code == 422
    assert message in answer.text
    session.rollback()
    assert session.scalars(select(User)).all() == [account(session, "admin@clinic.example")]


def test_switching_an_account_off_ends_its_session_at_once(app, admin, make_user, session):
    user = make_user(Role.RECEPTION)
    desk = app.test_client()
    log_in(desk, user.email)
    assert desk.get("/staff/bookings/").status_code == 200

    answer = post(admin, f"/staff/users/{user.id}", role="reception", practitioner="")
    assert answer.status_code == 303

    assert desk.get("/staff/bookings/").status_code == 302
    assert log_in(app.test_client(), user.email).status_code == 401


def test_a_role_change_takes_effect_at_once(app, admin, make_user):
    user = make_user(Role.RECEPTION)
    desk = app.test_client()
    log_in(desk, user.email)
    post(admin, f"/staff/users/{user.id}", role="admin", practitioner="", active="y")
    log_in(desk, user.email)
    assert desk.get("/staff/users/").status_code == 200


def test_the_last_admin_cannot_be_switched_off_nor_anyone_lock_themselves_out(
    admin, make_user, session
):
    me = account(session, "admin@clinic.example")
    answer = post(admin, f"/staff/users/{me.id}", role="reception", practitioner="", active="y")
    assert answer.status_code == 422
    assert "your own admin rights" in answer.text
    assert account(session, "admin@clinic.example").role is Role.ADMIN


def test_a_new_password_unlocks_the_account(app, admin, make_user, session, clock):
    user = make_user(Role.RECEPTION)
    for _ in range(6):
        log_in(app.test_client(), user.email, "wrong password!")
    assert account(session, user.email).locked_until is not None

    answer = post(admin, f"/staff/users/{user.id}/password", password="brand new password")
    assert answer.status_code == 303
    assert log_in(app.test_client(), user.email, "brand new password").status_code == 303
    assert log_in(app.test_client(), user.email, PASSWORD).status_code == 401

    short = post(admin, f"/staff/users/{user.id}/password", password="short")
    assert short.status_code == 422
    assert "at least 12 characters" in short.text
    # The account's own form beside it still shows the account as it is.
    assert '<option selected value="reception">' in short.text
    assert re.search(r'<input checked id="active"', short.text)


def test_only_the_admin_manages_accounts(app, make_user):
    for role in (Role.RECEPTION, Role.PRACTITIONER):
        user = make_user(role)
        client = app.test_client()
        log_in(client, user.email)
        assert client.get("/staff/users/").status_code == 403
