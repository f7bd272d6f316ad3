"""Hostile text everywhere (issue 8): every text a patient, staff member, API client or imported
calendar can set holds script, attribute break-outs and a template probe, and every page, mail
and calendar file that shows it must show it as plain text.

Pages and the HTML of mail are read with a real HTML parser. Each field's payload must come back
whole, as text or as an attribute value (so the page shows it, escaped), and nothing the parser
builds may be a script, an image, an event handler or a ``javascript:`` address. The plain-text
part of mail must carry the payload as typed (neither run as a template nor HTML-escaped), and
calendar files must keep a name with CRLF in it inside its own property.

The hostile clinic is built once per test (the database is wiped after each); each test then
reads a group of pages, and a failure names the field and the page.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import time
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from icalendar import Calendar
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.audit import CALENDAR_IMPORT, Actor
from scheduler.booking.approvals import decline_booking
from scheduler.booking.models import Booking
from scheduler.booking.operations import set_staff_notes
from scheduler.calendars.appointments import import_appointments
from scheduler.calendars.imports import import_busy, read_series
from scheduler.calendars.models import CalendarSubscription
from scheduler.calendars.reading import limits_from
from scheduler.clinic.checklists import default_items
from scheduler.clinic.models import (
    ChecklistItem,
    ChecklistSection,
    Clinic,
    Practitioner,
    Room,
    TimeOff,
    Treatment,
    WorkingHours,
)
from scheduler.notifications.models import (
    AttemptOutcome,
    DeliveryAttempt,
    Notification,
    NotificationKind,
)
from scheduler.staff.models import Role, User
from scheduler.staff.tokens import issue_token
from scheduler.waitlist.models import WaitlistOffer
from scheduler.webhooks.models import (
    AttemptResult,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from tests.conftest import NOW, PASSWORD, csrf_token, log_in, london

# --- The payloads ---------------------------------------------------------------------------

PROBES = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'\"><svg/onload=alert(1)>",
    "{{7*7}}",
)
# For columns too short for all of them (phone numbers, room kinds: 50 and 60 characters).
SHORT_PROBES = ('"><img src=x onerror=alert(1)>', "{{7*7}}")


def hostile(label: str, *, short: bool = False) -> str:
    """``label~`` and the probes: the label says which field a leaked payload came from."""
    return f"{label}~" + "".join(SHORT_PROBES if short else PROBES)


# Email addresses cannot hold markup, but a valid local part can hold quotes, ampersands and
# braces, which must still be escaped.
PATIENT_EMAIL = "o'neil{{7*7}}&x=1@example.org"
WAITER_EMAIL = "w'aiter{{7*7}}&y=2@example.org"
ADMIN_EMAIL = "admin'{{7*7}}&z@clinic.test"
CLINIC_EMAIL = "desk'{{7*7}}&q@clinic.test"

V: dict[str, str] = {
    "clinic.name": hostile("clinic.name"),
    "clinic.address": hostile("clinic.address"),
    "clinic.phone": hostile("clinic.phone", short=True),
    "clinic.email": CLINIC_EMAIL,
    "initial.name": hostile("initial.name"),
    "initial.description": hostile("initial.description"),
    "follow.name": hostile("follow.name"),
    "follow.description": hostile("follow.description"),
    "room.kind": hostile("room.kind", short=True),
    "room.name": hostile("room.name"),
    "p1.name": hostile("p1.name"),
    "p1.credentials": hostile("p1.credentials"),
    "p1.licence": hostile("p1.licence"),
    "p1.bio": hostile("p1.bio"),
    "p2.name": hostile("p2.name"),
    "checklist.preparation": hostile("checklist.preparation"),
    "checklist.first_visit": hostile("checklist.first_visit"),
    "checklist.aftercare": hostile("checklist.aftercare"),
    "timeoff.reason": hostile("timeoff.reason"),
    "admin.email": ADMIN_EMAIL,
    "token.name": hostile("token.name"),
    # Never fetched (the webhook is off); shown as text, so its scheme must not matter.
    "webhook.url": "javascript:alert(1)//" + hostile("webhook.url"),
    "delivery.error": hostile("delivery.error"),
    "attempt.response": hostile("attempt.response"),
    "attempt.detail": hostile("attempt.detail"),
    "subscription.name": hostile("subscription.name"),
    "subscription.error": hostile("subscription.error"),
    "patient.name": hostile("patient.name"),
    "patient.email": PATIENT_EMAIL,
    "patient.phone": hostile("pat.phone", short=True),  # at most 50 characters
    "booking.notes": hostile("booking.notes"),
    "booking.staff_notes": hostile("booking.staff_notes"),
    "intake.medications": hostile("intake.medications"),
    "intake.other": hostile("intake.other"),
    "cancel.reason": hostile("cancel.reason"),
    "decline.reason": hostile("decline.reason"),
    "waiter.name": hostile("waiter.name"),
    "waiter.email": WAITER_EMAIL,
    "notification.error": hostile("notification.error"),
    "notification.detail": hostile("notification.detail"),
    "busy.summary": hostile("busy.summary"),
    # From an ATTENDEE's CN, which cannot hold a double quote, colon, semicolon or comma.
    "import.attendee": "import.attendee~<script>alert(1)</script><img src=x onerror=alert(1)>"
    "{{7*7}}",
    "import.description": hostile("import.description"),
    # An uploaded calendar file's name (no double quote: the upload's header could not hold it).
    "file.name": "file.name~<script>alert(1)</script><img src=x onerror=alert(1)>'{{7*7}}",
    # Typed into the forms themselves.
    "form.name": hostile("form.name"),
    "form.notes": hostile("form.notes"),
    "form.treatment": hostile("form.treatment"),
    "form.description": hostile("form.description"),
    "form.token": hostile("form.token"),
    "form.staff_notes": hostile("form.staff_notes"),
}

TUESDAY = "2026-11-24"
WEDNESDAY = "2026-11-25"
THURSDAY = "2026-11-26"


def ics_text(value: str) -> str:
    """Escape ``value`` as an iCalendar TEXT value (RFC 5545 §3.3.11)."""
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def calendar_file(*events: str) -> bytes:
    """A calendar as a practitioner's own calendar app exports it."""
    body = "".join(f"BEGIN:VEVENT\r\n{event}END:VEVENT\r\n" for event in events)
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Hostile//EN\r\n{body}END:VCALENDAR\r\n"
    ).encode()


