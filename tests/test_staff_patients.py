"""The staff's patient pages: search, who sees whom, correcting details, export and erasure."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from flask import url_for
from sqlalchemy import func, select

from scheduler.audit import AuditAction, AuditEvent
from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import cancel_booking
from scheduler.notifications.models import (
    AttemptOutcome,
    DeliveryAttempt,
    Notification,
    NotificationStatus,
)
from scheduler.patients.models import Patient
from scheduler.staff.models import Role
from tests.conftest import csrf_token, log_in, london, token_of

TUESDAY, WEDNESDAY, THURSDAY, FRIDAY = "2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27"


@pytest.fixture
def staff(app, make_user):
    """A client logged in with ``role``: ``staff(Role.ADMIN)``; one account per role."""
    users = {}

    def log_in_as(role, practitioner=None):
        if role not in users:
            users[role] = make_user(role, practitioner=practitioner)
        client = app.test_client()
        log_in(client, users[role].email)
        client.user = users[role]
        return client

    return log_in_as


@dataclass
class History:
    """Ada's visits with Mei: one completed, one missed, one cancelled late, one to come."""

    patient: Patient
    completed: Booking
    missed: Booking
    late: Booking
    coming: Booking


def dispatch(app):
    """Send what is due, as ``notifications run --once`` does (into the mail folder)."""
    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert result.exit_code == 0, result.output


@pytest.fixture
def history(app, session, setup, book, clock):
    """Ada's history, seen from Wednesday noon; her confirmations went out on Monday."""

    def ada(start):
        return book(start, practitioner=setup.mei, name="Ada Lovelace", email="Ada@Example.org")

    completed = ada(london(TUESDAY, "10:00"))
    missed = ada(london(WEDNESDAY, "10:00"))
    late = ada(london(THURSDAY, "10:00"))
    coming = ada(london(FRIDAY, "10:00"))
    completed.notes = "Lower back pain since October"
    completed.staff_notes = "Responded well to needling"
    session.commit()
    dispatch(app)
    clock.now = london(WEDNESDAY, "12:00")
    completed.status = BookingStatus.COMPLETED
    missed.status = BookingStatus.NO_SHOW
    session.commit()
    cancel_booking(session, clinic=setup.clinic, booking=late, reason="Off sick, Ada", now=clock())
    session.commit()
    return History(completed.patient, completed, missed, late, coming)


def rows(html):
    """The patient names the list shows, in order."""
    return re.findall(r'<a href="/staff/patients/\d+">([^<]+)</a>', html)


