"""Intake and consent on a first visit: asked on the form and in the API, kept with the
patient, correctable from the manage link, and flagged to the staff who treat them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from scheduler.audit import AuditAction, AuditEvent
from scheduler.booking.models import Booking
from scheduler.patients.models import Intake, Patient
from scheduler.staff.models import Role
from tests.conftest import csrf_token, log_in, london

TUESDAY_10 = london("2026-11-24", "10:00")


def confirm_url(treatment, start=TUESDAY_10, practitioner=None):
    chosen = practitioner.id if practitioner else ""
    return (
        f"/book/confirm?service={treatment.id}&practitioner={chosen}"
        f"&start={start.isoformat().replace('+', '%2B')}"
    )


def details(**extra):
    return {"full_name": "Nia New", "email": "nia@example.org", "phone": "", **extra}


def count(session, model):
    session.rollback()
    return session.scalar(select(func.count()).select_from(model))


def test_a_first_visit_asks_the_health_questions_and_a_follow_up_does_not(client, setup):
    first = client.get(confirm_url(setup.initial)).text
    assert "I take anticoagulants" in first
    assert 'name="consent"' in first
    assert 'name="consent"' not in client.get(confirm_url(setup.follow_up)).text


def test_a_first_visit_without_consent_is_refused_beside_the_box_and_nothing_written(
    client, session, setup
):
    page = client.get(confirm_url(setup.initial))
    answer = client.post(
        confirm_url(setup.initial),
        data={"csrf_token": csrf_token(page.text), **details(medications="Warfarin 5 mg")},
    )
    assert answer.status_code == 422
    assert 'id="consent-error"' in answer.text
    assert "consent to treatment" in answer.text
    assert "Warfarin 5 mg</textarea>" in answer.text  # what was typed is kept
    assert count(session, Booking) == 0
    assert count(session, Intake) == 0


def test_a_first_visit_with_consent_keeps_the_answers_with_the_patient(client, session, setup):
    page = client.get(confirm_url(setup.initial))
    answer = client.post(
        confirm_url(setup.initial),
        data={
            "csrf_token": csrf_token(page.text),
            **details(
                medications="Warfarin 5 mg\r\nFish oil",
                conditions=["anticoagulants", "needle_phobia"],
                consent="y",
            ),
        },
    )
    assert answer.status_code == 303
    session.rollback()
    patient = session.scalars(select(Patient)).one()
    assert patient.intake.medications == "Warfarin 5 mg\nFish oil"
    assert patient.intake.conditions == ["anticoagulants", "needle_phobia"]
    assert patient.intake.flags == ["anticoagulants", "needle phobia"]
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert AuditAction.INTAKE_UPDATED in actions


def test_a_condition_that_is_not_offered_is_refused(client, session, setup):
    page = client.get(confirm_url(setup.initial))
    answer = client.post(
        confirm_url(setup.initial),
        data={"csrf_token": csrf_token(page.text), **details(conditions=["vampire"], consent="y")},
    )
    assert answer.status_code == 422
    assert count(session, Booking) == 0


def api_booking(setup, **extra):
    return {
        "service": setup.initial.id,
        "start": TUESDAY_10.isoformat(),
        "patient": {"name": "Api Patient", "email": "api@example.org"},
        **extra,
    }


def test_the_api_needs_consent_for_a_first_visit(client, session, setup):
    missing = client.post("/api/v1/bookings", json=api_booking(setup))
    assert missing.status_code == 422
    assert "intake.consent" in missing.json["fields"]

    refused = client.post(
        "/api/v1/bookings",
        json=api_booking(setup, intake={"medications": "", "conditions": [], "consent": False}),
    )
    assert refused.status_code == 422
    assert "intake.consent" in refused.json["fields"]
    assert count(session, Booking) == 0


def test_the_api_books_a_first_visit_with_intake(client, session, setup):
    answer = client.post(
        "/api/v1/bookings",
        json=api_booking(
            setup,
            intake={"medications": "None", "conditions": ["pacemaker"], "consent": True},
        ),
    )
    assert answer.status_code == 201
    session.rollback()
    intake = session.scalars(select(Intake)).one()
    assert intake.flags == ["pacemaker: no electro-acupuncture"]


@pytest.mark.parametrize(
    "intake",
    [
        {"conditions": ["vampire"], "consent": True},
        {"consent": "yes"},
        {"consent": True, "shoe_size": 9},
    ],
)
def test_the_api_refuses_malformed_intake(client, session, setup, intake):
    answer = client.post("/api/v1/bookings", json=api_booking(setup, intake=intake))
    assert answer.status_code == 422
    assert count(session, Booking) == 0


def test_intake_sent_with_a_follow_up_needs_consent_too(client, session, setup):
    answer = client.post(
        "/api/v1/bookings",
        json=api_booking(setup, service=setup.follow_up.id, intake={"conditions": []}),
    )
    assert answer.status_code == 422
    assert "intake.consent" in answer.json["fields"]
    assert count(session, Booking) == 0


def test_the_patient_updates_their_answers_from_the_manage_link(client, session, setup, book):
    booking = book(TUESDAY_10, treatment=setup.initial)
    manage = client.get(f"/b/{booking.manage_token}").text
    assert f"/b/{booking.manage_token}/intake" in manage
    page = client.get(f"/b/{booking.manage_token}/intake")
    answer = client.post(
        f"/b/{booking.manage_token}/intake",
        data={
            "csrf_token": csrf_token(page.text),
            "medications": "Apixaban",
            "conditions": ["anticoagulants"],
            "consent": "y",
        },
    )
    assert answer.status_code == 303
    session.rollback()
    assert session.scalars(select(Intake)).one().flags == ["anticoagulants"]

    refused = client.post(
        f"/b/{booking.manage_token}/intake",
        data={"csrf_token": csrf_token(page.text), "medications": "x"},
    )
    assert refused.status_code == 422
    session.rollback()
    assert session.scalars(select(Intake)).one().medications == "Apixaban"


def test_answers_cannot_be_changed_online_once_the_visit_started(
    client, session, setup, book, clock
):
    booking = book(TUESDAY_10, treatment=setup.initial)
    clock.now = TUESDAY_10
    page = client.get(f"/b/{booking.manage_token}/intake")
    assert "can no longer be changed online" in page.text


@pytest.fixture
def flagged(client, session, setup, book):
    """A first visit with Mei for a patient on anticoagulants."""
    booking = book(TUESDAY_10, practitioner=setup.mei, treatment=setup.initial)
    page = client.get(f"/b/{booking.manage_token}/intake")
    client.post(
        f"/b/{booking.manage_token}/intake",
        data={
            "csrf_token": csrf_token(page.text),
            "medications": "Warfarin",
            "conditions": ["anticoagulants"],
            "consent": "y",
        },
    )
    session.rollback()  # end the read transaction the fixture's session began
    return booking


def staff(app, make_user, role, **params):
    user = make_user(role, **params)
    client = app.test_client()
    log_in(client, user.email)
    return client


def test_the_treating_practitioner_sees_the_flag_on_the_day_sheet_and_the_booking(
    app, make_user, flagged
):
    mei = staff(app, make_user, Role.PRACTITIONER)
    assert (
        '<span class="flag">anticoagulants</span>'
        in mei.get("/staff/day/sheet?date=2026-11-24").text
    )
    assert '<span class="flag">anticoagulants</span>' in mei.get("/staff/day?date=2026-11-24").text
    booking_page = mei.get(f"/staff/bookings/{flagged.id}").text
    assert "Warfarin" in booking_page


def test_reception_sees_that_answers_exist_but_not_what_they_say(app, make_user, flagged):
    desk = staff(app, make_user, Role.RECEPTION)
    sheet = desk.get("/staff/day/sheet?date=2026-11-24").text
    assert "anticoagulants" not in sheet
    booking_page = desk.get(f"/staff/bookings/{flagged.id}").text
    assert "Warfarin" not in booking_page
    assert "only the treating practitioner and admins" in booking_page
    patient_page = desk.get(f"/staff/patients/{flagged.patient_id}").text
    assert "Warfarin" not in patient_page


def test_the_admin_sees_the_answers_on_the_patients_page(app, make_user, flagged):
    admin = staff(app, make_user, Role.ADMIN)
    page = admin.get(f"/staff/patients/{flagged.patient_id}").text
    assert "Warfarin" in page
    assert '<span class="flag">anticoagulants</span>' in page


def test_a_phone_booking_of_a_first_visit_needs_the_patients_consent(
    app, make_user, session, setup
):
    desk = staff(app, make_user, Role.RECEPTION)
    url = confirm_url(setup.initial, practitioner=setup.mei).replace(
        "/book/confirm", "/staff/bookings/new/details"
    )
    page = desk.get(url)
    assert 'name="consent"' in page.text
    refused = desk.post(url, data={"csrf_token": csrf_token(page.text), **details()})
    assert refused.status_code == 422
    assert count(session, Booking) == 0
    booked = desk.post(url, data={"csrf_token": csrf_token(page.text), **details(consent="y")})
    assert booked.status_code == 303
    assert count(session, Intake) == 1


def test_erasing_a_patient_deletes_their_health_answers(app, make_user, session, flagged, clock):
    clock.now = london("2026-11-25", "10:00")  # the visit is over
    admin = staff(app, make_user, Role.ADMIN)
    page = admin.get(f"/staff/patients/{flagged.patient_id}")
    answer = admin.post(
        f"/staff/patients/{flagged.patient_id}/erase",
        data={"csrf_token": csrf_token(page.text), "confirm": "ERASE"},
    )
    assert answer.status_code == 303
    assert count(session, Intake) == 0
