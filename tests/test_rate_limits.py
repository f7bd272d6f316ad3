"""Rate limits: every call that books, changes a booking, joins the waitlist, logs in or sends
mail answers 429 with ``Retry-After`` past its limit, before writing anything; limits count per
client address and per target, are shared through Redis, and can be switched off.

The suite's ``app`` runs without limits; these tests build apps of their own with limits on,
on the same database. Their forms are posted without CSRF tokens (test_pages checks those; the
CSRF check runs before the limits).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from scheduler import config, create_app
from scheduler.api.openapi import documented_routes
from scheduler.booking.models import Booking
from scheduler.extensions import db
from scheduler.notifications.models import Notification
from scheduler.patients.models import Patient
from scheduler.staff.models import Role
from scheduler.staff.tokens import issue_token
from scheduler.waitlist.models import WaitlistEntry
from tests.conftest import NOW, PASSWORD, Setup, london
from tests.test_openapi import check_against_document

TUESDAY = "2026-11-24"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# A port nothing listens on: connecting is refused at once.
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"


def every_limit(rate: str) -> dict[str, str]:
    """Every rate limit setting at ``rate``."""
    return dict.fromkeys(config.RATE_LIMITS, rate)


@pytest.fixture
def limited(app: Flask, clock: Any) -> Iterator[Callable[..., Flask]]:
    """``limited(**settings) -> Flask``: an app with rate limits on (in memory unless told),
    on the suite's database; each has counts of its own."""
    made: list[Flask] = []

    def make(**settings: Any) -> Flask:
        made.append(
            create_app(
                {
                    "TESTING": True,
                    "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                    "SECRET_KEY": "test-secret",
                    "BASE_URL": app.config["BASE_URL"],
                    "CLOCK": clock,
                    "MAIL_FOLDER": app.config["MAIL_FOLDER"],
                    "WTF_CSRF_ENABLED": False,
                    "RATELIMIT_ENABLED": True,
                    "RATELIMIT_STORAGE_URI": "memory://",
                    "PROXY_FIX_X_FOR": 0,
                    **settings,
                }
            )
        )
        return made[-1]

    yield make
    for each in made:
        with each.app_context():
            db.engine.dispose()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the local Redis, whose keys are deleted afterwards.

    In CI Redis is there and the test fails without it; on a laptop without Redis it is
    skipped, as the suite must pass there on SQLite alone.
    """
    server = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        server.ping()
    except redis.RedisError as exc:
        server.close()
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"needs Redis at {REDIS_URL} (TEST_REDIS_URL): {exc}")
    prefix = f"test-{uuid.uuid4().hex}"
    yield prefix
    keys = list(server.scan_iter(match=f"*{prefix}*"))
    if keys:
        server.delete(*keys)
    server.close()


def count(session: Session, model: type) -> int:
    """How many rows of ``model`` the database holds, read afresh."""
    session.rollback()
    return session.scalar(select(func.count()).select_from(model)) or 0


def written(session: Session) -> dict[str, int]:
    """The rows a booking, a waitlist place or a mail would add."""
    return {
        model.__name__: count(session, model)
        for model in (Booking, Patient, WaitlistEntry, Notification)
    }


def booking_body(setup: Setup, hhmm: str, email: str, **changes: Any) -> dict[str, Any]:
    """A follow-up with Mei on Tuesday at ``hhmm`` for ``email``."""
    return {
        "service": setup.follow_up.id,
        "practitioner": setup.mei.id,
        "start": london(TUESDAY, hhmm).isoformat(),
        "patient": {"name": "Ann Lee", "email": email},
        **changes,
    }


def from_address(address: str) -> dict[str, Any]:
    """Request options that make the call come from ``address``."""
    return {"environ_base": {"REMOTE_ADDR": address}}


def retry_after(response: TestResponse) -> int:
    """The ``Retry-After`` seconds of a 429."""
    assert response.status_code == 429, response.text
    value = response.headers["Retry-After"]
    assert value.isdigit(), value
    return int(value)


def assert_json_429(response: TestResponse) -> None:
    """The API's 429: the usual error shape, saying when to try again."""
    assert 1 <= retry_after(response) <= 3600
    assert response.get_json() == {"error": response.get_json()["error"], "fields": {}}
    assert "try again in" in response.get_json()["error"]


