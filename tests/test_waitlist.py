"""The waitlist end to end: joining by page and API, offers mailed through a real SMTP server
when a time frees up, the first to book winning, expiry, and leaving the list."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import PatientDetails, cancel_booking, reschedule_booking
from scheduler.clinic.models import Practitioner, Treatment
from scheduler.extensions import db
from scheduler.notifications.models import Notification, NotificationKind, NotificationStatus
from scheduler.patients.models import Patient
from scheduler.staff.models import Role
from scheduler.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer
from scheduler.waitlist.operations import HEAD_START, OFFER_LIFETIME, join_waitlist
from tests.conftest import NOW, WEEKDAY_HOURS, Setup, csrf_token, log_in, london, token_of
from tests.smtp_server import Inbox
from tests.test_pages import Browser, Page, details_page

TUESDAY = date(2026, 11, 24)
WEDNESDAY = date(2026, 11, 25)
TUESDAY_10 = london("2026-11-24", "10:00")
OFFERED = "A time has come free"
GONE = "Already booked"


# --- Helpers ----------------------------------------------------------------------------------


@pytest.fixture
def browser(client: FlaskClient, session: Session) -> Browser:
    """A patient's browser on the app."""
    return Browser(client, session)


def dispatch(app: Flask) -> str:
    """Run ``notifications run --once`` as an operator would; return its summary line."""
    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


@pytest.fixture
def wait(session: Session, setup: Setup, clock) -> Callable[..., WaitlistEntry]:
    """Put a patient on the waitlist through the real operation and commit."""

    def make(
        email: str,
        days: list[date],
        *,
        practitioner: Practitioner | None = None,
        treatment: Treatment | None = None,
    ) -> WaitlistEntry:
        entry = join_waitlist(
            session,
            clinic=setup.clinic,
            treatment=treatment or setup.follow_up,
            practitioner=practitioner,
            days=days,
            patient=PatientDetails(email.split("@")[0].title(), email),
            now=clock(),
        )
        session.commit()
        return entry

    return make


@pytest.fixture
def cancel(session: Session, setup: Setup, clock) -> Callable[[Booking], None]:
    """Cancel through the real operation and commit."""

    def make(booking: Booking) -> None:
        cancel_booking(session, clinic=setup.clinic, booking=booking, now=clock())
        session.commit()

    return make


def mail_to(inbox: Inbox, email: str, subject: str = "") -> list[EmailMessage]:
    """The messages ``email`` received whose subject starts with ``subject``."""
    return [
        message
        for message in inbox.messages()
        if message["To"].addresses[0].addr_spec == email
        and str(message["Subject"]).strip().startswith(subject)
    ]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return " ".join(part.get_content().split())


def offer_path(message: EmailMessage) -> str:
    """The path of the offer link in a message (the browser stays on the test host)."""
    found = re.search(r"https://clinic\.test(/w/[A-Za-z0-9_-]+)", text_of(message))
    assert found, "the message has no offer link"
    return found.group(1)


def offers(session: Session) -> list[WaitlistOffer]:
    session.rollback()
    return list(session.scalars(select(WaitlistOffer).order_by(WaitlistOffer.id)))


def count(session: Session, model: type) -> int:
    session.rollback()
    return session.scalar(select(func.count()).select_from(model)) or 0


def book_offer_page(browser: Browser, path: str, **values: Any) -> Page:
    """Open an offer link and send its form as the patient would."""
    page = browser.open(path)
    assert page.status == 200, page.text
    return browser.submit(page, **values)


# --- Joining ----------------------------------------------------------------------------------


def join_page(browser: Browser, setup: Setup) -> Page:
    """The join form, reached from the free times of a follow-up with Mei."""
    week = browser.open(f"/book?service={setup.follow_up.id}&practitioner={setup.mei.id}")
    page = browser.open(week.link("Join the waitlist"))
    assert page.status == 200
    return page


