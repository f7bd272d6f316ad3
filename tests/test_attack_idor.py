"""Attacks on who may reach what (IDOR): nobody reaches a booking, a patient, a calendar or a
token that is not theirs.

Three fronts. The public token URLs (manage links, calendar files, waitlist places and offers,
practitioner feeds): a near miss of a token, or a token of another kind, finds nothing and
changes nothing, and a token acts only on its own booking. The staff area and the staff API:
every route is walked from ``app.url_map`` with the ids of objects that belong to someone
else, so a route added later is attacked too. And mass assignment: fields a body or a form
does not have are refused or ignored, never applied.

Refused writes are checked against the whole database, row by row, before and after.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.routing import Rule, UnicodeConverter
from werkzeug.security import generate_password_hash
from werkzeug.test import TestResponse

import scheduler
from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import PatientDetails, book_session, cancel_booking
from scheduler.calendars.models import BusyTime, CalendarSubscription, ExternalEvent
from scheduler.clinic.models import Practitioner, TimeOff
from scheduler.extensions import db
from scheduler.notifications.models import Notification
from scheduler.patients.forms import ERASE_WORD
from scheduler.patients.intake import IntakeAnswers
from scheduler.patients.models import Intake, Patient
from scheduler.staff.models import ApiToken, Role, SecurityKey, StaffSession, User
from scheduler.staff.tokens import hash_token, issue_token
from scheduler.waitlist.models import WaitlistEntry, WaitlistOffer
from scheduler.waitlist.operations import join_waitlist
from scheduler.webhooks.models import WebhookDelivery, WebhookEvent
from scheduler.webhooks.operations import create_webhook
from tests.conftest import NOW, PASSWORD, Setup, csrf_token, log_in, london, token_of

PRIVATE_PREFIXES = ("/staff/", "/api/v1/staff/")
TUESDAY_10 = london("2026-11-24", "10:00")
WEDNESDAY = london("2026-11-25", "00:00").date()
FLAG_MARKUP = '<span class="flag">'

# --- The database, before and after ----------------------------------------------------------

# Written on purpose by refused requests: when a token was last used counts also when the
# request then fails (scheduler.api.staff._note_use).
IGNORED_COLUMNS = {("api_tokens", "last_used_at")}


def database_state(session: Session) -> dict[str, list[str]]:
    """Every row of every table, as comparable text."""
    session.rollback()
    state: dict[str, list[str]] = {}
    for table in db.metadata.sorted_tables:
        columns = [c for c in table.columns if (table.name, c.name) not in IGNORED_COLUMNS]
        rows = session.execute(select(*columns)).all()
        state[table.name] = sorted(repr(tuple(row)) for row in rows)
    session.rollback()
    return state


def assert_unchanged(before: dict[str, list[str]], after: dict[str, list[str]], what: str) -> None:
    changed = sorted(name for name in before if before[name] != after[name])
    assert not changed, f"{what} wrote to {changed}"


class Watch:
    """The database as last seen, for a walk of requests that must each write nothing."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._state = database_state(session)

    def unchanged(self, what: str) -> None:
        """Fail if anything was written since the last look."""
        now = database_state(self._session)
        assert_unchanged(self._state, now, what)
        self._state = now


# --- Two practitioners, each with a patient, health answers, time off and calendars -----------


@dataclass
class Side:
    """Everything one practitioner owns, and the text only those allowed may read."""

    practitioner: Practitioner
    user: User
    api_token: str
    api_token_row: ApiToken
    patient: Patient
    booking: Booking
    notification: Notification
    time_off: TimeOff
    subscription: CalendarSubscription
    medications: str
    other_conditions: str
    feed_token: str
    # Read once, so that the walks compare plain values and load nothing.
    private: tuple[str, ...]  # what only this practitioner (and the front desk) may see
    ids: dict[str, int]  # the ids of the objects above, by the URL argument naming them

    @property
    def health(self) -> tuple[str, ...]:
        """The patient's health answers as they would show on a page."""
        return (self.medications, self.other_conditions)


@dataclass
class World:
    setup: Setup
    mine: Side  # Mei's: the practitioner logged in below
    theirs: Side  # James's: what Mei must never reach
    admin: User
    admin_token: str
    reception: User
    reception_token: str
    webhook_id: int
    delivery_id: int

    def ids(self, side: Side) -> dict[str, Any]:
        """A value for each URL argument of the staff routes, naming ``side``'s objects.

        A route with an argument not named here fails the walks until it is added.
        """
        return {
            **side.ids,
            "treatment_id": self.setup.initial.id,
            "room_id": self.setup.rooms[0].id,
            "webhook_id": self.webhook_id,
            "delivery_id": self.delivery_id,
            "name": "20261123T080000000000-message.eml",
            "kind": "confirmation",
        }


def first_visit(
    session: Session, setup: Setup, practitioner: Practitioner, name: str, marker: str
) -> Booking:
    booking = book_session(
        session,
        clinic=setup.clinic,
        treatment=setup.initial,
        practitioner=practitioner,
        start=TUESDAY_10,
        patient=PatientDetails(name, f"{name.split()[0].lower()}@example.org", "+44 7700 900111"),
        now=NOW,
        uid_host="clinic.test",
        intake=IntakeAnswers(
            medications=f"{marker}-MEDS-warfarin",
            conditions=("pacemaker",),
            other_conditions=f"{marker}-OTHER-history",
            consent=True,
        ),
    )
    session.commit()
    return booking


def make_account(
    session: Session, role: Role, email: str, practitioner: Practitioner | None = None
) -> User:
    """A staff account with ``PASSWORD`` under a cheap hash: logging in is not what these
    tests are about, and scrypt would spend most of their time."""
    user = User(
        email=email,
        role=role,
        practitioner_id=practitioner.id if practitioner is not None else None,
        password_hash=generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
        session_version=1,
    )
    session.add(user)
    session.commit()
    return user


def make_side(
    session: Session,
    setup: Setup,
    make_time_off: Callable[..., TimeOff],
    practitioner: Practitioner,
    patient_name: str,
    off_day: str,
) -> Side:
    marker = practitioner.name.split()[0].upper()
    booking = first_visit(session, setup, practitioner, patient_name, marker)
    user = make_account(
        session, Role.PRACTITIONER, f"{marker.lower()}@clinic.example", practitioner
    )
    row, secret = issue_token(session, user=user, name=f"{marker} script", now=NOW)
    off = make_time_off(practitioner, london(off_day, "09:00"), london(off_day, "13:00"))
    off.reason = f"{marker}-OFF-reason"
    subscription = CalendarSubscription(
        practitioner_id=practitioner.id,
        url=f"https://{marker.lower()}-private.example/calendar.ics",
        name=f"{marker}-SUBSCRIPTION",
    )
    event = ExternalEvent(
        practitioner_id=practitioner.id, uid=f"{marker}@dentist", summary=f"{marker}-BUSY-dentist"
    )
    start, end = london("2026-11-25", "15:00"), london("2026-11-25", "16:00")
    event.busy_times.append(
        BusyTime(
            practitioner_id=practitioner.id,
            occurrence=start,
            start_at=start,
            end_at=end,
            summary=f"{marker}-BUSY-dentist",
        )
    )
    # Where this practitioner is logged in: the other must never see it, nor end it.
    device = StaffSession(
        user_id=user.id,
        key_hash=f"{marker}-device".ljust(64, "0"),
        version=user.session_version,
        created_at=NOW,
        address="203.0.113.77",
        user_agent=f"{marker}-PHONE-browser",
    )
    # Their security key: the other must never see its name, nor remove it.
    key = SecurityKey(
        user_id=user.id,
        credential_id=f"{marker}-credential",
        public_key=b"key",
        name=f"{marker}-KEY-name",
        created_at=NOW,
    )
    session.add_all([subscription, event, device, key])
    session.commit()
    notification = session.scalars(
        select(Notification).where(Notification.booking_id == booking.id)
    ).first()
    assert notification is not None
    medications, other_conditions = f"{marker}-MEDS-warfarin", f"{marker}-OTHER-history"
    return Side(
        practitioner=practitioner,
        user=user,
        api_token=secret,
        api_token_row=row,
        patient=booking.patient,
        booking=booking,
        notification=notification,
        time_off=off,
        subscription=subscription,
        medications=medications,
        other_conditions=other_conditions,
        feed_token=practitioner.feed_token,
        private=(
            booking.patient.name,
            booking.patient.email,
            medications,
            other_conditions,
            practitioner.feed_token,
            subscription.url,
            subscription.name,
            off.reason,
            f"{marker}-BUSY-dentist",
            f"{marker}-PHONE-browser",
            f"{marker}-KEY-name",
        ),
        ids={
            "booking_id": booking.id,
            "patient_id": booking.patient_id,
            "practitioner_id": practitioner.id,
            "subscription_id": subscription.id,
            "time_off_id": off.id,
            "notification_id": notification.id,
            "token_id": row.id,
            "user_id": user.id,
            "session_id": device.id,
            "key_id": key.id,
        },
    )


