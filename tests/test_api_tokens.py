"""Personal API tokens: created and revoked in the staff area, shown once, stored hashed, and
the only way into the staff API."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from scheduler.staff.models import ApiToken, Role, User
from tests.conftest import log_in, token_of

TOKEN = re.compile(r"sk_[A-Za-z0-9_-]{43}")
PAGE = "/staff/tokens/"
ANY_TOKEN = "sk_" + "A" * 43  # the right shape, but no such token

# Every staff endpoint, with a harmless request (ids that exist in no test).
ENDPOINTS = [
    ("GET", "/api/v1/staff/bookings"),
    ("POST", "/api/v1/staff/bookings"),
    ("GET", "/api/v1/staff/bookings/1"),
    ("POST", "/api/v1/staff/bookings/1/status"),
    ("GET", "/api/v1/staff/patients"),
    ("GET", "/api/v1/staff/patients/1"),
    ("GET", "/api/v1/staff/schedule?start=2026-11-23&end=2026-11-29"),
    ("GET", "/api/v1/staff/busy?start=2026-11-23&end=2026-11-29"),
]


@pytest.fixture
def staff(app, session, make_user):
    """Log in a new account of ``role`` in a client of its own: ``staff(role) -> client``."""

    def make(role: Role, email: str | None = None):
        session.rollback()  # a fresh snapshot, after the requests' writes
        user = make_user(role, email=email)
        client = app.test_client()
        assert log_in(client, user.email).status_code == 303
        return client

    return make


def create_token(client, name: str = "Website booking widget"):
    """Create a token on the page, with the page's CSRF token; return the answer and token."""
    answer = client.post(PAGE, data={"name": name, "csrf_token": token_of(client, PAGE)})
    found = TOKEN.search(answer.text)
    return answer, found.group(0) if found else None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tokens(session) -> list[ApiToken]:
    session.rollback()
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def test_a_token_is_shown_once_and_only_its_hash_is_stored(app, session, staff):
    client = staff(Role.RECEPTION)

    answer, token = create_token(client)

    assert answer.status_code == 201
    assert token is not None
    assert "shown only this once" in answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    [row] = tokens(session)
    assert row.name == "Website booking widget"
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith(row.hint)
    stored = session.execute(text("SELECT * FROM api_tokens")).one()
    assert not any(token in str(value) for value in stored), "the database never holds it"
    again = client.get(PAGE)
    assert "Website booking widget" in again.text
    assert token not in again.text, "the list shows only its first characters"
    assert row.hint in again.text


def test_the_token_works_on_every_staff_endpoint(app, session, staff, setup):
    _, token = create_token(staff(Role.ADMIN))
    api = app.test_client()  # no cookie at all: the token alone

    for method, path in ENDPOINTS:
        answer = api.open(path, method=method, headers=bearer(token), json={})
        assert answer.status_code not in (401, 403, 500), (method, path, answer.text)
        assert answer.is_json, (method, path)
    assert tokens(session)[0].last_used_at is not None


def test_the_page_refuses_a_token_without_a_name(session, staff):
    client = staff(Role.PRACTITIONER)

    answer, token = create_token(client, name="   ")

    assert answer.status_code == 422
    assert token is None
    assert "Please name the token" in answer.text
    assert tokens(session) == []


def test_creating_a_token_needs_the_csrf_token(session, staff):
    client = staff(Role.ADMIN)

    answer = client.post(PAGE, data={"name": "Billing"})

    assert answer.status_code == 400
    assert tokens(session) == []


def test_a_revoked_token_is_refused(app, session, staff, setup):
    client = staff(Role.RECEPTION)
    _, token = create_token(client)
    api = app.test_client()
    assert api.get("/api/v1/staff/bookings", headers=bearer(token)).status_code == 200
    [row] = tokens(session)

    revoked = client.post(
        f"/staff/tokens/{row.id}/revoke", data={"csrf_token": token_of(client, PAGE)}
    )

    assert revoked.status_code == 303
    answer = api.get("/api/v1/staff/bookings", headers=bearer(token))
    assert answer.status_code == 401
    assert answer.json["fields"] == {}
    assert "revoked" in answer.json["error"]
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    assert tokens(session)[0].revoked_at is not None
    assert "Revoked" in client.get(PAGE).text


def test_a_switched_off_accounts_tokens_are_refused(app, session, staff, setup):
    _, token = create_token(staff(Role.RECEPTION))
    api = app.test_client()
    session.rollback()  # a fresh read, after the requests' writes
    user = session.scalars(select(User).where(User.role == Role.RECEPTION)).one()
    user.active = False
    session.commit()

    assert api.get("/api/v1/staff/bookings", headers=bearer(token)).status_code == 401


