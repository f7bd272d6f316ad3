"""The approval policy: online bookings by patients with too many late cancellations and
no-shows are requests that hold their time until staff approve them (the confirmation and
checklist go out then) or decline them (cancelled by the clinic, the patient told why)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from icalendar import Calendar
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from scheduler.audit import Actor, AuditAction, AuditEvent
from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import cancel_booking, set_status
from scheduler.booking.policies import missed_visits
from scheduler.clinic.models import Clinic
from scheduler.notifications.dispatch import unwanted
from scheduler.notifications.models import Notification, NotificationKind, NotificationStatus
from scheduler.staff.models import Role
from tests.conftest import csrf_token, log_in, london, token_of

RECEPTION = Actor("reception@clinic.example")
PATIENT_EMAIL = "ann@example.org"
# Friday 27 November 2026, 10:00 in London: the visit the patient asks for.
VISIT = london("2026-11-27", "10:00")


def fresh(session: Session) -> Session:
    """The test's session, reading what the app committed since."""
    session.rollback()
    session.expire_all()
    return session


def dispatch(app: Flask) -> str:
    """Run ``notifications run --once`` as an operator would; return its summary line."""
    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def event_of(message: EmailMessage) -> Calendar:
    [part] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    [event] = Calendar.from_ical(part.get_content()).walk("VEVENT")
    return event


def as_role(app: Flask, make_user, role: Role) -> FlaskClient:
    client = app.test_client()
    log_in(client, make_user(role).email)
    return client


@pytest.fixture
def desk(app, make_user) -> FlaskClient:
    """A logged-in receptionist's browser."""
    return as_role(app, make_user, Role.RECEPTION)


@pytest.fixture
def with_missed(session: Session, setup, book) -> Callable[..., None]:
    """Give a patient late cancellations and no-shows, through the real operations."""

    def make(email: str = PATIENT_EMAIL, *, late: int = 0, no_shows: int = 0) -> None:
        for number in range(late + no_shows):
            day = f"2026-11-{24 + number // 4}"
            start = london(day, ("09:00", "11:00", "14:00", "16:00")[number % 4])
            booking = book(start, practitioner=setup.mei, email=email, name="Ann Lee")
            if number < late:
                cancel_booking(
                    session, clinic=setup.clinic, booking=booking, now=start - timedelta(hours=2)
                )
            else:
                set_status(
                    session,
                    clinic=setup.clinic,
                    booking=booking,
                    status=BookingStatus.NO_SHOW,
                    now=start + timedelta(minutes=20),
                    actor=RECEPTION,
                )
            # The mail about these visits is not what the tests read.
            session.execute(delete(Notification).where(Notification.booking_id == booking.id))
            session.commit()

    return make


@pytest.fixture
def policy(session: Session, setup) -> Callable[[int | None], None]:
    """Set the clinic's approval threshold."""

    def make(threshold: int | None) -> None:
        clinic = session.get_one(Clinic, setup.clinic.id)
        clinic.approval_threshold = threshold
        session.commit()

    return make


def book_on_the_page(client: FlaskClient, setup, start: datetime = VISIT, **details: str):
    """Book a follow-up with Mei through the public details form."""
    url = "/book/confirm?" + urlencode(
        {"service": setup.follow_up.id, "practitioner": setup.mei.id, "start": start.isoformat()}
    )
    page = client.get(url)
    assert page.status_code == 200, page.text
    data = {"full_name": "Ann Lee", "email": PATIENT_EMAIL, **details}
    return client.post(url, data={"csrf_token": csrf_token(page.text), **data})


def request_of(session: Session) -> Booking:
    """The booking made last."""
    return fresh(session).scalars(select(Booking).order_by(Booking.id.desc()).limit(1)).one()


@pytest.fixture
def request_made(app, setup, session, with_missed, policy) -> Callable[[], Booking]:
    """A patient with a late cancellation and a no-show, against a threshold of two, books
    online on Monday morning for Friday; the bookings before are left behind."""

    def make() -> Booking:
        with_missed(late=1, no_shows=1)
        policy(2)
        answer = book_on_the_page(app.test_client(), setup)
        assert answer.status_code == 303
        return request_of(session)

    return make