@pytest.fixture
def world(session, setup, make_time_off, app) -> World:
    webhook = create_webhook(
        session,
        url="http://127.0.0.1:9/hook",
        events=list(WebhookEvent),
        now=NOW,
        allow_private=True,
    )
    session.commit()
    with app.app_context():  # the webhook's deliveries are written as bookings commit
        mine = make_side(session, setup, make_time_off, setup.mei, "Amelia Mine", "2026-11-26")
        theirs = make_side(
            session, setup, make_time_off, setup.james, "Jasper Theirs", "2026-11-27"
        )
    delivery = session.scalars(select(WebhookDelivery.id)).first()
    assert delivery is not None
    admin = make_account(session, Role.ADMIN, "admin@clinic.example")
    reception = make_account(session, Role.RECEPTION, "reception@clinic.example")
    _, admin_token = issue_token(session, user=admin, name="admin script", now=NOW)
    _, reception_token = issue_token(session, user=reception, name="desk script", now=NOW)
    session.commit()
    return World(
        setup, mine, theirs, admin, admin_token, reception, reception_token, webhook.id, delivery
    )


def logged_in(app: Flask, user: User) -> FlaskClient:
    client = app.test_client()
    assert log_in(client, user.email).status_code == 303
    return client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- Walking the URL map ---------------------------------------------------------------------


def methods(rule: Rule) -> list[str]:
    return sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


def staff_rules(app: Flask) -> list[Rule]:
    """Every route of the staff area and the staff API, but logging in (the password, then the
    code or key of two-step login) and out."""
    return sorted(
        (
            rule
            for rule in app.url_map.iter_rules()
            if rule.rule.startswith(PRIVATE_PREFIXES)
            and rule.endpoint
            not in ("staff.login", "two_factor.code", "two_factor.key_login", "staff.logout")
        ),
        key=lambda rule: (rule.rule, rule.endpoint),
    )


def public_rules(app: Flask) -> list[Rule]:
    return [
        rule
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith(PRIVATE_PREFIXES)
        # Files: the stylesheets and scripts, and the icon at /favicon.ico.
        and rule.endpoint not in ("static", "clinic.favicon")
    ]


def fill(rule: Rule, values: dict[str, Any]) -> str:
    """The rule's URL with each argument taken from ``values``."""
    missing = set(rule.arguments) - set(values)
    assert not missing, f"{rule.rule}: say whose {sorted(missing)} the walks should use"
    path = rule.rule
    for name in rule.arguments:
        path = re.sub(rf"<(?:\w+:)?{name}>", quote(str(values[name]), safe=""), path)
    return path


def allowed(app: Flask, rule: Rule, role: Role) -> bool:
    return role in app.view_functions[rule.endpoint].allowed_roles


def is_api(rule: Rule) -> bool:
    return rule.rule.startswith("/api/")


def form_attempt(csrf: str, world: World) -> dict[str, str]:
    """A form that would change something on any staff page, were it let through."""
    return {
        "csrf_token": csrf,
        "status": "completed",
        "staff_notes": "written by an intruder",
        "reason": "cancelled by an intruder",
        "by_clinic": "y",
        "room": str(world.setup.rooms[1].id),
        "start": london("2026-11-25", "11:00").isoformat(),
        "practitioner": str(world.mine.practitioner.id),
        "name": "Renamed By Intruder",
        "email": "intruder@example.org",
        "phone": "+44 7700 900999",
        "confirm": ERASE_WORD,
        "whole_course": "1",
        "url": "https://intruder.example/calendar.ics",
        "password": "an intruder's new password",
        "role": "admin",
    }


def assert_hidden(answer: TestResponse, secrets_: tuple[str, ...], where: str) -> None:
    body = answer.get_data(as_text=True)
    for text in secrets_:
        assert text not in body, f"{where} shows {text!r}"


# === 1. Public tokens ===========================================================================

# What each token URL takes. A new token URL fails test_every_public_token_url_is_known until
# it is added here, and with that it is attacked by every test below.
TOKEN_KINDS = {
    "booking.manage": "booking",
    "booking.ics": "booking",
    "booking.cancel": "booking",
    "booking.reschedule": "booking",
    "booking.intake": "booking",
    "api.get_booking": "booking",
    "api.cancel": "booking",
    "api.reschedule": "booking",
    "waitlist.entry": "entry",
    "waitlist.leave": "entry",
    "api.get_waitlist_entry": "entry",
    "api.leave_waitlist_entry": "entry",
    "waitlist.offer": "offer",
    "calendars.feed": "feed",
}


def token_rules(app: Flask) -> list[Rule]:
    return [rule for rule in public_rules(app) if "token" in rule.arguments]


def test_every_public_token_url_is_known(app):
    for rule in token_rules(app):
        assert rule.arguments == {"token"}, f"{rule.rule} takes {sorted(rule.arguments)}"
        assert rule.endpoint in TOKEN_KINDS, f"{rule.rule}: add it to TOKEN_KINDS"
    assert {rule.endpoint for rule in token_rules(app)} == set(TOKEN_KINDS)


def test_no_public_url_takes_an_id(app):
    for rule in public_rules(app):
        # The converters say what each argument may be; a number there would be an id.
        for name, converter in rule._converters.items():
            assert type(converter) is UnicodeConverter, f"{rule.rule}: {name} is not a string"
            assert not re.search(r"(^|_)id$", name), f"{rule.rule} takes an id ({name})"


def test_public_urls_given_the_ids_of_a_booking_show_nothing_of_it(app, client, world):
    """Whatever a public URL takes besides a token, and whatever it reads from the query
    string, the ids of someone's booking and patient open nothing of theirs."""
    theirs = world.theirs
    ids = {
        "booking": theirs.booking.id,
        "booking_id": theirs.booking.id,
        "patient": theirs.patient.id,
        "patient_id": theirs.patient.id,
        "id": theirs.booking.id,
        "entry": 1,
        "offer": 1,
        "user": theirs.user.id,
    }
    probed = 0
    for rule in public_rules(app):
        if "GET" not in methods(rule) or "token" in rule.arguments:
            continue
        for value in (theirs.booking.id, theirs.patient.id):
            url = fill(rule, dict.fromkeys(rule.arguments, value))
            answer = client.get(url, query_string=ids)
            assert answer.status_code != 500, url
            assert_hidden(answer, theirs.private, url)
            probed += 1
    assert probed >= 10


