"""Attacks through forms and request bodies.

Cross-site forms (CSRF) on every route that writes, sending staff to another site after they
log in, line breaks into response and mail headers, and bodies that are too large, too long
or too deep. Each attack is refused with a message a person can act on, never a 500, and
writes nothing: the tests compare every row of every table before and after.
"""

from __future__ import annotations

import ast
import io
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit
from uuid import uuid4

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.routing import Rule
from werkzeug.test import TestResponse, encode_multipart

from scheduler.booking.operations import PatientDetails
from scheduler.calendars.models import BusyTime, CalendarSubscription
from scheduler.extensions import csrf, db
from scheduler.notifications.models import Notification
from scheduler.patients.models import Patient
from scheduler.staff.models import Role, SecurityKey, StaffSession
from scheduler.staff.tokens import issue_token
from scheduler.waitlist.models import EntryStatus, WaitlistEntry, WaitlistOffer
from scheduler.waitlist.operations import join_waitlist
from scheduler.webhooks.models import Webhook, WebhookDelivery, WebhookEvent
from tests.conftest import PASSWORD, Setup, csrf_token, log_in, london, token_of
from tests.smtp_server import Inbox
from tests.test_pages import Page, confirm_url

ROOT = Path(__file__).resolve().parent.parent
CSRF_REFUSED = "This form has expired or was not sent from this site"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
# Wednesday 25 November 2026, two days after the tests' clock.
VISIT = london("2026-11-25", "10:00")
TUESDAY_10 = london("2026-11-24", "10:00")
EVIL = "evil@example.com"


