"""Webhooks: admins register addresses; every booking change is delivered to them, signed,
through the dispatcher, with retries, a log of every answer and replay from the staff area.

A real HTTP receiver runs in the test process and checks each signature as an integrator's
would (the snippet in the README).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler import outbound
from scheduler.audit import Actor
from scheduler.booking.courses import CourseUnavailable, Repeat, book_course
from scheduler.booking.models import Booking
from scheduler.booking.operations import PatientDetails, reschedule_booking
from scheduler.clinic.models import Clinic, Practitioner, Treatment
from scheduler.db import begin_write
from scheduler.extensions import db
from scheduler.notifications.dispatch import LONGEST_RETRY, Settings, retry_delay
from scheduler.patients.operations import erase_patient
from scheduler.staff.models import Role
from scheduler.webhooks import dispatch
from scheduler.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery, WebhookEvent
from scheduler.webhooks.operations import ROTATION_GRACE
from tests.conftest import NOW, Clock, log_in, london, token_of

ALL_EVENTS = [event.value for event in WebhookEvent]
TOLERANCE_SECONDS = 300


# --- A receiver, as an integrator would write it --------------------------------------------


def verify(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    """Check a delivery's signature and freshness (the README's snippet)."""
    timestamp = headers.get("Webhook-Timestamp", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    signed = timestamp.encode() + b"." + body
    expected = "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return any(
        hmac.compare_digest(expected, given)
        for given in headers.get("Webhook-Signature", "").split()
    )


@dataclass
class Received:
    """One request the receiver took."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return self.payload["event"]


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that checks signatures and answers as it is told.

    ``secrets`` maps a path to the secret its webhook signs with; a request that does not
    verify (a wrong signature, a stale timestamp) is answered 401. ``answers`` are the
    statuses for the next requests (then 200); with ``hanging`` set it does not answer.
    """

    clock: Clock
    secrets: dict[str, str] = field(default_factory=dict)
    answers: list[int] = field(default_factory=list)
    hanging: bool = False
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.hanging:
            self.released.wait(10)
        if self.delay:
            self.released.wait(self.delay)
        secret = self.secrets.get(path)
        now = self.clock().timestamp()
        with self.lock:
            if secret is not None and not verify(secret, headers, body, now):
                status = 401
            else:
                status = self.answers.pop(0) if self.answers else 200
            self.requests.append(Received(path, headers, body, status))
        return status, f"<b>answer {status}</b> from the receiver".encode()


@pytest.fixture
def receiver(clock: Clock) -> Iterator[Receiver]:
    """A receiver listening on a free port for the length of the test."""
    state = Receiver(clock)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, answer = state.handle(self.path, dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- Helpers ----------------------------------------------------------------------------------


@pytest.fixture
def admin(client: FlaskClient, make_user: Callable[..., Any]) -> FlaskClient:
    """The test client, logged in as an admin."""
    log_in(client, make_user(Role.ADMIN).email)
    return client


@dataclass
class Registered:
    id: int
    path: str
    secret: str


def register(
    client: FlaskClient, receiver: Receiver, path: str, events: list[str] = ALL_EVENTS
) -> Registered:
    """Register the receiver's ``path`` through the staff page; the receiver learns the secret."""
    answer = client.post(
        "/staff/webhooks/new",
        data={
            "csrf_token": token_of(client, "/staff/webhooks/new"),
            "url": receiver.url(path),
            "events": events,
        },
    )
    assert answer.status_code == 303, answer.text
    page = client.get(answer.headers["Location"]).text
    match = re.search(r'id="webhook-secret">(whsec_[A-Za-z0-9_-]+)<', page)
    assert match, "the webhook's page shows its secret"
    webhook_id = int(answer.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    receiver.secrets[path] = match.group(1)
    return Registered(webhook_id, path, match.group(1))


def dispatch_once(app: Flask) -> str:
    """Run ``notifications run --once`` as an operator would; return what it printed."""
    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert result.exit_code == 0, result.output
    return result.output


def api_book(client: FlaskClient, setup: Any, start: Any, **extra: Any) -> dict[str, Any]:
    """Book a follow-up with Mei through the public API; return the booking it answers."""
    body = {
        "service": setup.follow_up.id,
        "practitioner": setup.mei.id,
        "start": start.isoformat(),
        "patient": {"name": "Ann Lee", "email": "ann@example.org", "phone": "+44 7700 900123"},
        **extra,
    }
    answer = client.post("/api/v1/bookings", json=body)
    assert answer.status_code == 201, answer.json
    return answer.json


def deliveries(session: Session) -> list[WebhookDelivery]:
    session.rollback()
    return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def booking_id(session: Session, token: str) -> int:
    session.rollback()
    return session.scalars(select(Booking.id).where(Booking.manage_token == token)).one()


# --- What is delivered ------------------------------------------------------------------------


def test_each_booking_change_is_delivered_once_signed_to_the_webhooks_subscribed_to_it(
    app, admin, session, setup, receiver, clock
):
    everything = register(admin, receiver, "/everything")
    cancellations = register(admin, receiver, "/cancellations", ["booking.cancelled"])
    switched_off = register(admin, receiver, "/off")
    answer = admin.post(
        f"/staff/webhooks/{switched_off.id}",
        data={
            "csrf_token": token_of(admin, "/staff/webhooks/"),
            "url": receiver.url("/off"),
            "events": ALL_EVENTS,
        },
    )
    assert answer.status_code == 303, "saved without 'active': switched off"

    moved = api_book(admin, setup, london("2026-11-24", "10:00"))
    token = moved["token"]
    answer = admin.post(
        f"/api/v1/bookings/{token}/reschedule",
        json={"start": london("2026-11-24", "11:00").isoformat()},
    )
    assert answer.status_code == 200
    assert admin.post(f"/api/v1/bookings/{token}/cancel").status_code == 200
    visit = api_book(admin, setup, london("2026-11-24", "14:00"))
    clock.now = london("2026-11-24", "13:55")
    answer = admin.post(
        f"/staff/bookings/{booking_id(session, visit['token'])}/status",
        data={"csrf_token": token_of(admin), "status": "arrived"},
    )
    assert answer.status_code == 303

    assert receiver.requests == [], "nothing is sent before the dispatcher runs"
    assert "webhooks: delivered 6, retrying 0, failed 0" in dispatch_once(app)

    got = receiver.at(everything.path)
    assert [r.event for r in got] == [
        "booking.created",
        "booking.rescheduled",
        "booking.cancelled",
        "booking.created",
        "booking.status_changed",
    ]
    assert [r.event for r in receiver.at(cancellations.path)] == ["booking.cancelled"]
    assert receiver.at("/off") == []
    assert all(r.answered == 200 for r in receiver.requests), "every signature verified"
    for request in receiver.requests:
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Webhook-Id"] == request.payload["id"]
        assert request.headers["Webhook-Event"] == request.event
        assert request.headers["Webhook-Timestamp"] == str(
            int(london("2026-11-24", "13:55").timestamp())
        )
    created, rescheduled, cancelled, _, arrived = (r.payload for r in got)
    assert created["data"] == moved, "the booking as the API showed it when it was made"
    assert created["created_at"] == NOW.isoformat()
    assert rescheduled["data"]["start"] == london("2026-11-24", "11:00").isoformat()
    assert cancelled["data"] == admin.get(f"/api/v1/bookings/{token}").json
    assert cancelled["id"] == receiver.at(cancellations.path)[0].payload["id"], (
        "one event, one id, whichever webhook it goes to"
    )
    assert arrived["data"]["status"] == "arrived"
    assert len({r.payload["id"] for r in got}) == 5

    assert dispatch_once(app).strip() == "sent 0, retrying 0, failed 0, skipped 0"
    assert len(receiver.requests) == 6, "each is delivered once"


def test_each_session_of_a_course_is_created_knowing_the_whole_course(
    app, admin, session, setup, receiver
):
    register(admin, receiver, "/hook", ["booking.created"])

    booked = api_book(
        admin, setup, london("2026-11-24", "10:00"), repeat={"count": 3, "every_weeks": 1}
    )
    dispatch_once(app)

    sessions = [r.payload["data"] for r in receiver.requests]
    assert [s["course"] for s in sessions] == [
        {"session": 1, "of": 3, "attended": 0},
        {"session": 2, "of": 3, "attended": 0},
        {"session": 3, "of": 3, "attended": 0},
    ]
    assert sessions == booked["course"]


IMPORTED = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Old Clinic Software//EN\r\nMETHOD:PUBLISH\r\n"
    "BEGIN:VEVENT\r\nUID:appt-1@oldclinic\r\nDTSTAMP:20261120T090000Z\r\n"
    "DTSTART:20261125T100000Z\r\nDTEND:20261125T110000Z\r\n"
    "SUMMARY:Follow-up treatment - Anna Berg\r\n"
    "ATTENDEE;CN=Anna Berg;RSVP=TRUE:mailto:anna@example.org\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def test_an_imported_appointment_is_created_and_an_approved_request_changes_status(
    app, admin, session, setup, receiver, tmp_path
):
    register(admin, receiver, "/hook", ["booking.created", "booking.status_changed"])
    (tmp_path / "old.ics").write_text(IMPORTED)
    result = app.test_cli_runner().invoke(
        args=[
            "calendar",
            "import",
            str(tmp_path / "old.ics"),
            "--practitioner",
            setup.mei.email,
            "--as",
            "appointments",
        ]
    )
    assert result.exit_code == 0, result.output
    requested = api_book(admin, setup, london("2026-11-24", "10:00"))
    booking = session.get(Booking, booking_id(session, requested["token"]))
    booking.approval_requested_at = NOW  # as the clinic's policy would for this patient
    session.commit()
    answer = admin.post(
        f"/staff/bookings/{booking.id}/approve", data={"csrf_token": token_of(admin)}
    )
    assert answer.status_code == 303

    dispatch_once(app)

    imported, created, approved = (r.payload for r in receiver.requests)
    assert imported["event"] == "booking.created"
    assert imported["data"]["patient"]["email"] == "anna@example.org"
    assert imported["data"]["manage_url"].startswith("https://clinic.test/b/"), (
        "a command's change has the links too"
    )
    assert created["event"] == "booking.created"
    assert approved["event"] == "booking.status_changed"
    assert approved["data"]["awaiting_approval"] is False
    assert approved["data"] == admin.get(f"/api/v1/bookings/{requested['token']}").json