def busy_event(uid: str, start: str, end: str) -> str:
    """Busy time whose every text is hostile (only the summary is kept and shown)."""
    return (
        f"UID:{uid}\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\n"
        f"SUMMARY:{ics_text(V['busy.summary'])}\r\n"
        f"LOCATION:{ics_text(hostile('busy.location'))}\r\n"
        f"DESCRIPTION:{ics_text(hostile('busy.description'))}\r\n"
    )


def appointment_event(uid: str, start: str, end: str) -> str:
    """An appointment from another scheduler: the patient's name from ATTENDEE's CN, notes from
    the description (the summary and location are not kept)."""
    return (
        f"UID:{uid}\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\n"
        f"SUMMARY:{ics_text(hostile('import.summary'))}\r\n"
        f"LOCATION:{ics_text(hostile('import.location'))}\r\n"
        f"DESCRIPTION:{ics_text(V['import.description'] + chr(10) + 'second line')}\r\n"
        f"ATTENDEE;CN={V['import.attendee']}:mailto:imported@example.org\r\n"
    )


# --- Reading pages as a browser would ---------------------------------------------------------

URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "data", "poster", "srcdoc"}
FOREIGN_TAGS = {"img", "svg", "math", "object", "embed", "base", "frame", "frameset"}
_INVISIBLE = re.compile(r"[\x00-\x20]")


# What a page's <link> may name, from the site's own static files.
OWN_LINKS = ("stylesheet", "icon", "apple-touch-icon")
CLINIC_CSS = re.compile(r"/clinic\.css\?v=[0-9a-f]{6}")


class Parsed(HTMLParser):
    """A page as a parser sees it: its texts and attribute values, and anything in it that
    could run script."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.dangers: list[str] = []
        self._data: list[str] = []
        self.feed(html)
        self.close()
        self._flush()

    def _flush(self) -> None:
        if self._data:
            self.texts.append("".join(self._data))
            self._data = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._flush()
        values = {name: value or "" for name, value in attrs}
        for name, value in values.items():
            self.texts.append(value)
            if name.startswith("on"):
                self.dangers.append(f"<{tag} {name}=…> (an event handler)")
            address = _INVISIBLE.sub("", value).lower()
            if name in URL_ATTRIBUTES and address.startswith(("javascript:", "vbscript:", "data:")):
                self.dangers.append(f"<{tag} {name}={value!r}> (a script address)")
        href = values.get("href", "")
        own = values.get("rel") in OWN_LINKS and href.startswith("/static/")
        # The clinic's colours, the one stylesheet the app writes (scheduler/clinic/views.py).
        own = own or (values.get("rel") == "stylesheet" and re.fullmatch(CLINIC_CSS, href))
        if tag == "link" and not own:
            self.dangers.append("<link> to something other than the site's own styles and icons")
        if tag in FOREIGN_TAGS:
            self.dangers.append(f"<{tag}> (an element no template writes)")
        if tag == "script" and not values.get("src", "").startswith("/static/"):
            self.dangers.append("<script> (inline or foreign script)")
        if tag == "iframe" and "sandbox" not in values:
            self.dangers.append("<iframe> without sandbox")

    def handle_endtag(self, tag: str) -> None:
        self._flush()

    def handle_data(self, data: str) -> None:
        self._data.append(data)

    def shows(self, value: str) -> bool:
        """Whether ``value`` comes back whole, as text or as an attribute's value."""
        return any(value in text for text in self.texts)


def _diagnose(value: str, texts: list[str], raw: str) -> str:
    joined = "\n".join(texts)
    if value.replace("{{7*7}}", "49") in joined or value.replace("{{7*7}}", "49") in raw:
        return "it was run as a template ({{7*7}} became 49)"
    label = value.split("~")[0]
    if "~" in value and label + "~" in raw:
        return "it is there but not whole as text: unescaped, escaped twice or cut"
    return "it is not shown at all"


def value_of(label: str) -> str:
    """The text a label stands for: ``V[label]``, or ``json:LABEL`` as it reads inside a JSON
    string (pages showing a webhook's payload)."""
    if label.startswith("json:"):
        return json.dumps(V[label.removeprefix("json:")], ensure_ascii=False)[1:-1]
    return V[label]


def html_problems(html: str, expected: Iterable[str], where: str) -> list[str]:
    """What is wrong with ``html``: script the parser would build, and each expected field
    (a key of ``V``) that does not come back whole."""
    page = Parsed(html)
    found = [f"{where}: {danger}" for danger in page.dangers]
    for label in expected:
        value = value_of(label)
        if not page.shows(value):
            found.append(f"{label} on {where}: {_diagnose(value, page.texts, html)}")
    return found


def text_problems(text: str, expected: list[str], where: str) -> list[str]:
    """Plain text must carry each field as typed: not escaped, not run as a template."""
    found = []
    for label in expected:
        value = V[label]
        if value not in text:
            found.append(f"{label} in {where}: {_diagnose(value, [text], text)}")
    if "&lt;" in text or "&#" in text:
        found.append(f"{where}: HTML escapes in plain text")
    return found


# --- The hostile clinic -----------------------------------------------------------------------


@dataclass
class World:
    """Ids and secrets of everything the hostile clinic holds."""

    initial: int
    follow_up: int
    p1: int
    p2: int
    room: int
    patient: int
    b1: int  # a first visit booked through the public API, with intake and staff notes
    b1_token: str
    b2: int  # booked through the staff API with a hostile token name
    b3: int  # cancelled by the patient with a reason
    b3_token: str
    b4: int  # a request the clinic declined, with a reason
    b4_token: str
    imported: int  # imported from another scheduler's calendar
    entry_token: str
    offer_token: str
    offer: int
    confirmation: int  # B1's confirmation, with a hostile error and attempt
    webhook: int
    delivery: int
    feed_token: str
    admin: int
    staff: FlaskClient


def _api(client: FlaskClient, path: str, body: dict[str, Any], **headers: str) -> Any:
    answer = client.post(path, json=body, headers=headers)
    assert answer.status_code in (200, 201), (path, answer.status_code, answer.get_json())
    return answer.get_json()