def rows(session: Session, booking: Booking) -> dict[tuple[NotificationKind, int], Notification]:
    fresh(session)
    found = session.scalars(select(Notification).where(Notification.booking_id == booking.id))
    return {(row.kind, row.variant): row for row in found}


def trail(session: Session, booking: Booking) -> list[tuple[AuditAction, str]]:
    fresh(session)
    entries = session.scalars(
        select(AuditEvent).where(AuditEvent.booking_id == booking.id).order_by(AuditEvent.id)
    )
    return [(entry.action, entry.detail) for entry in entries]


# --- Who needs approval ---------------------------------------------------------------------------


def test_late_cancellations_and_no_shows_are_counted_per_patient(session, setup, with_missed, book):
    with_missed(late=2, no_shows=1)
    with_missed("ben@example.org", no_shows=1)
    on_time = book(london("2026-12-01", "10:00"), email=PATIENT_EMAIL)
    cancel_booking(session, clinic=setup.clinic, booking=on_time, now=london("2026-11-23", "09:00"))
    session.commit()

    ann = fresh(session).get_one(Booking, on_time.id).patient_id
    counted = missed_visits(session, ann)
    assert (counted.late_cancellations, counted.no_shows, counted.total) == (2, 1, 3)
    assert missed_visits(session, ann, [setup.james.id]).total == 0, "none with James"


def test_a_patient_at_the_count_booking_online_gets_a_request_awaiting_approval(
    client, session, setup, request_made
):
    booking = request_made()

    assert booking.awaiting_approval
    assert booking.status is BookingStatus.CONFIRMED, "it holds its time like any booking"
    assert booking.approval_requested_at is not None
    manage = client.get(f"/b/{booking.manage_token}")
    page = html.unescape(manage.text)
    assert "Requested — awaiting the clinic's approval" in page
    assert "The clinic confirms this booking itself before it is final" in page
    api = client.get(f"/api/v1/bookings/{booking.manage_token}").json
    assert (api["status"], api["awaiting_approval"]) == ("confirmed", True)
    assert trail(session, booking)[0][1].endswith(", awaiting approval")


def test_the_patient_is_told_after_booking_that_it_is_a_request(app, setup, with_missed, policy):
    with_missed(late=2)
    policy(2)
    client = app.test_client()

    done = book_on_the_page(client, setup)

    shown = client.get(done.headers["Location"]).text
    assert "Your request is received: the clinic will confirm it by email." in shown
    assert "Your session is booked" not in shown


def test_a_patient_under_the_count_or_without_a_policy_books_as_usual(
    app, client, session, setup, with_missed, policy
):
    with_missed(late=1)
    policy(2)
    assert book_on_the_page(client, setup).status_code == 303
    assert not request_of(session).awaiting_approval

    with_missed(no_shows=1)
    policy(None)
    assert book_on_the_page(app.test_client(), setup, VISIT + timedelta(hours=4)).status_code == 303
    assert not request_of(session).awaiting_approval, "the clinic asks for no approval"


def test_a_request_made_through_the_api_awaits_approval_too(
    client, session, setup, with_missed, policy
):
    with_missed(no_shows=2)
    policy(2)

    answer = client.post(
        "/api/v1/bookings",
        json={
            "service": setup.follow_up.id,
            "practitioner": setup.mei.id,
            "start": VISIT.isoformat(),
            "patient": {"name": "Ann Lee", "email": "ANN@example.org"},
        },
    )

    assert answer.status_code == 201, answer.json
    assert (answer.json["status"], answer.json["awaiting_approval"]) == ("confirmed", True)
    session.rollback()
    assert client.get(f"/api/v1/bookings/{answer.json['token']}").json["awaiting_approval"]


def test_staff_booking_for_the_same_patient_needs_no_approval(
    desk, session, setup, with_missed, policy
):
    with_missed(late=3)
    policy(1)
    url = "/staff/bookings/new/details?" + urlencode(
        {"service": setup.follow_up.id, "practitioner": setup.mei.id, "start": VISIT.isoformat()}
    )
    page = desk.get(url)

    answer = desk.post(
        url,
        data={"csrf_token": csrf_token(page.text), "full_name": "Ann Lee", "email": PATIENT_EMAIL},
    )

    assert answer.status_code == 303, answer.text
    booking = request_of(session)
    assert booking.start_at == VISIT
    assert not booking.awaiting_approval