@pytest.fixture(autouse=True)
def _csrf_on(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """CSRF protection as in production, whatever another test or fixture set."""
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    monkeypatch.setitem(app.config, "WTF_CSRF_CHECK_DEFAULT", True)


def snapshot(session: Session) -> dict[str, list[str]]:
    """Every row of every table, to tell that a request wrote nothing."""
    session.rollback()
    return {
        table.name: sorted(repr(tuple(row)) for row in session.execute(select(table)))
        for table in db.metadata.sorted_tables
    }


@pytest.fixture
def unchanged(session: Session) -> Iterator[None]:
    """Fail the test if the database is not exactly as it was once the test's set-up ran."""
    before = snapshot(session)
    yield
    assert snapshot(session) == before, "a refused request wrote to the database"


def logged_in(app: Flask, email: str) -> FlaskClient:
    """A new browser, logged in to the staff area."""
    client = app.test_client()
    assert log_in(client, email).status_code == 303
    return client


# --- The world: one of everything a URL can name -----------------------------------------------


@dataclass
class World:
    """Real objects for every URL parameter, and the browsers that attack them."""

    admin: FlaskClient  # a logged-in admin
    admin_token: str
    visitor: FlaskClient  # a patient's browser, not logged in
    visitor_token: str
    other_token: str  # a good token, but of another browser's session
    values: dict[str, Any]  # URL values by parameter name
    tokens: dict[str, str]  # the ``<token>`` of each endpoint or blueprint
    api_token: str  # a staff API token of the admin's


@pytest.fixture
def world(
    app: Flask,
    session: Session,
    setup: Setup,
    book: Callable[..., Any],
    make_user: Callable[..., Any],
    make_time_off: Callable[..., Any],
    clock: Any,
) -> World:
    """A booking, a patient, time off, a subscription, an API token, a webhook with a delivery,
    a waitlist place with an offer, and staff and patient browsers."""
    admin_user = make_user(Role.ADMIN)
    reception = make_user(Role.RECEPTION)
    booking = book(VISIT, practitioner=setup.mei)
    off = make_time_off(setup.mei, london("2026-12-01", "09:00"), london("2026-12-01", "12:00"))
    subscription = CalendarSubscription(
        practitioner_id=setup.mei.id, url="https://calendar.example/mei.ics", name="Mei's phone"
    )
    api_token_row, api_token = issue_token(session, user=admin_user, name="Reports", now=clock())
    webhook = Webhook(
        url="https://hooks.example/booked", secret=secrets.token_hex(16), created_at=clock()
    )
    delivery = WebhookDelivery(
        webhook=webhook,
        booking_id=booking.id,
        event=WebhookEvent.BOOKING_CREATED,
        event_id=str(uuid4()),
        payload="{}",
        next_attempt_at=clock(),
    )
    entry = join_waitlist(
        session,
        clinic=setup.clinic,
        treatment=setup.follow_up,
        practitioner=None,
        days=[date(2026, 11, 26)],
        patient=PatientDetails("Wanda Wait", "wanda@example.org"),
        now=clock(),
    )
    start = london("2026-11-26", "10:00")
    offer = WaitlistOffer(
        entry=entry,
        practitioner_id=setup.james.id,
        start_at=start,
        end_at=start + timedelta(hours=1),
        token=secrets.token_urlsafe(32),
        offered_at=clock(),
        expires_at=clock() + timedelta(hours=12),
    )
    key = SecurityKey(
        user=admin_user, credential_id="admin-key", public_key=b"key", name="Blue key"
    )
    session.add_all([subscription, webhook, delivery, offer, key])
    session.commit()
    notification = session.scalars(
        select(Notification).where(Notification.booking_id == booking.id)
    ).first()
    assert notification is not None

    admin = logged_in(app, admin_user.email)
    other = logged_in(app, reception.email)
    visitor = app.test_client()
    logged_in(app, admin_user.email)  # the admin on a second device, which the admin may end
    session.rollback()
    _, admin_session = session.scalars(
        select(StaffSession).where(StaffSession.user_id == admin_user.id).order_by(StaffSession.id)
    ).all()
    return World(
        admin=admin,
        admin_token=token_of(admin, "/staff/"),
        visitor=visitor,
        visitor_token=csrf_token(visitor.get("/staff/login").text),
        other_token=token_of(other, "/staff/"),
        values={
            "booking_id": booking.id,
            "patient_id": booking.patient_id,
            "practitioner_id": setup.mei.id,
            "time_off_id": off.id,
            "room_id": setup.rooms[0].id,
            "treatment_id": setup.follow_up.id,
            "subscription_id": subscription.id,
            "notification_id": notification.id,
            "token_id": api_token_row.id,
            "user_id": reception.id,
            "session_id": admin_session.id,
            "key_id": key.id,
            "webhook_id": webhook.id,
            "delivery_id": delivery.id,
            "kind": "confirmation",
            "name": "20261123T080000000000-x.eml",
            "code": "de",
        },
        tokens={
            "booking": booking.manage_token,
            "api.get_booking": booking.manage_token,
            "api.cancel": booking.manage_token,
            "api.reschedule": booking.manage_token,
            "waitlist.offer": offer.token,
            "waitlist": entry.token,
            "api.get_waitlist_entry": entry.token,
            "api.leave_waitlist_entry": entry.token,
            "calendars.feed": setup.mei.feed_token,
        },
        api_token=api_token,
    )


def url_of(app: Flask, rule: Rule, method: str, world: World) -> str:
    """The rule's address for the world's objects; fails naming what a new rule lacks."""
    values: dict[str, Any] = {}
    for argument in rule.arguments:
        if argument == "token":
            blueprint = rule.endpoint.rpartition(".")[0]
            found = world.tokens.get(rule.endpoint) or world.tokens.get(blueprint)
        else:
            found = world.values.get(argument)
        assert found is not None, (
            f"{rule.rule} has a parameter <{argument}> the world has no object for: "
            "add one to the world fixture of tests/test_attack_forms.py"
        )
        values[argument] = found
    return app.url_map.bind("localhost").build(rule.endpoint, values, method=method)


def rules_with(app: Flask, methods: tuple[str, ...]) -> list[tuple[Rule, str]]:
    """Every (rule, method) of the app that answers one of ``methods``."""
    return sorted(
        (
            (rule, method)
            for rule in app.url_map.iter_rules()
            for method in sorted(rule.methods or ())
            if method in methods
        ),
        key=lambda pair: (pair[0].rule, pair[1]),
    )


def is_api(rule: Rule) -> bool:
    """Whether the rule is the JSON API's, which takes no cookies and no forms."""
    return rule.endpoint.startswith("api.")


def is_staff(app: Flask, rule: Rule) -> bool:
    """Whether the rule's view is behind the staff login (``staff_only``)."""
    return hasattr(app.view_functions[rule.endpoint], "allowed_roles")


# --- 1. Cross-site forms ----------------------------------------------------------------------


def test_csrf_is_on_for_every_write_method_and_checks_the_referer_over_https(app):
    assert app.config["WTF_CSRF_METHODS"] == {"POST", "PUT", "PATCH", "DELETE"}
    assert app.config["WTF_CSRF_SSL_STRICT"] is True
    assert app.config["WTF_CSRF_FIELD_NAME"] == "csrf_token"


def test_only_the_json_api_is_exempt_from_csrf(app):
    assert csrf._exempt_views == set(), "no single view may skip the check"
    assert {blueprint.name for blueprint in csrf._exempt_blueprints} == {"api"}
    api_rules = [rule for rule in app.url_map.iter_rules() if is_api(rule)]
    assert api_rules, "the API has routes"
    assert all(rule.rule.startswith("/api/v1/") for rule in api_rules)
    # Everything else that writes, /api/docs included, is checked.
    for rule, method in rules_with(app, WRITES):
        assert is_api(rule) or not rule.rule.startswith("/api/"), (method, rule.rule)


def csrf_problems(app: Flask, world: World, session: Session) -> list[str]:
    """Attack every form; return what was not refused as a cross-site request should be."""
    problems: list[str] = []
    forms = [(rule, method) for rule, method in rules_with(app, WRITES) if not is_api(rule)]
    assert len(forms) > 50, "the walk found the app's forms"
    for rule, method in forms:
        url = url_of(app, rule, method, world)
        if is_staff(app, rule):
            client, own = world.admin, world.admin_token
        else:
            client, own = world.visitor, world.visitor_token
        tampered = own[:-4] + ("AAAA" if not own.endswith("AAAA") else "BBBB")
        attacks = {
            "no token": None,
            "a made-up token": "not-a-token",
            "a tampered token": tampered,
            "another session's token": world.other_token,
        }
        before = snapshot(session)
        for attack, token in attacks.items():
            data = {"name": "Mallory", "confirm": "ERASE", "reason": "Because"}
            if token is not None:
                data["csrf_token"] = token
            answer = client.open(url, method=method, data=data)
            if answer.status_code != 400 or CSRF_REFUSED not in answer.text:
                problems.append(f"{method} {url} with {attack}: {answer.status_code}")
        if snapshot(session) != before:
            problems.append(f"{method} {url}: refused, yet the database changed")
    return problems


def test_every_form_refuses_a_request_without_this_sessions_token_and_writes_nothing(
    app, world, session
):
    assert csrf_problems(app, world, session) == []


def test_the_csrf_walk_notices_a_form_that_skips_the_check(app, world, session, monkeypatch):
    # The walk itself must be able to fail: exempt one form, and it says so.
    monkeypatch.setattr(csrf, "_exempt_views", {"scheduler.staff.views.subscribe"})

    problems = csrf_problems(app, world, session)

    assert problems
    assert all("/staff/calendars/subscriptions " in problem for problem in problems), problems


def test_a_staff_form_refused_for_csrf_tells_the_person_what_to_do(world):
    answer = world.admin.post("/staff/tokens/", data={"name": "Cross-site"})

    assert answer.status_code == 400
    page = Page(answer)
    assert "This form has expired or was not sent from this site." in page.text
    assert "Please reload the page and send it again." in page.text


# What a browser sends as the Referer of a form it posts, and whether it may come in.
REFERERS = [
    (None, False),
    ("https://evil.example/staff/login", False),
    ("http://clinic.test/staff/login", False),
    ("https://clinic.test.evil.example/staff/login", False),
    ("https://clinic.test:8443/staff/login", False),
    ("https://clinic.test/staff/login", True),
]


def test_over_https_a_form_needs_a_referer_from_this_site(app, session, make_user):
    user = make_user(Role.ADMIN)
    https = {"base_url": "https://clinic.test"}
    before = snapshot(session)
    for referer, accepted in REFERERS:
        client = app.test_client()
        token = csrf_token(client.get("/staff/login", **https).text)

        answer = client.post(
            "/staff/login",
            data={"email": user.email, "password": PASSWORD, "csrf_token": token},
            headers={"Referer": referer} if referer else {},
            **https,
        )

        if accepted:
            assert answer.status_code == 303, referer
        else:
            assert answer.status_code == 400, referer
            assert CSRF_REFUSED in answer.text
            assert snapshot(session) == before, referer
            assert client.get("/staff/", **https).status_code == 302, "not logged in"


def test_pages_without_a_token_keep_the_referer_that_the_https_check_needs(world):
    # "no-referrer" on these would make every form on them fail over https.
    for client, path in (
        (world.visitor, "/staff/login"),
        (world.visitor, "/book"),
        (world.admin, "/staff/setup/clinic"),
    ):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["Referrer-Policy"] == "same-origin", path


HTTPS = {"base_url": "https://clinic.test"}


def token_forms(app: Flask) -> list[tuple[Rule, str]]:
    """Every form posted to an address holding a secret token (the JSON API aside)."""
    return [
        (rule, method)
        for rule, method in rules_with(app, WRITES)
        if "token" in rule.arguments and not is_api(rule)
    ]


def test_over_https_a_token_page_form_needs_its_csrf_token_though_it_has_no_referer(
    app, world, session
):
    # The token pages send no Referer, so their forms are checked by their CSRF token alone:
    # every attack below comes without one, as a real form from those pages would.
    forms = token_forms(app)
    assert {rule.endpoint for rule, _ in forms} >= {
        "booking.cancel",
        "booking.reschedule",
        "booking.intake",
        "waitlist.leave",
        "waitlist.offer",
    }
    patient = app.test_client()
    own = csrf_token(patient.get(f"/b/{world.tokens['booking']}/cancel", **HTTPS).text)
    other = csrf_token(app.test_client().get("/staff/login", **HTTPS).text)
    attacks = {
        "no token": None,
        "a made-up token": "not-a-token",
        "a tampered token": own[:-4] + ("AAAA" if not own.endswith("AAAA") else "BBBB"),
        "another session's token": other,
    }
    problems = []
    before = snapshot(session)
    for rule, method in forms:
        url = url_of(app, rule, method, world)
        for attack, token in attacks.items():
            data = {"reason": "Because"} | ({"csrf_token": token} if token else {})
            answer = patient.open(url, method=method, data=data, **HTTPS)
            if answer.status_code != 400 or CSRF_REFUSED not in answer.text:
                problems.append(f"{method} {url} with {attack}: {answer.status_code}")
    assert problems == []
    assert snapshot(session) == before


def test_over_https_a_token_page_form_with_its_csrf_token_and_no_referer_is_taken(
    app, world, session
):
    patient = app.test_client()
    url = f"/waitlist/{world.tokens['waitlist']}/leave"
    token = csrf_token(patient.get(f"/waitlist/{world.tokens['waitlist']}", **HTTPS).text)

    answer = patient.post(url, data={"csrf_token": token}, **HTTPS)

    assert answer.status_code == 303, answer.text
    session.rollback()
    entry = session.scalars(
        select(WaitlistEntry).where(WaitlistEntry.token == world.tokens["waitlist"])
    ).one()
    assert entry.status is EntryStatus.LEFT


def test_over_https_a_staff_form_still_needs_a_referer_from_this_site(app, session, make_user):
    user = make_user(Role.ADMIN)
    client = app.test_client()
    login = "https://clinic.test/staff/login"
    token = csrf_token(client.get(login).text)
    answer = client.post(
        login,
        data={"email": user.email, "password": PASSWORD, "csrf_token": token},
        headers={"Referer": login},
    )
    assert answer.status_code == 303
    page = "https://clinic.test/staff/tokens/"
    token = csrf_token(client.get(page).text)
    before = snapshot(session)

    without = client.post(page, data={"csrf_token": token, "name": "Reports"})
    elsewhere = client.post(
        page,
        data={"csrf_token": token, "name": "Reports"},
        headers={"Referer": "https://evil.example/b/x"},
    )

    assert (without.status_code, elsewhere.status_code) == (400, 400)
    assert CSRF_REFUSED in without.text
    assert snapshot(session) == before
    taken = client.post(
        page, data={"csrf_token": token, "name": "Reports"}, headers={"Referer": page}
    )
    assert taken.status_code == 201, taken.text
    assert snapshot(session) != before


def test_the_staff_api_ignores_the_session_cookie(app, world, session, setup):
    body = {
        "service": setup.follow_up.id,
        "practitioner": setup.james.id,
        "start": TUESDAY_10.isoformat(),
        "patient": {"name": "Mallory", "email": "mallory@example.org"},
    }
    before = snapshot(session)

    writes = [
        world.admin.post("/api/v1/staff/bookings", json=body),
        world.admin.post(
            f"/api/v1/staff/bookings/{world.values['booking_id']}/status",
            json={"status": "arrived"},
        ),
        world.admin.get("/api/v1/staff/bookings"),
    ]

    for answer in writes:
        assert answer.status_code == 401
        assert "Bearer" in answer.get_json()["error"]
    assert snapshot(session) == before


def api_write_bodies(world: World, setup: Setup) -> dict[str, dict[str, Any]]:
    """A good JSON body for each write of the public API."""
    patient = {"name": "Mallory", "email": "mallory@example.org"}
    return {
        "/api/v1/bookings": {
            "service": setup.follow_up.id,
            "practitioner": setup.james.id,
            "start": TUESDAY_10.isoformat(),
            "patient": patient,
        },
        f"/api/v1/bookings/{world.tokens['booking']}/cancel": {"reason": "Cross-site"},
        f"/api/v1/bookings/{world.tokens['booking']}/reschedule": {"start": TUESDAY_10.isoformat()},
        "/api/v1/waitlist": {
            "service": setup.follow_up.id,
            "dates": ["2026-11-26"],
            "patient": patient,
        },
    }


def test_the_public_api_takes_no_body_a_cross_site_form_can_send(app, world, session, setup):
    # An HTML form can send these three types (text/plain even with JSON in it) without a
    # preflight; the API answers 415 to all of them, and offers no CORS for the rest.
    before = snapshot(session)
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain"):
        for path, body in api_write_bodies(world, setup).items():
            if content_type == "text/plain":
                options: dict[str, Any] = {"data": json.dumps(body), "content_type": content_type}
            elif content_type == "multipart/form-data":
                boundary, data = encode_multipart({"body": json.dumps(body)})
                options = {"data": data, "content_type": f"{content_type}; boundary={boundary}"}
            else:
                options = {
                    "data": urlencode({"body": json.dumps(body)}),
                    "content_type": content_type,
                }

            answer = world.admin.post(path, headers={"Origin": "https://evil.example"}, **options)

            assert answer.status_code == 415, (content_type, path, answer.status_code)
            assert "application/json" in answer.get_json()["error"]
            assert "Access-Control-Allow-Origin" not in answer.headers
    for path in api_write_bodies(world, setup):
        preflight = world.admin.options(
            path,
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert "Access-Control-Allow-Origin" not in preflight.headers
    assert snapshot(session) == before


# --- 2. Sending staff to another site after they log in ---------------------------------------

# How an attacker would write ``next`` into a link, already encoded for the query string.
BAD_NEXT = [
    "https://evil.example",
    "https%3A%2F%2Fevil.example",
    "//evil.example",
    "%2F%2Fevil.example",
    "%252F%252Fevil.example",
    "/%5Cevil.example",
    "%5C/evil.example",
    "%5C%5Cevil.example",
    "/%5C/evil.example",
    "https:evil.example",
    "https:/evil.example",
    "javascript:alert(1)",
    "javascript%3Aalert%281%29",
    "JaVaScRiPt:alert(1)",
    "data:text/html,%3Cscript%3Ealert(1)%3C/script%3E",
    "/staff/../../evil",
    "///evil.example",
    "/%2F/evil.example",
    "/%09/evil.example",
    "%09//evil.example",
    "%20//evil.example",
    "/%0D%0A/evil.example",
    "%0D%0ALocation:%20https://evil.example",
    "/staff/%0D%0ALocation:%20https://evil.example",
    "/staff/%0D%0ASet-Cookie:%20session=stolen",
    "https://clinic.test@evil.example",
    "/@evil.example",
    "",
]


def browser_target(location: str) -> str:
    """Where a browser goes for ``location`` from our login page: browsers drop tabs and
    line breaks from URLs and read a backslash as a slash."""
    cleaned = re.sub(r"[\t\r\n]", "", location).replace("\\", "/").strip()
    return urljoin("https://clinic.test/staff/login", cleaned)


def off_site(answer: TestResponse) -> str | None:
    """What is wrong with a redirect that should lead to a page of this site, if anything."""
    if answer.status_code != 303:
        return f"answered {answer.status_code}, not a redirect"
    locations = answer.headers.getlist("Location")
    if len(locations) != 1:
        return f"{len(locations)} Location headers"
    location = locations[0]
    if not location.startswith("/") or location.startswith(("//", "/\\")):
        return f"Location {location!r} is not a path on this site"
    if re.search(r"[\x00-\x20\\]", location):
        return f"Location {location!r} holds a space, control character or backslash"
    if urlsplit(browser_target(location)).netloc != "clinic.test":
        return f"a browser would follow {location!r} to another site"
    if any("stolen" in cookie for cookie in answer.headers.getlist("Set-Cookie")):
        return "a cookie was set from the URL"
    return None


def test_logging_in_never_leads_to_another_site(app, make_user):
    user = make_user(Role.ADMIN)
    problems = {}
    for raw_next in BAD_NEXT:
        client = app.test_client()
        token = csrf_token(client.get("/staff/login").text)

        answer = client.post(
            f"/staff/login?next={raw_next}",
            data={"email": user.email, "password": PASSWORD, "csrf_token": token},
        )

        problems[raw_next] = off_site(answer)
        assert client.get("/staff/").status_code == 200, "logged in"
    assert {raw: problem for raw, problem in problems.items() if problem} == {}


def test_the_language_switch_never_leads_to_another_site(client, setup):
    problems = {raw: off_site(client.get(f"/language/de?next={raw}")) for raw in BAD_NEXT}

    assert {raw: problem for raw, problem in problems.items() if problem} == {}


def test_the_language_switch_goes_back_to_the_page_it_was_on(client, setup):
    answer = client.get("/language/de?next=/book%3Fservice%3D1")

    assert answer.status_code == 303
    assert answer.headers["Location"] == "/book?service=1"


def test_a_page_on_this_site_is_where_login_leads(app, make_user):
    user = make_user(Role.ADMIN)
    client = app.test_client()

    asked = client.get("/staff/week?x=1")
    assert asked.status_code == 302
    login_url = asked.headers["Location"]
    assert urlsplit(login_url).path == "/staff/login"
    token = csrf_token(client.get(login_url).text)
    answer = client.post(
        login_url, data={"email": user.email, "password": PASSWORD, "csrf_token": token}
    )

    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/week?x=1"
    assert client.get(answer.headers["Location"]).status_code == 200


def test_next_written_by_hand_to_a_page_here_still_works(app, make_user):
    user = make_user(Role.ADMIN)
    client = app.test_client()

    answer = log_in(client, user.email, next_url="/staff/week%3Fx%3D1")

    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/week?x=1"


def test_every_redirect_goes_to_an_address_the_app_built():
    # A grep made a test: each redirect() is given url_for(...), a checked ``next`` (the
    # login's _safe_next, the language switch's safe_next: both tested above), or a name known
    # to hold a url_for() result; never request values as they came. A new redirect to a
    # request value fails here until it is checked and tested as those are.
    built_by_the_app = {("scheduler/clinic/setup.py", "action")}  # url_for() by each caller
    offenders = []
    for path in sorted((ROOT / "scheduler").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "redirect"
            ):
                continue
            target = node.args[0]
            if (
                isinstance(target, ast.Call)
                and isinstance(target.func, ast.Name)
                and target.func.id in ("url_for", "_safe_next", "safe_next")
            ):
                continue
            if isinstance(target, ast.Name) and (relative, target.id) in built_by_the_app:
                continue
            offenders.append(f"{relative}:{node.lineno}: redirect({ast.unparse(target)})")
    assert offenders == []


# --- 3. Line breaks into headers --------------------------------------------------------------

LINE_BREAKING_NAMES = [
    f"Eve\r\nBcc: {EVIL}",
    f"Eve\nBcc: {EVIL}",
    f"Eve\rBcc: {EVIL}",
    f"Eve\u2028Bcc: {EVIL}",
    f"Eve\x85Bcc: {EVIL}",
    f"Eve\x0bBcc: {EVIL}",
    "Eve\x00",
]


def test_a_name_that_breaks_a_line_is_refused_by_the_booking_form(app, setup, unchanged):
    client = app.test_client()
    page = Page(client.get(confirm_url(setup.follow_up, TUESDAY_10, setup.mei)))
    for name in LINE_BREAKING_NAMES:
        answer = post_form(client, page, full_name=name, email="eve@example.org")

        assert answer.status_code == 422, repr(name)
        assert field_errors(Page(answer)) == {
            "full_name": ["Please keep this to one line of ordinary text."]
        }


def test_a_name_that_breaks_a_line_is_refused_by_the_api(client, setup, unchanged):
    for name in LINE_BREAKING_NAMES:
        body = {
            "service": setup.follow_up.id,
            "practitioner": setup.mei.id,
            "start": TUESDAY_10.isoformat(),
            "patient": {"name": name, "email": "eve@example.org"},
        }

        answer = client.post("/api/v1/bookings", json=body)

        assert answer.status_code == 422, repr(name)
        assert answer.get_json()["fields"] == {
            "patient.name": "contains characters that are not allowed here"
        }


def test_an_email_address_with_a_second_address_in_it_is_refused(app, client, setup, unchanged):
    browser = app.test_client()
    page = Page(browser.get(confirm_url(setup.follow_up, TUESDAY_10, setup.mei)))
    for email in (
        f"eve@example.org\r\nBcc: {EVIL}",
        f"eve@example.org\nBcc:{EVIL}",
        f"eve@example.org,{EVIL}",
    ):
        body = {
            "service": setup.follow_up.id,
            "practitioner": setup.mei.id,
            "start": TUESDAY_10.isoformat(),
            "patient": {"name": "Eve", "email": email},
        }

        form = post_form(browser, page, full_name="Eve", email=email)
        api = client.post("/api/v1/bookings", json=body)

        assert form.status_code == 422, repr(email)
        assert list(field_errors(Page(form))) == ["email"]
        assert api.status_code == 422, repr(email)
        assert set(api.get_json()["fields"]) == {"patient.email"}


def dispatch(app: Flask) -> None:
    """Send what is due, as ``notifications run --once`` does."""
    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert result.exit_code == 0, result.output


def only_message(smtp: Inbox, to: str) -> EmailMessage:
    """The one message the server took, checked to have gone to ``to`` alone."""
    [received] = smtp.received
    assert received.rcpt_tos == [to]
    return received.message


def assert_one_of_each_header(message: EmailMessage, *, to: str, reply_to: str) -> None:
    """One From, To, Reply-To and Subject, each naming one address; no Cc or Bcc."""
    names = [name.lower() for name in message]
    for name in ("from", "to", "reply-to", "subject", "date", "message-id"):
        assert names.count(name) == 1, (name, names)
    assert not {"cc", "bcc", "x-evil"} & set(names), names
    assert [a.addr_spec for a in message["To"].addresses] == [to]
    assert [a.addr_spec for a in message["Reply-To"].addresses] == [reply_to]
    assert [a.addr_spec for a in message["From"].addresses] == ["clinic@localhost"]
    assert EVIL not in str(message["Subject"])


# Names a person may type (no control characters) that would need quotes in a mail header.
QUOTED_NAMES = [
    f"Eve Example, who has a rather long name for a patient of this clinic, {EVIL}",
    f'Eve "the patient" <{EVIL}>, and a name long enough to be folded by the mail header',
    f"Eve; Mallory: {EVIL}; and friends of the patient with a long enough name to fold",
    f"=?utf-8?q?Eve_=3C{EVIL.replace('@', '=40')}=3E=2C?= with a long name to fold here",
]


def test_a_patient_name_cannot_add_a_recipient_to_the_confirmation(app, setup, smtp):
    times = [london("2026-11-24", hhmm) for hhmm in ("09:00", "10:30", "14:00", "15:30")]
    for number, (name, start) in enumerate(zip(QUOTED_NAMES, times, strict=True)):
        client = app.test_client()
        page = Page(client.get(confirm_url(setup.follow_up, start, setup.mei)))

        booked = post_form(client, page, full_name=name, email=f"eve{number}@example.org")

        assert booked.status_code == 303, "a name like that is allowed"
    dispatch(app)

    assert sorted(item.rcpt_tos[0] for item in smtp.received) == [
        f"eve{number}@example.org" for number in range(len(QUOTED_NAMES))
    ]
    for received in smtp.received:
        [patient] = received.rcpt_tos
        message = received.message
        assert_one_of_each_header(message, to=patient, reply_to="clinic@clinic.test")
        shown = message["To"].addresses[0].display_name
        assert "Eve" in shown, shown
        assert "@" not in shown, shown
        assert "," not in shown, shown


def test_a_patient_name_with_line_breaks_already_stored_cannot_add_headers(app, setup, book, smtp):
    # Imports and old data can hold what the forms refuse.
    book(VISIT, name=f"Eve\r\nBcc: {EVIL}\r\nX-Evil: 1\u2028Cc: {EVIL}", email="eve@example.org")

    dispatch(app)

    message = only_message(smtp, "eve@example.org")
    assert_one_of_each_header(message, to="eve@example.org", reply_to="clinic@clinic.test")


def test_the_clinic_name_cannot_break_or_add_to_the_mail_headers(
    app, session, setup, book, make_user, smtp
):
    admin = logged_in(app, make_user(Role.ADMIN).email)
    page = Page(admin.get("/staff/setup/clinic"))

    reply_to = "hello@clinic.example.com"
    refused = post_form(admin, page, name=f"Test Acupuncture\r\nBcc: {EVIL}", email=reply_to)
    long_name = f"Test Acupuncture, the clinic on the high street with a long name, {EVIL}"
    saved = post_form(admin, Page(admin.get("/staff/setup/clinic")), name=long_name, email=reply_to)
    session.rollback()  # a new unit of work, after the requests' writes
    book(VISIT, email="ann@example.org")
    dispatch(app)

    assert refused.status_code == 422
    assert field_errors(Page(refused)) == {
        "name": ["Please keep this to one line of ordinary text."]
    }
    assert saved.status_code == 303
    message = only_message(smtp, "ann@example.org")
    assert_one_of_each_header(message, to="ann@example.org", reply_to=reply_to)
    assert "Test Acupuncture" in message["From"].addresses[0].display_name


def test_no_response_header_carries_what_people_typed(app, session, world, setup):
    # Names with line breaks already in the database (an import, old data): every page and
    # download answers without them in a header, and without a 500.
    session.rollback()
    setup.clinic.name = "Clinic\r\nX-Evil: clinic"
    setup.mei.name = "Mei\r\nX-Evil: practitioner"
    for patient in session.scalars(select(Patient)):
        patient.name = 'Eve"; filename="evil.html\r\nX-Evil: patient'
    session.commit()

    answers: list[tuple[str, TestResponse]] = []
    for rule, method in rules_with(app, ("GET",)):
        if rule.endpoint == "static":
            continue
        url = url_of(app, rule, method, world)
        client = world.admin if is_staff(app, rule) else world.visitor
        if is_api(rule) and "/staff/" in rule.rule:
            answers.append((url, client.get(url, headers=bearer(world))))
        else:
            answers.append((url, client.get(url)))
    export = f"/staff/patients/{world.values['patient_id']}/export"
    answers.append((export, world.admin.post(export, data={"csrf_token": world.admin_token})))

    for url, answer in answers:
        assert answer.status_code != 500, url
        for name, value in answer.headers.items():
            assert not re.search(r"[\r\n]", value), (url, name)
            assert "evil" not in value.lower(), (url, name, value)
            assert name.lower() != "x-evil", url
    dispositions = {url: answer.headers.get("Content-Disposition") for url, answer in answers}
    assert (
        dispositions[export] == f'attachment; filename="patient-{world.values["patient_id"]}.json"'
    )
    assert dispositions[f"/b/{world.tokens['booking']}.ics"] == (
        'attachment; filename="acupuncture.ics"'
    )


def bearer(world: World) -> dict[str, str]:
    """The header that lets a request into the staff API."""
    return {"Authorization": f"Bearer {world.api_token}"}


# --- 4. Bodies too large, fields too long, JSON too big or too deep ---------------------------


def post_form(client: FlaskClient, page: Page, action: str | None = None, **values: str) -> Any:
    """Fill in the page's POST form (the one sent to ``action``, else the one sent back to the
    page itself) and send it."""
    forms = [
        form
        for form in page.forms
        if form.method == "post" and form.action in ((action,) if action else ("", page.url))
    ]
    assert len(forms) == 1, f"expected one POST form on {page.url}, found {len(forms)}"
    data: dict[str, str] = {}
    for element in forms[0].fields:
        name = element.attrs.get("name")
        kind = element.attrs.get("type")
        if not name or (kind in ("checkbox", "radio") and "checked" not in element.attrs):
            continue
        if kind == "submit":
            continue
        data[name] = element.attrs.get("value", element.text if element.tag == "textarea" else "")
    data.update(values)
    return client.post(forms[0].action or page.url, data=data)


LIMIT = 1024 * 1024  # MAX_CONTENT_LENGTH, checked below
TOO_LARGE_PAGE = "What was sent is too large. Please shorten it, or send fewer or smaller files."


def test_the_body_limit_is_a_mebibyte(app):
    assert app.config["MAX_CONTENT_LENGTH"] == LIMIT


def test_an_oversize_login_form_gets_a_friendly_413_page(app, session, make_user):
    user = make_user(Role.ADMIN)
    client = app.test_client()
    token = csrf_token(client.get("/staff/login").text)
    before = snapshot(session)
    body = urlencode({"email": user.email, "password": "x" * LIMIT, "csrf_token": token}).encode()

    answer = client.post(
        "/staff/login", data=body, content_type="application/x-www-form-urlencoded"
    )

    assert answer.status_code == 413
    assert TOO_LARGE_PAGE in Page(answer).text
    assert answer.mimetype == "text/html"
    assert snapshot(session) == before


def test_oversize_forms_get_a_friendly_413_page(app, world, setup, unchanged):
    note = "n" * (LIMIT + 1)
    attempts = [
        (world.visitor, confirm_url(setup.follow_up, TUESDAY_10, setup.mei), world.visitor_token),
        (world.visitor, f"/b/{world.tokens['booking']}/cancel", world.visitor_token),
        (world.admin, f"/staff/bookings/{world.values['booking_id']}/notes", world.admin_token),
        (world.admin, "/staff/setup/clinic", world.admin_token),
    ]
    for client, url, token in attempts:
        body = urlencode({"csrf_token": token, "notes": note, "staff_notes": note}).encode()

        answer = client.post(url, data=body, content_type="application/x-www-form-urlencoded")

        assert answer.status_code == 413, url
        assert TOO_LARGE_PAGE in Page(answer).text, url


def test_a_multipart_field_over_the_form_memory_limit_gets_the_413_page(app, setup, unchanged):
    client = app.test_client()
    page = Page(client.get(confirm_url(setup.follow_up, TUESDAY_10, setup.mei)))
    boundary, body = encode_multipart(
        {
            "csrf_token": csrf_token(page.response.text),
            "full_name": "Ann",
            "email": "ann@example.org",
            "notes": "n" * 600_000,  # over MAX_FORM_MEMORY_SIZE, under MAX_CONTENT_LENGTH
        }
    )

    answer = client.post(
        page.url, data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )

    assert answer.status_code == 413
    assert TOO_LARGE_PAGE in Page(answer).text


def test_an_oversize_json_body_gets_a_json_413(app, world_with_use, unchanged):
    body = json.dumps({"notes": "n" * LIMIT})
    for path in ("/api/v1/bookings", "/api/v1/waitlist", "/api/v1/staff/bookings"):
        started = time.perf_counter()

        answer = app.test_client().post(
            path, data=body, content_type="application/json", headers=bearer(world_with_use)
        )

        assert time.perf_counter() - started < 2, path
        assert answer.status_code == 413, path
        assert answer.get_json() == {
            "error": f"The body is too large: send at most {LIMIT:,} bytes.",
            "fields": {},
        }


@pytest.fixture
def world_with_use(world: World) -> World:
    """The world, with the API token's use already recorded (so a call writes nothing)."""
    assert world.admin.get("/api/v1/staff/bookings", headers=bearer(world)).status_code == 200
    return world


ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n"
    "BEGIN:VEVENT\r\nUID:{uid}@calendar.example\r\nDTSTAMP:20261101T000000Z\r\n"
    "DTSTART:20261201T{hour:02d}0000Z\r\nDTEND:20261201T{hour:02d}3000Z\r\nSUMMARY:Dentist\r\n"
    "DESCRIPTION:{description}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def calendar_file(uid: str, hour: int, size: int) -> bytes:
    """A valid .ics of one event, padded to about ``size`` bytes with folded description."""
    line = "x" * 70
    lines = (size // 73) + 1
    description = "\r\n ".join([line] * lines)
    return ICS.format(uid=uid, hour=hour, description=description).encode()


def upload(client: FlaskClient, token: str, practitioner_id: int, files: list[bytes]) -> Any:
    """Post calendar files to the import form, built as a browser sends them."""
    values = MultiDict(
        [("csrf_token", token), ("practitioner", str(practitioner_id)), ("kind", "busy")]
        + [
            ("files", FileStorage(io.BytesIO(data), f"cal{n}.ics", content_type="text/calendar"))
            for n, data in enumerate(files)
        ]
    )
    boundary, body = encode_multipart(values)
    return client.post(
        "/staff/calendars/import",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def test_calendar_files_larger_together_than_the_form_limit_are_imported(
    app, world, setup, session, monkeypatch
):
    # Regression: CSRFProtect read the form at the 1 MiB limit before the view raised it, so
    # any upload over 1 MiB was refused although each file was well within its own limit.
    monkeypatch.setitem(app.config, "CALENDAR_IMPORT_MAX_BYTES", 300_000)
    files = [calendar_file(f"e{n}", 9 + n, 280_000) for n in range(4)]
    assert sum(map(len, files)) > LIMIT

    answer = upload(world.admin, world.admin_token, setup.mei.id, files)

    assert answer.status_code == 200, Page(answer).text[:300]
    session.rollback()
    assert len(session.scalars(select(BusyTime)).all()) == 4


def test_a_calendar_upload_over_its_limit_gets_the_413_page(
    app, world, setup, monkeypatch, unchanged
):
    monkeypatch.setitem(app.config, "CALENDAR_IMPORT_MAX_BYTES", 300_000)
    files = [calendar_file(f"e{n}", 9 + n, 290_000) for n in range(5)]
    assert sum(map(len, files)) > 4 * 300_000 + 64 * 1024

    answer = upload(world.admin, world.admin_token, setup.mei.id, files)

    assert answer.status_code == 413
    assert TOO_LARGE_PAGE in Page(answer).text


def test_only_a_logged_in_session_may_send_the_larger_upload(
    app, world, setup, monkeypatch, unchanged
):
    monkeypatch.setitem(app.config, "CALENDAR_IMPORT_MAX_BYTES", 300_000)
    files = [calendar_file(f"e{n}", 9 + n, 280_000) for n in range(4)]

    answer = upload(world.visitor, world.visitor_token, setup.mei.id, files)

    assert answer.status_code == 413


# Fields one character over their limits, on the forms that take them.
LONG_FIELDS = [
    ("booking", "full_name", "n" * 201, "Please shorten the name to 200 characters or fewer."),
    ("booking", "email", "e" * 250 + "@example.org", "That email address is too long."),
    ("booking", "phone", "1" * 51, "Please shorten the phone number to 50 characters."),
    ("booking", "notes", "n" * 2001, "Please shorten the note to 2,000 characters."),
    ("waitlist", "full_name", "n" * 201, "Please shorten the name to 200 characters or fewer."),
    ("waitlist", "phone", "1" * 51, "Please shorten the phone number to 50 characters."),
    ("cancel", "reason", "r" * 501, "Please shorten the reason to 500 characters."),
    ("patient", "name", "n" * 201, "Please shorten the name to 200 characters or fewer."),
    ("patient", "email", "e" * 250 + "@example.org", "That email address is too long."),
    ("patient", "phone", "1" * 51, "Please shorten the phone number to 50 characters."),
    ("staff notes", "staff_notes", "n" * 5001, "Please shorten the notes to 5,000 characters."),
    ("clinic", "name", "n" * 201, "Please keep the clinic name to 200 characters."),
    ("clinic", "address", "a" * 501, "Please keep this to 500 characters."),
    ("clinic", "phone", "1" * 51, "Please keep this to 50 characters."),
    ("practitioner", "name", "n" * 201, "Please keep the name to 200 characters."),
    ("practitioner", "credentials", "c" * 301, "Please keep this to 300 characters."),
    ("room", "name", "n" * 101, "Please keep the room name to 100 characters."),
    ("token", "name", "n" * 101, "Please keep the name within 100 characters."),
]


# What a form needs besides what its page fills in (the fixtures' clinic address ends in
# ".test", which the email check refuses as not a real domain).
GOOD_VALUES = {
    "booking": {"full_name": "Ann", "email": "ann@example.org"},
    "waitlist": {"full_name": "Ann", "email": "ann@example.org", "days": "2026-11-26"},
    "clinic": {"email": "hello@clinic.example.com"},
    "practitioner": {"name": "Nia Okoro", "email": "nia@clinic.example.com"},
    "room": {"name": "Attic room"},
    "token": {"name": "Reports"},
}


def form_page(world: World, setup: Setup, which: str) -> tuple[FlaskClient, str, str | None]:
    """The browser, page and form action of one of the forms of ``LONG_FIELDS``."""
    booking, patient = world.values["booking_id"], world.values["patient_id"]
    pages = {
        "booking": (world.visitor, confirm_url(setup.follow_up, TUESDAY_10, setup.mei), None),
        "waitlist": (
            world.visitor,
            f"/waitlist?service={setup.follow_up.id}&practitioner={setup.mei.id}",
            None,
        ),
        "cancel": (world.visitor, f"/b/{world.tokens['booking']}/cancel", None),
        "patient": (
            world.admin,
            f"/staff/patients/{patient}",
            f"/staff/patients/{patient}/details",
        ),
        "staff notes": (
            world.admin,
            f"/staff/bookings/{booking}",
            f"/staff/bookings/{booking}/notes",
        ),
        "clinic": (world.admin, "/staff/setup/clinic", None),
        "practitioner": (world.admin, "/staff/setup/practitioners/new", None),
        "room": (world.admin, "/staff/setup/rooms", "/staff/setup/rooms"),
        "token": (world.admin, "/staff/tokens/", "/staff/tokens/"),
    }
    return pages[which]


@pytest.mark.parametrize("which", sorted({which for which, *_ in LONG_FIELDS}))
def test_a_field_over_its_limit_gets_a_422_with_the_fields_message(session, world, setup, which):
    client, path, action = form_page(world, setup, which)
    page = Page(client.get(path))
    assert page.status == 200, path
    before = snapshot(session)
    for field, value, message in [case[1:] for case in LONG_FIELDS if case[0] == which]:
        changes = {**GOOD_VALUES.get(which, {}), field: value}

        answer = post_form(client, page, action, **changes)

        assert answer.status_code == 422, (path, field)
        errors = field_errors(Page(answer))
        assert list(errors) == [field], "that field's error and no other"
        assert message in errors[field]
    assert snapshot(session) == before


def field_errors(page: Page) -> dict[str, list[str]]:
    """The errors shown under each field of a form, by the field's id."""
    errors: dict[str, list[str]] = {}
    for element in page.elements:
        if element.tag == "p" and "error" in element.attrs.get("class", "").split():
            errors.setdefault(element.attrs["id"].removesuffix("-error"), []).append(element.text)
    return errors


def api_booking(setup: Setup, **patient: str) -> dict[str, Any]:
    """A good booking body for the API, with changes to its patient."""
    return {
        "service": setup.follow_up.id,
        "practitioner": setup.james.id,
        "start": TUESDAY_10.isoformat(),
        "patient": {"name": "Ann", "email": "ann@example.org", "phone": "", **patient},
    }


LONG_API_FIELDS = [
    ("patient.name", {"name": "n" * 201}),
    ("patient.email", {"email": "e" * 250 + "@example.org"}),
    ("patient.phone", {"phone": "1" * 51}),
    ("notes", {}),
]


def test_an_api_field_over_its_limit_gets_a_422_naming_it(client, world_with_use, setup, unchanged):
    for path in ("/api/v1/bookings", "/api/v1/staff/bookings"):
        for field, patient in LONG_API_FIELDS:
            body = api_booking(setup, **patient)
            if field == "notes":
                body["notes"] = "n" * 2001

            answer = client.post(path, json=body, headers=bearer(world_with_use))

            assert answer.status_code == 422, (path, field)
            assert list(answer.get_json()["fields"]) == [field]


def test_the_waitlist_and_cancel_apis_refuse_overlong_fields(client, world, setup, unchanged):
    waitlist = {
        "service": setup.follow_up.id,
        "dates": ["2026-11-26"],
        "patient": {"name": "n" * 201, "email": "ann@example.org"},
    }
    joined = client.post("/api/v1/waitlist", json=waitlist)
    cancelled = client.post(
        f"/api/v1/bookings/{world.tokens['booking']}/cancel", json={"reason": "r" * 501}
    )

    assert joined.status_code == 422
    assert list(joined.get_json()["fields"]) == ["patient.name"]
    assert cancelled.status_code == 422
    assert list(cancelled.get_json()["fields"]) == ["reason"]


def huge_bodies(setup: Setup) -> dict[str, str]:
    """Bodies under the size limit that are large or deep in other ways."""
    booking = api_booking(setup)
    first = TUESDAY_10.isoformat()
    return {
        "20,000 unknown keys": json.dumps({**booking, **{f"k{n}": n for n in range(20_000)}}),
        "20,000 keys in the patient": json.dumps(
            {**booking, "patient": {**booking["patient"], **{f"k{n}": n for n in range(20_000)}}}
        ),
        "a course of 10,000": json.dumps({**booking, "repeat": {"count": 10_000}}),
        "10,000 changed dates": json.dumps(
            {**booking, "repeat": {"count": 3, "instead": [{"of": first, "start": None}] * 10_000}}
        ),
        "10,000 conditions": json.dumps(
            {**booking, "intake": {"conditions": ["diabetes"] * 10_000, "consent": True}}
        ),
        "arrays 100,000 deep": "[" * 100_000 + "]" * 100_000,
        "objects 100,000 deep": '{"a":' * 100_000 + "1" + "}" * 100_000,
        "a patient 100,000 deep": json.dumps(booking)[:-1]
        + ', "notes": '
        + "[" * 100_000
        + "]" * 100_000
        + "}",
        "a huge number": json.dumps(booking).replace(
            f'"service": {setup.follow_up.id}', '"service": 1' + "0" * 500_000
        ),
    }


def test_huge_or_deep_json_is_refused_quickly_and_plainly(client, world_with_use, setup, unchanged):
    for path in ("/api/v1/bookings", "/api/v1/staff/bookings"):
        for case, body in huge_bodies(setup).items():
            assert len(body) < LIMIT, case
            started = time.perf_counter()

            answer = client.post(
                path, data=body, content_type="application/json", headers=bearer(world_with_use)
            )

            assert time.perf_counter() - started < 2, ("quick", path, case)
            assert answer.status_code in (400, 413, 422), (path, case)
            assert answer.get_json()["error"], (path, case)
            assert len(answer.data) < 10_000, "the answer is not as large as the question"


def test_a_waitlist_request_for_10000_days_is_refused_quickly(client, setup, unchanged):
    days = [(date(2026, 11, 24) + timedelta(days=n % 300)).isoformat() for n in range(10_000)]
    body = {
        "service": setup.follow_up.id,
        "dates": days,
        "patient": {"name": "Ann", "email": "ann@example.org"},
    }
    started = time.perf_counter()

    answer = client.post("/api/v1/waitlist", json=body)

    assert time.perf_counter() - started < 2
    assert answer.status_code == 422
    assert answer.get_json()["fields"] == {
        "dates": "List should have at most 366 items after validation, not 10000"
    }


def test_a_course_of_10000_from_the_booking_form_is_refused(app, setup, unchanged):
    client = app.test_client()
    page = Page(client.get(confirm_url(setup.follow_up, TUESDAY_10, setup.mei)))

    answer = post_form(
        client, page, full_name="Ann", email="ann@example.org", sessions="10000", every_weeks="1"
    )

    assert answer.status_code == 422
    assert "Not a valid choice" in Page(answer).text


def test_many_unknown_keys_are_named_up_to_a_limit(client, setup, unchanged):
    body = {**api_booking(setup), **{f"k{n}": n for n in range(500)}}

    answer = client.post("/api/v1/bookings", json=body)

    assert answer.status_code == 422
    fields = answer.get_json()["fields"]
    assert len(fields) == 50
    assert fields["body"] == "451 more fields need fixing; fix the ones named here first."
    assert fields["k0"] == "is not a field this call knows"


def test_json_nested_too_deeply_to_read_is_a_400_that_says_so(client, setup, unchanged):
    for body in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000):
        answer = client.post("/api/v1/bookings", data=body, content_type="application/json")

        assert answer.status_code == 400
        assert answer.get_json()["error"] == (
            "The body is nested too deeply to read; no call takes more than a few levels."
        )