def _clinic(session: Session) -> tuple[Clinic, Treatment, Treatment, Practitioner, Practitioner]:
    clinic = Clinic(
        name=V["clinic.name"],
        address=V["clinic.address"],
        phone=V["clinic.phone"],
        email=CLINIC_EMAIL,
        timezone="Europe/London",
        slot_step_minutes=15,
        min_notice_minutes=12 * 60,
        horizon_days=60,
        late_cancel_hours=24,
    )
    session.add(clinic)
    session.add_all(default_items(clinic))
    for number, section in enumerate(ChecklistSection):
        session.add(
            ChecklistItem(
                clinic=clinic,
                section=section,
                text=V[f"checklist.{section.value}"],
                position=100 + number,
            )
        )
    kind = V["room.kind"]
    session.add_all([Room(name=V["room.name"], kind=kind), Room(name="Second room", kind=kind)])
    initial = Treatment(
        name=V["initial.name"],
        description=V["initial.description"],
        duration_minutes=90,
        buffer_minutes=15,
        first_visit=True,
        position=1,
    )
    follow_up = Treatment(
        name=V["follow.name"],
        description=V["follow.description"],
        duration_minutes=60,
        buffer_minutes=15,
        room_kind=kind,
        position=2,
    )
    hours = [
        WorkingHours(weekday=day, start_time=time(start), end_time=time(end))
        for day in range(6)
        for start, end in ((9, 13), (14, 18))
    ]
    p1 = Practitioner(
        name=V["p1.name"],
        email="p1@clinic.test",
        credentials=V["p1.credentials"],
        licence=V["p1.licence"],
        bio=V["p1.bio"],
        treatments=[initial, follow_up],
        working_hours=hours,
    )
    p2 = Practitioner(
        name=V["p2.name"],
        email="p2@clinic.test",
        treatments=[initial, follow_up],
        working_hours=[
            WorkingHours(weekday=w.weekday, start_time=w.start_time, end_time=w.end_time)
            for w in hours
        ],
    )
    session.add_all([initial, follow_up, p1, p2])
    session.flush()
    session.add(
        TimeOff(
            practitioner_id=p1.id,
            start_at=london(THURSDAY, "09:00"),
            end_at=london(THURSDAY, "13:00"),
            reason=V["timeoff.reason"],
        )
    )
    session.add(
        CalendarSubscription(
            practitioner_id=p1.id,
            name=V["subscription.name"],
            url="https://calendar.test/" + hostile("subscription.url"),
            last_error=V["subscription.error"],
            last_error_at=NOW,
        )
    )
    return clinic, initial, follow_up, p1, p2


@functools.cache
def password_hash() -> str:
    """The admin's password hash, made once: scrypt is slow on purpose."""
    probe = User()
    probe.set_password(PASSWORD)
    return probe.password_hash


def build_world(app: Flask, session: Session) -> World:
    """Fill the database with the hostile clinic, through the real entry points where there is
    one (the public and staff APIs, operations, calendar import) and directly otherwise."""
    clinic, initial, follow_up, p1, p2 = _clinic(session)
    admin = User(email=ADMIN_EMAIL, role=Role.ADMIN, password_hash=password_hash())
    session.add(admin)
    webhook = Webhook(
        url=V["webhook.url"],
        secret="whsec_test",
        subscriptions=[WebhookSubscription(event=event) for event in WebhookEvent],
    )
    session.add(webhook)
    session.commit()
    _, secret = issue_token(session, user=admin, name=V["token.name"], now=NOW)
    session.commit()

    client = app.test_client()
    patient = {"name": V["patient.name"], "email": PATIENT_EMAIL}
    waiter = {"name": V["waiter.name"], "email": WAITER_EMAIL}
    entry = _api(
        client,
        "/api/v1/waitlist",
        {"service": follow_up.id, "practitioner": p1.id, "dates": [TUESDAY], "patient": waiter},
    )
    b1 = _api(
        client,
        "/api/v1/bookings",
        {
            "service": initial.id,
            "practitioner": p1.id,
            "start": london(TUESDAY, "10:00").isoformat(),
            "patient": patient,
            "notes": V["booking.notes"] + "\nand a second line",
            "intake": {
                "medications": V["intake.medications"],
                "conditions": ["pregnancy"],
                "other_conditions": V["intake.other"],
                "consent": True,
            },
        },
    )
    b3 = _api(
        client,
        "/api/v1/bookings",
        {
            "service": follow_up.id,
            "practitioner": p1.id,
            "start": london(TUESDAY, "14:00").isoformat(),
            "patient": patient,
        },
    )
    # Freeing 14:00 offers it to the waiting patient.
    _api(client, f"/api/v1/bookings/{b3['token']}/cancel", {"reason": V["cancel.reason"]})
    b2 = _api(
        client,
        "/api/v1/staff/bookings",
        {
            "service": follow_up.id,
            "practitioner": p2.id,
            "start": london(WEDNESDAY, "10:00").isoformat(),
            "patient": patient,
        },
        Authorization=f"Bearer {secret}",
    )
    b4 = _api(
        client,
        "/api/v1/bookings",
        {
            "service": follow_up.id,
            "practitioner": p2.id,
            "start": london(TUESDAY, "10:00").isoformat(),
            "patient": patient,
        },
    )

    # Operations committed on the test's session queue webhooks, which read the app's settings
    # (outside any request: a request would share this context's database session).
    with app.app_context():
        session.rollback()
        bookings = {b.manage_token: b for b in session.scalars(select(Booking))}
        first, cancelled, request = (
            bookings[b1["token"]],
            bookings[b3["token"]],
            bookings[b4["token"]],
        )
        staff_api = bookings[b2["manage_url"].rsplit("/", 1)[1]]
        actor = Actor(admin.email, admin.id)
        request.approval_requested_at = NOW
        decline_booking(
            session,
            clinic=clinic,
            booking=request,
            reason=V["decline.reason"],
            now=NOW,
            actor=actor,
        )
        set_staff_notes(session, booking=first, text=V["booking.staff_notes"], now=NOW, actor=actor)
        first.patient.phone = V["patient.phone"]
        session.commit()

        limits = limits_from(app.config)
        busy = read_series(
            calendar_file(busy_event("busy-1@hostile", "20261124T160000Z", "20261124T170000Z")),
            name="busy.ics",
            tz=clinic.tz,
            now=NOW,
            limits=limits,
        )
        import_busy(session, practitioner=p1, expansion=busy)
        appointments = read_series(
            calendar_file(
                appointment_event("appt-1@hostile", "20261125T140000Z", "20261125T150000Z")
            ),
            name="old.ics",
            tz=clinic.tz,
            now=NOW,
            limits=limits,
        )
        report = import_appointments(
            session,
            clinic=clinic,
            practitioner=p2,
            expansion=appointments,
            now=NOW,
            actor=CALENDAR_IMPORT,
        )
        assert report.imported == 1, report
        session.commit()

        confirmation = session.scalars(
            select(Notification).where(
                Notification.booking_id == first.id,
                Notification.kind == NotificationKind.CONFIRMATION,
            )
        ).one()
        confirmation.last_error = V["notification.error"]
        confirmation.history.append(
            DeliveryAttempt(
                at=NOW, outcome=AttemptOutcome.RETRYING, detail=V["notification.detail"]
            )
        )
        delivery = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.booking_id == first.id)
        ).first()
        assert delivery is not None
        delivery.last_error = V["delivery.error"]
        delivery.last_status_code = 500
        delivery.history.append(
            WebhookAttempt(
                at=NOW,
                result=AttemptResult.RETRYING,
                status_code=500,
                response=V["attempt.response"],
                detail=V["attempt.detail"],
            )
        )
        # Nothing is sent to the hostile address: deliveries wait while it is off.
        webhook.active = False
        offer = session.scalars(select(WaitlistOffer)).one()
        imported = session.scalars(select(Booking).where(Booking.calendar_uid == "appt-1@hostile"))
        session.commit()

    staff = app.test_client()
    answer = log_in(staff, ADMIN_EMAIL)
    assert answer.status_code in (302, 303), answer.text
    return World(
        initial=initial.id,
        follow_up=follow_up.id,
        p1=p1.id,
        p2=p2.id,
        room=session.scalars(select(Room).where(Room.name == V["room.name"])).one().id,
        patient=first.patient_id,
        b1=first.id,
        b1_token=first.manage_token,
        b2=staff_api.id,
        b3=cancelled.id,
        b3_token=cancelled.manage_token,
        b4=request.id,
        b4_token=request.manage_token,
        imported=imported.one().id,
        entry_token=entry["token"],
        offer_token=offer.token,
        offer=offer.id,
        confirmation=confirmation.id,
        webhook=webhook.id,
        delivery=delivery.id,
        feed_token=p1.feed_token,
        admin=admin.id,
        staff=staff,
    )