def test_a_patient_joins_the_waitlist_from_the_free_times(browser, setup, session):
    page = join_page(browser, setup)
    days = [
        element.attrs["value"]
        for element in page.elements
        if element.tag == "input" and element.attrs.get("name") == "days"
    ]
    # Twelve hours' notice rules out Monday (nobody works after 20:00), nobody works Sundays.
    assert days[:6] == [f"2026-11-{day}" for day in (24, 25, 26, 27, 28, 30)]
    assert "2026-11-23" not in days
    assert "2026-11-29" not in days

    joined = browser.submit(
        page,
        full_name="Bea Waiting",
        email="Bea@Example.org",
        phone="+44 7700 900123",
        days=["2026-11-24", "2026-11-26"],
    )

    assert joined.status == 303
    entry = session.scalars(select(WaitlistEntry)).one()
    assert joined.location == f"/waitlist/{entry.token}"
    assert entry.status is EntryStatus.WAITING
    assert entry.dates == [TUESDAY, date(2026, 11, 26)]
    assert entry.practitioner_id == setup.mei.id
    assert entry.treatment_id == setup.follow_up.id
    assert entry.patient.email == "bea@example.org"
    mine = browser.open(joined.location)
    assert "Waiting" in mine.text
    assert "Tuesday 24 November 2026" in mine.text
    assert "Thursday 26 November 2026" in mine.text
    assert "Leave the waitlist" in mine.text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"days": None}, "Please choose at least one day."),
        ({"days": ["2026-11-20"]}, "Friday 20 November 2026 has passed or is too soon"),
        ({"days": ["2027-01-23"]}, "Saturday 23 January 2027 is too far ahead"),
        ({"days": ["next tuesday"]}, "Please choose days from the list."),
        ({"email": "not an address"}, "Please enter a valid email address"),
        ({"full_name": ""}, "Please enter your name."),
    ],
)
def test_bad_input_on_the_join_page_is_explained_and_nothing_is_written(
    browser, setup, session, changes, message
):
    page = join_page(browser, setup)
    values = {"full_name": "Bea", "email": "bea@example.org", "days": ["2026-11-24"], **changes}

    answer = browser.submit(page, **values)

    assert answer.status == 422
    assert message in answer.text
    assert count(session, WaitlistEntry) == 0
    assert count(session, Patient) == 0


def test_joining_for_a_treatment_not_offered_is_refused(browser, setup, session):
    page = join_page(browser, setup)

    answer = browser.client.post(
        f"/waitlist?service=999&practitioner={setup.mei.id}",
        data={
            "csrf_token": csrf_token(page.response.text),
            "full_name": "Bea",
            "email": "bea@example.org",
            "days": ["2026-11-24"],
        },
    )

    assert answer.status_code == 422
    assert "That treatment is not offered" in answer.text
    assert count(session, WaitlistEntry) == 0
    assert browser.open("/waitlist?service=999").status == 400


def api_body(setup: Setup, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "service": setup.follow_up.id,
        "practitioner": None,
        "dates": ["2026-11-24", "2026-11-25"],
        "patient": {"name": "Cai Script", "email": "Cai@Example.org", "phone": "+44 7700 900456"},
    }
    body.update(changes)
    return body