@dataclass
class Tokens:
    """One token of each kind for patient A (Mei's) and patient B (James's)."""

    a: dict[str, str]
    b: dict[str, str]


@pytest.fixture
def tokens(world, session, setup, book, clock, app) -> Tokens:
    with app.app_context():  # the webhook's deliveries are written as bookings commit
        return make_tokens(world, session, setup, book, clock)


def make_tokens(world: World, session: Session, setup: Setup, book: Any, clock: Any) -> Tokens:
    entries = {}
    for side in (world.mine, world.theirs):
        entries[side.practitioner.id] = join_waitlist(
            session,
            clinic=setup.clinic,
            treatment=setup.follow_up,
            practitioner=None,
            days=[WEDNESDAY],
            patient=PatientDetails(side.patient.name, side.patient.email),
            now=clock(),
        )
    session.commit()
    freed = book(london("2026-11-25", "10:00"), practitioner=setup.mei)
    cancel_booking(session, clinic=setup.clinic, booking=freed, now=clock())
    session.commit()
    offers = {offer.entry_id: offer.token for offer in session.scalars(select(WaitlistOffer))}
    assert len(offers) == 2, "both waiting patients are offered the freed time"

    def of(side: Side) -> dict[str, str]:
        return {
            "booking": side.booking.manage_token,
            "entry": entries[side.practitioner.id].token,
            "offer": offers[entries[side.practitioner.id].id],
            "feed": side.feed_token,
        }

    return Tokens(of(world.mine), of(world.theirs))


