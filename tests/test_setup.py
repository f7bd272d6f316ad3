"""The set-up pages of the staff area: admins edit the clinic, treatments, practitioners with
their hours and time off, rooms and checklists, and the booking pages, free times and mail
follow; bad input is refused next to its field with nothing written."""

from __future__ import annotations

import html
import re
from datetime import date, datetime, time

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import find_slots
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
from scheduler.extensions import db
from scheduler.notifications.models import Notification
from scheduler.patients.models import Patient
from scheduler.staff.models import Role
from tests.conftest import NOW, log_in, london, token_of

TUESDAY = date(2026, 11, 24)
WEDNESDAY = date(2026, 11, 25)


@pytest.fixture
def admin(client: FlaskClient, make_user) -> FlaskClient:
    """The test client, logged in as an admin."""
    log_in(client, make_user(Role.ADMIN).email)
    return client


@pytest.fixture
def visitor(app: Flask) -> FlaskClient:
    """A patient's browser: not logged in, and seeing none of the staff's flash messages."""
    return app.test_client()


def send(client: FlaskClient, path: str, **data: object):
    """Post ``data`` to ``path`` as the form on a set-up page would, with the CSRF token."""
    return client.post(path, data={"csrf_token": token_of(client, "/staff/setup/"), **data})


def error_next_to(page: str, field: str) -> str:
    """The error shown next to a field (the ``field`` macro's ``<p id="FIELD-error">``)."""
    found = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', page)
    assert found, f"no error next to {field}"
    return html.unescape(found.group(1))


def fresh(session: Session) -> Session:
    """The test's session, reading what the app committed since."""
    session.rollback()
    session.expire_all()
    return session


def slot_times(client: FlaskClient, treatment: Treatment, practitioner: Practitioner, day: date):
    """The free start times (HH:MM, clinic time) the public API offers on ``day``."""
    answer = client.get(
        f"/api/v1/slots?service={treatment.id}&practitioner={practitioner.id}&start={day}&end={day}"
    )
    assert answer.status_code == 200, answer.json
    return [slot["start"][11:16] for slot in answer.json["slots"]]


CLINIC_FORM = {
    "name": "Willow Acupuncture",
    "address": "2 Mill Road, Cambridge",
    "phone": "+44 1223 111111",
    "email": "hello@willow.example.com",
    "timezone": "Europe/London",
    "slot_step_minutes": "30",
    "min_notice": "90",
    "min_notice_unit": "minutes",
    "horizon_days": "30",
    "late_cancel_hours": "48",
    "checklist_lead_hours": "2, 48",
    "aftercare_delay_minutes": "60",
}


# --- Who may use the set-up pages --------------------------------------------------------------


def test_every_set_up_page_renders_for_an_admin(admin, setup, make_time_off):
    make_time_off(setup.mei, london("2026-12-01", "09:00"), london("2026-12-01", "13:00"))
    pages = [
        "/staff/setup/",
        "/staff/setup/clinic",
        "/staff/setup/treatments",
        "/staff/setup/treatments/new",
        f"/staff/setup/treatments/{setup.initial.id}",
        f"/staff/setup/treatments/{setup.follow_up.id}/checklists",
        "/staff/setup/practitioners",
        "/staff/setup/practitioners/new",
        f"/staff/setup/practitioners/{setup.mei.id}",
        f"/staff/setup/practitioners/{setup.mei.id}/hours",
        f"/staff/setup/practitioners/{setup.mei.id}/time-off",
        "/staff/setup/rooms",
        f"/staff/setup/rooms/{setup.rooms[0].id}",
        "/staff/setup/checklists",
    ]
    for path in pages:
        answer = admin.get(path)
        assert answer.status_code == 200, path
        assert '<nav class="setup"' in answer.text, path


def test_the_set_up_index_links_every_part(admin, setup):
    page = admin.get("/staff/setup/").text

    for part in ("clinic", "treatments", "practitioners", "rooms", "checklists"):
        assert f'href="/staff/setup/{part}"' in page


def test_only_admins_see_the_set_up_link(app, make_user):
    admin, reception = app.test_client(), app.test_client()
    log_in(admin, make_user(Role.ADMIN).email)
    log_in(reception, make_user(Role.RECEPTION).email)

    assert 'href="/staff/setup/"' in admin.get("/staff/").text
    assert 'href="/staff/setup/"' not in reception.get("/staff/").text


@pytest.mark.parametrize("role", [Role.RECEPTION, Role.PRACTITIONER])
def test_other_staff_cannot_use_the_set_up_pages(client, session, setup, make_user, role):
    log_in(client, make_user(role).email)
    token = token_of(client, "/staff/password")

    assert client.get("/staff/setup/").status_code == 403
    assert client.get("/staff/setup/clinic").status_code == 403
    answer = client.post("/staff/setup/clinic", data={**CLINIC_FORM, "csrf_token": token})
    archive = client.post(
        f"/staff/setup/treatments/{setup.follow_up.id}/archive", data={"csrf_token": token}
    )

    assert answer.status_code == archive.status_code == 403
    assert fresh(session).get(Clinic, setup.clinic.id).name == "Test Acupuncture"
    assert session.get(Treatment, setup.follow_up.id).active


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/staff/setup/treatments/999"),
        ("POST", "/staff/setup/treatments/999/archive"),
        ("POST", "/staff/setup/treatments/999/delete"),
        ("GET", "/staff/setup/treatments/999/checklists"),
        ("GET", "/staff/setup/practitioners/999"),
        ("POST", "/staff/setup/practitioners/999/hours"),
        ("GET", "/staff/setup/practitioners/999/time-off"),
        ("POST", "/staff/setup/practitioners/1/time-off/999/delete"),
        ("GET", "/staff/setup/rooms/999"),
        ("POST", "/staff/setup/rooms/999/delete"),
    ],
)
def test_an_unknown_id_is_not_found(admin, setup, method, path):
    token = token_of(admin, "/staff/setup/")

    assert admin.open(path, method=method, data={"csrf_token": token}).status_code == 404