def test_a_script_joins_the_waitlist_through_the_api_and_leaves_it(client, setup, session):
    answer = client.post("/api/v1/waitlist", json=api_body(setup))

    assert answer.status_code == 201, answer.json
    entry = answer.json
    assert "id" not in entry
    assert entry["status"] == "waiting"
    assert entry["service"] == setup.follow_up.id
    assert entry["practitioner"] is None
    assert entry["dates"] == ["2026-11-24", "2026-11-25"]
    assert entry["patient"]["email"] == "cai@example.org"
    assert entry["manage_url"] == f"https://clinic.test/waitlist/{entry['token']}"
    assert entry["leave_url"] == f"https://clinic.test/api/v1/waitlist/{entry['token']}/leave"
    assert client.get(urlsplit(entry["manage_url"]).path).status_code == 200
    assert client.get(f"/api/v1/waitlist/{entry['token']}").json == entry

    left = client.post(urlsplit(entry["leave_url"]).path)

    assert left.status_code == 200
    assert left.json["status"] == "left"
    again = client.post(urlsplit(entry["leave_url"]).path)
    assert again.status_code == 409
    assert again.json["error"] == "You are no longer on this waitlist."
    assert client.get("/api/v1/waitlist/nonsense").status_code == 404


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dates": []}, "dates"),
        ({"dates": ["2026-11-20"]}, "dates"),
        ({"dates": ["2026-11-24", "2027-06-01"]}, "dates"),
        ({"dates": ["2026-11-24", "soon"]}, "dates.1"),
        ({"dates": "2026-11-24"}, "dates"),
        ({"dates": [f"2026-12-{day:02}" for day in range(1, 32)] * 12}, "dates"),
        ({"service": 999}, "service"),
        ({"service": "two"}, "service"),
        ({"practitioner": 999}, "practitioner"),
        ({"patient": {"name": "Cai", "email": "nope"}}, "patient.email"),
        ({"patient": {"email": "cai@example.org"}}, "patient.name"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_input_to_the_api_is_a_422_with_the_field_and_nothing_is_written(
    client, setup, session, changes, field
):
    answer = client.post("/api/v1/waitlist", json=api_body(setup, **changes))

    assert answer.status_code == 422, answer.json
    assert answer.json["error"]
    assert field in answer.json["fields"], answer.json
    assert count(session, WaitlistEntry) == 0
    assert count(session, Patient) == 0


def test_the_api_refuses_a_practitioner_who_does_not_give_the_treatment(
    client, setup, session, make_treatment, make_practitioner
):
    cupping = make_treatment(name="Cupping", duration_minutes=30, buffer_minutes=0)
    make_practitioner(name="Ana Cupper", treatments=[cupping])

    answer = client.post(
        "/api/v1/waitlist", json=api_body(setup, service=cupping.id, practitioner=setup.mei.id)
    )

    assert answer.status_code == 422
    assert answer.json["fields"] == {"practitioner": "Mei Lin does not give Cupping."}
    assert count(session, WaitlistEntry) == 0
    assert client.post("/api/v1/waitlist", data="{}").status_code == 415


# --- Offers when a time frees up --------------------------------------------------------------


def test_a_cancellation_offers_the_freed_time_to_waiting_patients_in_join_order(
    app, setup, book, wait, cancel, session, clock, smtp
):
    booking = book(TUESDAY_10, practitioner=setup.mei, email="ann@example.org")
    wait("first@example.org", [TUESDAY])  # anyone
    clock.now += timedelta(minutes=5)
    wait("second@example.org", [TUESDAY, WEDNESDAY], practitioner=setup.mei)
    wait("wednesday@example.org", [WEDNESDAY])
    wait("james.only@example.org", [TUESDAY], practitioner=setup.james)
    clock.now = NOW + timedelta(hours=1)

    cancel(booking)
    dispatch(app)

    assert [offer.entry.patient.email for offer in offers(session)] == [
        "first@example.org",
        "second@example.org",
    ]
    assert all(
        (offer.start_at, offer.practitioner_id) == (TUESDAY_10, setup.mei.id)
        for offer in offers(session)
    )
    [first_offer] = mail_to(smtp, "first@example.org", OFFERED)
    assert mail_to(smtp, "second@example.org") == [], "the first to join hears first"

    clock.now += HEAD_START
    dispatch(app)

    [second_offer] = mail_to(smtp, "second@example.org", OFFERED)
    for message in (first_offer, second_offer):
        assert str(message["Subject"]).strip() == (
            "A time has come free: Follow-up treatment on Tuesday 24 November 2026, 10:00 GMT"
        )
        text = text_of(message)
        assert "Follow-up treatment with Mei Lin" in text
        assert "Tuesday 24 November 2026, 10:00 to 11:00 GMT" in text
        assert "the first to book it has it" in text
        assert "https://clinic.test/waitlist/" in text
    # Open three hours from when each heard of it (well before the 12 hours' notice).
    assert "Book it by Monday 23 November 2026, 12:00 GMT" in text_of(first_offer)
    assert "Book it by Monday 23 November 2026, 12:15 GMT" in text_of(second_offer)
    assert mail_to(smtp, "wednesday@example.org") == []
    assert mail_to(smtp, "james.only@example.org") == []


def test_the_first_to_book_wins_and_the_other_is_told_it_has_gone(
    app, setup, book, wait, cancel, session, clock, smtp, browser
):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    first = wait("first@example.org", [TUESDAY])
    second = wait("second@example.org", [TUESDAY, WEDNESDAY])
    cancel(booking)
    dispatch(app)
    clock.now += HEAD_START
    dispatch(app)
    [to_first] = mail_to(smtp, "first@example.org", OFFERED)
    [to_second] = mail_to(smtp, "second@example.org", OFFERED)

    # The second to hear is the quicker one.
    booked = book_offer_page(browser, offer_path(to_second), notes="Neck")

    assert booked.status == 303
    mine = session.scalars(select(Booking).where(Booking.status == BookingStatus.CONFIRMED)).one()
    assert booked.location == f"/b/{mine.manage_token}"
    assert (mine.start_at, mine.practitioner_id) == (TUESDAY_10, setup.mei.id)
    assert mine.patient.email == "second@example.org"
    assert session.get(WaitlistEntry, second.id).status is EntryStatus.BOOKED

    late = browser.open(offer_path(to_first))

    assert late.status == 409
    assert "Sorry, this time has gone" in late.text
    assert "Someone else booked this time first." in late.text
    assert "You are still on the waitlist" in late.text
    assert session.get(WaitlistEntry, first.id).status is EntryStatus.WAITING
    token = csrf_token(browser.open(f"/waitlist/{first.token}").response.text)
    refused = browser.client.post(
        offer_path(to_first),
        data={"csrf_token": token, "full_name": "First", "email": "first@example.org"},
    )
    assert refused.status_code == 409
    assert count(session, Booking) == 2, "the cancelled one and the winner's"

    dispatch(app)

    [gone] = mail_to(smtp, "first@example.org", GONE)
    assert "booked by someone else first" in text_of(gone)
    assert "You are still on the waitlist for Tuesday 24 November 2026" in text_of(gone)
    assert mail_to(smtp, "second@example.org", GONE) == []
    assert mail_to(smtp, "second@example.org", "Booked")
    assert browser.open(offer_path(to_second)).status == 200, "the winner sees their booking"


RACERS = 6


def test_patients_racing_for_one_offered_time_give_one_booking_and_the_rest_are_told(
    app, setup, book, wait, cancel, session, clock
):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    for number in range(RACERS):
        wait(f"racer{number}@example.org", [TUESDAY])
    cancel(booking)
    tokens = [offer.token for offer in offers(session)]
    assert len(tokens) == RACERS
    clock.now += HEAD_START * RACERS
    dispatch(app)  # every offer is out (to the mail folder)
    barrier = threading.Barrier(RACERS)

    def attempt(number: int) -> int:
        client = app.test_client()
        page = client.get(f"/w/{tokens[number]}")
        assert page.status_code == 200
        data = {
            "csrf_token": csrf_token(page.text),
            "full_name": f"Racer {number}",
            "email": f"racer{number}@example.org",
        }
        barrier.wait(timeout=30)
        return client.post(f"/w/{tokens[number]}", data=data).status_code

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        outcomes = Counter(pool.map(attempt, range(RACERS)))

    assert outcomes == {303: 1, 409: RACERS - 1}
    session.rollback()  # end this session's read snapshot to see what the racers wrote
    live = session.scalars(select(Booking).where(Booking.status == BookingStatus.CONFIRMED)).all()
    assert [(b.start_at, b.practitioner_id) for b in live] == [(TUESDAY_10, setup.mei.id)]
    statuses = Counter(offer.status for offer in offers(session))
    assert statuses == {OfferStatus.TAKEN: 1, OfferStatus.GONE: RACERS - 1}
    told = session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.kind == NotificationKind.WAITLIST_GONE)
    )
    assert told == RACERS - 1