# --- The mail while it waits, and after approval ------------------------------------------------


def test_the_request_mail_says_so_and_the_checklist_waits_for_approval(
    app, smtp, session, setup, request_made, clock, desk
):
    booking = request_made()

    assert dispatch(app) == "sent 1, retrying 0, failed 0, skipped 0"
    [request] = smtp.messages()
    assert str(request["Subject"]).strip() == (
        "Requested: Follow-up treatment on Friday 27 November 2026, 10:00 GMT"
    )
    text = text_of(request)
    assert "Thank you for your booking request" in text
    assert "it is not confirmed yet; the time is held for you meanwhile" in text
    assert "How to prepare" not in text
    assert f"https://clinic.test/b/{booking.manage_token}" in text
    event = event_of(request)
    assert (str(event["STATUS"]), int(event["SEQUENCE"])) == ("TENTATIVE", 0)

    clock.now = VISIT - timedelta(hours=24)  # when the checklist is due
    assert dispatch(app) == "sent 0, retrying 0, failed 0, skipped 1"
    checklist = rows(session, booking)[NotificationKind.CHECKLIST, 24 * 60]
    assert checklist.status is NotificationStatus.SKIPPED
    assert checklist.last_error == "the booking awaits the clinic's approval"

    clock.now = VISIT - timedelta(hours=20)
    token = token_of(desk, f"/staff/bookings/{booking.id}")
    approved = desk.post(f"/staff/bookings/{booking.id}/approve", data={"csrf_token": token})
    assert approved.status_code == 303
    assert "the patient is sent the confirmation" in desk.get(approved.headers["Location"]).text

    assert dispatch(app) == "sent 2, retrying 0, failed 0, skipped 0"
    confirmation, prepare = sorted(smtp.messages()[1:], key=lambda m: str(m["Subject"]))
    assert str(confirmation["Subject"]).strip() == (
        "Booked: Follow-up treatment on Friday 27 November 2026, 10:00 GMT"
    )
    text = text_of(confirmation)
    assert "The clinic has approved your booking request. Your visit is booked:" in text
    assert "How to prepare:" in text
    event = event_of(confirmation)
    assert (str(event["STATUS"]), int(event["SEQUENCE"])) == ("CONFIRMED", 1)
    assert str(prepare["Subject"]).startswith("Preparing for your visit on Friday 27 November")
    booking = fresh(session).get_one(Booking, booking.id)
    assert not booking.awaiting_approval
    assert booking.approved_at == clock.now
    assert trail(session, booking)[-1] == (AuditAction.APPROVED, "")
    assert "Approved" in desk.get(f"/staff/bookings/{booking.id}").text


def test_approved_before_the_request_mail_went_there_is_one_confirmation(
    app, smtp, session, request_made, desk
):
    booking = request_made()
    token = token_of(desk, f"/staff/bookings/{booking.id}")
    desk.post(f"/staff/bookings/{booking.id}/approve", data={"csrf_token": token})

    dispatch(app)

    [confirmation] = smtp.messages()
    assert str(confirmation["Subject"]).startswith("Booked: Follow-up treatment")
    assert "The clinic has approved your booking request." in text_of(confirmation)
    assert set(rows(session, booking)) == {
        (NotificationKind.CONFIRMATION, 0),
        (NotificationKind.CHECKLIST, 24 * 60),
        (NotificationKind.AFTERCARE, 0),
    }


def test_the_aftercare_is_held_back_while_a_request_waits(session, request_made):
    booking = request_made()
    aftercare = rows(session, booking)[NotificationKind.AFTERCARE, 0]

    assert unwanted(aftercare, aftercare.due_at) == "the booking awaits the clinic's approval"


# --- Declining ----------------------------------------------------------------------------------


