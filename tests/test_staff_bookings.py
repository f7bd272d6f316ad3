"""Bookings in the staff area: the list, phone bookings, moving, cancelling, marking, notes,
and the audit trail of who did each."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from scheduler.audit import AuditAction, AuditEvent
from scheduler.booking.models import Booking, BookingStatus
from scheduler.notifications.models import Notification, NotificationKind, NotificationStatus
from scheduler.patients.models import Patient
from scheduler.staff.models import Role
from tests.conftest import csrf_token, log_in, london, token_of


@pytest.fixture
def desk(app, make_user):
    """A logged-in receptionist's browser."""
    user = make_user(Role.RECEPTION)
    client = app.test_client()
    log_in(client, user.email)
    return client


@pytest.fixture
def book_today(book, clock):
    """Book a visit for later today, as if it had been booked yesterday."""

    def make(hhmm, **params):
        today = clock.now
        clock.now = today - timedelta(days=1)
        try:
            return book(london("2026-11-23", hhmm), **params)
        finally:
            clock.now = today

    return make


def as_role(app, make_user, role, **params):
    user = make_user(role, **params)
    client = app.test_client()
    log_in(client, user.email)
    return client


def post(client, path, **data):
    """Post a staff form with the CSRF token of the page it lives on."""
    token = token_of(client, "/staff/bookings/")
    return client.post(path, data={"csrf_token": token, **data})


def kinds(session, booking):
    session.rollback()
    rows = session.scalars(
        select(Notification).where(Notification.booking_id == booking.id).order_by(Notification.id)
    )
    return [(row.kind, row.status) for row in rows]


def events(session, booking):
    session.rollback()
    return [
        (e.action, e.actor, e.detail)
        for e in session.scalars(
            select(AuditEvent).where(AuditEvent.booking_id == booking.id).order_by(AuditEvent.id)
        )
    ]


def count(session, model):
    return session.scalar(select(func.count()).select_from(model))


# --- Booking for a caller -----------------------------------------------------------------------


def test_reception_books_a_phone_caller_with_the_same_mail_as_online(desk, session, setup):
    chooser = desk.get(
        f"/staff/bookings/new?service={setup.follow_up.id}&practitioner={setup.mei.id}"
    )
    assert chooser.status_code == 200
    start = london("2026-11-24", "10:00")
    details_url = (
        f"/staff/bookings/new/details?service={setup.follow_up.id}"
        f"&practitioner={setup.mei.id}&start={start.isoformat().replace('+', '%2B')}"
    )
    assert details_url.split("/staff")[1].split("&start")[0] in chooser.text.replace("&amp;", "&")
    page = desk.get(details_url)
    assert page.status_code == 200

    answer = desk.post(
        details_url,
        data={
            "csrf_token": csrf_token(page.text),
            "full_name": "Ada Caller",
            "email": "Ada@Example.org",
            "phone": "+44 20 7946 0000",
            "notes": "Lower back",
        },
    )

    assert answer.status_code == 303, answer.text
    session.rollback()  # end the test's read transaction, to see what the request wrote
    booking = session.scalars(select(Booking)).one()
    assert answer.headers["Location"] == f"/staff/bookings/{booking.id}"
    assert (booking.start_at, booking.practitioner_id) == (start, setup.mei.id)
    assert booking.patient.email == "ada@example.org"
    assert (NotificationKind.CONFIRMATION, NotificationStatus.PENDING) in kinds(session, booking)
    assert events(session, booking)[0][:2] == (AuditAction.BOOKED, "reception@clinic.example")
    shown = desk.get(answer.headers["Location"]).text
    assert "Ada Caller" in shown
    assert "reception@clinic.example" in shown


def test_a_phone_booking_for_a_taken_time_offers_the_nearest_and_writes_nothing(
    desk, session, setup, book
):
    start = london("2026-11-24", "10:00")
    book(start, practitioner=setup.mei)
    url = (
        f"/staff/bookings/new/details?service={setup.follow_up.id}"
        f"&practitioner={setup.mei.id}&start={start.isoformat().replace('+', '%2B')}"
    )
    page = desk.get(url)
    assert page.status_code == 409

    answer = desk.post(
        url,
        data={
            "csrf_token": csrf_token(page.text),
            "full_name": "Late Caller",
            "email": "late@example.org",
        },
    )

    assert answer.status_code == 409
    assert "is not free" in answer.text
    assert "The nearest free times" in answer.text
    assert count(session, Booking) == 1
    assert (
        session.scalars(select(Patient).where(Patient.email == "late@example.org")).first() is None
    )