def text_of(html):
    """The page's text, tags removed and whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def trail_of(session, patient_id, action=None):
    session.rollback()
    query = select(AuditEvent).where(AuditEvent.patient_id == patient_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return session.scalars(query.order_by(AuditEvent.id)).all()


def fresh(session, model, key):
    session.rollback()
    return session.get(model, key)


# --- The list and search -----------------------------------------------------------------------


def test_search_finds_patients_by_name_email_or_phone(session, setup, book, staff):
    ada = book(london(TUESDAY, "10:00"), name="Ada Lovelace", email="ada@example.org").patient
    grace = book(london(TUESDAY, "11:00"), name="Grace Hopper", email="grace@navy.example")
    grace.patient.phone = "+44 (0)7700 900-123"
    session.commit()
    client = staff(Role.RECEPTION)

    def found(q):
        answer = client.get("/staff/patients/", query_string={"q": q})
        assert answer.status_code == 200
        return rows(answer.text)

    assert found("") == ["Ada Lovelace", "Grace Hopper"]
    assert found("LOVE") == ["Ada Lovelace"], "names, any case"
    assert found("navy.EX") == ["Grace Hopper"], "emails, any case"
    assert found("900-123") == ["Grace Hopper"], "phone numbers as stored"
    assert found("7700900123") == ["Grace Hopper"], "phone numbers typed without spacing"
    assert found("%") == [], "wildcards are searched for, not obeyed"
    assert found("nobody") == []
    assert f'href="/staff/patients/{ada.id}"' in client.get("/staff/patients/?q=ada").text


def test_the_list_pages_fifty_patients_at_a_time(session, setup, staff):
    session.add_all(
        Patient(name=f"Patient {n:03}", email=f"p{n}@example.org") for n in range(1, 52)
    )
    session.commit()
    client = staff(Role.ADMIN)

    first = client.get("/staff/patients/")
    second = client.get("/staff/patients/?page=2")

    assert rows(first.text) == [f"Patient {n:03}" for n in range(1, 51)]
    assert 'href="/staff/patients/?page=2"' in first.text
    assert rows(second.text) == ["Patient 051"]
    assert "Next page" not in second.text
    assert client.get("/staff/patients/?page=nonsense").status_code == 200


def test_the_list_shows_each_patients_next_visit_and_counts(history, staff):
    page = staff(Role.RECEPTION).get("/staff/patients/")

    row = text_of(page.text.split("<tbody>")[1].split("</tr>")[0])
    # The next visit, then one completed, one no-show and one late cancellation.
    assert row == (
        "Ada Lovelace ada@example.org +44 7700 900000 Friday 27 November 2026, 10:00 GMT 1 1 1"
    )


def test_a_practitioner_sees_only_patients_who_have_seen_them(
    session, setup, book, make_user, staff
):
    with_mei = book(london(TUESDAY, "10:00"), practitioner=setup.mei, name="Ada Lovelace")
    with_james = book(london(TUESDAY, "10:00"), practitioner=setup.james, name="Grace Hopper")
    also_james = book(
        london(WEDNESDAY, "10:00"),
        practitioner=setup.james,
        name="Ada Lovelace",
        email=with_mei.patient.email,
    )
    mei = staff(Role.PRACTITIONER, practitioner=setup.mei)

    assert rows(mei.get("/staff/patients/").text) == ["Ada Lovelace"]
    assert rows(mei.get("/staff/patients/?q=grace").text) == []
    assert mei.get(f"/staff/patients/{with_james.patient_id}").status_code == 404
    page = mei.get(f"/staff/patients/{with_mei.patient_id}")
    assert page.status_code == 200
    assert "Tuesday 24 November 2026" in page.text
    assert "James Okafor" not in page.text, "not the booking with James"
    assert also_james.patient_id == with_mei.patient_id
    assert 'name="name"' not in page.text, "no form to change the details"
    assert "Erase" not in page.text
    assert "Export" not in page.text


def test_a_practitioner_cannot_edit_export_or_erase_even_their_own_patients(
    session, setup, book, staff
):
    patient = book(london(TUESDAY, "10:00"), practitioner=setup.mei).patient
    mei = staff(Role.PRACTITIONER, practitioner=setup.mei)
    token = token_of(mei, "/staff/password")

    for action in ("details", "export", "erase"):
        answer = mei.post(
            f"/staff/patients/{patient.id}/{action}",
            data={"csrf_token": token, "name": "X", "email": "x@example.org", "confirm": "ERASE"},
        )
        assert answer.status_code == 403, action
    assert trail_of(session, patient.id, AuditAction.PATIENT_UPDATED) == []


# --- A patient's page --------------------------------------------------------------------------


def test_a_patients_page_shows_their_visits_counts_and_trail(app, history, staff):
    page = staff(Role.RECEPTION).get(f"/staff/patients/{history.patient.id}")

    assert page.status_code == 200
    text = text_of(page.text)
    upcoming = text.split("Upcoming")[1].split("Past and cancelled")[0]
    past = text.split("Past and cancelled")[1].split("Intake answers")[0]
    assert "Friday 27 November 2026" in upcoming
    assert (
        "Thursday 26 November 2026, 10:00 GMT Follow-up treatment Mei Lin Late cancellation" in past
    )
    assert "Off sick, Ada" in past
    assert "Wednesday 25 November 2026, 10:00 GMT Follow-up treatment Mei Lin No-show" in past
    assert "Tuesday 24 November 2026, 10:00 GMT Follow-up treatment Mei Lin Completed" in past
    assert "Completed 1 No-shows 1 Late cancellations 1" in text
    assert "No intake answers are recorded yet." in text
    assert "Booked" in text.split("Audit trail")[1], "the trail shows how the visits came about"
    # Each visit links to its booking's page, once the staff's booking pages exist.
    if "bookings.detail" in app.view_functions:
        with app.test_request_context():
            link = url_for("bookings.detail", booking_id=history.coming.id)
        assert f'<a href="{link}">Friday 27 November 2026, 10:00 GMT</a>' in page.text
    else:
        assert "<td>Friday 27 November 2026, 10:00 GMT</td>" in page.text


def test_a_missing_patient_is_a_404(setup, staff):
    assert staff(Role.ADMIN).get("/staff/patients/999").status_code == 404


# --- Correcting details ------------------------------------------------------------------------


def edit(client, patient, **fields):
    token = token_of(client, f"/staff/patients/{patient.id}")
    return client.post(
        f"/staff/patients/{patient.id}/details", data={"csrf_token": token, **fields}
    )


def test_reception_corrects_a_patients_details_and_the_trail_names_the_fields(
    session, setup, book, staff
):
    patient = book(london(TUESDAY, "10:00"), name="Ada Lovelace", email="ada@example.org").patient
    client = staff(Role.RECEPTION)

    answer = edit(
        client, patient, name="Ada Lovelace", email=" Ada.King@Example.ORG ", phone="01223 555 555"
    )

    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/staff/patients/{patient.id}"
    saved = fresh(session, Patient, patient.id)
    assert (saved.name, saved.email, saved.phone) == (
        "Ada Lovelace",
        "ada.king@example.org",
        "01223 555 555",
    )
    [event] = trail_of(session, patient.id, AuditAction.PATIENT_UPDATED)
    assert (event.actor, event.user_id) == (client.user.email, client.user.id)
    assert event.detail == "changed email, phone"
    assert "ada" not in event.detail.lower(), "the trail holds no values"
    assert "01223" not in event.detail
    assert "email, phone" in client.get(f"/staff/patients/{patient.id}").text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Ada", "email": "not an email"}, "Please enter a valid email address"),
        ({"name": "Ada", "email": "GRACE@navy.example"}, "Another patient already has"),
        ({"name": "", "email": "ada@example.org"}, "Please enter the patient&#39;s name."),
        (
            {"name": "Ada", "email": "ada@example.org", "phone": "call me"},
            "Please enter a phone number",
        ),
    ],
)
def test_invalid_details_are_refused_next_to_the_field_and_nothing_is_written(
    session, setup, book, staff, fields, message
):
    book(london(TUESDAY, "11:00"), name="Grace Hopper", email="grace@navy.example")
    patient = book(london(TUESDAY, "10:00"), name="Ada Lovelace", email="ada@example.org").patient
    client = staff(Role.ADMIN)

    answer = edit(client, patient, **fields)

    assert answer.status_code == 422
    assert re.search(r'<p class="error" id="\w+-error">' + re.escape(message), answer.text)
    saved = fresh(session, Patient, patient.id)
    assert (saved.name, saved.email) == ("Ada Lovelace", "ada@example.org")
    assert trail_of(session, patient.id, AuditAction.PATIENT_UPDATED) == []


# --- Export ------------------------------------------------------------------------------------


def export(client, patient):
    token = token_of(client, f"/staff/patients/{patient.id}")
    return client.post(f"/staff/patients/{patient.id}/export", data={"csrf_token": token})


def test_the_export_holds_the_patients_details_bookings_mail_and_trail(session, history, staff):
    client = staff(Role.RECEPTION)
    patient = history.patient

    answer = export(client, patient)

    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    assert answer.headers["Content-Disposition"] == (
        f'attachment; filename="patient-{patient.id}.json"'
    )
    data = json.loads(answer.data)
    assert data["patient"]["name"] == "Ada Lovelace"
    assert data["patient"]["email"] == "ada@example.org"
    bookings = {b["id"]: b for b in data["bookings"]}
    assert set(bookings) == {
        history.completed.id,
        history.missed.id,
        history.late.id,
        history.coming.id,
    }
    completed = bookings[history.completed.id]
    assert completed["start"] == "2026-11-24T10:00:00+00:00", "ISO 8601 with the offset"
    assert (completed["treatment"], completed["practitioner"], completed["status"]) == (
        "Follow-up treatment",
        "Mei Lin",
        "completed",
    )
    assert completed["notes"] == "Lower back pain since October"
    assert completed["booked_as"] == {"name": "Ada Lovelace", "phone": history.patient.phone}
    late = bookings[history.late.id]
    assert (late["status"], late["late_cancellation"], late["cancellation_reason"]) == (
        "cancelled",
        True,
        "Off sick, Ada",
    )
    sent = [n for n in data["notifications"] if n["status"] == "sent"]
    assert {n["kind"] for n in sent} == {"confirmation"}
    assert {n["recipient"] for n in sent} == {"ada@example.org"}
    assert all(n["sent_at"].endswith("+00:00") for n in sent)
    assert [e["action"] for e in data["audit_trail"]][-1] == "patient_exported"
    [event] = trail_of(session, patient.id, AuditAction.PATIENT_EXPORTED)
    assert event.actor == client.user.email


def test_a_summer_export_carries_the_summer_offset(session, setup, book, staff, clock):
    clock.now = london("2026-06-01", "08:00")
    patient = book(london("2026-06-02", "10:00")).patient

    data = json.loads(export(staff(Role.ADMIN), patient).data)

    assert data["bookings"][0]["start"] == "2026-06-02T10:00:00+01:00"


# --- Erasure -----------------------------------------------------------------------------------


def erase(client, patient, confirm="ERASE"):
    token = token_of(client, f"/staff/patients/{patient.id}")
    return client.post(
        f"/staff/patients/{patient.id}/erase", data={"csrf_token": token, "confirm": confirm}
    )


def test_erasure_anonymises_the_patient_and_keeps_their_bookings(
    app, session, setup, history, staff, clock
):
    cancel_booking(session, clinic=setup.clinic, booking=history.coming, now=clock())
    session.commit()
    clock.now += timedelta(minutes=5)
    patient_id = history.patient.id
    admin = staff(Role.ADMIN)

    answer = erase(admin, history.patient)

    assert answer.status_code == 303
    patient = fresh(session, Patient, patient_id)
    assert (patient.name, patient.email, patient.phone) == (
        "Erased patient",
        f"erased-{patient_id}@erased.invalid",
        "",
    )
    assert patient.erased_at == clock.now
    bookings = session.scalars(select(Booking).where(Booking.patient_id == patient_id)).all()
    assert len(bookings) == 4, "the bookings stay for the books"
    assert {b.status for b in bookings} == {
        BookingStatus.COMPLETED,
        BookingStatus.NO_SHOW,
        BookingStatus.CANCELLED,
    }
    assert {(b.notes, b.staff_notes, b.cancellation_reason) for b in bookings} == {("", "", "")}
    assert {(b.given_name, b.given_phone) for b in bookings} == {("Erased patient", "")}
    assert any(b.late_cancellation for b in bookings), "the late flag stays"
    notifications = session.scalars(
        select(Notification).where(Notification.booking_id.in_([b.id for b in bookings]))
    ).all()
    assert {n.recipient for n in notifications} == {""}
    assert NotificationStatus.PENDING not in {n.status for n in notifications}
    dropped = [n for n in notifications if n.last_error == "patient erased"]
    assert dropped, "the aftercare and the cancellation were still to go"
    assert all(n.status is NotificationStatus.SKIPPED for n in dropped)
    assert any(n.status is NotificationStatus.SENT for n in notifications), "history stays"
    attempts = session.scalars(
        select(DeliveryAttempt).where(
            DeliveryAttempt.notification_id.in_([n.id for n in notifications])
        )
    ).all()
    assert attempts
    for attempt in attempts:
        if attempt.outcome is AttemptOutcome.SKIPPED and attempt.at == clock.now:
            assert attempt.detail == "patient erased"
        else:
            assert attempt.detail == "", "no address or server reply is kept"
    events = trail_of(session, patient_id)
    assert not [e for e in events if "Off sick" in e.detail], "the trail quotes no reason"
    [erased] = [e for e in events if e.action is AuditAction.PATIENT_ERASED]
    assert (erased.actor, erased.user_id) == (admin.user.email, admin.user.id)
    page = admin.get(f"/staff/patients/{patient_id}")
    assert "Erased patient" in page.text
    assert "Lovelace" not in page.text
    assert 'name="confirm"' not in page.text, "nothing left to erase"
    assert rows(admin.get("/staff/patients/").text) == ["Erased patient"]
    dispatch(app)
    assert not [n for n in notifications if fresh(session, Notification, n.id).recipient]


def test_erasure_is_refused_while_a_visit_is_still_to_come(session, history, staff):
    answer = erase(staff(Role.ADMIN), history.patient)

    assert answer.status_code == 422
    assert "1 upcoming visit; cancel it first" in answer.text
    patient = fresh(session, Patient, history.patient.id)
    assert (patient.name, patient.erased_at) == ("Ada Lovelace", None)
    assert fresh(session, Booking, history.completed.id).notes == "Lower back pain since October"
    assert trail_of(session, patient.id, AuditAction.PATIENT_ERASED) == []


def test_erasure_needs_the_word_typed(session, setup, book, staff, clock):
    patient = book(london(TUESDAY, "10:00")).patient
    clock.now = london(WEDNESDAY, "12:00")

    answer = erase(staff(Role.ADMIN), patient, confirm="yes")

    assert answer.status_code == 422
    assert "Type ERASE in capitals to confirm." in answer.text
    assert fresh(session, Patient, patient.id).erased_at is None


def test_reception_cannot_erase(session, setup, book, staff, clock):
    patient = book(london(TUESDAY, "10:00")).patient
    clock.now = london(WEDNESDAY, "12:00")
    client = staff(Role.RECEPTION)
    token = token_of(client, f"/staff/patients/{patient.id}")

    answer = client.post(
        f"/staff/patients/{patient.id}/erase", data={"csrf_token": token, "confirm": "ERASE"}
    )

    assert answer.status_code == 403
    assert fresh(session, Patient, patient.id).erased_at is None
    assert 'name="confirm"' not in client.get(f"/staff/patients/{patient.id}").text


def test_an_erased_patient_booking_again_online_is_a_new_patient(
    app, session, setup, book, staff, clock
):
    old = book(london(TUESDAY, "10:00"), name="Ada Lovelace", email="ada@example.org").patient
    clock.now = london(WEDNESDAY, "12:00")
    assert erase(staff(Role.ADMIN), old).status_code == 303
    visitor = app.test_client()
    url = (
        f"/book/confirm?service={setup.follow_up.id}&practitioner={setup.mei.id}"
        f"&start={london(FRIDAY, '10:00').isoformat()}"
    )

    answer = visitor.post(
        url,
        data={
            "csrf_token": csrf_token(visitor.get(url).text),
            "full_name": "Ada Lovelace",
            "email": "ADA@example.org",
            "phone": "",
        },
    )

    assert answer.status_code == 303
    session.rollback()
    new = session.scalars(select(Patient).where(Patient.email == "ada@example.org")).one()
    assert new.id != old.id
    assert new.erased_at is None
    assert session.scalar(select(func.count()).select_from(Patient)) == 2
    assert fresh(session, Patient, old.id).name == "Erased patient"
    assert session.scalars(select(Booking).where(Booking.patient_id == new.id)).one()