@pytest.fixture
def world(app: Flask, session: Session) -> World:
    """The hostile clinic, with an admin logged in on ``world.staff``."""
    return build_world(app, session)


def get_ok(client: FlaskClient, path: str) -> str:
    """GET ``path`` and return its page, which must be there."""
    answer = client.get(path)
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
    return answer.text


# --- The checker catches what it is for -------------------------------------------------------


def test_the_checker_flags_markup_that_was_not_escaped():
    from markupsafe import escape

    raw = f'<p>{V["patient.name"]}</p><a href="javascript:alert(1)">x</a>'
    escaped = f'<p>{escape(V["patient.name"])}</p><input value="{escape(V["p1.name"])}">'

    assert len(Parsed(raw).dangers) >= 4  # script, img, svg and their handlers, the address
    assert html_problems(raw, ["patient.name"], "raw")[-1].startswith("patient.name on raw")
    assert html_problems(escaped, ["patient.name", "p1.name"], "escaped") == []
    ran = f"<p>{V['patient.name'].replace('{{7*7}}', '49')}</p>"
    assert "became 49" in "".join(html_problems(str(escape(ran)), ["patient.name"], "ran"))


# --- Pages ------------------------------------------------------------------------------------

LAYOUT = ("clinic.name", "clinic.address", "clinic.phone")  # every public page's footer
STAFF = (*LAYOUT, "admin.email")  # and the staff menu's "Log out EMAIL"
PATIENT = ("patient.name", "patient.email", "patient.phone")
INTAKE = ("intake.medications", "intake.other")
LATER = "2026-11-27T10:00:00%2B00:00"  # a free Friday morning

PUBLIC_PAGES: dict[str, tuple[str, ...]] = {
    "/": (
        *LAYOUT,
        *("initial.name", "initial.description", "follow.name", "follow.description"),
        *("p1.name", "p1.credentials", "p1.licence", "p1.bio", "p2.name"),
        *("checklist.preparation", "checklist.first_visit"),
    ),
    "/book": (*LAYOUT, "initial.name", "follow.name", "p1.name", "p2.name"),
    "/book?service={w.follow_up}&practitioner={w.p1}": (
        *LAYOUT,
        *("initial.name", "follow.name", "p1.name", "p2.name"),
    ),
    "/book/confirm?service={w.initial}&practitioner={w.p1}&start=" + LATER: (
        *LAYOUT,
        *("initial.name", "p1.name"),
    ),
    "/b/{w.b1_token}": (
        *LAYOUT,
        *("initial.name", "p1.name", "patient.name"),
        *("checklist.preparation", "checklist.first_visit"),
    ),
    "/b/{w.b3_token}": (*LAYOUT, "follow.name", "p1.name", "patient.name"),
    "/b/{w.b4_token}": (*LAYOUT, "follow.name", "p2.name", "patient.name", "decline.reason"),
    "/b/{w.b1_token}/cancel": (*LAYOUT, "initial.name", "p1.name"),
    "/b/{w.b1_token}/reschedule": (*LAYOUT, "initial.name", "p1.name"),
    # The answers on file are never shown here (whoever holds the link could read them).
    "/b/{w.b1_token}/intake": (*LAYOUT, "initial.name", "p1.name"),
    "/waitlist?service={w.follow_up}&practitioner={w.p1}": (*LAYOUT, "follow.name", "p1.name"),
    "/waitlist/{w.entry_token}": (*LAYOUT, "follow.name", "p1.name", "waiter.name"),
    "/w/{w.offer_token}": (*LAYOUT, "follow.name", "p1.name", "waiter.name", "waiter.email"),
    # Built with Markup from the OpenAPI document, inside the clinic's layout.
    "/api/docs": LAYOUT,
}