def test_a_form_without_its_csrf_token_is_refused(admin, session, setup):
    answer = admin.post("/staff/setup/clinic", data=CLINIC_FORM)

    assert answer.status_code == 400
    assert fresh(session).get(Clinic, setup.clinic.id).name == "Test Acupuncture"


# --- The clinic -------------------------------------------------------------------------------


def test_the_clinic_form_shows_the_current_rules(admin, setup):
    page = admin.get("/staff/setup/clinic").text

    assert 'value="Test Acupuncture"' in page
    assert 'value="Europe/London"' in page
    assert re.search(r'id="min_notice"[^>]*value="12"', page), "12 hours, shown in hours"
    assert 'value="24"' in page, "the default checklist lead time"


def test_an_admin_changes_the_clinic_and_its_rules(admin, session, setup):
    answer = send(admin, "/staff/setup/clinic", **CLINIC_FORM)

    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/setup/clinic"
    assert "booking rules are saved" in admin.get("/staff/setup/clinic").text
    clinic = fresh(session).get(Clinic, setup.clinic.id)
    assert (clinic.name, clinic.address, clinic.phone, clinic.email) == (
        "Willow Acupuncture",
        "2 Mill Road, Cambridge",
        "+44 1223 111111",
        "hello@willow.example.com",
    )
    assert clinic.slot_step_minutes == 30
    assert clinic.min_notice_minutes == 90
    assert clinic.horizon_days == 30
    assert clinic.late_cancel_hours == 48
    assert clinic.checklist_lead_hours == [48, 2]
    assert clinic.aftercare_delay_minutes == 60
    assert "Willow Acupuncture" in admin.get("/").text


def test_a_new_slot_step_changes_the_free_times(admin, client, setup):
    before = slot_times(client, setup.follow_up, setup.mei, TUESDAY)
    assert before[:3] == ["09:00", "09:15", "09:30"]

    send(admin, "/staff/setup/clinic", **CLINIC_FORM)

    after = slot_times(client, setup.follow_up, setup.mei, TUESDAY)
    assert after[:3] == ["09:00", "09:30", "10:00"], "every 30 minutes now"


def test_a_shorter_notice_opens_today(admin, client, session, setup):
    assert slot_times(client, setup.follow_up, setup.mei, NOW.date()) == []

    send(admin, "/staff/setup/clinic", **{**CLINIC_FORM, "slot_step_minutes": "15"})

    today = slot_times(client, setup.follow_up, setup.mei, NOW.date())
    assert today[0] == "09:30", "Monday 08:00 plus 90 minutes"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timezone", "Europe/Londn", "'Europe/Londn' is not a time zone we know"),
        ("timezone", "", "Please enter the clinic's time zone."),
        ("slot_step_minutes", "3", "Please enter a number of minutes from 5 to 240."),
        ("slot_step_minutes", "ten", "'ten' is not a whole number; type digits only, like 15."),
        ("horizon_days", "731", "Please enter a number of days from 1 to 730."),
        ("min_notice", "-1", "Please enter a number from 0 to 8760."),
        ("min_notice", "", "Please enter the notice; 0 means none."),
        ("min_notice", "2000", "With this notice nothing could ever be booked"),
        ("late_cancel_hours", "1.5", "'1.5' is not a whole number"),
        ("checklist_lead_hours", "48, two", "'two' is not a whole number of hours."),
        ("checklist_lead_hours", "0", "0 is not between 1 and 336 hours (two weeks)."),
        ("checklist_lead_hours", "337", "337 is not between 1 and 336 hours (two weeks)."),
        ("checklist_lead_hours", "1, 2, 3, 4", "Please give at most 3 lead times."),
        ("checklist_lead_hours", "24, 24", "Each lead time may appear only once."),
        ("aftercare_delay_minutes", "", "Please enter a number of minutes from 0 to 10080."),
        ("email", "not-an-address", "Please enter a valid email address"),
        ("name", "", "Please enter the clinic name."),
        ("name", "Two\nlines", "Please keep this to one line of ordinary text."),
    ],
)
def test_bad_clinic_settings_are_refused_next_to_the_field(
    admin, session, setup, field, value, message
):
    form = {**CLINIC_FORM, "min_notice_unit": "hours", "min_notice": "12", field: value}

    answer = send(admin, "/staff/setup/clinic", **form)

    assert answer.status_code == 422
    assert error_next_to(answer.text, field).startswith(message)
    assert f'value="{html.escape(CLINIC_FORM["address"])}"' in answer.text, "what was typed stays"
    clinic = fresh(session).get(Clinic, setup.clinic.id)
    assert (clinic.name, clinic.slot_step_minutes, clinic.checklist_lead_hours) == (
        "Test Acupuncture",
        15,
        [24],
    ), "nothing is written"