def test_a_phone_booking_with_a_bad_email_says_so_beside_the_field(desk, session, setup):
    start = london("2026-11-24", "10:00")
    url = (
        f"/staff/bookings/new/details?service={setup.follow_up.id}"
        f"&start={start.isoformat().replace('+', '%2B')}"
    )
    page = desk.get(url)
    answer = desk.post(
        url, data={"csrf_token": csrf_token(page.text), "full_name": "X", "email": "not-an-email"}
    )
    assert answer.status_code == 422
    assert 'id="email-error"' in answer.text
    assert count(session, Booking) == 0


def test_booking_again_for_a_patient_fills_in_their_details(desk, session, setup, book):
    earlier = book(london("2026-11-24", "10:00"), name="Bea Regular", email="bea@example.org")
    start = london("2026-12-01", "10:00")
    page = desk.get(
        f"/staff/bookings/new/details?service={setup.follow_up.id}&patient={earlier.patient_id}"
        f"&start={start.isoformat().replace('+', '%2B')}"
    )
    assert 'value="Bea Regular"' in page.text
    assert 'value="bea@example.org"' in page.text


def test_a_phone_booking_without_a_time_goes_back_to_the_choice(desk, setup):
    answer = desk.get(f"/staff/bookings/new/details?service={setup.follow_up.id}&start=tomorrow")
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/staff/bookings/new?")


# --- The list -----------------------------------------------------------------------------------


def listed(html):
    return re.findall(r'href="/staff/bookings/(\d+)"', html)


def test_the_list_filters_by_dates_practitioner_status_and_patient(desk, setup, book, session):
    mei_tue = book(london("2026-11-24", "10:00"), practitioner=setup.mei, name="Ann Smith")
    james_tue = book(london("2026-11-24", "10:00"), practitioner=setup.james, name="Bob Jones")
    mei_next = book(london("2026-12-04", "10:00"), practitioner=setup.mei, email="carl@example.org")

    default = listed(desk.get("/staff/bookings/").text)
    assert default == [str(mei_tue.id), str(james_tue.id), str(mei_next.id)]

    assert listed(desk.get("/staff/bookings/?from=2026-11-24&to=2026-11-24").text) == [
        str(mei_tue.id),
        str(james_tue.id),
    ]
    assert listed(desk.get(f"/staff/bookings/?practitioner={setup.james.id}").text) == [
        str(james_tue.id)
    ]
    assert listed(desk.get("/staff/bookings/?q=smi").text) == [str(mei_tue.id)]
    assert listed(desk.get("/staff/bookings/?q=CARL@").text) == [str(mei_next.id)]
    assert listed(desk.get("/staff/bookings/?q=100%25").text) == []

    post(desk, f"/staff/bookings/{james_tue.id}/cancel", reason="Unwell")
    assert listed(desk.get("/staff/bookings/?status=cancelled").text) == [str(james_tue.id)]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=yesterday", "Use the date picker or YYYY-MM-DD."),
        ("from=2026-12-10&to=2026-12-01", "The last day is before the first"),
        ("status=lost", "Choose a status from the list."),
        ("practitioner=999", "Choose a practitioner from the list."),
    ],
)
def test_bad_filters_say_what_to_fix(desk, setup, query, message):
    answer = desk.get(f"/staff/bookings/?{query}")
    assert answer.status_code == 422
    assert message in answer.text


def test_a_practitioner_lists_and_opens_only_their_own_bookings(app, make_user, setup, book):
    mine = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    theirs = book(london("2026-11-24", "10:00"), practitioner=setup.james)
    client = as_role(app, make_user, Role.PRACTITIONER)

    assert listed(client.get("/staff/bookings/").text) == [str(mine.id)]
    assert client.get(f"/staff/bookings/{mine.id}").status_code == 200
    assert client.get(f"/staff/bookings/{theirs.id}").status_code == 404
    assert client.get(f"/staff/bookings/?practitioner={setup.james.id}").status_code == 422


# --- Moving and cancelling ----------------------------------------------------------------------


def test_reception_moves_a_booking_to_another_practitioner_and_the_patient_is_told(
    desk, session, setup, book, clock
):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    confirmation = session.scalars(
        select(Notification).where(Notification.kind == NotificationKind.CONFIRMATION)
    ).one()
    confirmation.status = NotificationStatus.SENT  # so the move needs an update of its own
    session.commit()
    new_start = london("2026-11-25", "14:00")
    url = (
        f"/staff/bookings/{booking.id}/reschedule?practitioner={setup.james.id}"
        f"&start={new_start.isoformat().replace('+', '%2B')}"
    )
    page = desk.get(url)
    assert page.status_code == 200
    assert "James Okafor" in page.text

    answer = desk.post(
        url,
        data={
            "csrf_token": csrf_token(page.text),
            "start": new_start.isoformat(),
            "practitioner": str(setup.james.id),
        },
    )

    assert answer.status_code == 303
    session.rollback()
    assert (booking.start_at, booking.practitioner_id) == (new_start, setup.james.id)
    assert (NotificationKind.UPDATE, NotificationStatus.PENDING) in kinds(session, booking)
    action, actor, detail = events(session, booking)[-1]
    assert (action, actor) == (AuditAction.RESCHEDULED, "reception@clinic.example")
    assert "from Mei Lin to James Okafor" in detail