def test_a_declined_request_is_cancelled_by_the_clinic_and_the_patient_told_why(
    app, smtp, client, session, request_made, desk, clock
):
    booking = request_made()
    dispatch(app)
    clock.now = VISIT - timedelta(hours=3)  # inside the 24-hour late window
    reason = "After two missed visits we book by phone only; please call us."
    token = token_of(desk, f"/staff/bookings/{booking.id}")

    answer = desk.post(
        f"/staff/bookings/{booking.id}/decline", data={"csrf_token": token, "reason": reason}
    )

    assert answer.status_code == 303
    assert "The request is declined" in desk.get(answer.headers["Location"]).text
    booking = fresh(session).get_one(Booking, booking.id)
    assert booking.status is BookingStatus.CANCELLED
    assert not booking.late_cancellation, "a clinic's decision never counts against the patient"
    assert booking.declined_at == clock.now
    assert missed_visits(session, booking.patient_id).total == 2, "still just the two before"
    assert trail(session, booking)[-2:] == [
        (AuditAction.DECLINED, reason),
        (AuditAction.CANCELLED, f"by the clinic: {reason}"),
    ]

    assert dispatch(app) == "sent 1, retrying 0, failed 0, skipped 0"
    declined = smtp.messages()[-1]
    assert str(declined["Subject"]).strip() == (
        "Request declined: Follow-up treatment on Friday 27 November 2026, 10:00 GMT"
    )
    text = text_of(declined)
    assert "the clinic could not accept your booking request" in text
    assert f"The clinic's reason: {reason}" in text
    assert str(event_of(declined)["STATUS"]) == "CANCELLED"
    page = html.unescape(client.get(f"/b/{booking.manage_token}").text)
    assert "Request declined by the clinic" in page
    assert reason in page


def test_declining_needs_a_reason_and_changes_nothing_without_one(session, request_made, desk):
    booking = request_made()
    token = token_of(desk, f"/staff/bookings/{booking.id}")

    answer = desk.post(
        f"/staff/bookings/{booking.id}/decline", data={"csrf_token": token, "reason": "  "}
    )

    assert answer.status_code == 422
    assert "Please give a reason; the patient is told it." in answer.text
    assert fresh(session).get_one(Booking, booking.id).awaiting_approval


def test_only_a_request_can_be_approved_or_declined(session, setup, book, desk, request_made):
    booking = request_made()
    token = token_of(desk, f"/staff/bookings/{booking.id}")
    desk.post(f"/staff/bookings/{booking.id}/approve", data={"csrf_token": token})
    session.rollback()
    ordinary = book(london("2026-11-26", "15:00"))

    for target in (booking, ordinary):
        again = desk.post(f"/staff/bookings/{target.id}/approve", data={"csrf_token": token})
        decline = desk.post(
            f"/staff/bookings/{target.id}/decline", data={"csrf_token": token, "reason": "No"}
        )
        for answer in (again, decline):
            assert answer.status_code == 409
            assert "This booking is not awaiting approval." in answer.text
    assert fresh(session).get_one(Booking, ordinary.id).status is BookingStatus.CONFIRMED


def test_a_request_whose_visit_has_started_cannot_be_declined(session, request_made, desk, clock):
    booking = request_made()
    clock.now = VISIT + timedelta(minutes=5)
    token = token_of(desk, f"/staff/bookings/{booking.id}")

    answer = desk.post(
        f"/staff/bookings/{booking.id}/decline", data={"csrf_token": token, "reason": "Too late"}
    )

    assert answer.status_code == 409
    assert "The visit has already started, so it can no longer be declined" in answer.text
    assert fresh(session).get_one(Booking, booking.id).status is BookingStatus.CONFIRMED


def test_a_practitioner_can_neither_approve_nor_decline(app, make_user, session, request_made):
    booking = request_made()
    client = as_role(app, make_user, Role.PRACTITIONER)
    page = client.get(f"/staff/bookings/{booking.id}").text
    assert "Reception or an admin approves or declines it." in page
    token = csrf_token(page)

    for action in ("approve", "decline"):
        answer = client.post(
            f"/staff/bookings/{booking.id}/{action}", data={"csrf_token": token, "reason": "x"}
        )
        assert answer.status_code == 403
    assert fresh(session).get_one(Booking, booking.id).awaiting_approval


# --- What staff see -------------------------------------------------------------------------------