def assert_page_429(response: TestResponse) -> None:
    """A page's 429: the error page, saying when to try again."""
    assert 1 <= retry_after(response) <= 3600
    assert response.mimetype == "text/html"
    assert "Please try again in" in response.text
    assert '<h1 id="oops-heading">Please wait a little</h1>' in response.text


# --- Every limited call ---------------------------------------------------------------------

# (method, URL, what to send): a call each limit counts, whatever its answer (404 for the made
# up tokens, 422 for empty bodies, 401 for a wrong password).
CALLS: dict[str, Callable[[Setup], tuple[str, str, dict[str, Any]]]] = {
    "API: book": lambda s: ("POST", "/api/v1/bookings", {"json": {}}),
    "API: cancel": lambda s: ("POST", "/api/v1/bookings/made-up/cancel", {"json": {}}),
    "API: reschedule": lambda s: (
        "POST",
        "/api/v1/bookings/made-up/reschedule",
        {"json": {"start": london(TUESDAY, "11:00").isoformat()}},
    ),
    "API: join the waitlist": lambda s: ("POST", "/api/v1/waitlist", {"json": {}}),
    "API: leave the waitlist": lambda s: ("POST", "/api/v1/waitlist/made-up/leave", {}),
    "API: search free times": lambda s: (
        "GET",
        f"/api/v1/slots?service={s.follow_up.id}&start={TUESDAY}&end={TUESDAY}",
        {},
    ),
    "staff API: book": lambda s: (
        "POST",
        "/api/v1/staff/bookings",
        {"json": {}, "headers": {"Authorization": "Bearer not-a-token"}},
    ),
    "staff API: mark a visit": lambda s: (
        "POST",
        "/api/v1/staff/bookings/1/status",
        {"json": {"status": "arrived"}, "headers": {"Authorization": "Bearer not-a-token"}},
    ),
    "page: book": lambda s: (
        "POST",
        f"/book/confirm?service={s.follow_up.id}&practitioner={s.mei.id}"
        f"&start={london(TUESDAY, '10:00').isoformat()}",
        {"data": {"full_name": "Ann Lee"}},
    ),
    "page: reschedule": lambda s: ("POST", "/b/made-up/reschedule", {"data": {}}),
    "page: cancel": lambda s: ("POST", "/b/made-up/cancel", {"data": {}}),
    "page: health answers": lambda s: ("POST", "/b/made-up/intake", {"data": {}}),
    "page: join the waitlist": lambda s: (
        "POST",
        f"/waitlist?service={s.follow_up.id}",
        {"data": {"full_name": "Ann Lee"}},
    ),
    "page: leave the waitlist": lambda s: ("POST", "/waitlist/made-up/leave", {"data": {}}),
    "page: book an offered time": lambda s: ("POST", "/w/made-up", {"data": {}}),
    "page: staff login": lambda s: (
        "POST",
        "/staff/login",
        {"data": {"email": "nobody@clinic.example", "password": "wrong"}},
    ),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_each_limited_call_answers_429_after_its_limit(limited, setup, call):
    client = limited(**every_limit("2 per hour")).test_client()
    method, url, options = call(setup)

    answers = [client.open(url, method=method, **options) for _ in range(3)]

    assert [a.status_code == 429 for a in answers] == [False, False, True]
    assert all(a.status_code < 500 for a in answers), [a.status_code for a in answers]
    if url.startswith("/api/"):
        assert_json_429(answers[-1])
        spec = client.get("/api/v1/openapi.json").get_json()
        check_against_document(spec, method.lower(), url, answers[-1])
    else:
        assert_page_429(answers[-1])


def test_a_resend_of_a_message_is_limited_per_message(limited, setup, book, session, make_user):
    client = limited(RATELIMIT_RESEND_PER_MESSAGE="2 per hour").test_client()
    first, second = (
        book(london(TUESDAY, hhmm), practitioner=setup.mei) for hhmm in ("10:00", "14:00")
    )
    notes = {
        booking.id: session.scalars(
            select(Notification.id).where(Notification.booking_id == booking.id)
        ).first()
        for booking in (first, second)
    }
    user = make_user(Role.RECEPTION)
    # Not logged in: turned away by the login check, and not counted.
    for _ in range(3):
        assert client.post(f"/staff/notifications/{notes[first.id]}/resend").status_code == 302
    client.post("/staff/login", data={"email": user.email, "password": PASSWORD})

    answers = [client.post(f"/staff/notifications/{notes[first.id]}/resend") for _ in range(3)]
    other = client.post(f"/staff/notifications/{notes[second.id]}/resend")

    assert [a.status_code for a in answers[:2]] == [303, 303]
    assert_page_429(answers[2])
    assert other.status_code == 303


# --- Per target and per address ---------------------------------------------------------------


def test_one_email_address_is_limited_from_any_number_of_addresses(limited, setup, session):
    client = limited(RATELIMIT_BOOKING_PER_EMAIL="2 per hour").test_client()
    victim = "ann@example.org"

    made = [
        client.post(
            "/api/v1/bookings", json=booking_body(setup, hhmm, email), **from_address(address)
        )
        for hhmm, email, address in (
            ("09:00", victim, "192.0.2.1"),
            ("10:30", victim.upper(), "192.0.2.2"),
        )
    ]
    before = written(session)
    refused = client.post(
        "/api/v1/bookings", json=booking_body(setup, "14:00", victim), **from_address("192.0.2.3")
    )
    after = written(session)
    someone_else = client.post(
        "/api/v1/bookings",
        json=booking_body(setup, "14:00", "bea@example.org"),
        **from_address("192.0.2.3"),
    )

    assert [answer.status_code for answer in made] == [201, 201]
    assert_json_429(refused)
    assert after == before
    assert someone_else.status_code == 201


def test_refused_tries_do_not_use_up_an_email_addresss_bookings(limited, setup):
    client = limited(RATELIMIT_BOOKING_PER_EMAIL="1 per hour").test_client()
    victim = "ann@example.org"

    tries = [
        client.post("/api/v1/bookings", json=booking_body(setup, "10:00", victim, service=999))
        for _ in range(3)
    ]
    booked = client.post("/api/v1/bookings", json=booking_body(setup, "10:00", victim))

    assert [answer.status_code for answer in tries] == [422, 422, 422]
    assert booked.status_code == 201


def test_one_address_is_limited_whatever_email_addresses_it_gives(limited, setup, session):
    client = limited(RATELIMIT_BOOKING_PER_ADDRESS="2 per hour").test_client()
    here = from_address("198.51.100.7")

    made = [
        client.post("/api/v1/bookings", json=booking_body(setup, hhmm, email), **here)
        for hhmm, email in (("09:00", "one@example.org"), ("10:30", "two@example.org"))
    ]
    before = written(session)
    refused = client.post(
        "/api/v1/bookings", json=booking_body(setup, "14:00", "three@example.org"), **here
    )
    after = written(session)
    elsewhere = client.post(
        "/api/v1/bookings",
        json=booking_body(setup, "14:00", "three@example.org"),
        **from_address("198.51.100.8"),
    )

    assert [answer.status_code for answer in made] == [201, 201]
    assert_json_429(refused)
    assert after == before
    assert elsewhere.status_code == 201


def test_a_limited_booking_form_gets_a_page_and_writes_nothing(limited, setup, session):
    client = limited(RATELIMIT_BOOKING_PER_EMAIL="1 per hour").test_client()
    details = {"full_name": "Ann Lee", "email": "ann@example.org", "phone": "+44 7700 900123"}

    def confirm(hhmm: str) -> str:
        start = london(TUESDAY, hhmm).isoformat()
        return "/book/confirm?" + urlencode(
            {"service": setup.follow_up.id, "practitioner": setup.mei.id, "start": start}
        )

    booked = client.post(confirm("10:00"), data=details)
    before = written(session)
    refused = client.post(confirm("14:00"), data=details)

    assert booked.status_code == 303
    assert_page_429(refused)
    assert written(session) == before
    assert before["Booking"] == 1


def test_a_limited_waitlist_place_writes_nothing(limited, setup, session):
    client = limited(RATELIMIT_WAITLIST_PER_EMAIL="1 per hour").test_client()
    body = {
        "service": setup.follow_up.id,
        "dates": [TUESDAY],
        "patient": {"name": "Cai", "email": "cai@example.org"},
    }

    joined = client.post("/api/v1/waitlist", json=body)
    before = written(session)
    refused = client.post("/api/v1/waitlist", json=body, **from_address("203.0.113.9"))

    assert joined.status_code == 201
    assert_json_429(refused)
    assert written(session) == before


def test_changes_to_one_booking_are_limited_per_booking(limited, setup, book, session):
    client = limited(RATELIMIT_CHANGES_PER_TOKEN="2 per hour").test_client()
    mine = book(london(TUESDAY, "10:00"), practitioner=setup.mei)
    other = book(london(TUESDAY, "16:30"), practitioner=setup.mei)

    def move(booking: Booking, hhmm: str, address: str) -> TestResponse:
        return client.post(
            f"/api/v1/bookings/{booking.manage_token}/reschedule",
            json={"start": london(TUESDAY, hhmm).isoformat()},
            **from_address(address),
        )

    moves = [move(mine, "11:00", "192.0.2.1"), move(mine, "14:00", "192.0.2.2")]
    refused = move(mine, "09:00", "192.0.2.3")
    moved_other = move(other, "15:30", "192.0.2.3")

    assert [answer.status_code for answer in moves] == [200, 200]
    assert_json_429(refused)
    session.rollback()
    assert session.get(Booking, mine.id).start_at == london(TUESDAY, "14:00")
    assert moved_other.status_code == 200


# --- Logging in -----------------------------------------------------------------------------


def test_a_password_guesser_is_stopped_after_ten_failures_on_one_email(limited, make_user, session):
    client = limited().test_client()  # the clinic's default limits
    user = make_user(Role.ADMIN)

    def log_in(password: str, address: str) -> TestResponse:
        return client.post(
            "/staff/login",
            data={"email": user.email.upper(), "password": password},
            **from_address(address),
        )

    guesses = [log_in(f"guess {n}", f"10.0.{n}.1") for n in range(10)]
    stopped = log_in(PASSWORD, "10.0.99.1")

    assert {answer.status_code for answer in guesses} == {401}
    assert_page_429(stopped)
    assert 14 * 60 <= retry_after(stopped) <= 15 * 60
    assert client.get("/staff/").status_code == 302  # not logged in


def test_one_address_guessing_many_accounts_is_stopped(limited, make_user):
    client = limited(RATELIMIT_LOGIN_PER_ADDRESS="3 per 15 minutes").test_client()
    user = make_user(Role.RECEPTION)
    here = from_address("198.51.100.20")

    guesses = [
        client.post("/staff/login", data={"email": f"guess{n}@x.org", "password": "x"}, **here)
        for n in range(3)
    ]
    stopped = client.post("/staff/login", data={"email": user.email, "password": PASSWORD}, **here)
    elsewhere = client.post(
        "/staff/login",
        data={"email": user.email, "password": PASSWORD},
        **from_address("198.51.100.21"),
    )

    assert {answer.status_code for answer in guesses} == {401}
    assert_page_429(stopped)
    assert elsewhere.status_code == 303


def test_logging_in_successfully_is_never_limited(limited, make_user):
    client = limited(**every_limit("2 per hour")).test_client()
    user = make_user(Role.RECEPTION)

    answers = []
    for _ in range(4):
        answers.append(
            client.post("/staff/login", data={"email": user.email, "password": PASSWORD})
        )
        client.post("/staff/logout")

    assert [answer.status_code for answer in answers] == [303] * 4


# --- What is not limited --------------------------------------------------------------------


def test_pages_of_the_booking_flow_are_never_limited(limited, setup, book):
    client = limited(**every_limit("1 per hour")).test_client()
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token
    start = london(TUESDAY, "14:00").isoformat()
    pages = [
        "/",
        f"/book?service={setup.follow_up.id}",
        f"/book/confirm?service={setup.follow_up.id}&practitioner={setup.mei.id}&start={start}",
        f"/b/{token}",
        f"/b/{token}/reschedule",
        f"/b/{token}/cancel",
        f"/b/{token}/intake",
        f"/waitlist?service={setup.follow_up.id}",
        "/staff/login",
    ]

    statuses = {page: [client.get(page).status_code for _ in range(3)] for page in pages}

    assert statuses == {page: [200, 200, 200] for page in pages}


def test_switched_off_no_limit_applies(limited, setup):
    client = limited(RATELIMIT_ENABLED=False, **every_limit("1 per hour")).test_client()
    login = {"email": "nobody@clinic.example", "password": "wrong"}

    statuses = [
        (
            client.post("/api/v1/bookings", json={}).status_code,
            client.post("/staff/login", data=login).status_code,
            client.post("/b/made-up/cancel", data={}).status_code,
        )
        for _ in range(3)
    ]

    assert statuses == [(422, 401, 404)] * 3


# --- Where counts live ----------------------------------------------------------------------


def test_two_app_servers_share_their_counts_through_redis(limited, setup, redis_prefix):
    shared = {
        "RATELIMIT_STORAGE_URI": REDIS_URL,
        "RATELIMIT_KEY_PREFIX": redis_prefix,
        "RATELIMIT_BOOKING_PER_ADDRESS": "3 per hour",
    }
    one, two = limited(**shared).test_client(), limited(**shared).test_client()

    answers = [server.post("/api/v1/bookings", json={}) for server in (one, two, one, two)]

    assert [answer.status_code for answer in answers] == [422, 422, 422, 429]
    assert_json_429(answers[-1])
    stored = redis.Redis.from_url(REDIS_URL).keys(f"*{redis_prefix}*booking_per_address*")
    assert len(stored) == 1


def test_with_redis_unreachable_each_server_counts_alone_and_answers(limited, setup, caplog):
    client = limited(
        RATELIMIT_STORAGE_URI=DEAD_REDIS_URL, RATELIMIT_BOOKING_PER_ADDRESS="2 per hour"
    ).test_client()

    answers = [client.post("/api/v1/bookings", json={}) for _ in range(3)]
    booked = limited(RATELIMIT_STORAGE_URI=DEAD_REDIS_URL).test_client()
    made = booked.post("/api/v1/bookings", json=booking_body(setup, "10:00", "ann@example.org"))

    assert [answer.status_code for answer in answers] == [422, 422, 429]
    assert_json_429(answers[-1])
    assert made.status_code == 201
    assert "falling back to in-memory storage" in caplog.text


def test_without_the_fallback_an_unreachable_redis_lets_requests_through(limited, setup):
    client = limited(
        RATELIMIT_STORAGE_URI=DEAD_REDIS_URL,
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=False,
        RATELIMIT_BOOKING_PER_ADDRESS="1 per hour",
    ).test_client()

    answers = [client.post("/api/v1/bookings", json={}) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [422, 422, 422]


# --- Behind a proxy -------------------------------------------------------------------------


def test_behind_a_trusted_proxy_the_forwarded_address_is_counted(limited, setup):
    client = limited(PROXY_FIX_X_FOR=1, RATELIMIT_BOOKING_PER_ADDRESS="1 per hour").test_client()

    def through_proxy(client_address: str) -> int:
        return client.post(
            "/api/v1/bookings", json={}, headers={"X-Forwarded-For": client_address}
        ).status_code

    assert [through_proxy("192.0.2.1"), through_proxy("192.0.2.2")] == [422, 422]
    assert through_proxy("192.0.2.1") == 429


def test_without_a_trusted_proxy_a_forwarded_address_is_ignored(limited, setup):
    client = limited(RATELIMIT_BOOKING_PER_ADDRESS="1 per hour").test_client()

    def claiming(client_address: str) -> int:
        return client.post(
            "/api/v1/bookings", json={}, headers={"X-Forwarded-For": client_address}
        ).status_code

    assert [claiming("192.0.2.1"), claiming("192.0.2.2")] == [422, 429]


# --- The staff API ----------------------------------------------------------------------------


def test_staff_api_calls_are_limited_per_token_not_per_address(limited, setup, make_user, session):
    client: FlaskClient = limited(RATELIMIT_STAFF_API_PER_TOKEN="2 per minute").test_client()
    tokens = []
    for number in (1, 2):
        user = make_user(Role.RECEPTION, f"desk{number}@clinic.example")
        tokens.append(issue_token(session, user=user, name="Script", now=NOW)[1])
        session.commit()

    def book_with(token: str) -> TestResponse:
        return client.post(
            "/api/v1/staff/bookings", json={}, headers={"Authorization": f"Bearer {token}"}
        )

    first = [book_with(tokens[0]) for _ in range(3)]
    second = book_with(tokens[1])

    assert [answer.status_code for answer in first[:2]] == [422, 422]
    assert_json_429(first[2])
    assert second.status_code == 422


# --- The document and the settings --------------------------------------------------------


def test_the_document_lists_429_with_retry_after_on_every_limited_operation(limited):
    limited_app = limited()
    spec = limited_app.test_client().get("/api/v1/openapi.json").get_json()

    with_429 = {
        spec["paths"][route.path][route.method]["operationId"]
        for route in documented_routes(limited_app)
        if "429" in spec["paths"][route.path][route.method]["responses"]
    }

    assert with_429 == {
        "create_booking",
        "cancel_booking",
        "reschedule_booking",
        "list_slots",
        "join_waitlist",
        "leave_waitlist",
        "staff_create_booking",
        "staff_booking_status",
    }
    for methods in spec["paths"].values():
        for operation in methods.values():
            if "429" in operation["responses"]:
                headers = operation["responses"]["429"]["headers"]
                assert headers["Retry-After"]["schema"]["type"] == "integer"


def test_limits_are_read_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RATELIMIT_LOGIN_PER_EMAIL", "5 per 10 minutes")
    monkeypatch.setenv("PROXY_FIX_X_FOR", "2")

    settings = config.from_environment(str(tmp_path))

    assert settings["RATELIMIT_LOGIN_PER_EMAIL"] == "5 per 10 minutes"
    assert (
        settings["RATELIMIT_BOOKING_PER_EMAIL"] == config.RATE_LIMITS["RATELIMIT_BOOKING_PER_EMAIL"]
    )
    assert settings["PROXY_FIX_X_FOR"] == 2


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RATELIMIT_BOOKING_PER_EMAIL", "lots", "RATELIMIT_BOOKING_PER_EMAIL must be rates"),
        ("PROXY_FIX_X_FOR", "-1", "PROXY_FIX_X_FOR must be a whole number, 0 or more"),
    ],
)
def test_a_wrong_setting_is_refused_saying_which(monkeypatch, tmp_path, name, value, message):
    monkeypatch.setenv(name, value)

    with pytest.raises(ValueError, match=message):
        config.from_environment(str(tmp_path))
