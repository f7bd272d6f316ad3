"""Security headers: every GET route of the app, filled with real objects, answers with the
content security policy, nosniff, the referrer policy and the caching its content needs; HSTS
only over https; and no template can bring inline script or style back."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from scheduler import create_app
from scheduler.booking.models import Booking
from scheduler.booking.operations import PatientDetails
from scheduler.extensions import db
from scheduler.notifications.models import Notification
from scheduler.staff.diary import Block, Grid
from scheduler.staff.models import Role
from scheduler.staff.tokens import issue_token
from scheduler.waitlist.models import OfferStatus, WaitlistOffer
from scheduler.waitlist.operations import join_waitlist
from scheduler.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent
from tests.conftest import NOW, Setup, csrf_token, log_in, london

ROOT = Path(__file__).resolve().parent.parent
VISIT = london("2026-11-25", "10:00")

# The patient mail previews are documents of their own, under their own policy.
EMAIL_DOCUMENTS = {
    "notifications.mail_message_html",
    "notifications.notification_html",
    "setup.checklist_mail",
}

WEEK = {"start": "2026-11-23", "end": "2026-11-29"}


def policy(response: TestResponse) -> dict[str, list[str]]:
    """The response's content security policy, directive by directive."""
    header = response.headers.get("Content-Security-Policy")
    assert header, f"{response.request.path} has no Content-Security-Policy"
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def sources(directives: dict[str, list[str]], name: str) -> list[str]:
    """What ``name`` allows, falling back to ``default-src`` as browsers do."""
    return directives.get(name, directives.get("default-src", []))


@dataclass
class World:
    """One of everything a route can name, all real rows."""

    values: dict[str, Any]
    tokens: dict[str, str]
    api_token: str


@pytest.fixture
def world(
    app: Flask,
    client: FlaskClient,
    session: Session,
    setup: Setup,
    book: Any,
    make_user: Any,
    tmp_path: Path,
) -> Iterator[World]:
    """A first visit booked (with its mail written to a folder), a waitlist entry with an
    offer, a webhook with a delivery, an admin logged in holding an API token."""
    mail_folder = app.config["MAIL_FOLDER"]
    app.config["MAIL_FOLDER"] = str(tmp_path)
    try:
        booking = book(VISIT, treatment=setup.initial, practitioner=setup.mei)
        result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
        assert result.exit_code == 0, result.output
        yield _world(client, session, setup, make_user, booking, tmp_path)
    finally:
        app.config["MAIL_FOLDER"] = mail_folder


def _world(
    client: FlaskClient,
    session: Session,
    setup: Setup,
    make_user: Any,
    booking: Booking,
    mail_folder: Path,
) -> World:
    mail_file = min(mail_folder.glob("*.eml"))

    entry = join_waitlist(
        session,
        clinic=setup.clinic,
        treatment=setup.follow_up,
        practitioner=None,
        days=[date(2026, 11, 26)],
        patient=PatientDetails("Wendy Wait", "wendy@example.org"),
        now=NOW,
    )
    session.flush()
    offer = WaitlistOffer(
        entry_id=entry.id,
        practitioner_id=setup.james.id,
        start_at=london("2026-11-26", "11:00"),
        end_at=london("2026-11-26", "12:00"),
        status=OfferStatus.OFFERED,
        token="offer-token-for-the-header-tests",
        offered_at=NOW,
        expires_at=NOW + timedelta(hours=4),
    )
    webhook = Webhook(url="https://receiver.example/hook", secret="whsec_test")
    session.add_all([offer, webhook])
    session.flush()
    delivery = WebhookDelivery(
        webhook_id=webhook.id,
        booking_id=booking.id,
        event=next(iter(WebhookEvent)),
        event_id="00000000-0000-4000-8000-000000000000",
        payload="{}",
        status=DeliveryStatus.PENDING,
        next_attempt_at=NOW,
    )
    session.add(delivery)
    session.commit()

    admin = make_user(Role.ADMIN)
    _, api_token = issue_token(session, user=admin, name="headers", now=NOW)
    session.commit()
    log_in(client, admin.email)
    notification = session.scalars(
        select(Notification).where(Notification.booking_id == booking.id)
    ).first()
    assert notification is not None
    return World(
        values={
            "booking_id": booking.id,
            "patient_id": booking.patient_id,
            "notification_id": notification.id,
            "name": mail_file.name,
            "practitioner_id": setup.mei.id,
            "other_practitioner_id": setup.james.id,
            "room_id": setup.rooms[0].id,
            "treatment_id": setup.initial.id,
            "user_id": admin.id,
            "webhook_id": webhook.id,
            "delivery_id": delivery.id,
            "code": "de",
            "filename": "style.css",
            "kind": "checklist",
        },
        tokens={
            "booking": booking.manage_token,
            "waitlist_entry": entry.token,
            "offer": offer.token,
            "feed": setup.mei.feed_token,
        },
        api_token=api_token,
    )