def test_staff_see_the_waiting_requests_and_the_patients_counts(session, request_made, desk):
    booking = request_made()

    listing = desk.get("/staff/bookings/").text
    assert "Requests awaiting approval (1)" in listing
    assert f'href="/staff/bookings/{booking.id}"' in listing
    page = html.unescape(desk.get(f"/staff/bookings/{booking.id}").text)
    assert "1 late cancellation · 1 no-show: their online bookings need approval" in page
    assert "Awaiting approval" in page
    assert "Approve and send the confirmation" in page
    assert "awaiting approval" in desk.get("/staff/day?date=2026-11-27").text

    token = token_of(desk, f"/staff/bookings/{booking.id}")
    desk.post(f"/staff/bookings/{booking.id}/approve", data={"csrf_token": token})

    assert "Requests awaiting approval" not in desk.get("/staff/bookings/").text


def test_counts_are_shown_on_any_booking_of_the_patient(session, setup, with_missed, book, desk):
    with_missed(late=2, no_shows=1)
    booking = book(london("2026-12-01", "10:00"), email=PATIENT_EMAIL)

    page = desk.get(f"/staff/bookings/{booking.id}").text

    assert "2 late cancellations · 1 no-show" in page
    assert "their online bookings need approval" not in page, "the clinic set no threshold"


# --- The clinic's setting -------------------------------------------------------------------------


CLINIC_FORM = {
    "name": "Test Acupuncture",
    "address": "1 High Street, Cambridge",
    "phone": "+44 1223 000000",
    "email": "hello@willow.example.com",
    "timezone": "Europe/London",
    "slot_step_minutes": "15",
    "min_notice": "12",
    "min_notice_unit": "hours",
    "horizon_days": "60",
    "late_cancel_hours": "24",
    "checklist_lead_hours": "24",
    "aftercare_delay_minutes": "120",
}


@pytest.fixture
def admin(app, make_user) -> FlaskClient:
    """A logged-in admin's browser."""
    return as_role(app, make_user, Role.ADMIN)


def save_clinic(admin: FlaskClient, threshold: str):
    token = token_of(admin, "/staff/setup/clinic")
    data = {**CLINIC_FORM, "approval_threshold": threshold, "csrf_token": token}
    return admin.post("/staff/setup/clinic", data=data)


@pytest.mark.parametrize(("typed", "kept"), [("3", 3), ("", None), ("0", None)])
def test_the_admin_sets_the_approval_threshold_on_the_clinic_page(
    admin, session, setup, typed, kept
):
    assert save_clinic(admin, "5").status_code == 303

    assert save_clinic(admin, typed).status_code == 303

    assert fresh(session).get_one(Clinic, setup.clinic.id).approval_threshold == kept
    form = admin.get("/staff/setup/clinic").text
    shown = re.search(r'id="approval_threshold"[^>]*value="([^"]*)"', form)
    assert shown is not None
    assert shown.group(1) == ("" if kept is None else str(kept))


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("101", "Please enter a number from 0 to 100, or leave it empty for never."),
        ("-1", "Please enter a number from 0 to 100, or leave it empty for never."),
        ("two", "'two' is not a whole number; type digits only, like 15."),
    ],
)
def test_a_bad_threshold_is_refused_next_to_the_field(admin, session, setup, typed, message):
    answer = save_clinic(admin, typed)

    assert answer.status_code == 422
    assert message in html.unescape(answer.text)
    assert fresh(session).get_one(Clinic, setup.clinic.id).approval_threshold is None


def test_a_course_requested_online_is_approved_in_one_go(
    app, setup, session, with_missed, policy, desk
):
    with_missed(late=1, no_shows=1)
    policy(2)
    answer = book_on_the_page(app.test_client(), setup, sessions="3", every_weeks="1")
    assert answer.status_code == 303
    course = fresh(session).scalars(select(Booking).where(Booking.course_id.is_not(None))).all()
    assert len(course) == 3
    assert all(b.awaiting_approval for b in course)

    page = desk.get(f"/staff/bookings/{course[0].id}")
    assert "Approve all 3 requested sessions of the course" in page.text
    done = desk.post(
        f"/staff/bookings/{course[0].id}/approve",
        data={"csrf_token": csrf_token(page.text), "whole_course": "1"},
    )

    assert done.status_code == 303
    approved = fresh(session).scalars(select(Booking).where(Booking.course_id.is_not(None))).all()
    assert [b.awaiting_approval for b in approved] == [False, False, False]
    assert all(b.approved_at is not None for b in approved)