def test_a_token_acts_with_its_users_role_as_it_is_now(app, session, staff, setup):
    _, token = create_token(staff(Role.RECEPTION))
    api = app.test_client()
    assert api.post("/api/v1/staff/bookings", headers=bearer(token), json={}).status_code == 422
    session.rollback()  # a fresh read, after the requests' writes
    user = session.scalars(select(User).where(User.role == Role.RECEPTION)).one()
    user.role, user.practitioner_id = Role.PRACTITIONER, setup.mei.id
    session.commit()

    answer = api.post("/api/v1/staff/bookings", headers=bearer(token), json={})

    assert answer.status_code == 403


def test_the_session_cookie_alone_gets_401(staff, setup):
    client = staff(Role.ADMIN)
    assert client.get("/staff/").status_code == 200, "logged in"

    for method, path in ENDPOINTS:
        answer = client.open(path, method=method, json={})
        assert answer.status_code == 401, (method, path)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert set(answer.json) == {"error", "fields"}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic YWRtaW46cGFzc3dvcmQ=",
        "Token " + ANY_TOKEN,
        "Bearer sk_short",
        "Bearer " + ANY_TOKEN,
        "Bearer " + ANY_TOKEN + "x",
        "Bearer sk_" + "é" * 43,
    ],
)
def test_a_missing_or_unknown_token_gets_401(client, setup, header):
    headers = {} if header is None else {"Authorization": header}

    answer = client.get("/api/v1/staff/bookings", headers=headers)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="staff API"')
    assert answer.json["error"]


def test_a_token_is_used_in_the_authorization_header_only(app, staff, setup):
    _, token = create_token(staff(Role.ADMIN))
    api = app.test_client()

    assert api.get(f"/api/v1/staff/bookings?access_token={token}").status_code == 401
    assert (
        api.get("/api/v1/staff/bookings", headers={"Authorization": f"bearer {token}"}).status_code
        == 200
    )


def test_staff_see_and_revoke_only_their_own_tokens(app, session, staff, setup):
    mei = staff(Role.PRACTITIONER)
    _, meis_token = create_token(mei, "Mei notes app")
    reception = staff(Role.RECEPTION)
    create_token(reception, "Front desk tablet")
    meis_row = next(t for t in tokens(session) if t.name == "Mei notes app")

    page = reception.get(PAGE).text
    refused = reception.post(
        f"/staff/tokens/{meis_row.id}/revoke", data={"csrf_token": token_of(reception, PAGE)}
    )

    assert "Front desk tablet" in page
    assert "Mei notes app" not in page
    assert refused.status_code == 404
    assert (
        app.test_client().get("/api/v1/staff/bookings", headers=bearer(meis_token)).status_code
        == 200
    )


def test_an_admin_sees_and_revokes_everyones_tokens(app, session, staff, setup):
    _, meis_token = create_token(staff(Role.PRACTITIONER), "Mei notes app")
    admin = staff(Role.ADMIN)
    meis_row = tokens(session)[0]

    page = admin.get(PAGE).text
    revoked = admin.post(
        f"/staff/tokens/{meis_row.id}/revoke", data={"csrf_token": token_of(admin, PAGE)}
    )

    assert "Mei notes app" in page
    assert "practitioner@clinic.example" in page
    assert revoked.status_code == 303
    assert (
        app.test_client().get("/api/v1/staff/bookings", headers=bearer(meis_token)).status_code
        == 401
    )


def test_last_used_is_recorded_at_most_once_a_minute(app, session, staff, setup, clock):
    _, token = create_token(staff(Role.RECEPTION))
    api = app.test_client()
    assert tokens(session)[0].last_used_at is None

    api.get("/api/v1/staff/bookings", headers=bearer(token))
    first = tokens(session)[0].last_used_at
    clock.now += timedelta(seconds=30)
    api.get("/api/v1/staff/bookings", headers=bearer(token))
    unchanged = tokens(session)[0].last_used_at
    clock.now += timedelta(minutes=1)
    api.post("/api/v1/staff/bookings", headers=bearer(token), json={})
    later = tokens(session)[0].last_used_at

    assert first == unchanged == clock.now - timedelta(minutes=1, seconds=30)
    assert later == clock.now, "also a failed write counts as use"
    assert "Never" not in staff(Role.ADMIN, "boss@clinic.example").get(PAGE).text


def test_the_staff_nav_links_to_the_tokens_page(staff):
    assert 'href="/staff/tokens/"' in staff(Role.PRACTITIONER).get("/staff/").text