STAFF_PAGES: dict[str, dict[str, tuple[str, ...]]] = {
    "diary": {
        "/staff/": STAFF,
        "/staff/day?date=" + TUESDAY: (
            *STAFF,
            *("initial.name", "room.name", "p1.name", "p2.name", "patient.name", "busy.summary"),
        ),
        "/staff/day?by=room&date=" + TUESDAY: (
            *STAFF,
            *("initial.name", "room.name", "patient.name"),
        ),
        "/staff/day/sheet?date=" + TUESDAY: (
            *STAFF,
            *("initial.name", "room.name", "p1.name", "p2.name", "patient.name"),
            *("patient.phone", "booking.notes", "booking.staff_notes"),
        ),
        "/staff/week?practitioner={w.p1}&date=" + THURSDAY: (
            *STAFF,
            *("initial.name", "room.name", "p1.name", "p2.name", "patient.name"),
            *("timeoff.reason", "busy.summary"),
        ),
        "/staff/week?practitioner={w.p2}&date=" + WEDNESDAY: (
            *STAFF,
            *("follow.name", "room.name", "p2.name", "patient.name", "import.attendee"),
        ),
    },
    "bookings": {
        "/staff/bookings/?from=2026-11-23&to=2026-11-30": (
            *STAFF,
            *PATIENT,
            *("initial.name", "follow.name", "room.name", "p1.name", "p2.name"),
            "import.attendee",
        ),
        "/staff/bookings/{w.b1}": (
            *STAFF,
            *PATIENT,
            *INTAKE,
            *("initial.name", "room.kind", "room.name", "p1.name"),
            *("booking.notes", "booking.staff_notes"),
        ),
        "/staff/bookings/{w.b2}": (
            *STAFF,
            *PATIENT,
            *INTAKE,
            *("follow.name", "room.kind", "room.name", "p2.name", "token.name"),
        ),
        "/staff/bookings/{w.b3}": (
            *STAFF,
            *PATIENT,
            *("follow.name", "room.kind", "room.name", "p1.name", "cancel.reason"),
        ),
        "/staff/bookings/{w.b4}": (
            *STAFF,
            *PATIENT,
            *("follow.name", "room.kind", "p2.name", "decline.reason"),
        ),
        "/staff/bookings/{w.imported}": (
            *STAFF,
            *("follow.name", "room.kind", "room.name", "p2.name"),
            *("import.attendee", "import.description"),
        ),
        "/staff/bookings/{w.b1}/reschedule": (
            *STAFF,
            *("initial.name", "p1.name", "p2.name", "patient.name"),
        ),
        "/staff/bookings/new?service={w.follow_up}&practitioner={w.p1}&patient={w.patient}": (
            *STAFF,
            *("initial.name", "follow.name", "p1.name", "p2.name", "patient.name", "patient.email"),
        ),
        "/staff/bookings/new/details?service={w.follow_up}&practitioner={w.p1}"
        "&patient={w.patient}&start=" + LATER: (*STAFF, *PATIENT, "follow.name", "p1.name"),
    },
    "patients": {
        "/staff/patients/": (
            *STAFF,
            *PATIENT,
            *("waiter.name", "waiter.email", "import.attendee"),
        ),
        "/staff/patients/{w.patient}": (
            *STAFF,
            *PATIENT,
            *INTAKE,
            *("initial.name", "follow.name", "room.name", "p1.name", "p2.name"),
            *("token.name", "cancel.reason", "decline.reason"),
        ),
    },
    "setup": {
        "/staff/setup/": STAFF,
        "/staff/setup/clinic": (*STAFF, "clinic.email"),
        "/staff/setup/treatments": (
            *STAFF,
            *("initial.name", "follow.name", "room.kind", "p1.name", "p2.name"),
        ),
        "/staff/setup/treatments/{w.initial}": (
            *STAFF,
            *("initial.name", "initial.description", "room.kind", "p1.name", "p2.name"),
        ),
        "/staff/setup/treatments/{w.follow_up}": (
            *STAFF,
            *("follow.name", "follow.description", "room.kind", "p1.name", "p2.name"),
        ),
        "/staff/setup/treatments/{w.follow_up}/checklists": (
            *STAFF,
            *("follow.name", "p1.name"),
            *("checklist.preparation", "checklist.first_visit", "checklist.aftercare"),
        ),
        "/staff/setup/checklists": (
            *STAFF,
            *("initial.name", "follow.name", "p1.name"),
            *("checklist.preparation", "checklist.first_visit", "checklist.aftercare"),
        ),
        "/staff/setup/checklists?treatment={w.initial}": (
            *STAFF,
            *("initial.name", "follow.name", "p1.name"),
            *("checklist.preparation", "checklist.first_visit", "checklist.aftercare"),
        ),
        # The previews' own documents, framed on the page above.
        "/staff/setup/checklists/mail/checklist?treatment={w.initial}": (
            *LAYOUT,
            *("initial.name", "p1.name", "checklist.preparation", "checklist.first_visit"),
        ),
        "/staff/setup/checklists/mail/aftercare?treatment={w.initial}": (
            *LAYOUT,
            *("p1.name", "checklist.aftercare"),
        ),
        "/staff/setup/practitioners": (*STAFF, "initial.name", "follow.name", "p1.name", "p2.name"),
        "/staff/setup/practitioners/{w.p1}": (
            *STAFF,
            *("initial.name", "follow.name"),
            *("p1.name", "p1.credentials", "p1.licence", "p1.bio"),
        ),
        "/staff/setup/practitioners/{w.p1}/hours": (*STAFF, "p1.name"),
        "/staff/setup/practitioners/{w.p1}/time-off": (*STAFF, "p1.name", "timeoff.reason"),
        "/staff/setup/rooms": (*STAFF, "room.name", "room.kind"),
        "/staff/setup/rooms/{w.room}": (*STAFF, "room.name", "room.kind"),
    },
    "calendars and mail": {
        "/staff/calendars": (
            *STAFF,
            *("p1.name", "p2.name", "busy.summary"),
            *("subscription.name", "subscription.error"),
        ),
        "/staff/notifications/": (
            *STAFF,
            *("patient.name", "waiter.name", "notification.error"),
        ),
        "/staff/notifications/{w.confirmation}": (
            *STAFF,
            *("initial.name", "p1.name", "patient.name", "patient.email"),
            *("notification.error", "notification.detail"),
            *("checklist.preparation", "checklist.first_visit"),
        ),
        "/staff/notifications/{w.confirmation}/html": (
            *LAYOUT,
            *("initial.name", "p1.name", "patient.name"),
            *("checklist.preparation", "checklist.first_visit"),
        ),
    },
    "accounts and webhooks": {
        "/staff/users/": STAFF,
        "/staff/users/{w.admin}": (*STAFF, "p1.name", "p2.name"),
        "/staff/tokens/": (*STAFF, "token.name"),
        "/staff/password": STAFF,
        "/staff/webhooks/": (*STAFF, "webhook.url"),
        "/staff/webhooks/{w.webhook}": (*STAFF, "webhook.url", "delivery.error"),
        "/staff/webhooks/{w.webhook}/deliveries/{w.delivery}": (
            *STAFF,
            *("webhook.url", "delivery.error", "attempt.response", "attempt.detail"),
            *("json:patient.name", "json:booking.notes", "json:initial.name", "json:p1.name"),
        ),
    },
}