def test_an_empty_lead_time_list_sends_no_checklist(admin, session, setup):
    send(admin, "/staff/setup/clinic", **{**CLINIC_FORM, "checklist_lead_hours": ""})

    assert fresh(session).get(Clinic, setup.clinic.id).checklist_lead_hours == []


# --- Treatments -------------------------------------------------------------------------------


TREATMENT_FORM = {
    "name": "Cosmetic acupuncture",
    "description": "Fine needles for the face.\r\nA course of ten is usual.",
    "duration_minutes": "45",
    "buffer_minutes": "10",
    "position": "5",
}


def services(client: FlaskClient) -> dict[str, dict]:
    return {service["name"]: service for service in client.get("/api/v1/services").json}


def test_an_admin_adds_a_treatment_patients_can_book_at_once(admin, client, session, setup):
    answer = send(
        admin, "/staff/setup/treatments/new", **TREATMENT_FORM, practitioners=[setup.james.id]
    )

    assert answer.status_code == 303
    assert "Cosmetic acupuncture is added" in admin.get(answer.headers["Location"]).text
    added = fresh(session).scalars(select(Treatment).where(Treatment.name.like("Cosmetic%"))).one()
    assert (added.duration_minutes, added.buffer_minutes, added.position, added.first_visit) == (
        45,
        10,
        5,
        False,
    )
    assert added.description == "Fine needles for the face.\nA course of ten is usual."
    assert [p.name for p in added.practitioners] == ["James Okafor"]
    assert services(client)["Cosmetic acupuncture"]["duration_minutes"] == 45
    assert "Cosmetic acupuncture" in client.get("/book").text
    assert slot_times(client, added, setup.james, TUESDAY)[:2] == ["09:00", "09:15"]
    assert slot_times(client, added, setup.mei, TUESDAY) == [], "Mei does not give it"


def test_editing_a_treatment_changes_its_length_and_who_gives_it(admin, client, session, setup):
    answer = send(
        admin,
        f"/staff/setup/treatments/{setup.follow_up.id}",
        name="Follow-up treatment",
        duration_minutes="180",
        buffer_minutes="0",
        position="1",
        practitioners=[setup.mei.id],
    )

    assert answer.status_code == 303
    follow_up = fresh(session).get(Treatment, setup.follow_up.id)
    assert follow_up.duration_minutes == 180
    assert [p.name for p in follow_up.practitioners] == ["Mei Lin"]
    # Three hours only fit the 14:00-18:00 stretch (and 09:00-13:00 is four hours).
    assert slot_times(client, follow_up, setup.mei, TUESDAY) == [
        "09:00",
        "09:15",
        "09:30",
        "09:45",
        "10:00",
        "14:00",
        "14:15",
        "14:30",
        "14:45",
        "15:00",
    ]
    assert slot_times(client, follow_up, setup.james, TUESDAY) == []


def test_the_edit_form_shows_the_treatment_as_it_is(admin, setup):
    page = admin.get(f"/staff/setup/treatments/{setup.initial.id}").text

    assert 'value="Initial consultation"' in page
    assert 'value="90"' in page
    assert re.search(r'id="first_visit"[^>]*checked', page) or re.search(
        r'checked[^>]*id="first_visit"', page
    )
    assert re.search(rf'checked[^>]*value="{setup.mei.id}"', page) or re.search(
        rf'value="{setup.mei.id}"[^>]*checked', page
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "  ", "Please enter the name."),
        ("duration_minutes", "4", "Please enter a number of minutes from 5 to 480."),
        ("duration_minutes", "481", "Please enter a number of minutes from 5 to 480."),
        ("duration_minutes", "", "Please enter a number of minutes from 5 to 480."),
        ("duration_minutes", "1e3", "'1e3' is not a whole number"),
        ("buffer_minutes", "241", "Please enter a number of minutes from 0 to 240."),
        ("buffer_minutes", "-5", "Please enter a number of minutes from 0 to 240."),
        ("description", "bell\x07", "Please remove the invisible control characters."),
    ],
)
def test_bad_treatment_input_is_refused_next_to_the_field(
    admin, session, setup, field, value, message
):
    answer = send(admin, "/staff/setup/treatments/new", **{**TREATMENT_FORM, field: value})
    edit = send(
        admin, f"/staff/setup/treatments/{setup.follow_up.id}", **{**TREATMENT_FORM, field: value}
    )

    assert answer.status_code == edit.status_code == 422
    assert error_next_to(answer.text, field).startswith(message)
    assert error_next_to(edit.text, field).startswith(message)
    fresh(session)
    assert session.scalar(select(func.count()).select_from(Treatment)) == 2
    assert session.get(Treatment, setup.follow_up.id).name == "Follow-up treatment"


def test_a_practitioner_who_does_not_exist_cannot_be_chosen(admin, session, setup):
    answer = send(admin, "/staff/setup/treatments/new", **TREATMENT_FORM, practitioners=["999"])

    assert answer.status_code == 422
    assert "not a valid choice" in answer.text
    assert fresh(session).scalar(select(func.count()).select_from(Treatment)) == 2