def token_for(endpoint: str, world: World) -> str:
    """The real token a route with ``<token>`` is about."""
    if endpoint.startswith("booking.") or endpoint == "api.get_booking":
        return world.tokens["booking"]
    if endpoint in ("waitlist.entry", "api.get_waitlist_entry"):
        return world.tokens["waitlist_entry"]
    if endpoint == "waitlist.offer":
        return world.tokens["offer"]
    if endpoint == "calendars.feed":
        return world.tokens["feed"]
    raise AssertionError(f"no token known for {endpoint}: add it to token_for")


def query_for(endpoint: str, world: World) -> dict[str, Any]:
    """The query string a route needs to answer 200 rather than explain what is missing."""
    if endpoint == "api.slots":
        return {"service": world.values["treatment_id"], **WEEK}
    if endpoint == "api.staff_busy":
        return {"practitioner": world.values["practitioner_id"], **WEEK}
    if endpoint == "api.staff_schedule":
        return WEEK
    if endpoint in ("booking.confirm", "bookings.new_details"):
        return {
            "service": world.values["treatment_id"],
            "practitioner": world.values["other_practitioner_id"],
            "start": VISIT.isoformat(),
        }
    if endpoint == "waitlist.join":
        return {"service": world.values["treatment_id"], "practitioner": "any"}
    if endpoint == "setup.checklist_mail":
        return {"treatment": world.values["treatment_id"]}
    return {}


def every_get(
    app: Flask,
    client: FlaskClient,
    world: World,
    only: Callable[[Rule], bool] = lambda rule: True,
    **options: Any,
) -> Iterator[tuple[Any, TestResponse]]:
    """Call every GET route of the app (``only`` those it picks) once, with its path filled from
    ``world``; ``options`` go to the client (``base_url``)."""
    rules = sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule)
    for rule in rules:
        if "GET" not in (rule.methods or ()) or not only(rule):
            continue
        values = {}
        for argument in rule.arguments:
            if argument == "token":
                values[argument] = token_for(rule.endpoint, world)
            else:
                assert argument in world.values, f"{rule.rule}: no value for <{argument}>"
                values[argument] = world.values[argument]
        with app.test_request_context():
            url = url_for(rule.endpoint, **values, **query_for(rule.endpoint, world))
        headers = {}
        if rule.endpoint.startswith("api.staff"):
            headers["Authorization"] = f"Bearer {world.api_token}"
        yield rule, client.get(url, headers=headers, buffered=True, **options)


def test_every_get_route_answers_with_the_security_headers(app, client, world):
    seen = 0
    for rule, response in every_get(app, client, world):
        seen += 1
        where = f"{rule.endpoint} {response.request.path}"
        # The language switch answers by sending the visitor back where they were; the code
        # page of two-step login, with no password given first, sends to the login.
        expected = 303 if rule.endpoint in ("i18n.switch", "two_factor.code") else 200
        assert response.status_code == expected, f"{where} answered {response.status_code}"
        directives = policy(response)
        assert directives["object-src"] == ["'none'"], where
        assert directives["base-uri"] == ["'none'"], where
        assert "'unsafe-inline'" not in sources(directives, "script-src"), where
        if rule.endpoint in EMAIL_DOCUMENTS:
            assert directives["default-src"] == ["'none'"], where
            assert directives["frame-ancestors"] == ["'self'"], where
            assert "sandbox" in directives, where
        else:
            assert directives["default-src"] == ["'self'"], where
            assert directives["frame-ancestors"] == ["'none'"], where
            assert directives["form-action"] == ["'self'"], where
            assert "'unsafe-inline'" not in sources(directives, "style-src"), where
        assert response.headers["X-Content-Type-Options"] == "nosniff", where
        referrer = "no-referrer" if holds_token(rule) else "same-origin"
        assert response.headers["Referrer-Policy"] == referrer, where
    assert seen > 40, "the routes were walked"


def holds_token(rule: Rule) -> bool:
    """Whether the rule's URL holds a secret token (a booking's, a waitlist place's, a feed's)."""
    return "token" in rule.arguments


def test_over_https_every_page_whose_url_holds_a_token_sends_no_referrer(app, client, world):
    seen = set()
    for rule, response in every_get(
        app, client, world, only=holds_token, base_url="https://clinic.test"
    ):
        seen.add(rule.endpoint)
        assert response.status_code == 200, f"{rule.endpoint} answered {response.status_code}"
        assert response.headers["Referrer-Policy"] == "no-referrer", rule.endpoint
    assert {
        "booking.manage",
        "booking.cancel",
        "booking.reschedule",
        "booking.intake",
        "booking.ics",
        "waitlist.entry",
        "waitlist.offer",
        "calendars.feed",
    } <= seen