def test_a_patient_still_waiting_for_their_turn_never_hears_of_a_time_already_booked(
    app, setup, book, wait, cancel, session, clock, smtp, browser
):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    wait("first@example.org", [TUESDAY])
    wait("second@example.org", [TUESDAY])
    cancel(booking)
    dispatch(app)
    [to_first] = mail_to(smtp, "first@example.org", OFFERED)

    assert book_offer_page(browser, offer_path(to_first)).status == 303
    clock.now += HEAD_START
    dispatch(app)

    assert mail_to(smtp, "second@example.org") == []
    [held_back] = [offer for offer in offers(session) if offer.status is OfferStatus.GONE]
    mail = session.scalars(
        select(Notification).where(Notification.waitlist_offer_id == held_back.id)
    ).one()
    assert mail.status is NotificationStatus.SKIPPED
    assert mail.last_error == "someone else booked the time first"


def test_an_expired_offer_cannot_be_booked(
    app, setup, book, wait, cancel, session, clock, smtp, browser
):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    entry = wait("late@example.org", [TUESDAY])
    cancel(booking)
    dispatch(app)
    [message] = mail_to(smtp, "late@example.org", OFFERED)
    [offer] = offers(session)
    assert offer.expires_at == NOW + OFFER_LIFETIME
    form = browser.open(offer_path(message))
    assert form.status == 200
    token = csrf_token(form.response.text)

    clock.now = offer.expires_at
    page = browser.open(offer_path(message))
    answer = browser.client.post(
        offer_path(message),
        data={"csrf_token": token, "full_name": "Late", "email": "late@example.org"},
    )

    assert page.status == 410
    assert "This offer has expired" in page.text
    assert "The offer was open until Monday 23 November 2026, 11:00 GMT." in page.text
    assert answer.status_code == 410
    assert count(session, Booking) == 1, "only the cancelled booking"
    assert session.get(WaitlistEntry, entry.id).status is EntryStatus.WAITING