def test_an_archived_treatment_leaves_the_booking_pages_until_restored(
    admin, visitor, session, setup
):
    assert "Follow-up treatment" in visitor.get("/book").text

    answer = send(admin, f"/staff/setup/treatments/{setup.follow_up.id}/archive")

    assert answer.status_code == 303
    assert "Follow-up treatment" not in services(visitor)
    assert "Follow-up treatment" not in visitor.get("/book").text
    assert "Follow-up treatment" not in visitor.get("/").text
    listing = admin.get("/staff/setup/treatments").text
    assert "Archived: not bookable" in listing, "staff still see it"

    send(admin, f"/staff/setup/treatments/{setup.follow_up.id}/restore")

    assert "Follow-up treatment" in services(visitor)
    assert fresh(session).get(Treatment, setup.follow_up.id).active


def test_archiving_a_treatment_keeps_its_bookings(admin, session, setup, book):
    booking = book(london("2026-11-25", "10:00"))

    send(admin, f"/staff/setup/treatments/{setup.follow_up.id}/archive")

    kept = fresh(session).get(Booking, booking.id)
    assert kept.status is BookingStatus.CONFIRMED
    assert kept.treatment.name == "Follow-up treatment"


def test_a_treatment_nobody_booked_can_be_deleted_with_its_checklist(admin, session, setup):
    follow_up, mei = setup.follow_up.id, setup.mei.id
    send(admin, f"/staff/setup/treatments/{follow_up}/checklists", preparation="Bring shorts.")

    answer = send(admin, f"/staff/setup/treatments/{follow_up}/delete")

    assert answer.status_code == 303
    fresh(session)
    assert session.scalars(select(Treatment).where(Treatment.id == follow_up)).all() == []
    assert (
        session.scalars(select(ChecklistItem).where(ChecklistItem.treatment_id.is_not(None))).all()
        == []
    )
    assert [t.name for t in session.get(Practitioner, mei).treatments] == ["Initial consultation"]


def test_a_booked_treatment_cannot_be_deleted(admin, session, setup, book):
    book(london("2026-11-25", "10:00"))

    answer = send(admin, f"/staff/setup/treatments/{setup.follow_up.id}/delete")

    assert answer.status_code == 409
    assert "Follow-up treatment has bookings, so it cannot be deleted; archive it instead." in (
        html.unescape(answer.text)
    )
    assert fresh(session).get(Treatment, setup.follow_up.id) is not None
    listing = admin.get("/staff/setup/treatments").text
    assert f'action="/staff/setup/treatments/{setup.follow_up.id}/delete"' not in listing
    assert f'action="/staff/setup/treatments/{setup.initial.id}/delete"' in listing


# --- Practitioners ----------------------------------------------------------------------------


PRACTITIONER_FORM = {
    "name": "Sofia Marques",
    "email": "Sofia@Example.com",
    "credentials": "Lic.Ac.",
    "licence": "MBAcC 1234",
    "bio": "Sofia trained in Lisbon.",
}


def practitioner_names(client: FlaskClient) -> list[str]:
    return [p["name"] for p in client.get("/api/v1/practitioners").json]


def test_an_admin_adds_a_practitioner_then_sets_their_hours(admin, client, session, setup):
    answer = send(
        admin,
        "/staff/setup/practitioners/new",
        **PRACTITIONER_FORM,
        treatments=[setup.follow_up.id],
    )

    assert answer.status_code == 303
    sofia = (
        fresh(session)
        .scalars(select(Practitioner).where(Practitioner.name == "Sofia Marques"))
        .one()
    )
    assert answer.headers["Location"] == f"/staff/setup/practitioners/{sofia.id}/hours"
    assert sofia.email == "sofia@example.com"
    assert (sofia.credentials, sofia.licence, sofia.bio) == (
        "Lic.Ac.",
        "MBAcC 1234",
        "Sofia trained in Lisbon.",
    )
    assert [t.name for t in sofia.treatments] == ["Follow-up treatment"]
    assert "Sofia Marques" in practitioner_names(client)
    assert slot_times(client, setup.follow_up, sofia, TUESDAY) == [], "no hours yet"

    send(admin, answer.headers["Location"], tuesday="10:00-12:00")

    assert slot_times(client, setup.follow_up, sofia, TUESDAY) == [
        "10:00",
        "10:15",
        "10:30",
        "10:45",
    ]


@pytest.fixture
def mei(session: Session, setup) -> Practitioner:
    """Mei, with an address the email check accepts (it refuses the reserved .test domain)."""
    setup.mei.email = "mei.lin@example.com"
    session.commit()
    return setup.mei


def test_each_practitioner_needs_their_own_email(admin, session, setup, mei):
    taken = "Mei.Lin@Example.com"

    added = send(admin, "/staff/setup/practitioners/new", **{**PRACTITIONER_FORM, "email": taken})
    edited = send(
        admin,
        f"/staff/setup/practitioners/{setup.james.id}",
        **{**PRACTITIONER_FORM, "email": taken},
    )

    for answer in (added, edited):
        assert answer.status_code == 422
        assert error_next_to(answer.text, "email") == (
            "Mei Lin already uses mei.lin@example.com; "
            "each practitioner needs an email address of their own."
        )
    fresh(session)
    assert session.scalar(select(func.count()).select_from(Practitioner)) == 2
    assert session.get(Practitioner, setup.james.id).name == "James Okafor"