def test_pages_with_a_secret_or_health_data_are_not_stored(app, client, world):
    checked = set()
    for rule, response in every_get(app, client, world):
        secret = "token" in rule.arguments
        private = rule.rule.startswith(("/staff/", "/api/v1/staff/"))
        if not (secret or private):
            continue
        checked.add(rule.endpoint)
        caching = response.headers.get("Cache-Control", "")
        if rule.endpoint == "calendars.feed":
            # Calendar apps poll the feed and revalidate it; no shared cache may keep it.
            assert "private" in caching
            assert "no-cache" in caching
        else:
            assert "no-store" in caching, f"{rule.endpoint} is cacheable: {caching!r}"
    assert {
        "booking.manage",
        "waitlist.entry",
        "waitlist.offer",
        "patients.detail",
        "bookings.detail",
        "tokens.index",
    } <= checked


def test_pages_with_a_token_link_to_nothing_outside_the_clinic(app, client, world):
    pages = 0
    for rule, response in every_get(app, client, world):
        if "token" not in rule.arguments or response.mimetype != "text/html":
            continue
        pages += 1
        addresses = re.findall(r'(?:href|src|action)="((?:[a-z]+:)?//[^"]*)"', response.text)
        outside = [a for a in addresses if not a.startswith(app.config["BASE_URL"] + "/")]
        assert outside == [], f"{rule.endpoint} links out: {outside}"
    assert pages >= 5


def test_public_pages_and_static_files_stay_cacheable(client, setup):
    for path in ("/", "/book", "/static/style.css", "/api/v1/services"):
        response = client.get(path, buffered=True)
        assert response.status_code == 200, path
        assert "no-store" not in response.headers.get("Cache-Control", ""), path


def test_a_new_api_token_and_a_booking_made_through_the_api_are_not_stored(client, setup):
    answer = client.post(
        "/api/v1/bookings",
        json={
            "service": setup.follow_up.id,
            "practitioner": setup.mei.id,
            "start": VISIT.isoformat(),
            "patient": {"name": "Ann Lee", "email": "ann@example.org"},
        },
    )

    assert answer.status_code == 201, answer.json
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in answer.headers


def test_errors_and_redirects_carry_the_headers_too(client, setup):
    for response, referrer in (
        (client.get("/b/no-such-token"), "no-referrer"),
        (client.get("/api/v1/bookings/no-such-token"), "no-referrer"),
        (client.get("/nowhere"), "same-origin"),
        (client.get("/staff/"), "same-origin"),  # to the login page
    ):
        assert response.status_code in (302, 303, 404), response.request.path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == referrer, response.request.path


# --- Transport --------------------------------------------------------------------------------


@pytest.fixture
def base_url(app: Flask) -> Iterator[Any]:
    """Set BASE_URL for one test."""
    before = app.config["BASE_URL"]

    def set_to(value: str) -> None:
        app.config["BASE_URL"] = value

    yield set_to
    app.config["BASE_URL"] = before


def test_hsts_is_sent_when_the_clinic_is_served_over_https(client, setup, base_url):
    base_url("https://clinic.test")

    answer = client.get("/")

    assert answer.status_code == 200, "plain http is served, not redirected"
    assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_hsts_is_sent_on_a_secure_request_whatever_base_url_says(client, setup, base_url):
    base_url("http://127.0.0.1:5000")

    answer = client.get("/", base_url="https://clinic.test")

    assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_a_laptop_on_plain_http_gets_no_hsts_and_no_redirect(client, setup, base_url):
    base_url("http://127.0.0.1:5000")

    for path in ("/", "/book", "/staff/login", "/api/v1/services"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert "Strict-Transport-Security" not in answer.headers, path


def test_the_session_cookie_stays_as_configured(test_database_url):
    settings = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": test_database_url,
        "SECRET_KEY": "test-secret",
        "SESSION_COOKIE_SECURE": False,
        "SESSION_COOKIE_SAMESITE": "Strict",
        "SESSION_COOKIE_HTTPONLY": True,
    }
    other = create_app(settings)
    try:
        other.test_client().get("/staff/login")
        for name in ("SESSION_COOKIE_SECURE", "SESSION_COOKIE_SAMESITE", "SESSION_COOKIE_HTTPONLY"):
            assert other.config[name] == settings[name], name
    finally:
        with other.app_context():
            db.engine.dispose()


def test_a_form_on_a_token_page_posts_over_https_without_a_referer(client, book, session):
    """The token pages send no Referer, even to the clinic, so their forms come without one;
    their CSRF token is what is checked (tests/test_attack_forms.py tries the attacks)."""
    booking = book(VISIT)
    page_url = f"https://clinic.test/b/{booking.manage_token}/cancel"
    page = client.get(page_url)

    answer = client.post(page_url, data={"csrf_token": csrf_token(page.text)})

    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert answer.status_code == 303, answer.text
    session.rollback()
    assert session.get(Booking, booking.id).status.value == "cancelled"