def test_an_offer_closes_when_the_clinics_notice_before_the_time_begins(
    app, setup, book, wait, cancel, session, clock
):
    nine = london("2026-11-24", "09:00")
    booking = book(nine, practitioner=setup.mei)
    wait("evening@example.org", [TUESDAY])
    clock.now = london("2026-11-23", "19:30")

    cancel(booking)

    [offer] = offers(session)
    assert offer.start_at == nine
    assert offer.expires_at == london("2026-11-23", "21:00"), "12 hours before 09:00"


def test_a_reschedule_offers_the_time_it_left(setup, book, wait, session, clock):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    wait("waiting@example.org", [TUESDAY], practitioner=setup.mei)
    wait("elsewhere@example.org", [WEDNESDAY], practitioner=setup.mei)

    reschedule_booking(
        session,
        clinic=setup.clinic,
        booking=booking,
        start=london("2026-11-25", "15:00"),
        now=clock(),
    )
    session.commit()

    [offer] = offers(session)
    assert offer.entry.patient.email == "waiting@example.org"
    assert (offer.start_at, offer.end_at) == (TUESDAY_10, TUESDAY_10 + timedelta(hours=1))


def test_new_working_hours_offer_their_times(
    app, client, setup, make_user, make_practitioner, wait, session, smtp
):
    ana = make_practitioner(
        name="Ana Early", treatments=[setup.follow_up], hours={0: WEEKDAY_HOURS}
    )
    wait("for.ana@example.org", [TUESDAY], practitioner=ana)
    wait("for.anyone@example.org", [TUESDAY])
    wait("wrong.day@example.org", [WEDNESDAY], practitioner=ana)
    log_in(client, make_user(Role.ADMIN).email)

    saved = client.post(
        f"/staff/setup/practitioners/{ana.id}/hours",
        data={
            "csrf_token": token_of(client, "/staff/setup/"),
            "monday": "09:00-13:00, 14:00-18:00",
            "tuesday": "14:00-16:00",
        },
    )
    dispatch(app)

    assert saved.status_code == 303
    made = offers(session)
    assert [(o.entry.patient.email, o.start_at, o.practitioner_id) for o in made] == [
        ("for.ana@example.org", london("2026-11-24", "14:00"), ana.id),
        ("for.anyone@example.org", london("2026-11-24", "14:00"), ana.id),
    ]
    assert mail_to(smtp, "for.ana@example.org", OFFERED)
    assert mail_to(smtp, "for.anyone@example.org") == [], "a head start for who joined first"
    assert mail_to(smtp, "wrong.day@example.org") == []

    client.post(
        f"/staff/setup/practitioners/{ana.id}/hours",
        data={
            "csrf_token": token_of(client, "/staff/setup/"),
            "monday": "09:00-13:00, 14:00-18:00",
            "tuesday": "14:00-16:00",
        },
    )
    assert len(offers(session)) == 2, "saving the same hours again opens nothing new"


def test_removing_time_off_offers_the_times_it_held(
    client, setup, make_user, make_time_off, wait, session
):
    off = make_time_off(setup.mei, london("2026-11-24", "00:00"), london("2026-11-25", "00:00"))
    wait("for.mei@example.org", [TUESDAY], practitioner=setup.mei)
    log_in(client, make_user(Role.ADMIN).email)
    path = f"/staff/setup/practitioners/{setup.mei.id}/time-off"

    removed = client.post(f"{path}/{off.id}/delete", data={"csrf_token": token_of(client, path)})

    assert removed.status_code == 303
    [offer] = offers(session)
    assert offer.entry.patient.email == "for.mei@example.org"
    assert (offer.start_at, offer.practitioner_id) == (london("2026-11-24", "09:00"), setup.mei.id)