def test_moving_to_a_practitioner_who_does_not_give_the_treatment_is_refused(
    desk, session, setup, book, make_practitioner, make_treatment
):
    other = make_practitioner(name="Only Cupping", treatments=[make_treatment(name="Cupping")])
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    answer = desk.get(f"/staff/bookings/{booking.id}/reschedule?practitioner={other.id}")
    assert answer.status_code == 422
    assert "who gives Follow-up treatment" in answer.text


def test_moving_to_a_taken_time_offers_alternatives_and_keeps_the_booking(
    desk, session, setup, book
):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    taken = london("2026-11-24", "14:00")
    book(taken, practitioner=setup.mei)
    answer = post(
        desk,
        f"/staff/bookings/{booking.id}/reschedule",
        start=taken.isoformat(),
        practitioner=str(setup.mei.id),
    )
    assert answer.status_code == 409
    assert "The nearest free times" in answer.text
    session.rollback()
    assert booking.start_at == london("2026-11-24", "10:00")


def test_a_cancellation_needs_a_reason_and_tells_the_patient(desk, session, book, clock):
    booking = book(london("2026-11-24", "10:00"))

    refused = post(desk, f"/staff/bookings/{booking.id}/cancel", reason="")
    assert refused.status_code == 422
    assert "Please give a reason" in refused.text
    session.rollback()
    assert booking.status is BookingStatus.CONFIRMED

    clock.now = london("2026-11-23", "12:00")  # 22 hours before the visit
    answer = post(desk, f"/staff/bookings/{booking.id}/cancel", reason="Patient phoned, unwell")
    assert answer.status_code == 303
    session.rollback()
    assert booking.status is BookingStatus.CANCELLED
    assert booking.cancellation_reason == "Patient phoned, unwell"
    assert (NotificationKind.CANCELLATION, NotificationStatus.PENDING) in kinds(session, booking)
    assert booking.late_cancellation
    assert events(session, booking)[-1] == (
        AuditAction.CANCELLED,
        "reception@clinic.example",
        "late: Patient phoned, unwell",
    )


def test_a_cancellation_by_the_clinic_is_never_counted_as_late(desk, session, book, clock):
    booking = book(london("2026-11-24", "10:00"))
    clock.now = london("2026-11-23", "12:00")  # inside the 24-hour window
    post(desk, f"/staff/bookings/{booking.id}/cancel", reason="Practitioner ill", by_clinic="y")
    session.rollback()
    assert booking.status is BookingStatus.CANCELLED
    assert not booking.late_cancellation
    assert events(session, booking)[-1][2] == "by the clinic: Practitioner ill"


def test_a_practitioner_can_neither_move_nor_cancel(app, make_user, setup, book):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    client = as_role(app, make_user, Role.PRACTITIONER)
    token = token_of(client, f"/staff/bookings/{booking.id}")
    cancel = client.post(
        f"/staff/bookings/{booking.id}/cancel", data={"csrf_token": token, "reason": "x"}
    )
    assert cancel.status_code == 403
    assert client.get(f"/staff/bookings/{booking.id}/reschedule").status_code == 403
    assert client.get("/staff/bookings/new").status_code == 403


# --- Marking the visit and notes ----------------------------------------------------------------


def test_a_no_show_is_marked_once_the_visit_starts_and_its_aftercare_is_held(
    desk, session, book_today, clock
):
    booking = book_today("14:00")

    early = post(desk, f"/staff/bookings/{booking.id}/status", status="no_show")
    assert early.status_code == 422
    assert "has not started yet" in early.text

    clock.now = london("2026-11-23", "14:20")
    answer = post(desk, f"/staff/bookings/{booking.id}/status", status="no_show")
    assert answer.status_code == 303
    session.rollback()
    assert booking.status is BookingStatus.NO_SHOW
    assert (NotificationKind.AFTERCARE, NotificationStatus.SKIPPED) in kinds(session, booking)

    post(desk, f"/staff/bookings/{booking.id}/status", status="arrived")  # it was a mistake
    session.rollback()
    assert booking.status is BookingStatus.ARRIVED
    assert (NotificationKind.AFTERCARE, NotificationStatus.PENDING) in kinds(session, booking)
    assert [e[2] for e in events(session, booking) if e[0] is AuditAction.STATUS_CHANGED] == [
        "from confirmed to no-show",
        "from no-show to arrived",
    ]


