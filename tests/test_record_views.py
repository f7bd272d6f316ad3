"""The audit trail says who was shown a patient's record or health answers, where and when."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from scheduler.audit import VIEW_WINDOW, AuditAction, AuditEvent, Viewed
from scheduler.staff.models import Role
from scheduler.staff.tokens import issue_token
from tests.conftest import NOW, log_in, london
from tests.test_api_staff import StaffApi, book_first_visit

TUESDAY = "2026-11-24"


def views(session, patient_id):
    """The patient's view entries, oldest first, as (actor, detail, booking id)."""
    session.rollback()
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == AuditAction.RECORD_VIEWED)
        .where(AuditEvent.patient_id == patient_id)
        .order_by(AuditEvent.id)
    )
    return [(e.actor, e.detail, e.booking_id) for e in events]


@pytest.fixture
def first_visit(session, setup):
    """Ann's first visit with Mei, with her health answers on file."""
    return book_first_visit(
        session, setup, london(TUESDAY, "10:00"), setup.mei, medications="Warfarin"
    )


@pytest.fixture
def browser(app, session, make_user):
    """``browser(role, practitioner=None)``: a client logged in to the staff area."""

    def open_as(role, practitioner=None):
        session.rollback()  # let go of the snapshot earlier requests wrote past
        user = make_user(role, f"{role.value}.viewer@clinic.example", practitioner)
        client = app.test_client()
        log_in(client, user.email)
        return client

    return open_as


@pytest.fixture
def api(app, session, make_user):
    """``api(role, practitioner=None)``: the staff API with a token named "Reports"."""

    def token_as(role, practitioner=None):
        session.rollback()
        user = make_user(role, f"{role.value}.script@clinic.example", practitioner)
        _, token = issue_token(session, user=user, name="Reports", now=NOW)
        session.commit()
        return StaffApi(app.test_client(), session, token, user.id)

    return token_as


def test_opening_a_patient_page_is_recorded_and_shown_in_its_trail(session, browser, first_visit):
    admin = browser(Role.ADMIN)

    page = admin.get(f"/staff/patients/{first_visit.patient_id}")

    assert page.status_code == 200
    assert views(session, first_visit.patient_id) == [
        ("admin.viewer@clinic.example", "patient page", None)
    ]
    assert "Record viewed" in page.text


def test_a_reload_within_the_window_is_one_look_and_a_later_one_is_another(
    session, clock, browser, first_visit
):
    reception = browser(Role.RECEPTION)
    url = f"/staff/patients/{first_visit.patient_id}"

    reception.get(url)
    clock.now = NOW + VIEW_WINDOW - timedelta(seconds=1)
    reception.get(url)
    assert len(views(session, first_visit.patient_id)) == 1

    clock.now = NOW + VIEW_WINDOW + timedelta(minutes=1)
    reception.get(url)
    assert len(views(session, first_visit.patient_id)) == 2


def test_each_person_who_looks_is_named(session, setup, browser, first_visit):
    browser(Role.ADMIN).get(f"/staff/patients/{first_visit.patient_id}")
    browser(Role.PRACTITIONER, setup.mei).get(f"/staff/patients/{first_visit.patient_id}")

    assert [actor for actor, _, _ in views(session, first_visit.patient_id)] == [
        "admin.viewer@clinic.example",
        "practitioner.viewer@clinic.example",
    ]


def test_the_health_answers_on_a_booking_page_are_recorded_for_those_shown_them(
    session, setup, browser, first_visit
):
    url = f"/staff/bookings/{first_visit.id}"

    mei = browser(Role.PRACTITIONER, setup.mei).get(url)
    reception = browser(Role.RECEPTION).get(url)

    assert "Warfarin" in mei.text
    assert reception.status_code == 200
    assert "Warfarin" not in reception.text
    assert views(session, first_visit.patient_id) == [
        ("practitioner.viewer@clinic.example", Viewed.BOOKING_PAGE.value, first_visit.id)
    ], "reception saw no health answers, so nothing of theirs is recorded"


def test_a_booking_page_without_health_answers_records_nothing(session, setup, book, browser):
    follow_up = book(london(TUESDAY, "11:00"), practitioner=setup.mei)

    assert browser(Role.ADMIN).get(f"/staff/bookings/{follow_up.id}").status_code == 200
    assert views(session, follow_up.patient_id) == []


def test_a_record_another_practitioner_may_not_see_is_not_found_and_not_recorded(
    session, setup, browser, first_visit
):
    james = browser(Role.PRACTITIONER, setup.james)

    assert james.get(f"/staff/patients/{first_visit.patient_id}").status_code == 404
    assert james.get(f"/staff/bookings/{first_visit.id}").status_code == 404
    assert views(session, first_visit.patient_id) == []


def test_the_staff_api_records_who_read_a_record_and_with_which_token(
    session, setup, api, first_visit
):
    admin = api(Role.ADMIN)

    assert admin.get(f"/api/v1/staff/patients/{first_visit.patient_id}").status_code == 200
    assert admin.get(f"/api/v1/staff/bookings/{first_visit.id}").json["intake"] is not None

    label = "admin.script@clinic.example (API token “Reports”)"
    assert views(session, first_visit.patient_id) == [
        (label, Viewed.PATIENT_API.value, None),
        (label, Viewed.BOOKING_API.value, first_visit.id),
    ]


def test_a_booking_read_through_the_api_without_health_answers_records_nothing(
    session, api, first_visit
):
    answer = api(Role.RECEPTION).get(f"/api/v1/staff/bookings/{first_visit.id}")

    assert answer.status_code == 200
    assert answer.json["intake"] is None
    assert views(session, first_visit.patient_id) == []


def test_the_export_and_the_views_stand_side_by_side_in_the_exported_trail(
    session, browser, first_visit
):
    admin = browser(Role.ADMIN)
    page = admin.get(f"/staff/patients/{first_visit.patient_id}")
    token = page.text.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]

    export = admin.post(
        f"/staff/patients/{first_visit.patient_id}/export", data={"csrf_token": token}
    )

    actions = [entry["action"] for entry in export.json["audit_trail"]]
    assert actions.count("record_viewed") == 1
    assert actions[-1] == "patient_exported"