def test_a_practitioner_keeps_their_own_email_when_edited(admin, session, setup, mei):
    answer = send(
        admin,
        f"/staff/setup/practitioners/{mei.id}",
        **{**PRACTITIONER_FORM, "name": "Mei Lin-Hart", "email": "MEI.LIN@example.com"},
        treatments=[setup.initial.id],
    )

    assert answer.status_code == 303
    mei = fresh(session).get(Practitioner, setup.mei.id)
    assert mei.name == "Mei Lin-Hart"
    assert [t.name for t in mei.treatments] == ["Initial consultation"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "Please enter the name."),
        ("email", "", "Please enter the practitioner's email."),
        ("email", "sofia@", "Please enter a valid email address"),
        ("credentials", "x" * 301, "Please keep this to 300 characters."),
    ],
)
def test_bad_practitioner_input_is_refused_next_to_the_field(
    admin, session, setup, field, value, message
):
    answer = send(admin, "/staff/setup/practitioners/new", **{**PRACTITIONER_FORM, field: value})

    assert answer.status_code == 422
    assert error_next_to(answer.text, field).startswith(message)
    assert fresh(session).scalar(select(func.count()).select_from(Practitioner)) == 2


def test_an_archived_practitioner_cannot_be_booked_and_their_bookings_stand(
    admin, client, session, setup, book
):
    booking = book(london("2026-11-25", "10:00"), practitioner=setup.mei)

    answer = send(admin, f"/staff/setup/practitioners/{setup.mei.id}/archive")

    assert answer.status_code == 303
    page = html.unescape(admin.get(answer.headers["Location"]).text)
    assert "1 coming booking with Mei Lin still stands; move or cancel it if needed" in page
    assert booking.patient.name in page
    assert "Mei Lin" not in practitioner_names(client)
    assert (
        client.get(
            f"/api/v1/slots?service={setup.follow_up.id}&practitioner={setup.mei.id}"
            f"&start={TUESDAY}&end={TUESDAY}"
        ).status_code
        == 422
    )
    assert fresh(session).get(Booking, booking.id).status is BookingStatus.CONFIRMED

    send(admin, f"/staff/setup/practitioners/{setup.mei.id}/restore")

    assert "Mei Lin" in practitioner_names(client)


# --- Weekly hours -----------------------------------------------------------------------------


def hours_of(session: Session, practitioner: Practitioner) -> list[tuple[int, time, time]]:
    fresh(session)
    rows = session.scalars(
        select(WorkingHours)
        .where(WorkingHours.practitioner_id == practitioner.id)
        .order_by(WorkingHours.weekday, WorkingHours.start_time)
    )
    return [(row.weekday, row.start_time, row.end_time) for row in rows]


def test_the_hours_form_shows_each_days_hours(admin, setup):
    page = admin.get(f"/staff/setup/practitioners/{setup.mei.id}/hours").text

    assert re.search(r'id="monday"[^>]*value="09:00-13:00, 14:00-18:00"', page)
    assert re.search(r'id="sunday"[^>]*value=""', page)


def test_new_hours_replace_the_old_ones_and_change_the_free_times(
    admin, client, session, setup, app
):
    answer = send(
        admin,
        f"/staff/setup/practitioners/{setup.mei.id}/hours",
        tuesday=" 8:30 - 10:00 ;14:00–15:00 ",
        wednesday="",
        sunday="10:00-11:30",
    )

    assert answer.status_code == 303
    assert hours_of(session, setup.mei) == [
        (1, time(8, 30), time(10)),
        (1, time(14), time(15)),
        (6, time(10), time(11, 30)),
    ]
    assert slot_times(client, setup.follow_up, setup.mei, TUESDAY) == [
        "08:30",
        "08:45",
    ], "an hour plus 15 minutes' buffer must fit: not into 14:00-15:00"
    assert slot_times(client, setup.follow_up, setup.mei, WEDNESDAY) == []
    with app.app_context():
        slots = find_slots(
            db.session(),
            clinic=db.session.get(Clinic, setup.clinic.id),
            treatment=db.session.get(Treatment, setup.follow_up.id),
            practitioner=db.session.get(Practitioner, setup.mei.id),
            first_day=date(2026, 11, 29),
            last_day=date(2026, 11, 29),
            now=NOW,
        )
    assert [slot.start for slot in slots] == [
        london("2026-11-29", "10:00"),
        london("2026-11-29", "10:15"),
    ]
    assert hours_of(session, setup.james)[0] == (0, time(9), time(13)), "James is untouched"


def test_new_hours_warn_about_bookings_they_leave_outside(admin, session, setup, book):
    booking = book(london("2026-11-25", "10:00"), practitioner=setup.mei)

    answer = send(admin, f"/staff/setup/practitioners/{setup.mei.id}/hours", monday="09:00-17:00")

    page = html.unescape(admin.get(answer.headers["Location"]).text)
    assert "1 coming booking outside the new hours still stands" in page
    assert booking.patient.name in page
    assert fresh(session).get(Booking, booking.id).status is BookingStatus.CONFIRMED


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9-13", "'9-13' is not a time range; write it like 09:00-13:00."),
        ("09:00-13:00 and more", "'09:00-13:00 and more' is not a time range"),
        ("13:00-09:00", "13:00-09:00 ends before it starts."),
        ("09:00-09:00", "09:00-09:00 ends before it starts."),
        ("25:00-26:00", "25:00 is not a time of day; use 00:00 to 23:59."),
        ("09:00-13:00, 12:00-18:00", "09:00-13:00 and 12:00-18:00 overlap."),
        ("14:00-18:00, 09:00-14:30", "09:00-14:30 and 14:00-18:00 overlap."),
    ],
)
def test_bad_hours_are_refused_next_to_the_day(admin, session, setup, value, message):
    before = hours_of(session, setup.mei)

    answer = send(
        admin,
        f"/staff/setup/practitioners/{setup.mei.id}/hours",
        monday="09:00-12:00",
        thursday=value,
    )

    assert answer.status_code == 422
    assert error_next_to(answer.text, "thursday").startswith(message)
    assert f'value="{html.escape(value)}"' in answer.text, "what was typed stays"
    assert hours_of(session, setup.mei) == before