def page_problems(client: FlaskClient, pages: dict[str, tuple[str, ...]], w: World) -> list[str]:
    """Read each page and say what is wrong with each, naming the field and the page."""
    found: list[str] = []
    for template, expected in pages.items():
        path = template.format(w=w)
        answer = client.get(path)
        if answer.status_code != 200:
            found.append(f"{template}: answered {answer.status_code}")
            continue
        found += html_problems(answer.text, expected, template)
    return found


def outbox_problems(client: FlaskClient, session: Session) -> list[str]:
    """Each message's page in the outbox, and the frame with its HTML as it would go out now."""
    rows = session.scalars(select(Notification).order_by(Notification.id)).all()
    kinds = {row.kind for row in rows}
    assert {NotificationKind.CANCELLATION, NotificationKind.WAITLIST_OFFER} <= kinds
    found: list[str] = []
    for row in rows:
        patient = "waiter.name" if row.waitlist_offer_id else "patient.name"
        where = f"/staff/notifications/{row.id} ({row.kind.value})"
        page = get_ok(client, f"/staff/notifications/{row.id}")
        found += html_problems(page, [*STAFF, patient], where)
        frame = client.get(f"/staff/notifications/{row.id}/html")
        if frame.status_code == 200:  # 404 when it would no longer be sent
            found += html_problems(frame.text, [*LAYOUT, patient], where + " html")
            # Served from this site, so it runs nothing even if something slipped through.
            policy = frame.headers.get("Content-Security-Policy", "")
            if "default-src 'none'" not in policy or "sandbox" not in policy:
                found.append(f"{where} html: the policy {policy!r} lets it run script")
    return found


def test_public_pages_show_every_hostile_text_as_text(world, app):
    assert page_problems(app.test_client(), PUBLIC_PAGES, world) == []


def test_staff_pages_show_every_hostile_text_as_text(world, session):
    found: list[str] = []
    for pages in STAFF_PAGES.values():
        found += page_problems(world.staff, pages, world)
    found += outbox_problems(world.staff, session)
    # The patient's export is a download of JSON, never a page.
    page = get_ok(world.staff, f"/staff/patients/{world.patient}")
    export = world.staff.post(
        f"/staff/patients/{world.patient}/export", data={"csrf_token": csrf_token(page)}
    )
    assert export.mimetype == "application/json"
    assert export.headers["Content-Disposition"].startswith("attachment;")
    assert found == []


# --- Mail -------------------------------------------------------------------------------------

# What each message says, told apart by the start of its subject.
MAIL: dict[str, tuple[str, ...]] = {
    "Booked: initial": (
        *("patient.name", "initial.name", "p1.name"),
        *("checklist.preparation", "checklist.first_visit"),
    ),
    "Booked: follow": ("patient.name", "follow.name", "p2.name", "checklist.preparation"),
    "Preparing for your visit": (
        *("patient.name", "initial.name", "p1.name"),
        *("checklist.preparation", "checklist.first_visit"),
    ),
    "Moved: initial": (
        *("patient.name", "initial.name", "p1.name"),
        *("checklist.preparation", "checklist.first_visit"),
    ),
    # The payloads are lower case already, so ``| lower`` leaves them whole.
    "After your initial": ("patient.name", "initial.name", "p1.name", "checklist.aftercare"),
    "Cancelled: follow": ("patient.name", "follow.name", "p1.name"),
    "Request declined: follow": ("patient.name", "follow.name", "p2.name", "decline.reason"),
    "A time has come free: follow": ("waiter.name", "follow.name", "p1.name"),
    "Already booked: follow": ("waiter.name", "follow.name", "p1.name"),
}


# Only the HTML names it: the button "Book your next …" (the text has the bare link).
MAIL_HTML_ONLY = {"After your initial": ("follow.name",)}


def queue_every_kind(app: Flask, session: Session, w: World) -> None:
    """Make one message of every kind due now, beside those the bookings queued themselves."""
    with app.app_context():
        for row in session.scalars(select(Notification).where(Notification.booking_id == w.b1)):
            if row.kind in (NotificationKind.CHECKLIST, NotificationKind.AFTERCARE):
                row.due_at = row.next_attempt_at = NOW
        session.add_all(
            [
                Notification(
                    booking_id=w.b1,
                    kind=NotificationKind.UPDATE,
                    variant=1,
                    due_at=NOW,
                    next_attempt_at=NOW,
                ),
                Notification(
                    waitlist_offer_id=w.offer,
                    kind=NotificationKind.WAITLIST_GONE,
                    due_at=NOW,
                    next_attempt_at=NOW,
                ),
            ]
        )
        session.commit()


def dispatch(app: Flask) -> str:
    """Run the dispatcher as an operator would and return its summary."""
    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert result.exit_code == 0, result.output
    return result.output


def bodies(message: EmailMessage) -> tuple[str, str, list[str]]:
    """The plain text, the HTML and the calendar files of ``message``."""
    text = html = ""
    calendars = []
    for part in message.walk():
        kind = part.get_content_type()
        if part.is_multipart():
            continue
        content = part.get_content()
        content = content if isinstance(content, str) else content.decode()
        if kind == "text/plain":
            text = content
        elif kind == "text/html":
            html = content
        elif kind in ("text/calendar", "application/ics"):
            calendars.append(content)
    return text, html, calendars


def mail_problems(message: EmailMessage) -> list[str]:
    """What is wrong with one message sent to a patient."""
    subject = str(message["Subject"])
    kinds = [start for start in MAIL if subject.startswith(start)]
    if len(kinds) != 1:
        return [f"an unexpected message: {subject!r}"]
    where = kinds[0]
    expected = (*LAYOUT, *MAIL[where])
    text, html, calendars = bodies(message)
    found = text_problems(text, expected, f"{where!r} text/plain")
    found += html_problems(
        html, (*expected, *MAIL_HTML_ONLY.get(where, ())), f"{where!r} text/html"
    )
    for href in re.findall(r'href="([^"]*)"', html):
        if not href.startswith("https://clinic.test/"):
            found.append(f"{where!r} text/html: a link to {href!r}")
    for calendar in calendars:
        found += ics_problems(calendar, f"{where!r} invite")
    return found