def test_a_time_taken_by_an_ordinary_booking_is_not_offered_after_all(
    app, setup, book, wait, cancel, session, smtp, browser
):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    wait("waiting@example.org", [TUESDAY])
    cancel(booking)
    [offer] = offers(session)
    book(TUESDAY_10, practitioner=setup.mei, email="quick@example.org")

    dispatch(app)

    assert mail_to(smtp, "waiting@example.org") == []
    mail = session.scalars(
        select(Notification).where(Notification.waitlist_offer_id == offer.id)
    ).one()
    assert mail.status is NotificationStatus.SKIPPED
    assert mail.last_error == "the time is no longer free"
    assert browser.open(f"/w/{offer.token}").status == 409


def test_a_time_offered_once_is_never_offered_again_to_the_same_patient(
    setup, book, wait, cancel, session, clock
):
    first_booking = book(TUESDAY_10, practitioner=setup.mei)
    wait("waiting@example.org", [TUESDAY], practitioner=setup.mei)
    cancel(first_booking)
    clock.now += OFFER_LIFETIME  # the offer expires unused
    again = book(TUESDAY_10, practitioner=setup.mei)
    wait("newcomer@example.org", [TUESDAY], practitioner=setup.mei)

    cancel(again)

    assert [(o.entry.patient.email, o.start_at) for o in offers(session)] == [
        ("waiting@example.org", TUESDAY_10),
        ("newcomer@example.org", TUESDAY_10),
    ]


def test_a_first_visit_offered_asks_for_consent_before_booking(
    app, setup, book, wait, cancel, session, smtp, browser
):
    booking = book(TUESDAY_10, practitioner=setup.mei, treatment=setup.initial)
    wait("new@example.org", [TUESDAY], treatment=setup.initial)
    cancel(booking)
    dispatch(app)
    [message] = mail_to(smtp, "new@example.org", OFFERED)
    page = browser.open(offer_path(message))
    assert "I consent to acupuncture treatment" in page.text

    refused = browser.submit(page)
    accepted = browser.submit(page, consent="y", conditions="anticoagulants")

    assert refused.status == 422
    assert accepted.status == 303
    mine = session.scalars(select(Booking).where(Booking.status == BookingStatus.CONFIRMED)).one()
    assert mine.treatment_id == setup.initial.id
    assert mine.patient.intake is not None
    assert mine.patient.intake.conditions == ["anticoagulants"]


# --- Leaving ----------------------------------------------------------------------------------


def test_leaving_the_list_withdraws_open_offers_and_stops_new_ones(
    app, setup, book, wait, cancel, session, smtp, browser
):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    other = book(london("2026-11-24", "14:00"), practitioner=setup.mei)
    entry = wait("leaving@example.org", [TUESDAY], practitioner=setup.mei)
    cancel(booking)
    [offer] = offers(session)

    page = browser.open(f"/waitlist/{entry.token}")
    assert "Times offered to you now" in page.text
    left = browser.submit(page)

    assert left.status == 303
    after = browser.open(left.location)
    assert "You have left the waitlist" in after.text
    assert "Leave the waitlist" not in after.text
    assert session.get(WaitlistEntry, entry.id).status is EntryStatus.LEFT
    withdrawn = browser.open(f"/w/{offer.token}")
    assert withdrawn.status == 410
    assert "You are no longer on the waitlist." in withdrawn.text
    cancel(other)
    dispatch(app)
    assert len(offers(session)) == 1, "nothing new for someone who left"
    assert mail_to(smtp, "leaving@example.org", OFFERED) == []
    again = browser.client.post(
        f"/waitlist/{entry.token}/leave", data={"csrf_token": csrf_token(page.response.text)}
    )
    assert again.status_code == 409
    assert browser.open("/waitlist/not-a-token").status == 404
    assert browser.open("/w/not-a-token").status == 404


# --- The "done when": a waitlisted patient gets the slot another patient cancels -----