def test_touching_intervals_are_fine(admin, session, setup):
    send(
        admin, f"/staff/setup/practitioners/{setup.mei.id}/hours", friday="09:00-13:00,13:00-14:00"
    )

    assert hours_of(session, setup.mei) == [(4, time(9), time(13)), (4, time(13), time(14))]


# --- Time off ---------------------------------------------------------------------------------


def time_off_rows(session: Session) -> list[TimeOff]:
    return list(fresh(session).scalars(select(TimeOff).order_by(TimeOff.start_at)))


def test_whole_days_off_close_those_days(admin, client, session, setup):
    answer = send(
        admin,
        f"/staff/setup/practitioners/{setup.mei.id}/time-off",
        start_date="2026-11-24",
        end_date="2026-11-25",
        reason="Training course",
    )

    assert answer.status_code == 303
    [off] = time_off_rows(session)
    assert (off.practitioner_id, off.start_at, off.end_at, off.reason) == (
        setup.mei.id,
        london("2026-11-24", "00:00"),
        london("2026-11-26", "00:00"),
        "Training course",
    )
    assert slot_times(client, setup.follow_up, setup.mei, TUESDAY) == []
    assert slot_times(client, setup.follow_up, setup.mei, WEDNESDAY) == []
    assert slot_times(client, setup.follow_up, setup.mei, date(2026, 11, 26))[0] == "09:00"
    page = admin.get(answer.headers["Location"]).text
    assert "Training course" in page
    assert "Tuesday 24 November 2026, 00:00 GMT" in page


def test_time_off_is_entered_in_the_clinics_time_zone(admin, session, setup):
    send(admin, "/staff/setup/clinic", **{**CLINIC_FORM, "timezone": "America/New_York"})

    send(
        admin,
        f"/staff/setup/practitioners/{setup.mei.id}/time-off",
        start_date="2026-11-24",
        start_time="09:00",
        end_date="2026-11-24",
        end_time="10:30",
    )

    [off] = time_off_rows(session)
    assert off.start_at == datetime.fromisoformat("2026-11-24T14:00:00+00:00")
    assert off.end_at == datetime.fromisoformat("2026-11-24T15:30:00+00:00")


def test_removing_time_off_frees_the_time_again(admin, client, session, setup, make_time_off):
    off = make_time_off(setup.mei, london("2026-11-24", "00:00"), london("2026-11-25", "00:00"))
    assert slot_times(client, setup.follow_up, setup.mei, TUESDAY) == []

    answer = send(admin, f"/staff/setup/practitioners/{setup.mei.id}/time-off/{off.id}/delete")

    assert answer.status_code == 303
    assert time_off_rows(session) == []
    assert slot_times(client, setup.follow_up, setup.mei, TUESDAY)[0] == "09:00"


def test_time_off_is_removed_only_through_its_own_practitioner(
    admin, session, setup, make_time_off
):
    off = make_time_off(setup.mei, london("2026-11-24", "00:00"), london("2026-11-25", "00:00"))

    answer = send(admin, f"/staff/setup/practitioners/{setup.james.id}/time-off/{off.id}/delete")

    assert answer.status_code == 404
    assert len(time_off_rows(session)) == 1


def test_time_off_over_bookings_warns_and_waits_for_confirmation(admin, session, setup, book):
    inside = book(london("2026-11-24", "10:00"), practitioner=setup.mei, name="Ann Inside")
    book(london("2026-11-24", "15:00"), practitioner=setup.mei, name="Ben Outside")
    form = {
        "start_date": "2026-11-24",
        "start_time": "09:00",
        "end_date": "2026-11-24",
        "end_time": "13:00",
        "reason": "Dentist",
    }
    path = f"/staff/setup/practitioners/{setup.mei.id}/time-off"

    warned = send(admin, path, **form)

    assert warned.status_code == 409
    page = html.unescape(warned.text)
    assert "1 booking with Mei Lin falls inside this time off." in page
    assert "Ann Inside" in page
    assert "Ben Outside" not in page
    assert 'name="despite_bookings"' in page
    assert time_off_rows(session) == [], "nothing is written until confirmed"

    confirmed = send(admin, path, **form, despite_bookings="y")

    assert confirmed.status_code == 303
    assert len(time_off_rows(session)) == 1
    assert fresh(session).get(Booking, inside.id).status is BookingStatus.CONFIRMED
    listing = html.unescape(admin.get(path).text)
    assert "1 coming booking inside it still stands" in listing
    assert "1 still booked" in listing
    assert "Ann Inside" in listing


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        (
            {"start_date": "2026-11-25", "end_date": "2026-11-24"},
            "end_date",
            "The time off must end after it starts.",
        ),
        (
            {
                "start_date": "2026-11-24",
                "start_time": "12:00",
                "end_date": "2026-11-24",
                "end_time": "11:00",
            },
            "end_date",
            "The time off must end after it starts.",
        ),
        ({"end_date": "2026-11-24"}, "start_date", "Please enter the first day."),
        ({"start_date": "24/11/2026", "end_date": "2026-11-24"}, "start_date", "Not a valid date"),
        ({"start_date": "2026-11-24", "end_date": "2101-01-01"}, "end_date", "Please pick a date"),
        (
            {"start_date": "2026-11-24", "start_time": "9am", "end_date": "2026-11-24"},
            "start_time",
            "Not a valid time",
        ),
        (
            {"start_date": "2027-03-28", "start_time": "01:30", "end_date": "2027-03-28"},
            "start_time",
            "01:30 does not exist on that day: the clocks go forward.",
        ),
        (
            {"start_date": "2026-11-24", "end_date": "2026-11-24", "reason": "x" * 201},
            "reason",
            "Please keep this to 200 characters.",
        ),
    ],
)
def test_bad_time_off_is_refused_next_to_the_field(admin, session, setup, form, field, message):
    answer = send(admin, f"/staff/setup/practitioners/{setup.mei.id}/time-off", **form)

    assert answer.status_code == 422
    assert error_next_to(answer.text, field).startswith(message)
    assert time_off_rows(session) == []