def test_every_kind_of_mail_carries_hostile_text_safely(world, app, session, smtp):
    queue_every_kind(app, session, world)

    dispatch(app)

    subjects = sorted(str(r.message["Subject"]).split(" on ")[0] for r in smtp.received)
    assert len(smtp.received) == len(MAIL), subjects
    found: list[str] = []
    for received in smtp.received:
        found += mail_problems(received.message)
    assert found == []


def test_the_mail_folder_pages_show_hostile_text_as_text(
    world, app, session, monkeypatch, tmp_path
):
    monkeypatch.setitem(app.config, "SMTP_URL", "")
    monkeypatch.setitem(app.config, "MAIL_FOLDER", str(tmp_path))
    queue_every_kind(app, session, world)
    dispatch(app)
    names = sorted(path.name for path in tmp_path.glob("*.eml"))
    assert len(names) == len(MAIL)

    found = html_problems(
        get_ok(world.staff, "/staff/mail/"), [*STAFF, "initial.name", "follow.name"], "/staff/mail/"
    )
    for name in names:
        page = get_ok(world.staff, f"/staff/mail/{name}")
        found += html_problems(page, [*STAFF, "follow.name"] if "follow" in page else STAFF, name)
        frame = get_ok(world.staff, f"/staff/mail/{name}/html")
        found += html_problems(frame, LAYOUT, f"{name} html")
    assert found == []


# --- Calendar files ---------------------------------------------------------------------------

# Typed where a line break can get in (an import, the database, a field without checks): it must
# stay inside its own property, however the text is folded.
INJECTION = "X\r\nATTENDEE:mailto:evil@example.com\r\nX-INJECTED:1\nDESCRIPTION:evil\r<script>"


def content_line(line: str) -> tuple[str, str]:
    """Split an unfolded content line into its property name and its value (after the first
    colon outside a quoted parameter value)."""
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            return re.split(r"[;:]", line, maxsplit=1)[0].upper(), line[index + 1 :]
    return line.upper(), ""


def ics_problems(data: str | bytes, where: str) -> list[str]:
    """What is wrong with a calendar file: a bare line break, or a property someone injected."""
    text = data.decode() if isinstance(data, bytes) else data
    found = []
    if re.search(r"\r(?!\n)|(?<!\r)\n", text):
        found.append(f"{where}: a line break that is not CRLF")
    for line in re.sub(r"\r\n[ \t]", "", text).split("\r\n"):
        name, value = content_line(line)
        if (
            name == "X-INJECTED"
            or (name in ("ATTENDEE", "ORGANIZER") and "evil" in value)
            or (name == "DESCRIPTION" and value.startswith("evil"))
        ):
            found.append(f"{where}: an injected line {line!r}")
    for event in Calendar.from_ical(text).walk("VEVENT"):
        described = [k for k, _ in event.property_items(recursive=False) if k == "DESCRIPTION"]
        if len(described) > 1:
            found.append(f"{where}: {len(described)} descriptions in one event")
    return found


def inject_line_breaks(app: Flask, session: Session, w: World) -> None:
    """Give every name a calendar file carries a line break and a property after it."""
    with app.app_context():
        clinic = session.scalars(select(Clinic)).one()
        clinic.name = "clinic" + INJECTION
        clinic.address = "address" + INJECTION
        session.get_one(Treatment, w.initial).name = "initial" + INJECTION
        session.get_one(Treatment, w.follow_up).name = "follow" + INJECTION
        session.get_one(Practitioner, w.p1).name = "p1" + INJECTION
        session.get_one(Booking, w.b1).patient.name = "patient" + INJECTION
        item = session.scalars(
            select(ChecklistItem).where(ChecklistItem.section == ChecklistSection.PREPARATION)
        ).first()
        assert item is not None
        item.text = "item" + INJECTION
        session.commit()


def test_calendar_files_keep_hostile_text_inside_its_property(world, app, session, tmp_path):
    inject_line_breaks(app, session, world)
    public = app.test_client()
    download = public.get(f"/b/{world.b1_token}.ics")
    feed = public.get(f"/feeds/{world.feed_token}.ics")
    out = tmp_path / "export.ics"
    exported = app.test_cli_runner().invoke(
        args=[
            *("calendar", "export", "--practitioner", "p1@clinic.test"),
            *("--start", "2026-11-23", "--end", "2026-11-30", "-o", str(out)),
        ]
    )
    assert (download.status_code, feed.status_code, exported.exit_code) == (200, 200, 0)

    found = ics_problems(download.data, "/b/TOKEN.ics")
    found += ics_problems(feed.data, "/feeds/TOKEN.ics")
    found += ics_problems(out.read_bytes(), "calendar export")
    assert found == []
    # The text is kept, on one line, where it belongs.
    event = Calendar.from_ical(download.data).walk("VEVENT")[0]
    assert str(event["summary"]).startswith("initialX ATTENDEE:mailto:evil@example.com X-INJ")
    assert "itemX ATTENDEE:mailto:evil@example.com" in str(event["description"])


def test_mail_headers_and_invites_keep_line_breaks_out(world, app, session, smtp):
    inject_line_breaks(app, session, world)
    with app.app_context():
        session.get_one(Booking, world.b1).patient.name = "patient\r\nBcc: evil@example.com"
        session.commit()
    queue_every_kind(app, session, world)

    dispatch(app)

    # A line break in a name stops no message: each one goes, with the break taken out.
    assert len(smtp.received) == len(MAIL)
    found: list[str] = []
    for received in smtp.received:
        message = received.message
        where = repr(str(message["Subject"]))
        if any("evil" in address for address in received.rcpt_tos):
            found.append(f"{where}: sent to {received.rcpt_tos}")
        head = received.data.split(b"\r\n\r\n", 1)[0].decode()
        for line in re.sub(r"\r\n[ \t]", " ", head).split("\r\n"):
            if re.match(r"(?i)(bcc|x-injected|attendee|description):", line):
                found.append(f"{where}: an injected header {line!r}")
        for calendar in bodies(message)[2]:
            found += ics_problems(calendar, f"{where} invite")
    assert found == []


# --- Imports, reflected input and forms ---------------------------------------------------------


