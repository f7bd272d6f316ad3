"""Staff see where they are logged in and end a session (OWASP ASVS 3.3.4); logging out ends
this session only, and a copy of its cookie with it."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from scheduler.staff.models import Role, StaffSession, User
from tests.conftest import PASSWORD, csrf_token, log_in, token_of


def device(app: Flask, user: User, agent: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = agent
    assert log_in(client, user.email).status_code == 303
    return client


def end_buttons(page: str) -> list[str]:
    return re.findall(r'action="(/staff/sessions/\d+/end)"', page)


def test_a_staff_member_sees_their_sessions_and_ends_another(app, make_user):
    user = make_user(Role.RECEPTION)
    desk = device(app, user, "Desk Firefox")
    phone = device(app, user, "Phone Safari")

    page = desk.get("/staff/sessions")
    assert page.status_code == 200
    assert "Desk Firefox" in page.text
    assert "Phone Safari" in page.text
    assert "This session" in page.text
    [other] = end_buttons(page.text)
    answer = desk.post(other, data={"csrf_token": csrf_token(page.text)})

    assert answer.status_code == 303
    assert phone.get("/staff/").status_code == 302, "the phone is logged out"
    assert desk.get("/staff/").status_code == 200
    assert "Phone Safari" not in desk.get("/staff/sessions").text


def test_ones_own_session_is_ended_by_logging_out_not_from_the_list(app, make_user, session):
    user = make_user(Role.RECEPTION)
    desk = device(app, user, "Desk Firefox")
    mine = session.scalars(select(StaffSession)).one()
    answer = desk.post(f"/staff/sessions/{mine.id}/end", data={"csrf_token": token_of(desk)})
    assert answer.status_code == 303
    assert desk.get("/staff/").status_code == 200


def test_nobody_ends_another_accounts_session(app, make_user, session):
    user = make_user(Role.RECEPTION)
    device(app, user, "Desk Firefox")
    theirs = session.scalars(select(StaffSession)).one()
    admin = device(app, make_user(Role.ADMIN), "Admin Chrome")

    answer = admin.post(f"/staff/sessions/{theirs.id}/end", data={"csrf_token": token_of(admin)})

    assert answer.status_code == 404
    session.rollback()
    assert session.get(StaffSession, theirs.id).ended_at is None


def test_logging_out_ends_this_session_and_its_copies_only(app, make_user):
    user = make_user(Role.PRACTITIONER)
    desk = device(app, user, "Desk Firefox")
    phone = device(app, user, "Phone Safari")
    cookie = desk.get_cookie(app.config["SESSION_COOKIE_NAME"])
    copy = app.test_client()
    copy.set_cookie(cookie.key, cookie.value)
    assert copy.get("/staff/").status_code == 200

    desk.post("/staff/logout", data={"csrf_token": token_of(desk, "/staff/")})

    assert desk.get("/staff/").status_code == 302
    assert copy.get("/staff/").status_code == 302, "a copied cookie ends with it"
    assert phone.get("/staff/").status_code == 200, "other devices stay logged in"


def test_logging_out_every_other_session_at_once(app, make_user):
    user = make_user(Role.RECEPTION)
    phones = [device(app, user, f"Phone {n}") for n in range(3)]
    desk = device(app, user, "Desk Firefox")

    answer = desk.post("/staff/sessions/others/end", data={"csrf_token": token_of(desk)})

    assert answer.status_code == 303
    assert [phone.get("/staff/").status_code for phone in phones] == [302, 302, 302]
    page = desk.get("/staff/sessions").text
    assert end_buttons(page) == []
    assert "Desk Firefox" in page


def test_a_new_password_ends_the_other_sessions_and_keeps_this_one(app, make_user):
    user = make_user(Role.RECEPTION)
    phone = device(app, user, "Phone Safari")
    desk = device(app, user, "Desk Firefox")

    desk.post(
        "/staff/password",
        data={
            "current": PASSWORD,
            "new": "quiet otters borrow lanterns",
            "confirm": "quiet otters borrow lanterns",
            "csrf_token": token_of(desk, "/staff/password"),
        },
    )

    assert phone.get("/staff/").status_code == 302
    page = desk.get("/staff/sessions").text
    assert "Phone Safari" not in page
    assert "Desk Firefox" in page
