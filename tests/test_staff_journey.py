"""Issue 5, done when: a receptionist opens the week view, books a phone caller, moves a
patient, marks a no-show, and the owner changes opening hours and the checklist, all without a
terminal, each role seeing only what it should.

Each step is taken as a person takes it in a browser: following the links and submitting the
forms the pages show (with the hidden fields and CSRF token they carry), never typing an
internal id into an address where a page offers a link.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import urlencode, urlsplit

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.test import TestResponse

from scheduler.audit import AuditAction, AuditEvent
from scheduler.booking.models import Booking, BookingStatus
from scheduler.notifications.models import Notification, NotificationKind, NotificationStatus
from scheduler.staff.models import Role
from tests.conftest import PASSWORD, Setup, london

# --- Reading pages as a browser does -----------------------------------------------------------


def _squash(text: str) -> str:
    return " ".join(text.split())


@dataclass
class Link:
    href: str
    text: str
    heading: str  # the nearest heading above the link, e.g. "Tuesday 24 November"
    area: str  # the label of the navigation it is in, e.g. "Staff area", or ""


@dataclass
class Form:
    action: str
    method: str
    buttons: list[str] = field(default_factory=list)
    values: list[tuple[str, str]] = field(default_factory=list)  # what it would send as it is
    options: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # select: (value, text)
    editable: set[str] = field(default_factory=set)  # what a person can type in or pick


class _Reader(HTMLParser):
    """Collect a page's links, headings and forms, with the text inside each."""

    CAPTURED = {"a", "h1", "h2", "h3", "h4", "button", "textarea", "option"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[Link] = []
        self.forms: list[Form] = []
        self.heading = ""
        self._open: list[tuple[str, dict[str, str], list[str]]] = []
        self._form: Form | None = None
        self._select: str | None = None
        self._areas: list[str] = []

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        attrs = {key: value or "" for key, value in attributes}
        if tag == "nav":
            self._areas.append(attrs.get("aria-label", ""))
        elif tag == "form":
            self._form = Form(attrs.get("action", ""), attrs.get("method", "get").lower())
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and attrs.get("name"):
            kind = attrs.get("type", "text")
            if kind not in ("hidden", "submit", "button", "reset", "image"):
                self._form.editable.add(attrs["name"])
            if kind in ("checkbox", "radio"):
                if "checked" in attrs:
                    self._form.values.append((attrs["name"], attrs.get("value", "on")))
            elif kind not in ("submit", "button", "reset", "image"):
                self._form.values.append((attrs["name"], attrs.get("value", "")))
        elif tag == "select" and self._form is not None:
            self._select = attrs.get("name")
            self._form.options[self._select or ""] = []
            self._form.editable.add(self._select or "")
        if tag in self.CAPTURED:
            self._open.append((tag, attrs, []))

    def handle_data(self, data: str) -> None:
        for _, _, texts in self._open:
            texts.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav" and self._areas:
            self._areas.pop()
        elif tag == "form":
            self._form = None
        elif tag == "select":
            self._select_done()
        if not self._open or self._open[-1][0] != tag:
            return
        _, attrs, texts = self._open.pop()
        text = "".join(texts)
        if tag == "a" and "href" in attrs:
            self.links.append(
                Link(
                    attrs["href"],
                    _squash(text),
                    self.heading,
                    self._areas[-1] if self._areas else "",
                )
            )
        elif tag.startswith("h"):
            self.heading = _squash(text)
        elif self._form is None:
            return
        elif tag == "button":
            self._form.buttons.append(_squash(text))
        elif tag == "textarea" and attrs.get("name"):
            # A browser drops the newline that starts a textarea's content.
            self._form.values.append((attrs["name"], re.sub(r"^\r?\n", "", text)))
            self._form.editable.add(attrs["name"])
        elif tag == "option" and self._select is not None:
            value = attrs.get("value", _squash(text))
            self._form.options[self._select].append((value, _squash(text)))
            if "selected" in attrs:
                self._form.values.append((self._select, value))

    def _select_done(self) -> None:
        """A select without a selected option sends its first one."""
        if self._form is not None and self._select is not None:
            chosen = any(name == self._select for name, _ in self._form.values)
            choices = self._form.options[self._select]
            if not chosen and choices:
                self._form.values.append((self._select, choices[0][0]))
        self._select = None


@dataclass
class Page:
    url: str
    status: int
    html: str
    links: list[Link]
    forms: list[Form]

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def text(self) -> str:
        """The words on the page, as a person reads them."""
        return _squash(html.unescape(re.sub(r"<[^>]+>", " ", self.html)))

    def link(self, text: str, heading: str | None = None, area: str | None = None) -> Link:
        """The link showing ``text`` (under ``heading``, in the navigation labelled ``area``,
        when given); it must lead to one place."""
        found = [
            link
            for link in self.links
            if link.text == text
            and (heading is None or link.heading == heading)
            and (area is None or link.area == area)
        ]
        assert found, f"no link {text!r} on {self.url}; links: {[x.text for x in self.links]}"
        assert len({link.href for link in found}) == 1, f"several links {text!r} on {self.url}"
        return found[0]

    def has_link(self, text: str) -> bool:
        return any(link.text == text for link in self.links)

    def form(self, button: str, fields: tuple[str, ...] = ()) -> Form:
        """The one form with a button reading ``button`` (and ``fields`` to fill, if several)."""
        found = [form for form in self.forms if button in form.buttons]
        if len(found) > 1:
            found = [form for form in found if set(fields) <= form.editable]
        assert len(found) == 1, f"{len(found)} forms with a {button!r} button on {self.url}"
        return found[0]


def _read(url: str, answer: TestResponse) -> Page:
    reader = _Reader()
    reader.feed(answer.text)
    return Page(url, answer.status_code, answer.text, reader.links, reader.forms)


def get(client: FlaskClient, url: str) -> Page:
    """Open ``url``, as typed into the address bar."""
    return _read(url, client.get(url))


def follow(
    client: FlaskClient, page: Page, text: str, heading: str | None = None, area: str | None = None
) -> Page:
    """Click the link showing ``text``; the page it opens must load."""
    opened = get(client, page.link(text, heading, area).href)
    assert opened.status == 200, f"{opened.url} answered {opened.status}:\n{opened.text[:2000]}"
    return opened


def submit(client: FlaskClient, page: Page, button: str, **typed: str) -> Page:
    """Fill in the form that has ``button`` and press it, as a browser would.

    Every field keeps what the page put in it (hidden fields and the CSRF token included)
    unless typed over; a select is set by the text of the option a person picks, and only a
    field the form shows can be typed into (not a hidden one). A 303 answer is followed, so
    the page returned is where the person lands.
    """
    form = page.form(button, tuple(typed))
    values = MultiDict(form.values)
    for name, value in typed.items():
        assert name in form.editable, f"the {button!r} form has no field {name!r} to fill in"
        if name in form.options:
            picked = [v for v, label in form.options[name] if label.startswith(value)]
            assert len(picked) == 1, f"no single option {value!r} in {name}: {form.options[name]}"
            value = picked[0]
        values.setlist(name, [value])
    action = form.action or page.url
    if form.method == "get":
        return get(client, f"{urlsplit(action).path}?{urlencode(list(values.items(multi=True)))}")
    answer = client.post(action, data=values)
    if answer.status_code != 303:
        return _read(action, answer)
    landed = urlsplit(answer.headers["Location"])
    return get(client, landed.path + (f"?{landed.query}" if landed.query else ""))


def log_in_as(app: Flask, email: str) -> tuple[FlaskClient, Page]:
    """A new browser, logged in through the login page; returns it and the page it lands on."""
    client = app.test_client()
    login = get(client, "/staff/login")
    landed = submit(client, login, "Log in", email=email, password=PASSWORD)
    assert landed.status == 200, landed.text[:2000]
    assert f"Log out {email}" in landed.text
    return client, landed


# --- Reading what the requests wrote -----------------------------------------------------------


def mail_for(
    session: Session, booking: Booking
) -> list[tuple[NotificationKind, NotificationStatus]]:
    session.rollback()  # end the test's read transaction, to see what the requests wrote
    rows = session.scalars(
        select(Notification).where(Notification.booking_id == booking.id).order_by(Notification.id)
    )
    return [(row.kind, row.status) for row in rows]


def history_of(session: Session, booking: Booking) -> list[tuple[AuditAction, str]]:
    session.rollback()
    rows = session.scalars(
        select(AuditEvent).where(AuditEvent.booking_id == booking.id).order_by(AuditEvent.id)
    )
    return [(row.action, row.actor) for row in rows]


def booking_ids(page: Page) -> set[int]:
    """The bookings a page links to."""
    found = (re.fullmatch(r"/staff/bookings/(\d+)", link.href) for link in page.links)
    return {int(match.group(1)) for match in found if match}


# --- The front desk ----------------------------------------------------------------------------


def test_reception_books_a_caller_moves_a_patient_and_marks_a_no_show_from_the_pages(
    app, session, setup, book, make_user, clock
):
    moving = book(london("2026-11-24", "10:00"), practitioner=setup.mei, name="Bea Moving")
    sent = session.scalars(
        select(Notification).where(
            Notification.booking_id == moving.id,
            Notification.kind == NotificationKind.CONFIRMATION,
        )
    ).one()
    sent.status = NotificationStatus.SENT  # she has had her confirmation: a move needs news
    session.commit()
    clock.now = clock.now - timedelta(days=1)  # booked yesterday for this afternoon
    absent = book(london("2026-11-23", "14:00"), practitioner=setup.mei, name="Cy Absent")
    clock.now = clock.now + timedelta(days=1)
    reception = make_user(Role.RECEPTION, email="desk@clinic.example")

    desk, _ = log_in_as(app, reception.email)
    week = get(desk, "/staff/week")
    assert week.status == 200
    assert week.has_link("Bookings")
    assert not week.has_link("Set-up")

    # A caller books a follow-up with James on Tuesday at 10:00.
    bookings = follow(desk, week, "Bookings")
    chooser = follow(desk, bookings, "Book for a caller")
    times = submit(
        desk,
        chooser,
        "Show free times",
        service="Follow-up treatment",
        practitioner="James Okafor",
    )
    assert times.status == 200
    assert "Free times for Follow-up treatment with James Okafor" in times.text
    details = follow(desk, times, "10:00", heading="Tuesday 24 November")
    assert "With James Okafor" in details.text
    booked = submit(
        desk,
        details,
        "Book and send the confirmation",
        full_name="Ada Caller",
        email="Ada@Example.org",
        phone="+44 20 7946 0000",
        notes="Lower back, since a fall",
    )
    assert booked.status == 200, booked.text[:2000]
    assert re.fullmatch(r"/staff/bookings/\d+", booked.path), booked.url
    assert "Booked. The patient is sent the confirmation" in booked.text
    assert "Ada Caller" in booked.text
    session.rollback()
    caller = session.get(Booking, int(booked.path.rsplit("/", 1)[1]))
    assert caller is not None
    assert (caller.start_at, caller.practitioner_id) == (
        london("2026-11-24", "10:00"),
        setup.james.id,
    )
    assert caller.treatment_id == setup.follow_up.id
    assert (caller.patient.name, caller.patient.email) == ("Ada Caller", "ada@example.org")
    assert caller.notes == "Lower back, since a fall"
    assert (NotificationKind.CONFIRMATION, NotificationStatus.PENDING) in mail_for(session, caller)
    assert history_of(session, caller)[0] == (AuditAction.BOOKED, "desk@clinic.example")

    # Bea, in Mei's week, moves from Tuesday 10:00 to Wednesday 14:00.
    meis_week = submit(desk, week, "Show", practitioner="Mei Lin")
    assert meis_week.status == 200
    assert "Week of 23 November 2026: Mei Lin" in meis_week.text
    her_booking = follow(desk, meis_week, "Bea Moving")
    picker = follow(desk, her_booking, "Move to another time or practitioner")
    assert "Free times with Mei Lin" in picker.text
    confirm = follow(desk, picker, "14:00", heading="Wednesday 25 November")
    assert "Move it to" in confirm.text
    moved = submit(desk, confirm, "Move the booking")
    assert moved.status == 200, moved.text[:2000]
    assert moved.path == her_booking.path
    assert "The booking is moved and the patient will be told." in moved.text
    session.rollback()
    assert (moving.start_at, moving.practitioner_id) == (
        london("2026-11-25", "14:00"),
        setup.mei.id,
    )
    assert (NotificationKind.UPDATE, NotificationStatus.PENDING) in mail_for(session, moving)
    assert history_of(session, moving)[-1] == (AuditAction.RESCHEDULED, "desk@clinic.example")

    # Cy has not come by 14:20 for his 14:00 visit.
    clock.now = london("2026-11-23", "14:20")
    today = follow(desk, get(desk, "/staff/week"), "Day", area="Staff area")
    assert today.status == 200
    assert "Monday 23 November 2026" in today.text
    his_booking = follow(desk, today, "Cy Absent")
    marked = submit(desk, his_booking, "No-show")
    assert marked.status == 200, marked.text[:2000]
    assert marked.path == his_booking.path
    assert "Marked no-show." in marked.text
    session.rollback()
    assert absent.status is BookingStatus.NO_SHOW
    assert (NotificationKind.AFTERCARE, NotificationStatus.SKIPPED) in mail_for(session, absent)
    assert history_of(session, absent)[-1] == (AuditAction.STATUS_CHANGED, "desk@clinic.example")

    # Mei, logged in as her practitioner self, sees her own patients and nobody else's.
    mei = make_user(Role.PRACTITIONER, email="mei@clinic.example", practitioner=setup.mei)
    her_browser, home = log_in_as(app, mei.email)
    assert not home.has_link("Set-up")
    assert not home.has_link("Patient mail")
    hers = follow(her_browser, home, "Bookings")
    assert booking_ids(hers) == {moving.id, absent.id}
    assert not hers.has_link("Book for a caller")
    assert "Ada Caller" not in hers.text
    assert get(her_browser, f"/staff/bookings/{caller.id}").status == 404
    assert get(her_browser, "/staff/bookings/new").status == 403
    assert get(her_browser, f"/staff/bookings/{moving.id}/reschedule").status == 403
    own = get(her_browser, f"/staff/bookings/{absent.id}")
    assert own.status == 200
    assert not own.has_link("Move to another time or practitioner")


# --- The owner -----------------------------------------------------------------------------------


def slot_times(client: FlaskClient, setup: Setup, day: str) -> list[tuple[str, str]]:
    """Mei's free follow-up times on ``day`` as the public API gives them: (start, end)."""
    answer = client.get(
        f"/api/v1/slots?service={setup.follow_up.id}&start={day}&end={day}"
        f"&practitioner={setup.mei.id}"
    )
    found = answer.get_json()
    assert answer.status_code == 200, found
    return [(slot["start"][11:16], slot["end"][11:16]) for slot in found["slots"]]


def test_the_owner_changes_hours_and_the_checklist_which_reception_cannot(
    app, session, setup, make_user
):
    reception = make_user(Role.RECEPTION)
    owner = make_user(Role.ADMIN, email="owner@clinic.example")

    desk, desk_home = log_in_as(app, reception.email)
    assert not desk_home.has_link("Set-up")
    assert not desk_home.has_link("Accounts")
    assert get(desk, "/staff/setup/").status == 403
    assert get(desk, "/staff/setup/checklists").status == 403
    assert get(desk, "/staff/users/").status == 403

    # Mei works only 10:00 to 12:00 on Mondays from now on.
    monday = "2026-11-30"
    before = slot_times(app.test_client(), setup, monday)
    assert ("09:00", "10:00") in before
    assert any(start >= "14:00" for start, _ in before)
    browser, home = log_in_as(app, owner.email)
    set_up = follow(browser, home, "Set-up")
    assert set_up.path == "/staff/setup/"
    practitioners = follow(browser, set_up, "Practitioners")
    meis = follow(browser, practitioners, "Mei Lin")
    hours = follow(browser, meis, "Weekly hours")
    assert ("monday", "09:00-13:00, 14:00-18:00") in hours.form("Save the hours").values
    saved = submit(browser, hours, "Save the hours", monday="10:00-12:00")
    assert saved.status == 200, saved.text[:2000]
    assert saved.path == hours.path
    assert "Mei Lin's weekly hours are saved." in saved.text
    after = saved.form("Save the hours").values
    assert ("monday", "10:00-12:00") in after
    assert ("tuesday", "09:00-13:00, 14:00-18:00") in after
    offered = slot_times(app.test_client(), setup, monday)
    assert offered, "no free times left on Monday"
    assert offered[0][0] == "10:00"
    assert all(start >= "10:00" and end <= "12:00" for start, end in offered), offered
    assert ("09:00", "10:00") in slot_times(app.test_client(), setup, "2026-12-01")

    # The preparation checklist says something new, and the preview shows it.
    checklists = follow(browser, saved, "Checklists")
    form = checklists.form("Save the checklists")
    assert "preparation" in form.editable
    assert "Wear loose, comfortable clothing" in dict(form.values)["preparation"]
    new_items = "Have a light meal an hour or two before.\nWear a top with loose sleeves."
    shown = submit(browser, checklists, "Save the checklists", preparation=new_items)
    assert shown.status == 200, shown.text[:2000]
    assert shown.path == checklists.path
    assert "The checklist is saved; the preview below shows it." in shown.text
    preview = shown.text.split("The mail as patients will see it", 1)[1]
    assert "Have a light meal an hour or two before." in preview
    assert "Wear a top with loose sleeves." in preview
    assert "Wear loose, comfortable clothing" not in preview
    assert "Drink plenty of water today." in preview  # the aftercare it did not touch