def upload(client: FlaskClient, practitioner: int, data: bytes, kind: str) -> Any:
    """Import a calendar file through the staff form."""
    page = client.get("/staff/calendars")
    return client.post(
        "/staff/calendars/import",
        data={
            "csrf_token": csrf_token(page.text),
            "practitioner": str(practitioner),
            "kind": kind,
            "files": [(io.BytesIO(data), V["file.name"] + ".ics")],
        },
        content_type="multipart/form-data",
    )


def test_the_import_report_shows_hostile_event_texts_as_text(world):
    # Busy time over B1's visit (a clash, reported with its summary), and an appointment with
    # no patient (a problem, reported with its summary).
    busy = upload(
        world.staff,
        world.p1,
        calendar_file(busy_event("busy-2@hostile", "20261124T100000Z", "20261124T110000Z")),
        "busy",
    )
    orphan = (
        "UID:orphan@hostile\r\nDTSTAMP:20261120T090000Z\r\n"
        "DTSTART:20261127T100000Z\r\nDTEND:20261127T110000Z\r\n"
        f"SUMMARY:{ics_text(V['busy.summary'])}\r\n"
    )
    appointments = upload(world.staff, world.p2, calendar_file(orphan), "appointments")
    broken = upload(
        world.staff, world.p1, b"BEGIN:VCALENDAR\r\n" + V["busy.summary"].encode(), "busy"
    )

    assert (busy.status_code, appointments.status_code, broken.status_code) == (200, 422, 422)
    found = html_problems(
        busy.text, [*STAFF, "busy.summary", "initial.name", "patient.name"], "clash"
    )
    found += html_problems(appointments.text, STAFF, "problem")
    found += html_problems(broken.text, [*STAFF, "file.name"], "refused file")
    assert found == []
    # The summary is quoted in the problem with repr(), which changes its quotes: the label
    # and the script are there as text.
    assert "busy.summary~<script>alert(1)</script>" in "".join(Parsed(appointments.text).texts)


# Query strings a page may echo back (True: it does, in the search box); each must come back as
# text, or not at all.
REFLECTED = {
    "/staff/patients/?q={p}": True,
    "/staff/bookings/?q={p}": True,
    "/staff/bookings/?from={p}&to={p}&status={p}&practitioner={p}": False,
    "/staff/day?date={p}&by={p}": False,
    "/staff/week?date={p}&practitioner={p}": False,
    "/staff/notifications/?status={p}&before={p}": False,
    "/staff/bookings/new?service={p}&practitioner={p}&patient={p}&from={p}": False,
    "/book?service={p}&practitioner={p}&from={p}": False,
    "/book/confirm?service={p}&practitioner={p}&start={p}": False,
    "/waitlist?service={p}&practitioner={p}": False,
    "/b/{p}": False,
    "/w/{p}": False,
    "/waitlist/{p}": False,
    "/staff/mail/{p}": False,
}


def test_reflected_input_comes_back_as_text(world, app):
    from urllib.parse import quote

    probe = V["patient.name"]
    found: list[str] = []
    for template, echoed in REFLECTED.items():
        client = world.staff if template.startswith("/staff") else app.test_client()
        answer = client.get(template.format(p=quote(probe, safe="")))
        assert answer.status_code < 500, template
        found += html_problems(answer.text, ["patient.name"] if echoed else [], template)
        if probe.replace("{{7*7}}", "49") in answer.text:
            found.append(f"{template}: ran the probe as a template")
    # The API answers JSON, never a page a browser would render.
    for path in (
        f"/api/v1/bookings/{quote(probe, safe='')}",
        f"/api/v1/slots?start={quote(probe)}",
    ):
        answer = app.test_client().get(path)
        assert answer.mimetype == "application/json", path
    # A failed login shows the address typed; a good one never goes to a script address.
    client = app.test_client()
    failed = log_in(client, probe, password="wrong")
    found += html_problems(failed.text, ["patient.name"], "a failed login")
    answer = log_in(client, ADMIN_EMAIL, next_url=quote("javascript:alert(1)"))
    assert answer.status_code in (302, 303)
    assert not answer.headers["Location"].lower().lstrip().startswith("javascript:")
    assert found == []


def test_forms_take_hostile_text_and_pages_show_it_as_text(world, app, session):
    """Through the forms themselves: a patient booking, staff adding a treatment, a token and
    notes; then the pages the forms lead to, and a form sent back with an error."""
    public = app.test_client()
    start = f"/book/confirm?service={world.follow_up}&practitioner={world.p1}&start={LATER}"
    details = {
        "full_name": V["form.name"],
        "email": "form'{{7*7}}&f@example.org",
        "phone": "+44 7700 900123",
        "notes": V["form.notes"],
        "sessions": "1",
        "every_weeks": "1",
    }
    token = csrf_token(public.get(start).text)
    refused = public.post(start, data={**details, "email": "not an address", "csrf_token": token})
    booked = public.post(start, data={**details, "csrf_token": token})
    assert (refused.status_code, booked.status_code) == (422, 303), refused.text[:300]
    manage = get_ok(public, booked.headers["Location"])

    staff = world.staff
    page = staff.get("/staff/setup/treatments/new")
    added = staff.post(
        "/staff/setup/treatments/new",
        data={
            "csrf_token": csrf_token(page.text),
            "name": V["form.treatment"],
            "description": V["form.description"],
            "duration_minutes": "30",
            "buffer_minutes": "0",
            "position": "3",
            "room_kind": "",
            "practitioners": [str(world.p1)],
        },
        follow_redirects=True,
    )
    page = staff.get("/staff/tokens/")
    made = staff.post(
        "/staff/tokens/",
        data={"csrf_token": csrf_token(page.text), "name": V["form.token"]},
    )
    page = staff.get(f"/staff/bookings/{world.b2}")
    noted = staff.post(
        f"/staff/bookings/{world.b2}/notes",
        data={"csrf_token": csrf_token(page.text), "staff_notes": V["form.staff_notes"]},
        follow_redirects=True,
    )

    assert (added.status_code, made.status_code, noted.status_code) == (200, 201, 200)
    found = html_problems(refused.text, ["form.name", "form.notes"], "refused booking form")
    found += html_problems(manage, ["form.name", "follow.name"], "manage page of a form booking")
    found += html_problems(added.text, ["form.treatment"], "treatments after adding one")
    found += html_problems(made.text, ["form.token"], "the new token")
    found += html_problems(noted.text, ["form.staff_notes"], "booking after its notes")
    assert found == []