# --- Rooms ------------------------------------------------------------------------------------


def rooms_by_name(session: Session) -> dict[str, Room]:
    return {room.name: room for room in fresh(session).scalars(select(Room))}


def test_an_admin_adds_and_renames_a_room(admin, session, setup):
    added = send(admin, "/staff/setup/rooms", name="Bamboo room")
    assert added.status_code == 303
    room = rooms_by_name(session)["Bamboo room"]
    assert room.active

    renamed = send(admin, f"/staff/setup/rooms/{room.id}", name="Lotus room")

    assert renamed.status_code == 303
    assert "Lotus room" in rooms_by_name(session)
    assert "Lotus room" in admin.get("/staff/setup/rooms").text


@pytest.mark.parametrize(
    ("value", "message"),
    [("", "Please enter the room name."), ("x" * 101, "Please keep the room name to 100")],
)
def test_a_bad_room_name_is_refused(admin, session, setup, value, message):
    added = send(admin, "/staff/setup/rooms", name=value)
    renamed = send(admin, f"/staff/setup/rooms/{setup.rooms[0].id}", name=value)

    for answer in (added, renamed):
        assert answer.status_code == 422
        assert error_next_to(answer.text, "name").startswith(message)
    assert sorted(rooms_by_name(session)) == ["Courtyard room", "Garden room"]


def test_archived_rooms_are_not_used_for_new_bookings(admin, client, session, setup):
    for room in setup.rooms:
        send(admin, f"/staff/setup/rooms/{room.id}/archive")

    assert slot_times(client, setup.follow_up, setup.mei, TUESDAY) == []
    assert "No room is left in use" in admin.get("/staff/setup/rooms").text

    send(admin, f"/staff/setup/rooms/{setup.rooms[1].id}/restore")

    assert slot_times(client, setup.follow_up, setup.mei, TUESDAY)[0] == "09:00"


def test_a_room_nobody_booked_can_be_deleted(admin, session, setup):
    answer = send(admin, f"/staff/setup/rooms/{setup.rooms[1].id}/delete")

    assert answer.status_code == 303
    assert sorted(rooms_by_name(session)) == ["Garden room"]


def test_a_booked_room_cannot_be_deleted(admin, session, setup, book):
    booking = book(london("2026-11-25", "10:00"))

    answer = send(admin, f"/staff/setup/rooms/{booking.room_id}/delete")

    assert answer.status_code == 409
    assert "has bookings, so it cannot be deleted; archive it instead." in answer.text
    assert len(rooms_by_name(session)) == 2


# --- Checklists and the mail preview -------------------------------------------------------------


def own_items(
    session: Session, treatment: Treatment | None, section: ChecklistSection
) -> list[str]:
    fresh(session)
    owner = (
        ChecklistItem.treatment_id.is_(None)
        if treatment is None
        else ChecklistItem.treatment_id == treatment.id
    )
    rows = session.scalars(
        select(ChecklistItem)
        .where(owner, ChecklistItem.section == section)
        .order_by(ChecklistItem.position)
    )
    return [row.text for row in rows]


def preview_text(page: str) -> str:
    """The plain-text parts of the previews on a checklist page."""
    return "\n".join(
        html.unescape(text)
        for text in re.findall(r'<pre class="mail"[^>]*>(.*?)</pre>', page, re.S)
    )


def preview_html(client: FlaskClient, page: str) -> str:
    """The HTML parts of the previews, as the sandboxed frames load them."""
    frames = re.findall(r'<iframe class="mail" sandbox="" [^>]*src="([^"]*)"', page)
    assert frames, "no sandboxed preview"
    return "\n".join(client.get(html.unescape(frame)).text for frame in frames)