# --- Patient mail shown to staff ----------------------------------------------------------------


def test_a_mail_preview_is_a_sandboxed_frame_of_its_own_document(app, client, world):
    page = client.get(f"/staff/notifications/{world.values['notification_id']}")
    [frame] = re.findall(r'<iframe class="mail" sandbox="" [^>]*src="([^"]+)"', page.text)
    document = client.get(frame)

    assert "srcdoc" not in page.text, "a srcdoc frame would inherit the page's policy"
    assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]
    assert document.status_code == 200
    assert document.mimetype == "text/html"
    assert 'style="' in document.text, "the mail's own inline styles"
    directives = policy(document)
    assert directives["style-src"] == ["'unsafe-inline'"]
    assert "script-src" not in directives
    assert directives["default-src"] == ["'none'"]
    assert "sandbox" in directives
    assert document.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert document.headers["Cache-Control"] == "no-store"


def test_mail_documents_are_for_staff_only(app, world):
    for path in (
        f"/staff/notifications/{world.values['notification_id']}/html",
        f"/staff/mail/{world.values['name']}/html",
        f"/staff/setup/checklists/mail/checklist?treatment={world.values['treatment_id']}",
    ):
        answer = app.test_client().get(path)
        assert answer.status_code in (302, 303), path
        assert "/staff/login" in answer.headers["Location"], path


def test_a_message_without_that_mail_is_not_found(client, world):
    assert client.get("/staff/setup/checklists/mail/confirmation").status_code == 404
    assert client.get("/staff/mail/nothing.eml/html").status_code == 404


# --- The day and week grids -------------------------------------------------------------------


def test_a_block_is_placed_by_classes_instead_of_a_style_attribute(setup):
    grid = Grid(setup.clinic.tz, [])
    day = date(2026, 11, 25)
    block = Block("booking", london("2026-11-25", "10:30"), london("2026-11-25", "11:45"), "")
    short = Block("busy", london("2026-11-25", "13:00"), london("2026-11-25", "13:01"), "")

    assert grid.frame == "from-8 span-11"
    assert grid.place(block, day) == "at-h10 at-m30 len-h1 len-m15"
    assert grid.place(short, day) == "at-h13 at-m0 len-h0 len-m5", "at least five minutes tall"


def test_every_placing_class_on_the_grids_is_in_the_stylesheet(client, book, make_user, setup):
    book(VISIT, practitioner=setup.mei)
    log_in(client, make_user(Role.ADMIN).email)
    stylesheet = (ROOT / "static" / "grid.css").read_text()
    defined = set(re.findall(r"\.((?:at|len)-[hm]\d+|from-\d+|span-\d+) \{", stylesheet))

    for path in ("/staff/day?date=2026-11-25", "/staff/week?date=2026-11-25"):
        page = client.get(path)
        assert page.status_code == 200, path
        used = set(re.findall(r"\b((?:at|len)-[hm]\d+|from-\d+|span-\d+)\b", page.text))
        assert used, path
        assert used <= defined, sorted(used - defined)
    assert {f"at-h{hour}" for hour in range(25)} <= defined
    assert {f"len-m{minute}" for minute in range(60)} <= defined


# --- Templates --------------------------------------------------------------------------------

INLINE = {
    "an inline script": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I),
    "an event handler attribute": re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I),
    "a javascript: URL": re.compile(r"javascript:", re.I),
    "a style attribute": re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I),
    "a <style> block": re.compile(r"<style\b", re.I),
}


def page_templates() -> list[Path]:
    """Every template that can be served as a page (mail is sent, not served)."""
    folder = ROOT / "templates"
    return [
        path
        for path in sorted(folder.rglob("*.html"))
        if "mail" not in path.relative_to(folder).parts
    ]


def test_no_page_template_has_inline_script_or_style():
    found = []
    for path in page_templates():
        text = path.read_text()
        for what, pattern in INLINE.items():
            found += [f"{path.relative_to(ROOT)}: {what}" for _ in pattern.findall(text)]
    assert len(page_templates()) > 40
    assert found == []


@pytest.mark.parametrize(
    "snippet",
    [
        "<script>alert(1)</script>",
        '<button onclick="go()">',
        '<a href="javascript:go()">',
        '<div class="x" style="top: 1%">',
        "<style>p { color: red }</style>",
    ],
)
def test_the_template_check_catches_inline_code(snippet):
    assert any(pattern.search(snippet) for pattern in INLINE.values())


def test_the_template_check_allows_a_script_file():
    snippet = "<script src=\"{{ url_for('static', filename='copy.js') }}\" defer></script>"
    assert not any(pattern.search(snippet) for pattern in INLINE.values())