def test_a_waitlisted_patient_gets_the_slot_another_patient_cancels(
    app, setup, session, smtp, browser
):
    # Ann books Tuesday 10:00 with Mei through the booking pages.
    details = details_page(browser, setup)
    booked = browser.submit(details, full_name="Ann Early", email="ann@example.org")
    assert booked.status == 303
    ann_page = booked.location

    # Bea finds no time that suits and joins the waitlist for Tuesday.
    joined = browser.submit(
        join_page(browser, setup),
        full_name="Bea Waiting",
        email="bea@example.org",
        days=["2026-11-24"],
    )
    assert joined.status == 303

    # Ann cancels from her manage page.
    manage = browser.open(ann_page)
    cancel_page = browser.open(manage.link("Cancel"))
    assert browser.submit(cancel_page).status == 303
    dispatch(app)

    # Bea receives the offer, follows its link and books.
    [offer] = mail_to(smtp, "bea@example.org", OFFERED)
    page = browser.open(offer_path(offer))
    assert page.status == 200
    assert "Tuesday 24 November 2026, 10:00" in page.text
    done = browser.submit(page)

    assert done.status == 303
    bea = session.scalars(
        select(Booking).join(Booking.patient).where(Patient.email == "bea@example.org")
    ).one()
    assert bea.status is BookingStatus.CONFIRMED
    assert (bea.start_at, bea.practitioner_id) == (TUESDAY_10, setup.mei.id)
    assert done.location == f"/b/{bea.manage_token}"
    assert "Booked for Bea Waiting" in browser.open(done.location).text
    dispatch(app)
    assert mail_to(smtp, "bea@example.org", "Booked: Follow-up treatment on Tuesday 24 November")


# --- Staff and the schema ---------------------------------------------------------------------


def test_reception_sees_waitlist_mail_with_the_offers_patient_and_time(
    app, client, setup, book, wait, cancel, session, make_user
):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    wait("waiting@example.org", [TUESDAY])
    cancel(booking)
    [offer] = offers(session)
    mail = session.scalars(
        select(Notification).where(Notification.waitlist_offer_id == offer.id)
    ).one()
    log_in(client, make_user(Role.RECEPTION).email)

    listing = client.get("/staff/notifications/")
    detail = client.get(f"/staff/notifications/{mail.id}")

    assert listing.status_code == 200
    assert "Waitlist offer" in listing.text
    assert "Waiting" in listing.text
    assert detail.status_code == 200
    assert "Waitlist offer to Waiting" in detail.text
    assert "A time has come free: Follow-up treatment on Tuesday 24 November 2026" in detail.text
    assert f"https://clinic.test/w/{offer.token}" in detail.text


def test_migrating_down_and_up_keeps_booking_mail_and_drops_offer_mail(
    app, setup, book, wait, cancel, session
):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    wait("waiting@example.org", [TUESDAY])
    cancel(booking)
    booking_mail = session.scalar(
        select(func.count()).select_from(Notification).where(Notification.booking_id.is_not(None))
    )
    session.close()

    with app.app_context():
        db.session.remove()
        downgrade(revision="0008")
        with db.engine.connect() as connection:
            kept = connection.exec_driver_sql("SELECT count(*) FROM notifications").scalar()
        upgrade()

    assert kept == booking_mail
    assert count(session, Notification) == booking_mail
    assert count(session, WaitlistEntry) == 0
    assert (booking_mail or 0) >= 4, "confirmation, checklist, aftercare, cancellation"


# --- Erasure and export -----------------------------------------------------------------------


def test_erasing_a_patient_takes_them_off_the_waitlist_and_blanks_their_offer_mail(
    session, setup, book, wait, cancel, clock, make_user
):
    from scheduler.audit import Actor
    from scheduler.patients.operations import erase_patient, export_patient

    taken = book(TUESDAY_10, practitioner=setup.mei)
    entry = wait("bea@example.org", [TUESDAY])
    cancel(taken)
    session.rollback()
    (offer,) = session.get_one(WaitlistEntry, entry.id).offers
    admin = make_user(Role.ADMIN)
    actor = Actor(admin.email, admin.id)
    patient = session.get_one(Patient, entry.patient_id)

    exported = export_patient(
        session, patient=patient, tz=setup.clinic.tz, actor=actor, now=clock()
    )
    assert [w["dates"] for w in exported["waitlist"]] == [["2026-11-24"]]
    assert [o["status"] for o in exported["waitlist"][0]["offers"]] == ["offered"]
    assert any(n["waitlist_offer_id"] == offer.id for n in exported["notifications"])

    erase_patient(session, patient=patient, actor=actor, now=clock())
    session.commit()

    session.rollback()
    entry = session.get_one(WaitlistEntry, entry.id)
    assert entry.status is EntryStatus.LEFT
    assert entry.offers[0].status is OfferStatus.WITHDRAWN
    mail = session.scalars(
        select(Notification).where(Notification.waitlist_offer_id == offer.id)
    ).all()
    assert mail
    assert all(n.recipient == "" for n in mail)
    assert all(n.status is NotificationStatus.SKIPPED for n in mail)