def test_a_visit_on_a_later_day_cannot_be_marked_arrived(desk, session, book):
    booking = book(london("2026-11-25", "10:00"))
    answer = post(desk, f"/staff/bookings/{booking.id}/status", status="arrived")
    assert answer.status_code == 422
    assert "mark it on the day" in answer.text
    session.rollback()
    assert booking.status is BookingStatus.CONFIRMED


@pytest.mark.parametrize("status", ["cancelled", "lost", ""])
def test_a_status_that_is_not_a_button_is_refused(desk, session, book_today, status):
    booking = book_today("14:00")
    answer = post(desk, f"/staff/bookings/{booking.id}/status", status=status)
    assert answer.status_code == 422
    session.rollback()
    assert booking.status is BookingStatus.CONFIRMED


def test_a_practitioner_marks_their_patient_arrived_then_completed(
    app, make_user, session, setup, book_today, clock
):
    booking = book_today("14:00", practitioner=setup.mei)
    client = as_role(app, make_user, Role.PRACTITIONER)
    clock.now = london("2026-11-23", "13:55")
    token = token_of(client, f"/staff/bookings/{booking.id}")
    for status in ("arrived", "completed"):
        answer = client.post(
            f"/staff/bookings/{booking.id}/status", data={"csrf_token": token, "status": status}
        )
        assert answer.status_code == 303
    session.rollback()
    assert booking.status is BookingStatus.COMPLETED
    assert events(session, booking)[-1][1] == "practitioner@clinic.example"


def test_internal_notes_are_kept_audited_and_never_shown_to_the_patient(
    desk, client, session, book
):
    booking = book(london("2026-11-24", "10:00"))
    answer = post(desk, f"/staff/bookings/{booking.id}/notes", staff_notes="Prefers the left side")
    assert answer.status_code == 303
    session.rollback()
    assert booking.staff_notes == "Prefers the left side"
    assert events(session, booking)[-1][:2] == (
        AuditAction.NOTES_CHANGED,
        "reception@clinic.example",
    )
    assert "Prefers the left side" in desk.get(f"/staff/bookings/{booking.id}").text
    assert "Prefers the left side" in desk.get("/staff/day/sheet?date=2026-11-24").text
    assert "Prefers the left side" not in client.get(f"/b/{booking.manage_token}").text

    typed = post(desk, f"/staff/bookings/{booking.id}/notes", staff_notes="Line one\r\nLine two")
    assert typed.status_code == 303  # browsers send CRLF line breaks
    session.rollback()
    assert booking.staff_notes == "Line one\nLine two"

    too_long = post(desk, f"/staff/bookings/{booking.id}/notes", staff_notes="x" * 5001)
    assert too_long.status_code == 422
    assert "5,000 characters" in too_long.text


def test_the_history_names_the_patient_for_what_they_did_online(desk, client, session, book):
    booking = book(london("2026-11-24", "10:00"))
    page = client.get(f"/b/{booking.manage_token}/cancel")
    client.post(f"/b/{booking.manage_token}/cancel", data={"csrf_token": csrf_token(page.text)})
    assert [e[:2] for e in events(session, booking)] == [
        (AuditAction.BOOKED, "patient"),
        (AuditAction.CANCELLED, "patient"),
    ]
    history = desk.get(f"/staff/bookings/{booking.id}").text
    assert "Booked" in history
    assert "Cancelled" in history


def test_the_day_view_links_each_booking_to_its_page(desk, book):
    booking = book(london("2026-11-24", "10:00"))
    assert f'href="/staff/bookings/{booking.id}"' in desk.get("/staff/day?date=2026-11-24").text


def details_url(setup, start, practitioner=None):
    chosen = practitioner.id if practitioner else ""
    return (
        f"/staff/bookings/new/details?service={setup.follow_up.id}&practitioner={chosen}"
        f"&start={start.isoformat().replace('+', '%2B')}"
    )


def test_reception_books_a_caller_in_at_short_notice_which_patients_cannot(
    desk, client, session, setup
):
    start = london("2026-11-23", "14:00")  # six hours ahead; patients need twelve
    online = client.get(
        details_url(setup, start).replace("/staff/bookings/new/details", "/book/confirm")
    )
    assert online.status_code == 422
    assert "Bookings need at least 12 hours" in online.text

    page = desk.get(details_url(setup, start, setup.mei))
    assert page.status_code == 200
    answer = desk.post(
        details_url(setup, start, setup.mei),
        data={"csrf_token": csrf_token(page.text), "full_name": "Dee", "email": "dee@example.org"},
    )
    assert answer.status_code == 303
    session.rollback()
    assert session.scalars(select(Booking)).one().start_at == start


def test_staff_cannot_book_a_time_that_has_passed(desk, session, setup, clock):
    clock.now = london("2026-11-23", "11:00")
    page = desk.get(details_url(setup, london("2026-11-23", "10:00"), setup.mei))
    assert page.status_code == 422
    assert "already passed" in page.text
