"""The integrator's walk, end to end: read ``/api/docs``, log in and create an API token,
register a webhook, book and move a visit through the public API, mark it through the staff
API with the token, cancel it, run the dispatcher, and receive one signed delivery per change
on a real HTTP receiver that checks each signature as the README's snippet does."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator
from sqlalchemy.orm import Session

from scheduler.staff.models import Role
from scheduler.webhooks.models import WebhookEvent
from tests.conftest import PASSWORD, Clock, Setup, csrf_token, london

# The README's receiver snippet, as test_webhooks checks every delivery with it.
from tests.test_webhooks import verify

# The calls the walk makes, as the reference page names them.
CALLS = [
    "GET /api/v1/slots",
    "POST /api/v1/bookings",
    "POST /api/v1/bookings/{token}/reschedule",
    "GET /api/v1/staff/bookings",
    "POST /api/v1/staff/bookings/{booking_id}/status",
    "GET /api/v1/bookings/{token}",
    "POST /api/v1/bookings/{token}/cancel",
]


@dataclass
class Delivery:
    """One request the receiver took, and whether its signature verified."""

    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """The integrator's endpoint: checks each signature with the secret it was given, answers
    204 when it verifies and 401 when not."""

    clock: Clock
    url: str = ""
    secret: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, headers: dict[str, str], body: bytes) -> int:
        verified = verify(self.secret, headers, body, self.clock().timestamp())
        with self.lock:
            self.deliveries.append(Delivery(headers, body, verified))
        return 204 if verified else 401


@pytest.fixture
def receiver(clock: Clock) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1, on a free port, for the length of the test."""
    state = Receiver(clock)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(state.take(dict(self.headers.items()), body))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/clinic-events"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def link(page: str, text: str) -> str:
    """The address of the page's link whose text is ``text``."""
    match = re.search(rf'<a [^>]*\bhref="([^"]+)"[^>]*>{re.escape(text)}</a>', page)
    assert match, f"the page links to {text!r}"
    return match.group(1)


def test_an_integrator_takes_a_token_books_moves_marks_cancels_and_hears_each_change_signed(
    app: Flask, setup: Setup, make_user: Any, session: Session, clock: Clock, receiver: Receiver
):
    service, practitioner = setup.follow_up.id, setup.mei.id
    admin_email = make_user(Role.ADMIN).email
    session.rollback()
    browser = app.test_client()
    program = app.test_client()  # the integrator's code: no cookie, only what it is given

    # The reference page names every call the walk makes and where tokens come from.
    docs = browser.get("/api/docs")
    assert docs.status_code == 200
    for call in CALLS:
        assert f"<code>{call}</code>" in docs.text, call
    for event in WebhookEvent:
        assert event.value in docs.text, event
    tokens_page = link(docs.text, "API tokens")
    spec = program.get("/api/v1/openapi.json").get_json()

    # The token page asks for a login first, through the real form, then comes back.
    asked = browser.get(tokens_page)
    assert asked.status_code in (302, 303)
    login = asked.headers["Location"]
    form = browser.get(login)
    logged_in = browser.post(
        login,
        data={"email": admin_email, "password": PASSWORD, "csrf_token": csrf_token(form.text)},
    )
    assert logged_in.status_code == 303
    assert logged_in.headers["Location"].endswith(tokens_page)
    page = browser.get(tokens_page).text
    created = browser.post(
        tokens_page, data={"name": "Booking widget", "csrf_token": csrf_token(page)}
    )
    assert created.status_code == 201
    shown = re.search(r'<input id="new-token"[^>]*\bvalue="([^"]+)"', created.text)
    assert shown, "the new token is shown once"
    staff = {"Authorization": f"Bearer {shown.group(1)}"}

    # A webhook for every booking event; its page shows the secret to give the receiver.
    new_webhook = link(browser.get(link(page, "Webhooks")).text, "Add a webhook")
    registered = browser.post(
        new_webhook,
        data={
            "url": receiver.url,
            "events": [event.value for event in WebhookEvent],
            "csrf_token": csrf_token(browser.get(new_webhook).text),
        },
    )
    assert registered.status_code == 303, registered.text
    secret = re.search(
        r'id="webhook-secret">([^<]+)<', browser.get(registered.headers["Location"]).text
    )
    assert secret, "the webhook's page shows its secret"
    receiver.secret = secret.group(1)

    # Book a free time on Tuesday, and move it to a later one.
    tuesday = "2026-11-24"
    free = program.get(
        f"/api/v1/slots?service={service}&practitioner={practitioner}&start={tuesday}&end={tuesday}"
    ).get_json()["slots"]
    booking = program.post(
        "/api/v1/bookings",
        json={
            "service": service,
            "practitioner": practitioner,
            "start": free[0]["start"],
            "patient": {"name": "Ann Lee", "email": "ann@example.org", "phone": "07700 900123"},
            "notes": "Lower back pain",
        },
    )
    assert booking.status_code == 201, booking.json
    token = booking.json["token"]
    moved = program.post(f"/api/v1/bookings/{token}/reschedule", json={"start": free[-1]["start"]})
    assert moved.status_code == 200, moved.json
    assert moved.json["start"] == free[-1]["start"]

    # On the day, the front desk's system marks her arrived, by mistake, and puts it back.
    clock.now = london(tuesday, "09:00")
    listed = program.get(
        f"/api/v1/staff/bookings?start={tuesday}&end={tuesday}", headers=staff
    ).get_json()
    [booking_id] = [b["id"] for b in listed["items"] if b["manage_url"] == moved.json["manage_url"]]
    changes = []
    for status in ("arrived", "confirmed"):
        marked = program.post(
            f"/api/v1/staff/bookings/{booking_id}/status", json={"status": status}, headers=staff
        )
        assert marked.status_code == 200, marked.json
        assert marked.json["status"] == status
        changes.append(program.get(f"/api/v1/bookings/{token}").get_json())

    # Then the patient cancels.
    cancelled = program.post(f"/api/v1/bookings/{token}/cancel", json={"reason": "Feeling better"})
    assert cancelled.status_code == 200, cancelled.json
    assert cancelled.json["late_cancellation"] is True

    assert receiver.deliveries == [], "nothing is sent before the dispatcher runs"
    clock.now = london(tuesday, "09:01")
    ran = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert ran.exit_code == 0, ran.output

    got = receiver.deliveries
    assert [d.payload["event"] for d in got] == [
        "booking.created",
        "booking.rescheduled",
        "booking.status_changed",
        "booking.status_changed",
        "booking.cancelled",
    ]
    now = clock().timestamp()
    for delivery in got:
        assert delivery.verified
        assert verify(receiver.secret, delivery.headers, delivery.body, now)
        assert not verify("whsec_someone-else", delivery.headers, delivery.body, now)
        assert abs(now - int(delivery.headers["Webhook-Timestamp"])) <= 60, "signed just now"
        assert delivery.headers["Content-Type"] == "application/json"
        assert delivery.headers["Webhook-Id"] == delivery.payload["id"]
        assert delivery.headers["Webhook-Event"] == delivery.payload["event"]
    assert len({d.payload["id"] for d in got}) == 5, "each change is its own event"
    shape = Draft202012Validator(
        {"$ref": "#/components/schemas/BookingOut", "components": spec["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    for delivery in got:
        shape.validate(delivery.payload["data"])
    assert [d.payload["data"] for d in got] == [
        booking.json,
        moved.json,
        *changes,
        cancelled.json,
    ], "each delivery holds the booking as the API showed it after that change"
    assert [d.payload["data"]["status"] for d in got[2:]] == ["arrived", "confirmed", "cancelled"]