def test_the_signature_proves_the_secret_and_a_captured_request_sent_later_is_refused(
    app, admin, session, setup, receiver, clock
):
    hook = register(admin, receiver, "/hook", ["booking.created"])
    api_book(admin, setup, london("2026-11-24", "10:00"))
    dispatch_once(app)
    [request] = receiver.requests
    assert request.answered == 200
    now = clock().timestamp()

    assert verify(hook.secret, request.headers, request.body, now)
    assert not verify("whsec_someone-else", request.headers, request.body, now)
    forged = request.body.replace(b"Ann Lee", b"Eve Lee")
    assert not verify(hook.secret, request.headers, forged, now)
    assert not verify(hook.secret, request.headers, request.body, now + TOLERANCE_SECONDS + 1)

    # Someone who captured the request sends it again ten minutes later: the receiver refuses.
    clock.now += timedelta(minutes=10)
    again = urllib.request.Request(  # noqa: S310
        receiver.url("/hook"), data=request.body, headers=request.headers, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(again, timeout=5)  # noqa: S310
    refused.value.close()
    assert refused.value.code == 401


def test_a_new_secret_signs_beside_the_old_one_for_a_day(
    app, admin, session, setup, receiver, clock
):
    hook = register(admin, receiver, "/hook", ["booking.created"])
    answer = admin.post(
        f"/staff/webhooks/{hook.id}/rotate",
        data={"csrf_token": token_of(admin, "/staff/webhooks/")},
    )
    assert answer.status_code == 303
    page = admin.get(f"/staff/webhooks/{hook.id}").text
    new_secret = re.search(r'id="webhook-secret">(whsec_[A-Za-z0-9_-]+)<', page).group(1)
    assert new_secret != hook.secret

    api_book(admin, setup, london("2026-11-24", "10:00"))
    dispatch_once(app)
    [request] = receiver.requests
    assert request.answered == 200, "the receiver still has the old secret: it verifies"
    assert len(request.headers["Webhook-Signature"].split()) == 2
    assert verify(new_secret, request.headers, request.body, clock().timestamp())

    clock.now += ROTATION_GRACE + timedelta(minutes=1)
    api_book(admin, setup, london("2026-11-26", "10:00"))
    dispatch_once(app)
    late = receiver.requests[-1]
    assert late.answered == 401, "a day later only the new secret signs"
    receiver.secrets["/hook"] = new_secret
    assert verify(new_secret, late.headers, late.body, clock().timestamp())


# --- Retries, failures, replay ----------------------------------------------------------------


def test_a_failing_receiver_is_tried_again_after_a_pause_and_delivered_once(
    app, admin, session, setup, receiver, clock
):
    register(admin, receiver, "/hook", ["booking.created"])
    receiver.answers = [500, 503]
    api_book(admin, setup, london("2026-11-24", "10:00"))

    assert "webhooks: delivered 0, retrying 1, failed 0" in dispatch_once(app)
    dispatch_once(app)
    assert len(receiver.requests) == 1, "not again before the pause is over"
    clock.now += timedelta(minutes=1)
    assert "webhooks: delivered 0, retrying 1, failed 0" in dispatch_once(app)
    clock.now += timedelta(minutes=1, seconds=59)
    dispatch_once(app)
    assert len(receiver.requests) == 2, "the second pause is twice as long"
    clock.now += timedelta(seconds=1)
    assert "webhooks: delivered 1, retrying 0, failed 0" in dispatch_once(app)
    clock.now += timedelta(hours=1)
    dispatch_once(app)

    assert [r.answered for r in receiver.requests] == [500, 503, 200]
    assert len({r.headers["Webhook-Id"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1, "the same body every time"
    [delivery] = deliveries(session)
    assert delivery.status is DeliveryStatus.DELIVERED
    assert [a.status_code for a in delivery.history] == [500, 503, 200]
    assert delivery.last_status_code == 200
    assert "answer 200" in delivery.last_response


def test_a_receiver_that_keeps_failing_is_given_up_on_and_shown_as_failed(
    app, admin, session, setup, receiver, clock
):
    hook = register(admin, receiver, "/hook", ["booking.created"])
    receiver.answers = [500] * dispatch.MAX_ATTEMPTS
    api_book(admin, setup, london("2026-11-24", "10:00"))

    pauses = []
    for _ in range(dispatch.MAX_ATTEMPTS):
        dispatch_once(app)
        [delivery] = deliveries(session)
        if delivery.status is DeliveryStatus.PENDING:
            pauses.append(delivery.next_attempt_at - clock.now)
        clock.now += LONGEST_RETRY
    dispatch_once(app)

    assert pauses == [retry_delay(n) for n in range(1, dispatch.MAX_ATTEMPTS)]
    assert pauses[:3] == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    assert len(receiver.requests) == dispatch.MAX_ATTEMPTS
    [delivery] = deliveries(session)
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.attempts == dispatch.MAX_ATTEMPTS
    assert f"gave up after {dispatch.MAX_ATTEMPTS} tries" in delivery.last_error
    listing = admin.get(f"/staff/webhooks/{hook.id}").text
    assert "Failed" in listing
    assert "the receiver answered 500" in listing
    page = admin.get(f"/staff/webhooks/{hook.id}/deliveries/{delivery.id}").text
    assert "&lt;b&gt;answer 500&lt;/b&gt; from the receiver" in page, "the answer, escaped"
    assert page.count("<td>500") == dispatch.MAX_ATTEMPTS


def test_a_receiver_that_does_not_answer_in_time_is_tried_again(
    app, admin, session, setup, receiver, monkeypatch
):
    monkeypatch.setitem(app.config, "WEBHOOK_TIMEOUT", 1)
    register(admin, receiver, "/hook", ["booking.created"])
    receiver.hanging = True
    api_book(admin, setup, london("2026-11-24", "10:00"))

    assert "webhooks: delivered 0, retrying 1, failed 0" in dispatch_once(app)

    [delivery] = deliveries(session)
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.last_status_code is None
    assert delivery.last_error == "no answer within 1 seconds"


def test_an_address_nobody_listens_on_is_tried_again(app, admin, session, setup, receiver):
    register(admin, receiver, "/hook", ["booking.created"])
    session.rollback()
    hook = session.scalars(select(Webhook)).one()
    hook.url = "http://127.0.0.1:9/closed"  # the discard port: nothing listens there
    session.commit()
    api_book(admin, setup, london("2026-11-24", "10:00"))

    assert "webhooks: delivered 0, retrying 1, failed 0" in dispatch_once(app)
    [delivery] = deliveries(session)
    assert delivery.last_error.startswith("could not connect")


def test_staff_replay_a_delivery_and_it_goes_again_with_the_same_payload(
    app, admin, session, setup, receiver, clock
):
    hook = register(admin, receiver, "/hook", ["booking.created"])
    api_book(admin, setup, london("2026-11-24", "10:00"))
    dispatch_once(app)
    [delivery] = deliveries(session)
    page = f"/staff/webhooks/{hook.id}/deliveries/{delivery.id}"
    assert "Deliver again" in admin.get(page).text

    clock.now += timedelta(minutes=5)
    answer = admin.post(f"{page}/replay", data={"csrf_token": token_of(admin, page)})
    assert answer.status_code == 303
    assert "Queued to be delivered again" in admin.get(page).text
    assert "webhooks: delivered 1, retrying 0, failed 0" in dispatch_once(app)

    first, again = receiver.requests
    assert again.answered == 200
    assert again.body == first.body
    assert again.headers["Webhook-Id"] == first.headers["Webhook-Id"]
    assert int(again.headers["Webhook-Timestamp"]) - int(first.headers["Webhook-Timestamp"]) == 300
    [delivery] = deliveries(session)
    assert delivery.status is DeliveryStatus.DELIVERED
    assert len(delivery.history) == 2
    assert admin.get(page).text.count("<td>Delivered</td>") == 2


def test_a_switched_off_webhook_gets_nothing_until_it_is_switched_on(
    app, admin, session, setup, receiver
):
    hook = register(admin, receiver, "/hook", ["booking.created", "booking.cancelled"])
    booked = api_book(admin, setup, london("2026-11-24", "10:00"))

    def switch(on: bool) -> None:
        data = {
            "csrf_token": token_of(admin, "/staff/webhooks/"),
            "url": receiver.url("/hook"),
            "events": ["booking.created", "booking.cancelled"],
        }
        if on:
            data["active"] = "y"
        assert admin.post(f"/staff/webhooks/{hook.id}", data=data).status_code == 303

    switch(on=False)
    admin.post(f"/api/v1/bookings/{booked['token']}/cancel")
    dispatch_once(app)
    assert receiver.requests == []
    assert len(deliveries(session)) == 1, "nothing new is queued for it while it is off"
    page = admin.get(f"/staff/webhooks/{hook.id}/deliveries/{deliveries(session)[0].id}")
    replay = admin.post(
        f"/staff/webhooks/{hook.id}/deliveries/{deliveries(session)[0].id}/replay",
        data={"csrf_token": token_of(admin, "/staff/webhooks/")},
        follow_redirects=True,
    )
    assert page.status_code == 200
    assert "switch it on to deliver again" in replay.text

    switch(on=True)
    dispatch_once(app)
    assert [r.event for r in receiver.requests] == ["booking.created"], "the waiting one goes"


# --- Only what was committed, once ------------------------------------------------------------


def test_nothing_is_queued_for_a_change_refused_with_a_conflict(
    app, admin, session, setup, receiver
):
    register(admin, receiver, "/hook")
    first = api_book(admin, setup, london("2026-11-24", "10:00"))
    other = api_book(admin, setup, london("2026-11-24", "14:00"))

    taken = admin.post(
        "/api/v1/bookings",
        json={
            "service": setup.follow_up.id,
            "practitioner": setup.mei.id,
            "start": london("2026-11-24", "10:00").isoformat(),
            "patient": {"name": "Bo Chen", "email": "bo@example.org"},
        },
    )
    clash = admin.post(
        f"/api/v1/bookings/{other['token']}/reschedule", json={"start": first["start"]}
    )

    assert (taken.status_code, clash.status_code) == (409, 409)
    assert [d.event for d in deliveries(session)] == [WebhookEvent.BOOKING_CREATED] * 2


def test_a_change_rolled_back_queues_nothing_even_when_the_session_commits_later(
    app, admin, session, setup, receiver
):
    register(admin, receiver, "/hook")
    booked = api_book(admin, setup, london("2026-11-24", "10:00"))
    with app.app_context():
        own = db.session()
        booking = own.scalars(select(Booking).where(Booking.manage_token == booked["token"])).one()
        reschedule_booking(
            own,
            clinic=own.get_one(Clinic, setup.clinic.id),
            booking=booking,
            start=london("2026-11-24", "15:00"),
            now=NOW,
        )
        own.rollback()
        own.commit()
        db.session.remove()

    assert [d.event for d in deliveries(session)] == [WebhookEvent.BOOKING_CREATED]


def test_of_courses_raced_for_the_same_times_only_the_winners_sessions_are_delivered(
    app, admin, session, setup, receiver
):
    register(admin, receiver, "/hook")
    racers = 6
    barrier = threading.Barrier(racers)
    ids = (setup.clinic.id, setup.follow_up.id, setup.mei.id)

    def attempt(index: int) -> str:
        with app.app_context():
            own = db.session()
            try:
                barrier.wait(timeout=30)
                begin_write(own)
                book_course(
                    own,
                    clinic=own.get_one(Clinic, ids[0]),
                    treatment=own.get_one(Treatment, ids[1]),
                    practitioner=own.get_one(Practitioner, ids[2]),
                    start=london("2026-11-24", "10:00") + timedelta(weeks=index % 2),
                    repeat=Repeat(3, 1),
                    patient=PatientDetails(f"Racer {index}", f"racer{index}@example.org"),
                    now=NOW,
                    uid_host="clinic.test",
                )
                own.commit()
                return "booked"
            except CourseUnavailable:
                own.rollback()
                return "taken"
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=racers) as pool:
        outcomes = Counter(pool.map(attempt, range(racers)))

    assert outcomes == {"booked": 1, "taken": racers - 1}
    rows = deliveries(session)
    booked = set(session.scalars(select(Booking.id)))
    assert len(booked) == 3
    assert {d.booking_id for d in rows} == booked
    assert len(rows) == 3


def test_two_dispatchers_at_once_deliver_each_event_exactly_once(
    app, admin, session, setup, receiver, clock
):
    for path in ("/a", "/b", "/c"):
        register(admin, receiver, path)
    api_book(admin, setup, london("2026-11-24", "10:00"), repeat={"count": 4, "every_weeks": 1})
    receiver.delay = 0.02
    barrier = threading.Barrier(2)

    def run(index: int) -> Counter[Any]:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                return dispatch.deliver_due_webhooks(
                    db.session(),
                    settings=Settings(base_url="", mail_from="", message_host="", batch_size=2),
                    clock=clock,
                    allow_private=True,
                )
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=2) as pool:
        tallies = list(pool.map(run, range(2)))

    assert sum(t[dispatch.AttemptResult.DELIVERED] for t in tallies) == 12
    sent = Counter((r.path, r.headers["Webhook-Id"]) for r in receiver.requests)
    assert len(sent) == 12
    assert set(sent.values()) == {1}
    rows = deliveries(session)
    assert {d.status for d in rows} == {DeliveryStatus.DELIVERED}
    assert all(len(d.history) == 1 for d in rows)


def test_a_stopped_dispatchers_claimed_deliveries_are_taken_over_after_the_lease(
    app, admin, session, setup, receiver, clock
):
    register(admin, receiver, "/hook")
    api_book(admin, setup, london("2026-11-24", "10:00"))

    def settings() -> Settings:
        return Settings(base_url="", mail_from="", message_host="")

    with app.app_context():
        killed = settings()
        claimed = dispatch.claim(db.session(), settings=killed, now=clock())
        assert len(claimed) == 1
        assert (
            dispatch.deliver_due_webhooks(
                db.session(), settings=settings(), clock=clock, allow_private=True
            )
            == {}
        )
        clock.now += killed.lease + timedelta(seconds=1)
        assert dispatch.deliver_due_webhooks(
            db.session(), settings=settings(), clock=clock, allow_private=True
        ) == {dispatch.AttemptResult.DELIVERED: 1}
        assert dispatch.deliver(db.session(), claimed[0], settings=killed, clock=clock) is None
        db.session.remove()

    assert len(receiver.requests) == 1


# --- Erasure ----------------------------------------------------------------------------------


def test_erasing_a_patient_blanks_them_in_the_delivered_payloads(
    app, admin, session, setup, receiver, clock
):
    register(admin, receiver, "/hook")
    booked = api_book(admin, setup, london("2026-11-24", "10:00"))
    admin.post(f"/api/v1/bookings/{booked['token']}/cancel")
    dispatch_once(app)
    booking = session.get(Booking, booking_id(session, booked["token"]))

    erase_patient(
        session, patient=booking.patient, actor=Actor("admin@clinic.example"), now=clock()
    )
    session.commit()

    for delivery in deliveries(session):
        assert "ann@example.org" not in delivery.payload
        assert "Ann Lee" not in delivery.payload
        assert json.loads(delivery.payload)["data"]["patient"]["name"] == "Erased patient"
        assert delivery.last_response == ""
        assert all(attempt.response == "" for attempt in delivery.history)


# --- The staff pages --------------------------------------------------------------------------


PRIVATE = "is inside a private network, not on the public internet"


@pytest.fixture
def public_only(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule as a clinic runs it: webhooks to public addresses only."""
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", False)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "Please enter the address"),
        ("ftp://example.org/hook", "must start with https://"),
        ("example.org/hook", "must start with https://"),
        ("javascript:alert(1)", "must start with https://"),
        ("https://user:secret@example.org/hook", "Take the user name and password out"),
        ("https:///hook", "has no host name"),
        ("https://example.org:99999/hook", "invalid port number"),
        ("https://example.org/my hook", "cannot contain spaces"),
        ("https://example.org/caf\u00e9", "plain ASCII"),
        ("https://example.org/hook#part", "Remove the #"),
        ("https://example.org/" + "a" * 2000, "longer than 2000 characters"),
        # Inside a private network: the server must not be made to call what only it reaches.
        ("http://127.0.0.1:5432/hook", PRIVATE),
        ("http://localhost/hook", PRIVATE),
        ("http://10.0.0.5/hook", PRIVATE),
        ("https://192.168.1.20/hook", PRIVATE),
        ("http://169.254.169.254/latest/meta-data/", PRIVATE),
        ("http://100.64.0.1/hook", PRIVATE),
        ("http://0.0.0.0/hook", PRIVATE),
        ("http://[::1]/hook", PRIVATE),
        ("http://[::ffff:127.0.0.1]/hook", PRIVATE),
        ("http://[fd00::1]/hook", PRIVATE),
    ],
)
def test_a_bad_address_is_refused_with_what_to_fix_and_nothing_saved(
    public_only, admin, session, url, message
):
    answer = admin.post(
        "/staff/webhooks/new",
        data={
            "csrf_token": token_of(admin, "/staff/webhooks/new"),
            "url": url,
            "events": ALL_EVENTS,
        },
    )

    assert answer.status_code == 422
    assert message in answer.text
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Webhook)) == 0


def test_a_webhook_needs_known_events_and_a_new_address(admin, session, receiver):
    token = token_of(admin, "/staff/webhooks/new")
    none = admin.post("/staff/webhooks/new", data={"csrf_token": token, "url": receiver.url("/x")})
    unknown = admin.post(
        "/staff/webhooks/new",
        data={"csrf_token": token, "url": receiver.url("/x"), "events": ["booking.deleted"]},
    )
    assert none.status_code == unknown.status_code == 422
    assert "Choose at least one event" in none.text
    assert "not a valid choice" in unknown.text
    register(admin, receiver, "/x")
    again = admin.post(
        "/staff/webhooks/new",
        data={"csrf_token": token, "url": receiver.url("/x"), "events": ALL_EVENTS},
    )
    assert again.status_code == 422
    assert "already registered" in again.text
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Webhook)) == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("gopher://example.org", "must start with https://"),
        ("http://10.1.2.3/hook", "is inside a private network"),
    ],
)
def test_changing_a_webhook_to_a_bad_address_changes_nothing(
    app, admin, session, receiver, monkeypatch, url, message
):
    hook = register(admin, receiver, "/x", ["booking.created"])
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", False)  # as a clinic runs it

    answer = admin.post(
        f"/staff/webhooks/{hook.id}",
        data={
            "csrf_token": token_of(admin, "/staff/webhooks/"),
            "url": url,
            "events": ALL_EVENTS,
            "active": "y",
        },
    )

    assert answer.status_code == 422
    assert message in answer.text
    session.rollback()
    saved = session.get(Webhook, hook.id)
    assert saved.url == receiver.url("/x")
    assert saved.events == [WebhookEvent.BOOKING_CREATED]


def test_admins_list_and_delete_webhooks_with_their_deliveries(
    app, admin, session, setup, receiver
):
    hook = register(admin, receiver, "/x", ["booking.created"])
    api_book(admin, setup, london("2026-11-24", "10:00"))
    dispatch_once(app)
    listing = admin.get("/staff/webhooks/").text
    assert receiver.url("/x") in listing
    assert "1 delivered" in listing
    assert "Webhooks</a>" in listing, "the staff menu links to the page"

    answer = admin.post(
        f"/staff/webhooks/{hook.id}/delete",
        data={"csrf_token": token_of(admin, "/staff/webhooks/")},
    )

    assert answer.status_code == 303
    assert "No webhooks yet" in admin.get("/staff/webhooks/").text
    assert deliveries(session) == []
    assert admin.get(f"/staff/webhooks/{hook.id}").status_code == 404


@pytest.mark.parametrize("role", [Role.RECEPTION, Role.PRACTITIONER])
def test_only_admins_see_or_change_webhooks(app, make_user, session, role):
    client = app.test_client()
    log_in(client, make_user(role).email)
    token = token_of(client)

    assert client.get("/staff/webhooks/").status_code == 403
    assert client.get("/staff/webhooks/new").status_code == 403
    answer = client.post(
        "/staff/webhooks/new",
        data={"csrf_token": token, "url": "https://example.org/hook", "events": ALL_EVENTS},
    )
    assert answer.status_code == 403
    assert "Webhooks</a>" not in client.get("/staff/").text
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Webhook)) == 0


# --- Where webhooks may go --------------------------------------------------------------------


def test_a_delivery_to_a_private_address_is_refused_before_anything_is_sent(
    app, admin, session, setup, receiver, monkeypatch
):
    register(admin, receiver, "/hook")  # allowed when it was saved, no longer when it is due
    api_book(admin, setup, london("2026-11-24", "10:00"))
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", False)

    assert "webhooks: delivered 0, retrying 1, failed 0" in dispatch_once(app)

    assert receiver.requests == []
    (delivery,) = deliveries(session)
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.last_error == (
        "refused: 127.0.0.1 is inside a private network, not on the public internet. "
        "Webhooks go to public addresses only; if the receiver is on the clinic's own network, "
        "the operator can set WEBHOOK_ALLOW_PRIVATE=true."
    )


def answers_once(monkeypatch: pytest.MonkeyPatch, name: str, first: str, then: str) -> list[str]:
    """Make DNS answer ``name`` with ``first`` once, then with ``then`` (a rebinding attack)."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        address = first if not asked else then
        asked.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_delivery_connects_to_the_address_that_was_checked(receiver, monkeypatch):
    name = "hooks.partner.example"
    asked = answers_once(monkeypatch, name, first="127.0.0.1", then="192.0.2.1")
    request = dispatch.Request(
        url=f"http://{name}:{receiver.port}/pinned",
        body=b"{}",
        headers={"Content-Type": "application/json"},
        allow_private=True,
    )

    answer = dispatch.post(request, 5)

    assert answer.status == 200, answer.error
    assert asked == ["127.0.0.1"], "the name is resolved once, and that address is used"
    (got,) = receiver.requests
    assert got.headers["Host"] == f"{name}:{receiver.port}", "the receiver sees its own name"


def test_a_name_that_turns_private_after_the_check_gets_nothing(receiver, monkeypatch):
    # A public answer for the check, then the clinic's own machine for the connection: the
    # connection goes to the public address checked, so the receiver on 127.0.0.1 gets nothing.
    name = "rebinding.attacker.example"
    asked = answers_once(monkeypatch, name, first="192.0.2.1", then="127.0.0.1")
    monkeypatch.setattr(dispatch, "vetted", _vetted_as_public)
    request = dispatch.Request(url=f"http://{name}:{receiver.port}/x", body=b"{}", headers={})

    answer = dispatch.post(request, 1)

    assert answer.status is None
    assert asked == ["192.0.2.1"]
    assert receiver.requests == []


def _vetted_as_public(host: str, port: int, *, allow_private: bool, advice: str) -> list[str]:
    # 192.0.2.1 (TEST-NET-1) never routes anywhere, but it is not public either: this stands
    # in for a public address, checked by the real rule in the other tests.
    assert not allow_private
    return outbound.resolve(host, port)


def test_a_name_resolving_to_a_private_address_is_refused_at_delivery(receiver, monkeypatch):
    name = "intranet.partner.example"
    answers_once(monkeypatch, name, first="10.0.0.7", then="10.0.0.7")
    request = dispatch.Request(url=f"https://{name}/hook", body=b"{}", headers={})

    answer = dispatch.post(request, 1)

    assert answer.status is None
    assert answer.error.startswith(f"refused: {name} (10.0.0.7) is inside a private network")


# --- The document describes what is delivered -------------------------------------------------


def test_the_document_describes_each_event_its_headers_and_its_payload(
    app, admin, client, session, setup, receiver
):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert sorted(spec["webhooks"]) == sorted(ALL_EVENTS)
    register(admin, receiver, "/hook")
    token = api_book(admin, setup, london("2026-11-24", "10:00"))["token"]
    moved = {"start": london("2026-11-24", "11:00").isoformat()}
    assert admin.post(f"/api/v1/bookings/{token}/reschedule", json=moved).status_code == 200
    assert admin.post(f"/api/v1/bookings/{token}/cancel").status_code == 200
    dispatch_once(app)

    assert [r.event for r in receiver.requests] == [
        "booking.created",
        "booking.rescheduled",
        "booking.cancelled",
    ]
    for request in receiver.requests:
        operation = spec["webhooks"][request.event]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        validator = Draft202012Validator(
            {**body, "components": spec["components"]},
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        assert list(validator.iter_errors(request.payload)) == []
        documented = {p["name"]: p["schema"] for p in operation["parameters"]}
        sent = {k: v for k, v in request.headers.items() if k.startswith("Webhook-")}
        assert set(sent) == set(documented)
        for name, value in sent.items():
            assert list(Draft202012Validator(documented[name]).iter_errors(value)) == [], name