def near_misses(token: str) -> list[str]:
    """Tokens a guesser might try: one character off, cut short, longer, in another case,
    with spaces, control characters, SQL wildcards and path tricks, percent-encoded."""
    other = "A" if token[-1] != "A" else "B"
    first = "B" if token[0] != "B" else "C"
    tried = [
        token[:-1] + other,
        first + token[1:],
        token[: len(token) // 2] + other + token[len(token) // 2 + 1 :],
        token[:-1],
        token[:22],
        token[1:],
        token + "A",
        token + token,
        token.upper(),
        token.lower(),
        token.swapcase(),
        token + "%20",
        "%20" + token,
        token + "%00",
        token + "%0A",
        token[:-1] + "_",
        token[:-1] + "%25",
        "_" * len(token),
        "%25",
        token[:8] + "%25",
        "%2A",
        token + "%2F..",
        "..%2F" + token,
        "%2E%2E",
        "x" * 3000,
    ]
    return [candidate for candidate in dict.fromkeys(tried) if candidate != token]


def token_url(rule: Rule, token: str) -> str:
    """The rule's URL with ``token`` put in as it stands (already percent-encoded)."""
    return re.sub(r"<(?:\w+:)?token>", token, rule.rule)


def public_attempt(
    client: FlaskClient, rule: Rule, method: str, url: str, csrf: str
) -> TestResponse:
    """Send what would change the booking or place behind ``url``, were its token right."""
    if rule.rule.startswith("/api/"):
        body = {"start": london("2026-11-25", "14:00").isoformat()} if "reschedule" in url else {}
        return client.open(url, method=method, json=body)
    data = {
        "csrf_token": csrf,
        "reason": "guessed",
        "start": london("2026-11-25", "14:00").isoformat(),
        "medications": "changed by a guesser",
        "consent": "y",
        "full_name": "A Guesser",
        "email": "guesser@example.org",
    }
    return client.open(url, method=method, data=data)


def test_the_genuine_tokens_open_their_own_pages(app, client, tokens, world):
    """The baseline the near misses below are measured against."""
    for rule in token_rules(app):
        if "GET" not in methods(rule):
            continue
        answer = client.get(token_url(rule, tokens.a[TOKEN_KINDS[rule.endpoint]]))
        assert answer.status_code in (200, 304), (rule.rule, answer.status_code)


def test_near_misses_and_tokens_of_other_kinds_find_nothing_and_write_nothing(
    app, client, session, tokens, world
):
    csrf = csrf_token(client.get("/staff/login").text)
    watch = Watch(session)
    for rule in token_rules(app):
        kind = TOKEN_KINDS[rule.endpoint]
        tried = [
            *near_misses(tokens.a[kind]),
            *(tokens.a[other] for other in tokens.a if other != kind),
            *(tokens.b[other] for other in tokens.b if other != kind),
        ]
        for method in methods(rule):
            for token in tried:
                answer = public_attempt(client, rule, method, token_url(rule, token), csrf)
                assert answer.status_code == 404, (method, rule.rule, token[:60])
                # The page may repeat the address asked for, but nothing else.
                hidden = world.mine.private + world.theirs.private
                asked = unquote(token)
                assert_hidden(answer, tuple(t for t in hidden if t not in asked), rule.rule)
            watch.unchanged(f"{method} {rule.rule}")


def test_a_control_character_in_a_token_is_a_404_not_an_error(app, client, tokens):
    """Regression: on PostgreSQL a NUL byte in any token URL was a 500 (the database refuses
    NUL in text, so the lookup failed instead of missing)."""
    csrf = csrf_token(client.get("/staff/login").text)
    for rule in token_rules(app):
        token = tokens.a[TOKEN_KINDS[rule.endpoint]]
        for method in methods(rule):
            for tried in (f"{token}%00", f"%00{token}", "%00", f"{token[:10]}%01%7F"):
                answer = public_attempt(client, rule, method, token_url(rule, tried), csrf)
                assert answer.status_code == 404, (method, rule.rule, tried)


def test_an_ics_suffix_or_an_encoded_slash_does_not_reach_another_booking(client, tokens, world):
    a, b = tokens.a["booking"], tokens.b["booking"]
    for url in (
        f"/b/{a}%2F..%2F{b}",
        f"/b/{a}/../{b}",
        f"/b/{a}.ics/../{b}",
        f"/feeds/{a}.ics",
        f"/feeds/{tokens.a['feed']}.ics/../{b}.ics",
        f"/api/v1/bookings/{a}%2F..%2F{b}",
    ):
        answer = client.get(url)
        assert world.theirs.patient.name not in answer.text, url
        assert answer.status_code == 404, url


def booking_row(session: Session, booking: Booking) -> Booking:
    session.rollback()
    return session.get_one(Booking, booking.id)


def test_a_manage_link_shows_and_changes_only_its_own_booking(client, session, world, tokens):
    a, b = world.mine.booking, world.theirs.booking
    page = client.get(f"/b/{a.manage_token}")
    assert world.mine.patient.name in page.text
    assert_hidden(page, (world.theirs.patient.name, b.manage_token), "A's manage page")

    # A's cancel form, with B's token, id and patient named in every way a form could.
    form = client.get(f"/b/{a.manage_token}/cancel")
    answer = client.post(
        f"/b/{a.manage_token}/cancel?token={b.manage_token}&booking={b.id}",
        data={
            "csrf_token": csrf_token(form.text),
            "reason": "A cancels",
            "token": b.manage_token,
            "manage_token": b.manage_token,
            "booking": str(b.id),
            "booking_id": str(b.id),
            "id": str(b.id),
            "patient_id": str(b.patient_id),
        },
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/b/{a.manage_token}"
    assert booking_row(session, a).status is BookingStatus.CANCELLED
    assert booking_row(session, b).status is BookingStatus.CONFIRMED


def test_a_reschedule_form_cannot_move_the_booking_to_another_practitioner_or_patient(
    client, session, world
):
    a, b = world.mine.booking, world.theirs.booking
    new_start = london("2026-11-25", "11:00")
    form = client.get(f"/b/{a.manage_token}/reschedule?start={quote(new_start.isoformat())}")
    answer = client.post(
        f"/b/{a.manage_token}/reschedule?practitioner={b.practitioner_id}",
        data={
            "csrf_token": csrf_token(form.text),
            "start": new_start.isoformat(),
            "practitioner": str(b.practitioner_id),
            "practitioner_id": str(b.practitioner_id),
            "patient_id": str(b.patient_id),
            "status": "completed",
            "token": b.manage_token,
        },
    )
    assert answer.status_code == 303, answer.text
    moved = booking_row(session, a)
    assert (moved.start_at, moved.practitioner_id, moved.patient_id, moved.status) == (
        new_start,
        a.practitioner_id,
        a.patient_id,
        BookingStatus.CONFIRMED,
    )
    assert moved.manage_token == a.manage_token
    assert booking_row(session, b).start_at == TUESDAY_10


def test_the_api_refuses_a_body_that_names_another_booking(client, session, world):
    a, b = world.mine.booking, world.theirs.booking
    before = database_state(session)
    for path, body in (
        ("cancel", {"token": b.manage_token}),
        ("cancel", {"booking": b.id, "reason": "x"}),
        ("reschedule", {"start": london("2026-11-25", "14:00").isoformat(), "token": "x"}),
        ("reschedule", {"start": london("2026-11-25", "14:00").isoformat(), "practitioner": 2}),
    ):
        answer = client.post(f"/api/v1/bookings/{a.manage_token}/{path}", json=body)
        assert answer.status_code == 422, (path, body, answer.json)
    assert_unchanged(before, database_state(session), "API bodies naming another booking")
    shown = client.get(f"/api/v1/bookings/{a.manage_token}").json
    assert shown["token"] == a.manage_token
    assert world.theirs.patient.email not in str(shown)


def book_course(client: FlaskClient, setup: Setup, email: str, practitioner: Practitioner) -> str:
    answer = client.post(
        "/api/v1/bookings",
        json={
            "service": setup.follow_up.id,
            "practitioner": practitioner.id,
            "start": london("2026-11-30", "09:00").isoformat(),
            "patient": {"name": email.split("@")[0], "email": email},
            "repeat": {"count": 3, "every_weeks": 1},
        },
    )
    assert answer.status_code == 201, answer.json
    return str(answer.json["course"][0]["token"])


def test_a_course_link_cancels_only_its_own_course(client, session, world):
    setup = world.setup
    mine = book_course(client, setup, "course.a@example.org", setup.mei)
    theirs = book_course(client, setup, "course.b@example.org", setup.james)
    form = client.get(f"/b/{mine}/cancel?rest=1")
    answer = client.post(
        f"/b/{mine}/cancel?rest=1&token={theirs}",
        data={"csrf_token": csrf_token(form.text), "token": theirs, "course_id": "2"},
    )
    assert answer.status_code == 303
    session.rollback()
    by_patient: dict[str, set[BookingStatus]] = {}
    for booking in session.scalars(select(Booking).where(Booking.course_id.is_not(None))):
        by_patient.setdefault(booking.patient.email, set()).add(booking.status)
    assert by_patient == {
        "course.a@example.org": {BookingStatus.CANCELLED},
        "course.b@example.org": {BookingStatus.CONFIRMED},
    }


class Spy:
    """Stands in for ``secrets.token_urlsafe``, noting what it gave and for how many bytes."""

    def __init__(self) -> None:
        self.given: dict[str, int] = {}
        self._real = secrets.token_urlsafe

    def __call__(self, nbytes: int | None = None) -> str:
        value = self._real(nbytes)
        self.given[value] = nbytes or 32
        return value


def test_every_token_is_at_least_128_random_bits_from_secrets(
    app, client, session, setup, monkeypatch
):
    spy = Spy()
    monkeypatch.setattr(secrets, "token_urlsafe", spy)
    answer = client.post(
        "/api/v1/bookings",
        json={
            "service": setup.follow_up.id,
            "practitioner": setup.mei.id,
            "start": london("2026-11-25", "10:00").isoformat(),
            "patient": {"name": "Ann", "email": "ann@example.org"},
        },
    )
    assert answer.status_code == 201
    for email in ("wait.one@example.org", "wait.two@example.org"):
        joined = client.post(
            "/api/v1/waitlist",
            json={
                "service": setup.follow_up.id,
                "dates": [WEDNESDAY.isoformat()],
                "patient": {"name": "Waiting", "email": email},
            },
        )
        assert joined.status_code == 201, joined.json
    assert client.post(f"/api/v1/bookings/{answer.json['token']}/cancel").status_code == 200
    session.rollback()  # end the read that began before the requests wrote
    practitioner = Practitioner(name="New", email="new@clinic.test", treatments=[])
    session.add(practitioner)
    session.commit()
    user = make_account(session, Role.ADMIN, "admin@clinic.example")
    _, api_secret = issue_token(session, user=user, name="x", now=NOW)
    session.commit()

    session.rollback()
    issued = {
        "manage": session.scalars(select(Booking.manage_token)).all(),
        "waitlist": session.scalars(select(WaitlistEntry.token)).all(),
        "offer": session.scalars(select(WaitlistOffer.token)).all(),
        "feed": [practitioner.feed_token],
        "api": [api_secret.removeprefix("sk_")],
    }
    for kind, values in issued.items():
        assert values, f"no {kind} token was issued"
        for value in values:
            assert value in spy.given, f"a {kind} token does not come from secrets"
            assert spy.given[value] >= 16, f"a {kind} token has fewer than 128 bits"
    everything = [value for values in issued.values() for value in values]
    assert len(set(everything)) == len(everything)


def test_an_api_token_is_kept_only_as_its_hash(session, world):
    session.rollback()
    row = session.get_one(ApiToken, world.theirs.api_token_row.id)
    assert row.token_hash == hashlib.sha256(world.theirs.api_token.encode()).hexdigest()
    assert row.token_hash == hash_token(world.theirs.api_token)
    secret_part = world.theirs.api_token.removeprefix("sk_")
    dump = repr(database_state(session))
    assert secret_part not in dump
    assert secret_part[6:] not in dump


SECRET_NAME = re.compile(r"(token|secret|password)(_hash)?$", re.IGNORECASE)


def _is_column(node: ast.expr) -> bool:
    """``Model.column``: a comparison the database makes, in a WHERE clause."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id[:1].isupper()
    )


def _names_a_secret(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return bool(SECRET_NAME.search(node.id))
    if isinstance(node, ast.Attribute):
        return bool(SECRET_NAME.search(node.attr))
    return False


def test_no_secret_is_compared_in_python():
    """Presented tokens are looked up by the database (API tokens by their SHA-256), never
    compared character by character with ``==`` in Python, which leaks how much matched
    through timing. A comparison in Python must use ``hmac.compare_digest``."""
    found = []
    root = Path(scheduler.__file__).parent.parent
    for path in sorted((root / "scheduler").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if not re.search(r"token|secret|password", source, re.IGNORECASE):
            continue
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                continue
            operands = [node.left, *node.comparators]
            if any(_names_a_secret(o) for o in operands) and not any(
                _is_column(o) for o in operands
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno} {ast.unparse(node)}")
    assert found == []


# --- Someone else's email address -----------------------------------------------------------


def book_as(client: FlaskClient, setup: Setup, email: str, **extra: Any) -> str:
    """Book through the public API as a stranger who knows ``email``; return the token."""
    body: dict[str, Any] = {
        "service": setup.follow_up.id,
        "practitioner": setup.james.id,
        "start": london("2026-11-25", "10:00").isoformat(),
        "patient": {"name": "Mallory", "email": email},
    }
    body.update(extra)
    answer = client.post("/api/v1/bookings", json=body)
    assert answer.status_code == 201, answer.json
    return str(answer.json["token"])


def test_booking_with_a_patients_email_does_not_show_their_health_answers(client, world):
    """Regression: the intake page of any booking was filled with the answers on file, so
    whoever booked with a patient's email address read that patient's health answers."""
    victim = world.mine
    token = book_as(client, world.setup, victim.patient.email)

    page = client.get(f"/b/{token}/intake")

    assert page.status_code == 200
    assert_hidden(page, victim.health, "the intake page of a stranger's booking")
    assert 'value="pacemaker" checked' not in page.text
    assert "checked" not in page.text


def test_booking_with_a_patients_email_does_not_show_their_name_or_phone(client, world):
    """Regression: the manage page said "Booked for" the name on file, and the API answer gave
    the name and phone on file, so whoever booked with a patient's email address learnt
    them. A booking now keeps and shows what was typed for it."""
    victim = world.mine
    token = book_as(client, world.setup, victim.patient.email)

    for path in (f"/b/{token}", f"/b/{token}/reschedule", f"/b/{token}/cancel"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert_hidden(page, (victim.patient.name, "+44 7700 900111", "7700"), path)
        assert victim.patient.email not in page.text, path
    assert "Booked for Mallory" in client.get(f"/b/{token}").text
    answer = client.get(f"/api/v1/bookings/{token}").json
    assert answer["patient"] == {"name": "Mallory", "email": victim.patient.email, "phone": ""}


def test_joining_the_waitlist_with_a_patients_email_does_not_show_their_name(client, world):
    victim = world.mine
    joined = client.post(
        "/api/v1/waitlist",
        json={
            "service": world.setup.follow_up.id,
            "practitioner": world.setup.mei.id,
            "dates": ["2026-11-30"],
            "patient": {"name": "Mallory", "email": victim.patient.email},
        },
    )
    assert joined.status_code == 201, joined.json
    page = client.get(joined.json["manage_url"].removeprefix("https://clinic.test"))
    assert page.status_code == 200
    assert_hidden(page, (victim.patient.name, "7700"), "a stranger's waitlist place")
    assert "For Mallory" in page.text
    place = client.get(joined.json["manage_url"].replace("/waitlist/", "/api/v1/waitlist/"))
    assert place.json["patient"]["name"] == "Mallory"


def test_booking_with_a_patients_email_cannot_take_away_their_health_answers(
    client, session, world
):
    """Regression: answers given online replaced those on file, so whoever booked with a
    patient's email could erase a pacemaker or a blood thinner from their record. Online
    answers now add to what is on file; staff correct it."""
    victim = world.mine
    token = book_as(
        client,
        world.setup,
        victim.patient.email,
        intake={"medications": "", "conditions": [], "consent": True},
    )
    page = client.get(f"/b/{token}/intake")
    answer = client.post(
        f"/b/{token}/intake",
        data={
            "csrf_token": csrf_token(page.text),
            "medications": "None",
            "other_conditions": "",
            "consent": "y",
        },
    )
    assert answer.status_code == 303

    session.rollback()
    intake = session.get_one(Patient, victim.patient.id).intake
    assert intake is not None
    assert victim.medications in intake.medications
    assert "None" in intake.medications, "what the patient adds is kept too"
    assert intake.conditions == ["pacemaker"]
    assert victim.other_conditions in intake.other_conditions


def test_staff_still_replace_the_answers(app, session, world):
    """Staff, who see the patient, correct answers; only online forms merely add."""
    client = logged_in(app, world.reception)
    setup = world.setup
    start = london("2026-11-25", "11:00")
    url = (
        f"/staff/bookings/new/details?service={setup.initial.id}"
        f"&practitioner={setup.mei.id}&start={quote(start.isoformat())}"
    )
    page = client.get(url)
    answer = client.post(
        url,
        data={
            "csrf_token": csrf_token(page.text),
            "full_name": world.mine.patient.name,
            "email": world.mine.patient.email,
            "phone": "",
            "medications": "Stopped warfarin",
            "consent": "y",
            "sessions": "1",
            "every_weeks": "1",
        },
    )
    assert answer.status_code == 303, answer.text
    session.rollback()
    intake = session.get_one(Patient, world.mine.patient.id).intake
    assert intake is not None
    assert (intake.medications, intake.conditions) == ("Stopped warfarin", [])


# === 2. Roles and ownership in the staff area and the staff API =================================


def test_a_practitioner_reaches_nothing_of_another_practitioners_by_id(app, session, world):
    client = logged_in(app, world.mine.user)
    csrf = token_of(client, "/staff/password")
    theirs = world.ids(world.theirs)
    watch = Watch(session)
    checked = 0
    for rule in staff_rules(app):
        if not rule.arguments:
            continue
        url = fill(rule, theirs)
        expected = 404 if allowed(app, rule, Role.PRACTITIONER) else 403
        for method in methods(rule):
            if is_api(rule):
                answer = client.open(
                    url,
                    method=method,
                    headers=bearer(world.mine.api_token),
                    json={"status": "completed"},
                )
            else:
                answer = client.open(url, method=method, data=form_attempt(csrf, world))
            assert answer.status_code == expected, (method, url, answer.status_code)
            assert_hidden(answer, world.theirs.private, f"{method} {url}")
            watch.unchanged(f"{method} {url}")
            checked += 1
    assert checked > 40


def test_a_practitioner_gets_their_own_objects_by_id(app, world):
    """The baseline: the same walk with Mei's own objects is let through where the role may."""
    client = logged_in(app, world.mine.user)
    mine = world.ids(world.mine)
    for rule in staff_rules(app):
        if not rule.arguments or "GET" not in methods(rule):
            continue
        if not allowed(app, rule, Role.PRACTITIONER):
            continue
        headers = bearer(world.mine.api_token) if is_api(rule) else {}
        answer = client.get(fill(rule, mine), headers=headers)
        assert answer.status_code == 200, rule.rule


def test_a_practitioner_cannot_name_another_practitioner_in_a_form(app, session, world):
    client = logged_in(app, world.mine.user)
    csrf = token_of(client)
    james = str(world.theirs.practitioner.id)
    before = database_state(session)
    imported = client.post(
        "/staff/calendars/import",
        data={
            "csrf_token": csrf,
            "practitioner": james,
            "kind": "busy",
            "files": [
                (
                    io.BytesIO(
                        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\n"
                        b"UID:x@y\r\nDTSTAMP:20261120T120000Z\r\nDTSTART:20261125T100000Z\r\n"
                        b"DTEND:20261125T110000Z\r\nSUMMARY:Planted\r\nEND:VEVENT\r\n"
                        b"END:VCALENDAR\r\n"
                    ),
                    "planted.ics",
                )
            ],
        },
        content_type="multipart/form-data",
    )
    subscribed = client.post(
        "/staff/calendars/subscriptions",
        data={"csrf_token": csrf, "practitioner": james, "url": "https://planted.example/x.ics"},
    )
    assert (imported.status_code, subscribed.status_code) == (422, 422)
    assert_unchanged(before, database_state(session), "naming another practitioner")


# Query strings the list pages and the API read, each naming James's things.
def naming_theirs(world: World) -> list[dict[str, str]]:
    james, patient = world.theirs.practitioner, world.theirs.patient
    days = {"date": "2026-11-24", "from": "2026-11-23", "to": "2026-11-30"}
    return [
        {},
        days,
        {**days, "practitioner": str(james.id), "start": "2026-11-23", "end": "2026-11-30"},
        {**days, "q": patient.name[:4], "patient": patient.name[:4]},
        {**days, "patient": str(patient.id), "by": "room"},
    ]


def test_lists_days_and_weeks_show_a_practitioner_only_their_own(app, world):
    client = logged_in(app, world.mine.user)
    seen_mine = 0
    for rule in staff_rules(app):
        if rule.arguments or "GET" not in methods(rule):
            continue
        headers = bearer(world.mine.api_token) if is_api(rule) else {}
        for query in naming_theirs(world):
            answer = client.get(rule.rule, query_string=query, headers=headers)
            assert answer.status_code != 500, rule.rule
            assert_hidden(answer, world.theirs.private, f"{rule.rule}?{query}")
            assert FLAG_MARKUP not in answer.text or world.mine.patient.name in answer.text
            seen_mine += world.mine.patient.name in answer.text
    assert seen_mine > 5, "Mei's own patient shows on her lists (the walk can see names)"


def test_reception_never_sees_health_answers_anywhere(app, world):
    client = logged_in(app, world.reception)
    health = world.mine.health + world.theirs.health
    shown = 0
    for side in (world.mine, world.theirs):
        values = world.ids(side)
        for rule in staff_rules(app):
            if "GET" not in methods(rule) or not allowed(app, rule, Role.RECEPTION):
                continue
            if rule.arguments and side is world.mine:
                continue  # one patient's pages by id are enough; the lists show both
            headers = bearer(world.reception_token) if is_api(rule) else {}
            queries = naming_theirs(world)[1:3] if not rule.arguments else [{}]
            for query in queries:
                answer = client.get(fill(rule, values), query_string=query, headers=headers)
                assert answer.status_code != 500, rule.rule
                assert_hidden(answer, health, f"reception's {rule.rule}")
                assert FLAG_MARKUP not in answer.text, rule.rule
                shown += side.patient.name in answer.text
    assert shown > 10, "reception sees the patients themselves"


def test_a_nul_byte_in_a_search_is_no_error(app, world):
    """Regression: on PostgreSQL a NUL byte in a patient search was a 500."""
    client = logged_in(app, world.reception)
    for url in ("/staff/bookings/", "/staff/patients/"):
        assert client.get(url, query_string={"q": "\x00"}).status_code == 200, url
        answer = client.get(url, query_string={"q": "Jasper\x00"})
        assert answer.status_code == 200, url
    headers = bearer(world.reception_token)
    for url, name in (("/api/v1/staff/patients", "q"), ("/api/v1/staff/bookings", "patient")):
        answer = client.get(url, query_string={name: "\x00Jasp"}, headers=headers)
        assert answer.status_code == 422, url  # the API names the parameter to fix
        assert name in answer.json["fields"]


def test_reception_exports_a_patient_without_their_health_answers(app, session, world):
    """Regression: the patient export gave reception the health answers their pages hide."""
    patient = world.theirs.patient
    for user, sees in ((world.reception, False), (world.admin, True)):
        client = logged_in(app, user)
        answer = client.post(
            f"/staff/patients/{patient.id}/export",
            data={"csrf_token": token_of(client, f"/staff/patients/{patient.id}")},
        )
        assert answer.status_code == 200
        assert (world.theirs.medications in answer.text) is sees, user.role
        assert (world.theirs.other_conditions in answer.text) is sees, user.role
        assert ("pacemaker" in answer.text) is sees, user.role
        assert answer.json["intake"] is not None, "that answers are on file is not hidden"


def test_reception_manages_every_practitioners_bookings(app, session, world):
    client = logged_in(app, world.reception)
    booking = world.theirs.booking
    page = client.get(f"/staff/bookings/{booking.id}")
    assert page.status_code == 200
    assert_hidden(page, world.theirs.health, "reception's booking page")
    answer = client.post(
        f"/staff/bookings/{booking.id}/cancel",
        data={"csrf_token": csrf_token(page.text), "reason": "Practitioner ill", "by_clinic": "y"},
    )
    assert answer.status_code == 303
    assert booking_row(session, booking).status is BookingStatus.CANCELLED
    api = client.get(f"/api/v1/staff/bookings/{booking.id}", headers=bearer(world.reception_token))
    assert (api.json["intake_on_file"], api.json["intake"]) == (True, None)


def test_a_practitioner_reads_the_health_answers_of_their_own_patients_only(app, world):
    client = logged_in(app, world.mine.user)
    mine, theirs = world.mine, world.theirs
    for url in (f"/staff/bookings/{mine.booking.id}", f"/staff/patients/{mine.patient.id}"):
        page = client.get(url)
        assert mine.medications in page.text, url
        assert mine.other_conditions in page.text, url
    api = client.get(f"/api/v1/staff/patients/{mine.patient.id}", headers=bearer(mine.api_token))
    assert api.json["intake"]["medications"] == mine.medications
    for url in (f"/staff/bookings/{theirs.booking.id}", f"/staff/patients/{theirs.patient.id}"):
        assert client.get(url).status_code == 404
    admin = logged_in(app, world.admin)
    assert theirs.medications in admin.get(f"/staff/bookings/{theirs.booking.id}").text


# What only admins may open, whatever the routes say of themselves.
ADMIN_AREAS = ("/staff/users/", "/staff/setup/", "/staff/webhooks/")
FRONT_DESK_AREAS = ("/staff/notifications/", "/staff/mail/")


def test_the_admin_and_front_desk_areas_say_so(app):
    for rule in staff_rules(app):
        roles = app.view_functions[rule.endpoint].allowed_roles
        if rule.rule.startswith(ADMIN_AREAS):
            assert roles == {Role.ADMIN}, rule.rule
        if rule.rule.startswith(FRONT_DESK_AREAS):
            assert Role.PRACTITIONER not in roles, rule.rule
        if rule.endpoint == "patients.erase":
            assert roles == {Role.ADMIN}


def test_a_patient_of_both_practitioners_shows_each_only_their_own_visits(app, session, world):
    setup, theirs = world.setup, world.theirs
    session.rollback()
    with app.app_context():  # the webhook's deliveries are written as bookings commit
        booked = book_session(
            session,
            clinic=setup.clinic,
            treatment=setup.follow_up,
            practitioner=setup.mei,
            start=london("2026-11-25", "11:00"),
            patient=PatientDetails(theirs.patient.name, theirs.patient.email),
            now=NOW,
            uid_host="clinic.test",
        )
        session.get_one(Booking, theirs.booking.id).staff_notes = "JAMES-STAFF-NOTE"
        session.commit()
    assert booked.patient_id == theirs.patient.id

    client = logged_in(app, world.mine.user)
    page = client.get(f"/staff/patients/{theirs.patient.id}")
    api = client.get(
        f"/api/v1/staff/patients/{theirs.patient.id}", headers=bearer(world.mine.api_token)
    )
    assert (page.status_code, api.status_code) == (200, 200)
    assert [visit["id"] for visit in api.json["upcoming"] + api.json["past"]] == [booked.id]
    for answer in (page, api):
        assert "JAMES-STAFF-NOTE" not in answer.text
        assert f"/staff/bookings/{theirs.booking.id}" not in answer.text
    assert client.get(f"/staff/bookings/{theirs.booking.id}").status_code == 404


def test_only_admins_reach_admin_pages_and_refusals_write_nothing(app, session, world):
    for user, role in ((world.reception, Role.RECEPTION), (world.mine.user, Role.PRACTITIONER)):
        client = logged_in(app, user)
        csrf = token_of(client, "/staff/password")
        token = world.reception_token if role is Role.RECEPTION else world.mine.api_token
        refused = 0
        watch = Watch(session)
        for rule in staff_rules(app):
            if allowed(app, rule, role):
                continue
            url = fill(rule, world.ids(world.theirs))
            for method in methods(rule):
                if is_api(rule):
                    answer = client.open(url, method=method, headers=bearer(token), json={})
                else:
                    answer = client.open(url, method=method, data=form_attempt(csrf, world))
                assert answer.status_code == 403, (role, method, url)
                watch.unchanged(f"{role} {method} {url}")
                refused += 1
        assert refused > 20, role


def test_no_one_but_an_admin_revokes_anothers_token(app, session, world):
    for user in (world.reception, world.mine.user):
        client = logged_in(app, user)
        before = database_state(session)
        answer = client.post(
            f"/staff/tokens/{world.theirs.api_token_row.id}/revoke",
            data={"csrf_token": token_of(client, "/staff/tokens/")},
        )
        assert answer.status_code == 404
        assert_unchanged(before, database_state(session), "revoking another's token")
        page = client.get("/staff/tokens/").text
        assert world.theirs.api_token_row.name not in page
        assert world.theirs.api_token_row.hint not in page


def test_logged_out_clients_are_sent_to_log_in_or_get_401(app, client, session, world):
    csrf = csrf_token(client.get("/staff/login").text)
    before = database_state(session)
    for rule in staff_rules(app):
        url = fill(rule, world.ids(world.theirs))
        for method in methods(rule):
            answer = client.open(url, method=method, data={"csrf_token": csrf})
            if is_api(rule):
                assert answer.status_code == 401, url
                assert answer.headers["WWW-Authenticate"].startswith("Bearer"), url
            else:
                assert answer.status_code == 302, (method, url)
                assert answer.headers["Location"].startswith("/staff/login"), url
            assert_hidden(answer, world.theirs.private, url)
    assert_unchanged(before, database_state(session), "logged-out requests")


def api_rules_for_a_token(app: Flask, world: World) -> Iterator[tuple[str, str]]:
    for rule in staff_rules(app):
        if is_api(rule):
            for method in methods(rule):
                yield method, fill(rule, world.ids(world.mine))


def test_the_staff_api_ignores_a_logged_in_session(app, world):
    client = logged_in(app, world.admin)
    for method, url in api_rules_for_a_token(app, world):
        assert client.open(url, method=method, json={}).status_code == 401, url


def test_a_made_up_or_near_miss_token_gets_401(app, client, world):
    token = world.mine.api_token
    for header in (
        "Bearer sk_" + "A" * 43,
        "Basic c2tfOnBhc3N3b3Jk",
        "Bearer",
        "bearer  ",
        f"Token {token}",
        f"{token}",
        f"Bearer {token}x",
        f"Bearer {token.upper()}",
        f"Bearer {token[:-1]}",
        f"Bearer {token.removeprefix('sk_')}",
        f"Bearer {hash_token(token)}",
        f"Bearer {world.mine.api_token_row.hint}",
    ):
        for method, url in api_rules_for_a_token(app, world):
            answer = client.open(url, method=method, headers={"Authorization": header}, json={})
            assert answer.status_code == 401, (header, url)
    for method, url in api_rules_for_a_token(app, world):
        answer = client.open(url + f"?access_token={token}", method=method, json={})
        assert answer.status_code == 401, url


def test_a_revoked_token_or_a_switched_off_accounts_token_gets_401(app, client, session, world):
    mine, reception = world.mine, world.reception_token
    url = f"/api/v1/staff/bookings/{mine.booking.id}"
    assert client.get(url, headers=bearer(mine.api_token)).status_code == 200
    assert client.get(url, headers=bearer(reception)).status_code == 200

    revoke = logged_in(app, mine.user)
    assert (
        revoke.post(
            f"/staff/tokens/{mine.api_token_row.id}/revoke",
            data={"csrf_token": token_of(revoke, "/staff/tokens/")},
        ).status_code
        == 303
    )
    session.rollback()
    session.get_one(User, world.reception.id).active = False
    session.commit()

    for token in (mine.api_token, reception):
        before = database_state(session)
        for method, path in api_rules_for_a_token(app, world):
            answer = client.open(path, method=method, headers=bearer(token), json={})
            assert answer.status_code == 401, (method, path)
            assert answer.json["error"]
        assert_unchanged(before, database_state(session), "a dead token")


def test_a_switched_off_accounts_session_stops_at_once(app, session, world):
    client = logged_in(app, world.mine.user)
    url = f"/staff/bookings/{world.mine.booking.id}"
    assert client.get(url).status_code == 200

    admin = logged_in(app, world.admin)
    page = admin.get(f"/staff/users/{world.mine.user.id}")
    switched = admin.post(
        f"/staff/users/{world.mine.user.id}",
        data={
            "csrf_token": csrf_token(page.text),
            "role": "practitioner",
            "practitioner": str(world.mine.practitioner.id),
        },
    )
    assert switched.status_code == 303

    for path in (url, "/staff/", f"/staff/patients/{world.mine.patient.id}"):
        answer = client.get(path)
        assert answer.status_code == 302, path
        assert answer.headers["Location"].startswith("/staff/login")
    assert log_in(app.test_client(), world.mine.user.email).status_code == 401


def test_an_account_switched_off_in_the_database_is_logged_out_at_once(app, session, world):
    """The same when only ``active`` changes (a script, a restore), not the session version."""
    client = logged_in(app, world.reception)
    assert client.get("/staff/bookings/").status_code == 200
    session.rollback()
    session.get_one(User, world.reception.id).active = False
    session.commit()
    answer = client.get("/staff/bookings/")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/staff/login")


def test_a_practitioner_moved_to_another_practitioner_loses_the_old_ones_patients(
    app, session, world
):
    client = logged_in(app, world.mine.user)
    assert client.get(f"/staff/patients/{world.mine.patient.id}").status_code == 200
    session.rollback()
    session.get_one(User, world.mine.user.id).practitioner_id = world.theirs.practitioner.id
    session.commit()
    assert client.get(f"/staff/patients/{world.mine.patient.id}").status_code == 404
    assert client.get(f"/staff/patients/{world.theirs.patient.id}").status_code == 200


# === 3. Mass assignment =========================================================================

EXTRA_FIELDS = {
    "status": "completed",
    "id": 1,
    "token": "chosen-by-the-caller",
    "manage_token": "chosen-by-the-caller",
    "patient_id": 1,
    "practitioner_id": 2,
    "room_id": 2,
    "role": "admin",
    "awaiting_approval": False,
    "created_at": "2020-01-01T00:00:00+00:00",
}


def public_booking_body(setup: Setup) -> dict[str, Any]:
    return {
        "service": setup.follow_up.id,
        "practitioner": setup.mei.id,
        "start": london("2026-11-25", "11:00").isoformat(),
        "patient": {"name": "Eve", "email": "eve@example.org"},
    }


def test_the_public_api_refuses_fields_it_does_not_know(client, session, world):
    setup = world.setup
    token = world.mine.booking.manage_token
    before = database_state(session)
    for field, value in EXTRA_FIELDS.items():
        calls: list[tuple[str, dict[str, Any]]] = [
            ("/api/v1/bookings", {**public_booking_body(setup), field: value}),
            (
                "/api/v1/bookings",
                {
                    **public_booking_body(setup),
                    "patient": {"name": "Eve", "email": "eve@example.org", field: value},
                },
            ),
            (f"/api/v1/bookings/{token}/cancel", {field: value}),
            (
                f"/api/v1/bookings/{token}/reschedule",
                {"start": london("2026-11-25", "11:00").isoformat(), field: value},
            ),
            (
                "/api/v1/waitlist",
                {
                    "service": setup.follow_up.id,
                    "dates": [WEDNESDAY.isoformat()],
                    "patient": {"name": "Eve", "email": "eve@example.org"},
                    field: value,
                },
            ),
        ]
        for url, body in calls:
            answer = client.post(url, json=body)
            assert answer.status_code == 422, (url, field, answer.json)
            assert any(field in name for name in answer.json["fields"]), answer.json
    assert_unchanged(before, database_state(session), "bodies with fields the API lacks")


def test_the_staff_api_refuses_fields_it_does_not_know(app, session, world):
    client = app.test_client()
    booking = world.mine.booking
    before = database_state(session)
    for field in ("practitioner", "patient", "id", "staff_notes", "room", "start", "token"):
        answer = client.post(
            f"/api/v1/staff/bookings/{booking.id}/status",
            headers=bearer(world.mine.api_token),
            json={"status": "arrived", field: 2},
        )
        assert answer.status_code == 422, answer.json
        assert field in answer.json["fields"]
    for field in ("status", "id", "staff_notes", "room", "awaiting_approval"):
        created = client.post(
            "/api/v1/staff/bookings",
            headers=bearer(world.reception_token),
            json={**public_booking_body(world.setup), field: 2},
        )
        assert created.status_code == 422, created.json
        assert field in created.json["fields"]
    assert_unchanged(before, database_state(session), "staff bodies with unknown fields")


def test_the_staff_api_takes_no_status_but_the_visits(app, session, world):
    booking = world.mine.booking
    before = database_state(session)
    for status in ("cancelled", "CONFIRMED", "", None, 1, ["arrived"]):
        answer = app.test_client().post(
            f"/api/v1/staff/bookings/{booking.id}/status",
            headers=bearer(world.mine.api_token),
            json={"status": status},
        )
        assert answer.status_code == 422, (status, answer.json)
    assert_unchanged(before, database_state(session), "a status the API does not take")


def test_the_booking_form_ignores_fields_it_does_not_have(client, session, world):
    setup = world.setup
    start = london("2026-11-25", "11:00")
    url = (
        f"/book/confirm?service={setup.follow_up.id}&practitioner={setup.mei.id}"
        f"&start={quote(start.isoformat())}"
    )
    page = client.get(url)
    answer = client.post(
        url + f"&patient={world.theirs.patient.id}&status=completed",
        data={
            "csrf_token": csrf_token(page.text),
            "full_name": "Eve Newcomer",
            "email": "eve@example.org",
            "phone": "",
            "sessions": "1",
            "every_weeks": "1",
            **{key: str(value) for key, value in EXTRA_FIELDS.items()},
            "patient_id": str(world.theirs.patient.id),
            "practitioner_id": str(world.theirs.practitioner.id),
            "staff_notes": "planted",
        },
    )
    assert answer.status_code == 303, answer.text
    session.rollback()
    booking = session.scalars(select(Booking).where(Booking.start_at == start)).one()
    assert booking.status is BookingStatus.CONFIRMED
    assert booking.practitioner_id == setup.mei.id
    assert booking.patient.email == "eve@example.org"
    assert booking.patient_id not in (world.mine.patient.id, world.theirs.patient.id)
    assert booking.manage_token != "chosen-by-the-caller"
    assert booking.id not in (1, world.theirs.booking.id)
    assert booking.staff_notes in ("", None)
    assert booking.created_at == NOW


def test_staff_forms_change_only_what_they_show(app, session, world):
    practitioner = logged_in(app, world.mine.user)
    booking = world.mine.booking
    page = practitioner.get(f"/staff/bookings/{booking.id}")
    answer = practitioner.post(
        f"/staff/bookings/{booking.id}/notes",
        data={
            "csrf_token": csrf_token(page.text),
            "staff_notes": "Bring the heat lamp",
            "status": "cancelled",
            "practitioner_id": str(world.theirs.practitioner.id),
            "patient_id": str(world.theirs.patient.id),
            "room_id": str(world.setup.rooms[1].id),
            "start": london("2026-11-25", "14:00").isoformat(),
        },
    )
    assert answer.status_code == 303
    saved = booking_row(session, booking)
    assert saved.staff_notes == "Bring the heat lamp"
    assert (saved.status, saved.practitioner_id, saved.patient_id, saved.room_id) == (
        booking.status,
        booking.practitioner_id,
        booking.patient_id,
        booking.room_id,
    )
    assert saved.start_at == booking.start_at

    desk = logged_in(app, world.reception)
    patient = world.mine.patient
    page = desk.get(f"/staff/patients/{patient.id}")
    answer = desk.post(
        f"/staff/patients/{patient.id}/details",
        data={
            "csrf_token": csrf_token(page.text),
            "name": "Amelia Corrected",
            "email": patient.email,
            "phone": "",
            "id": str(world.theirs.patient.id),
            "erased_at": "2026-01-01T00:00:00+00:00",
            "medications": "planted by reception",
        },
    )
    assert answer.status_code == 303
    session.rollback()
    saved_patient = session.get_one(Patient, patient.id)
    assert saved_patient.name == "Amelia Corrected"
    assert saved_patient.erased_at is None
    assert saved_patient.intake is not None
    assert saved_patient.intake.medications == world.mine.medications
    assert session.get_one(Patient, world.theirs.patient.id).name == "Jasper Theirs"


def test_account_forms_cannot_raise_ones_own_role_or_take_anothers_token(app, session, world):
    client = logged_in(app, world.mine.user)
    before_role = world.mine.user.role
    page = client.get("/staff/password")
    client.post(
        "/staff/password",
        data={
            "csrf_token": csrf_token(page.text),
            "current": "wrong password",
            "new": "a brand new password",
            "confirm": "a brand new password",
            "role": "admin",
            "active": "y",
            "practitioner_id": str(world.theirs.practitioner.id),
        },
    )
    created = client.post(
        "/staff/tokens/",
        data={
            "csrf_token": token_of(client, "/staff/tokens/"),
            "name": "Mine",
            "user_id": str(world.admin.id),
            "user": str(world.admin.id),
            "role": "admin",
        },
    )
    assert created.status_code == 201
    session.rollback()
    user = session.get_one(User, world.mine.user.id)
    assert (user.role, user.practitioner_id) == (before_role, world.mine.practitioner.id)
    newest = session.scalars(select(ApiToken).order_by(ApiToken.id.desc())).first()
    assert newest is not None
    assert (newest.name, newest.user_id) == ("Mine", world.mine.user.id)
    # The new token acts as Mei, a practitioner, and not as the admin it named.
    secret = re.search(r"sk_[A-Za-z0-9_-]{43}", created.text)
    assert secret is not None
    answer = app.test_client().get(
        f"/api/v1/staff/bookings/{world.theirs.booking.id}", headers=bearer(secret.group(0))
    )
    assert answer.status_code == 404


def test_intake_form_fields_cannot_reach_another_patient(client, session, world):
    token = world.mine.booking.manage_token
    page = client.get(f"/b/{token}/intake")
    answer = client.post(
        f"/b/{token}/intake?patient_id={world.theirs.patient.id}",
        data={
            "csrf_token": csrf_token(page.text),
            "medications": "Added by Amelia",
            "consent": "y",
            "patient_id": str(world.theirs.patient.id),
            "patient": str(world.theirs.patient.id),
            "token": world.theirs.booking.manage_token,
        },
    )
    assert answer.status_code == 303
    session.rollback()
    theirs = session.scalars(
        select(Intake).join(Patient).where(Patient.id == world.theirs.patient.id)
    ).one()
    assert theirs.medications == world.theirs.medications
    mine = session.get_one(Patient, world.mine.patient.id).intake
    assert mine is not None
    assert "Added by Amelia" in mine.medications