def test_the_clinic_checklist_shows_its_items_and_a_preview_of_the_mail(admin, setup):
    page = admin.get("/staff/setup/checklists").text

    assert "Bring a list of your medications and supplements." in page
    text = preview_text(page)
    assert "Hello Alex Sample," in text
    assert "Initial consultation with Mei Lin" in text, "a first visit, the first who gives it"
    assert "Tuesday 24 November 2026, 09:00 to 10:30" in text, "the first free time"
    assert "Please arrive ten minutes early." in text, "the first-visit items"
    assert "Drink plenty of water today." in text, "the aftercare"
    assert (
        'Subject:</strong> <span lang="en">Preparing for your visit on Tuesday 24 November 2026'
        in page
    )
    assert "Please arrive ten minutes early." in preview_html(admin, page)


def test_the_preview_saves_nothing(admin, session, setup):
    admin.get("/staff/setup/checklists")
    admin.get(f"/staff/setup/treatments/{setup.follow_up.id}/checklists")

    fresh(session)
    for model in (Booking, Patient, Notification):
        assert session.scalar(select(func.count()).select_from(model)) == 0


def test_the_preview_can_be_for_another_treatment(admin, setup):
    page = admin.get(f"/staff/setup/checklists?treatment={setup.follow_up.id}").text

    text = preview_text(page)
    assert "Follow-up treatment with Mei Lin" in text
    assert "Please arrive ten minutes early." not in text, "not a first visit"


def test_editing_the_clinic_checklist_changes_the_preview_and_the_mail(
    app, admin, session, setup, book, smtp, clock
):
    answer = send(
        admin,
        "/staff/setup/checklists",
        preparation="Wear loose clothing.\r\n\r\n  Skip coffee that morning.  \r\n",
        first_visit="Arrive ten minutes early.",
        aftercare="Rest tonight.",
    )

    assert answer.status_code == 303
    assert own_items(session, None, ChecklistSection.PREPARATION) == [
        "Wear loose clothing.",
        "Skip coffee that morning.",
    ]
    page = admin.get(answer.headers["Location"]).text
    assert "The checklist is saved" in page
    text = preview_text(page)
    assert "- Wear loose clothing.\n- Skip coffee that morning." in text
    assert "Bring a list of your medications" not in text
    assert "Skip coffee that morning." in preview_html(admin, page)
    assert "- Rest tonight." in text

    booking = book(london("2026-11-25", "10:00"), treatment=setup.follow_up)
    clock.now = london("2026-11-24", "10:00")  # the checklist is due 24 hours before
    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert result.exit_code == 0, result.output

    [checklist] = [m for m in smtp.messages() if str(m["Subject"]).startswith("Preparing")]
    mailed = checklist.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    assert "- Wear loose clothing.\n- Skip coffee that morning." in mailed
    assert booking.patient.name in mailed


def test_a_treatment_checklist_replaces_the_clinics_only_where_it_has_items(admin, session, setup):
    path = f"/staff/setup/treatments/{setup.follow_up.id}/checklists"
    page = admin.get(path).text
    assert "A section left empty uses the clinic's items" in page

    answer = send(admin, path, preparation="Eat a light meal.", first_visit="", aftercare="")

    assert answer.status_code == 303
    assert own_items(session, setup.follow_up, ChecklistSection.PREPARATION) == [
        "Eat a light meal."
    ]
    assert own_items(session, setup.follow_up, ChecklistSection.AFTERCARE) == []
    text = preview_text(admin.get(path).text)
    assert "- Eat a light meal." in text
    assert "Bring a list of your medications" not in text
    assert "Drink plenty of water today." in text, "the clinic's aftercare still applies"
    clinic_text = preview_text(admin.get("/staff/setup/checklists").text)
    assert "Eat a light meal." not in clinic_text, "other treatments keep the clinic's items"


def test_emptying_a_treatment_section_goes_back_to_the_clinics_items(admin, session, setup):
    path = f"/staff/setup/treatments/{setup.follow_up.id}/checklists"
    send(admin, path, preparation="Eat a light meal.")

    send(admin, path, preparation=" \r\n ")

    assert own_items(session, setup.follow_up, ChecklistSection.PREPARATION) == []
    assert "Bring a list of your medications" in preview_text(admin.get(path).text)


def test_a_treatment_nobody_gives_is_previewed_with_a_stand_in(admin, session, setup):
    send(
        admin,
        "/staff/setup/treatments/new",
        **TREATMENT_FORM,
    )
    added = fresh(session).scalars(select(Treatment).where(Treatment.name.like("Cosmetic%"))).one()

    page = admin.get(f"/staff/setup/treatments/{added.id}/checklists").text

    assert "nobody gives Cosmetic acupuncture yet" in page
    assert "Cosmetic acupuncture with Your practitioner" in preview_text(page)
    # No free time: the next whole hour after the 12 hours' notice (Monday 08:00 + 12 h).
    assert "Monday 23 November 2026, 20:00" in preview_text(page)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("aftercare", "Fine.\n" + "x" * 501, "Item 2 has 501 characters; please keep each item"),
        ("preparation", "\n".join(f"Item {n}" for n in range(51)), "Please keep this to 50 items."),
        ("first_visit", "Bell\x07", "Please remove the invisible control characters."),
    ],
)
def test_a_bad_checklist_is_refused_next_to_the_section(
    admin, session, setup, field, value, message
):
    before = own_items(session, None, ChecklistSection.PREPARATION)

    answer = send(admin, "/staff/setup/checklists", **{"preparation": "New item.", field: value})

    assert answer.status_code == 422
    assert error_next_to(answer.text, field).startswith(message)
    assert own_items(session, None, ChecklistSection.PREPARATION) == before, "nothing written"
