"""The staff API, ``/api/v1/staff``, called with personal API tokens through the test client:
what each role sees and may do, paging by cursor, and refusals of bad parameters."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from scheduler.audit import AuditAction, AuditEvent
from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import PatientDetails, book_session, cancel_booking
from scheduler.calendars.models import BusyTime, ExternalEvent
from scheduler.clinic.models import Practitioner
from scheduler.patients.intake import IntakeAnswers
from scheduler.staff.models import Role
from scheduler.staff.tokens import issue_token
from tests.conftest import NOW, london

WEEK = {"start": "2026-11-23", "end": "2026-11-29"}
OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


class StaffApi:
    """A script holding one staff member's token.

    Like the public API's tests, the test's own session ends its read transaction around each
    call, so it never holds an old snapshot while a request writes.
    """

    def __init__(self, client: FlaskClient, session: Session, token: str, user_id: int) -> None:
        self._client = client
        self._session = session
        self._headers = {"Authorization": f"Bearer {token}"}
        self.user_id = user_id

    def get(self, url: str, **params: Any) -> TestResponse:
        return self._call("GET", url, query_string=params)

    def post(self, url: str, json: Any = None, **options: Any) -> TestResponse:
        if json is not None:
            options["json"] = json
        return self._call("POST", url, **options)

    def _call(self, method: str, url: str, **options: Any) -> TestResponse:
        self._session.rollback()
        response = self._client.open(url, method=method, headers=self._headers, **options)
        self._session.rollback()
        assert response.status_code != 500, response.text
        return response


@pytest.fixture
def token_for(app, session, make_user, setup):
    """``token_for(role, practitioner=None) -> StaffApi``: an account and a token for it."""
    counter = iter(range(1, 100))

    def make(role: Role, practitioner: Practitioner | None = None) -> StaffApi:
        session.rollback()
        user = make_user(role, f"{role.value}{next(counter)}@clinic.example", practitioner)
        _, token = issue_token(session, user=user, name="Script", now=NOW)
        session.commit()
        return StaffApi(app.test_client(), session, token, user.id)

    return make


@pytest.fixture
def reception(token_for):
    return token_for(Role.RECEPTION)


@pytest.fixture
def admin(token_for):
    return token_for(Role.ADMIN)


@pytest.fixture
def mei(token_for, setup):
    return token_for(Role.PRACTITIONER, setup.mei)


@pytest.fixture
def james(token_for, setup):
    return token_for(Role.PRACTITIONER, setup.james)


def ids(answer: TestResponse) -> list[int]:
    return [item["id"] for item in answer.json["items"]]


def walk(api: StaffApi, url: str, **params: Any) -> tuple[list[int], int]:
    """Follow ``next_cursor`` to the end; return every id seen and how many pages it took."""
    seen: list[int] = []
    pages = 0
    cursor = None
    while True:
        asked = dict(params, **({"cursor": cursor} if cursor else {}))
        answer = api.get(url, **asked)
        assert answer.status_code == 200, answer.json
        seen += ids(answer)
        pages += 1
        cursor = answer.json["next_cursor"]
        if cursor is None:
            return seen, pages
        assert pages < 50, "the cursor never ends"


def book_first_visit(session, setup, start, practitioner, **intake: Any) -> Booking:
    booking = book_session(
        session,
        clinic=setup.clinic,
        treatment=setup.initial,
        practitioner=practitioner,
        start=start,
        patient=PatientDetails("Ann Lee", "ann@example.org", "+44 7700 900001"),
        now=NOW,
        uid_host="clinic.test",
        intake=IntakeAnswers(consent=True, **intake),
    )
    session.commit()
    return booking


def cursor_of(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


# --- Listing bookings ---------------------------------------------------------------------------


def test_reception_lists_every_booking_and_a_practitioner_only_their_own(
    setup, book, reception, mei
):
    first = book(london("2026-11-24", "10:00"), practitioner=setup.mei, name="Ann Lee")
    book(london("2026-11-24", "10:00"), practitioner=setup.james)
    book(london("2026-11-24", "14:00"), practitioner=setup.mei)

    everyone = reception.get("/api/v1/staff/bookings", start="2026-11-24")
    only_mei = mei.get("/api/v1/staff/bookings", start="2026-11-24")

    assert everyone.status_code == 200
    assert len(everyone.json["items"]) == 3
    assert everyone.json["next_cursor"] is None
    assert [item["practitioner"] for item in only_mei.json["items"]] == [setup.mei.id] * 2
    item = everyone.json["items"][0]
    assert item["id"] == first.id
    assert item["start"] == "2026-11-24T10:00:00+00:00"
    assert item["end"] == "2026-11-24T11:00:00+00:00"
    assert item["timezone"] == "Europe/London"
    assert item["status"] == "confirmed"
    assert item["patient"]["name"] == "Ann Lee"
    assert item["practitioner_name"] == "Mei Lin"
    assert item["manage_url"] == f"https://clinic.test/b/{first.manage_token}"


def test_the_list_narrows_by_dates_practitioner_status_and_patient(session, setup, book, reception):
    tuesday = book(london("2026-11-24", "10:00"), practitioner=setup.mei, name="Ann Lee")
    thursday = book(london("2026-11-26", "10:00"), practitioner=setup.james, name="Bob Stone")
    cancelled = book(london("2026-11-27", "10:00"), practitioner=setup.mei, name="Cy Young")
    far = book(london("2026-12-15", "10:00"), practitioner=setup.mei, name="Di Hart")
    cancel_booking(session, clinic=setup.clinic, booking=cancelled, now=NOW)
    session.commit()
    url = "/api/v1/staff/bookings"

    assert ids(reception.get(url)) == [tuesday.id, thursday.id, cancelled.id], "two weeks"
    assert ids(reception.get(url, start="2026-11-26", end="2026-11-26")) == [thursday.id]
    assert ids(reception.get(url, start="2026-12-01", end="2026-12-31")) == [far.id]
    assert ids(reception.get(url, practitioner=setup.james.id)) == [thursday.id]
    assert ids(reception.get(url, status="cancelled")) == [cancelled.id]
    assert ids(reception.get(url, patient="ann lee")) == [tuesday.id]
    assert ids(reception.get(url, patient="7700 900000", practitioner=setup.mei.id)) == [
        tuesday.id,
        cancelled.id,
    ]


def test_a_practitioner_cannot_ask_for_another_practitioners_bookings(setup, book, mei):
    book(london("2026-11-24", "10:00"), practitioner=setup.james)

    answer = mei.get("/api/v1/staff/bookings", practitioner=setup.james.id)

    assert answer.status_code == 403
    assert "practitioner" in answer.json["fields"]


def test_the_cursor_walks_every_booking_once_in_order(setup, book, reception):
    # Pairs of bookings start at the same time, so the cursor must order by id within a time.
    for day in ("2026-11-24", "2026-11-25", "2026-11-26"):
        book(london(day, "10:00"), practitioner=setup.mei)
        book(london(day, "10:00"), practitioner=setup.james)
    book(london("2026-11-27", "09:00"), practitioner=setup.mei)
    everything = ids(reception.get("/api/v1/staff/bookings", limit=200))

    seen, pages = walk(reception, "/api/v1/staff/bookings", limit=2)

    assert len(everything) == 7
    assert seen == everything
    assert pages == 4


def test_the_cursor_walks_every_patient_once(setup, book, reception, mei):
    for number in range(5):
        book(
            london(f"2026-11-{24 + number}", "10:00"),
            practitioner=setup.mei if number % 2 else setup.james,
            email=f"p{number}@example.org",
        )
    everyone = ids(reception.get("/api/v1/staff/patients", limit=200))

    seen, pages = walk(reception, "/api/v1/staff/patients", limit=2)
    meis, _ = walk(mei, "/api/v1/staff/patients", limit=1)

    assert len(everyone) == 5
    assert seen == everyone
    assert pages == 3
    assert len(meis) == 2, "only the patients booked with her"
    assert set(meis) < set(everyone)


def test_a_patient_added_between_pages_is_not_missed(setup, book, reception):
    book(london("2026-11-24", "10:00"), email="a@example.org")
    book(london("2026-11-24", "11:30"), email="b@example.org")
    first_page = reception.get("/api/v1/staff/patients", limit=1)

    book(london("2026-11-24", "14:00"), email="c@example.org")
    rest, _ = walk(
        reception, "/api/v1/staff/patients", limit=1, cursor=first_page.json["next_cursor"]
    )

    assert len(ids(first_page) + rest) == 3
    assert len(set(ids(first_page) + rest)) == 3


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/api/v1/staff/bookings", {"start": "2026-13-01"}, "start"),
        ("/api/v1/staff/bookings", {"start": "2026-11-30", "end": "2026-11-24"}, "end"),
        ("/api/v1/staff/bookings", {"start": "2026-01-01", "end": "2027-06-01"}, "end"),
        ("/api/v1/staff/bookings", {"start": "99999-01-01"}, "start"),
        ("/api/v1/staff/bookings", {"limit": "0"}, "limit"),
        ("/api/v1/staff/bookings", {"limit": "201"}, "limit"),
        ("/api/v1/staff/bookings", {"limit": "many"}, "limit"),
        ("/api/v1/staff/bookings", {"status": "lost"}, "status"),
        ("/api/v1/staff/bookings", {"practitioner": "mei"}, "practitioner"),
        ("/api/v1/staff/bookings", {"practitioner": "99999"}, "practitioner"),
        ("/api/v1/staff/bookings", {"practitioner": "99999999999999999999"}, "practitioner"),
        ("/api/v1/staff/bookings", {"patient": "ann\x00"}, "patient"),
        ("/api/v1/staff/bookings", {"cursor": "!!!"}, "cursor"),
        ("/api/v1/staff/bookings", {"cursor": "é"}, "cursor"),
        ("/api/v1/staff/bookings", {"cursor": cursor_of("p", 1)}, "cursor"),
        ("/api/v1/staff/bookings", {"cursor": cursor_of("b", "soon", 1)}, "cursor"),
        ("/api/v1/staff/bookings", {"cursor": cursor_of("b", "2026-11-24T10:00", 1)}, "cursor"),
        (
            "/api/v1/staff/bookings",
            {"cursor": cursor_of("b", "2026-11-24T10:00:00+00:00", 2**40)},
            "cursor",
        ),
        ("/api/v1/staff/patients", {"q": "\x1b[2J"}, "q"),
        ("/api/v1/staff/patients", {"cursor": cursor_of("p", "1")}, "cursor"),
        ("/api/v1/staff/patients", {"cursor": "x" * 501}, "cursor"),
        ("/api/v1/staff/schedule", {"end": "2026-11-29"}, "start"),
        ("/api/v1/staff/schedule", {"start": "2026-11-23", "end": "2027-03-01"}, "end"),
        ("/api/v1/staff/schedule", {**WEEK, "practitioner": "0"}, "practitioner"),
        ("/api/v1/staff/busy", WEEK, "practitioner"),
        ("/api/v1/staff/busy", {"start": "2026-11-23"}, "end"),
    ],
)
def test_bad_parameters_get_422_naming_the_field(setup, reception, url, params, field):
    answer = reception.get(url, **params)

    assert answer.status_code == 422
    assert set(answer.json) == {"error", "fields"}
    assert field in answer.json["fields"], answer.json


def test_ids_that_cannot_exist_are_not_found(reception):
    for url in ("/api/v1/staff/bookings/99999999999999999999", "/api/v1/staff/patients/2147483648"):
        assert reception.get(url).status_code == 404


# --- Booking for a patient ----------------------------------------------------------------------


def booking_body(setup, start, **extra: Any) -> dict[str, Any]:
    return {
        "service": setup.follow_up.id,
        "practitioner": setup.mei.id,
        "start": start.isoformat(),
        "patient": {"name": "Eve Cole", "email": "eve@example.org", "phone": "01223 555555"},
        **extra,
    }


def test_reception_books_at_short_notice_and_the_trail_names_them(
    client, session, setup, reception
):
    soon = london("2026-11-23", "09:00")  # in an hour; patients need 12 hours' notice
    refused = client.post("/api/v1/bookings", json=booking_body(setup, soon))
    assert refused.status_code == 422, "too soon for the public API"

    answer = reception.post("/api/v1/staff/bookings", json=booking_body(setup, soon))

    assert answer.status_code == 201, answer.json
    assert answer.json["start"] == "2026-11-23T09:00:00+00:00"
    assert answer.json["practitioner"] == setup.mei.id
    assert answer.json["patient"]["email"] == "eve@example.org"
    assert answer.json["awaiting_approval"] is False
    booking = session.get(Booking, answer.json["id"])
    assert booking.start_at == soon
    [event] = session.scalars(
        select(AuditEvent).where(
            AuditEvent.booking_id == booking.id, AuditEvent.action == AuditAction.BOOKED
        )
    )
    assert event.user_id == reception.user_id
    assert event.actor.startswith("reception")
    assert "API token" in event.actor


def test_the_front_desk_books_a_first_visit_course_with_the_intake(session, setup, admin):
    body = booking_body(
        setup,
        london("2026-11-24", "10:00"),
        service=setup.initial.id,
        intake={"medications": "none", "conditions": ["diabetes"], "consent": True},
        repeat={"count": 3, "every_weeks": 2},
    )

    answer = admin.post("/api/v1/staff/bookings", json=body)

    assert answer.status_code == 201, answer.json
    assert answer.json["sessions"] == 3
    assert answer.json["every_weeks"] == 2
    starts = [item["start"] for item in answer.json["course"]]
    assert starts == [
        "2026-11-24T10:00:00+00:00",
        "2026-12-08T10:00:00+00:00",
        "2026-12-22T10:00:00+00:00",
    ]
    assert [item["course"]["session"] for item in answer.json["course"]] == [1, 2, 3]
    assert session.scalar(select(func.count()).select_from(Booking)) == 3


def test_a_first_visit_without_consent_is_refused_with_the_field(session, setup, reception):
    body = booking_body(setup, london("2026-11-24", "10:00"), service=setup.initial.id)

    answer = reception.post("/api/v1/staff/bookings", json=body)

    assert answer.status_code == 422
    assert "intake.consent" in answer.json["fields"]
    assert session.scalar(select(func.count()).select_from(Booking)) == 0


def test_a_time_that_is_taken_gets_409_with_alternatives(setup, book, reception):
    start = london("2026-11-24", "10:00")
    book(start, practitioner=setup.mei)

    answer = reception.post("/api/v1/staff/bookings", json=booking_body(setup, start))

    assert answer.status_code == 409
    assert answer.json["alternatives"]


def test_a_practitioner_cannot_book(session, setup, mei):
    answer = mei.post(
        "/api/v1/staff/bookings", json=booking_body(setup, london("2026-11-24", "10:00"))
    )

    assert answer.status_code == 403
    assert set(answer.json) == {"error", "fields"}
    assert session.scalar(select(func.count()).select_from(Booking)) == 0


@pytest.mark.parametrize(
    ("options", "status"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400),
        ({"data": "service=1"}, 415),
        ({"json": [1, 2]}, 422),
        ({"json": {"service": 1, "surprise": True}}, 422),
    ],
)
def test_a_body_that_is_not_a_booking_is_refused(setup, reception, options, status):
    assert reception.post("/api/v1/staff/bookings", **options).status_code == status


# --- One booking, and marking it ----------------------------------------------------------------


def test_health_answers_are_shown_to_the_treating_practitioner_and_admins_only(
    session, setup, token_for, admin, reception, mei, james
):
    booking = book_first_visit(
        session,
        setup,
        london("2026-11-24", "10:00"),
        setup.mei,
        medications="warfarin",
        conditions=["anticoagulants"],
    )
    url = f"/api/v1/staff/bookings/{booking.id}"

    for viewer in (admin, mei):
        answer = viewer.get(url)
        assert answer.status_code == 200
        assert answer.json["intake"]["medications"] == "warfarin"
        assert answer.json["intake"]["conditions"] == ["anticoagulants"]
        assert answer.json["intake"]["flags"] == ["anticoagulants"]
        assert OFFSET.match(answer.json["intake"]["consent_at"])
    shown_to_reception = reception.get(url)
    assert shown_to_reception.status_code == 200
    assert shown_to_reception.json["intake_on_file"] is True
    assert shown_to_reception.json["intake"] is None
    assert "warfarin" not in shown_to_reception.text
    assert james.get(url).status_code == 404, "another practitioner's booking"


def test_a_practitioner_marks_their_own_visit_on_the_day(session, setup, book, clock, mei, james):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    url = f"/api/v1/staff/bookings/{booking.id}/status"
    too_early = mei.post(url, json={"status": "arrived"})
    clock.now = london("2026-11-24", "10:05")

    answer = mei.post(url, json={"status": "arrived"})

    assert too_early.status_code == 409
    assert "status" in too_early.json["fields"]
    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "arrived"
    assert session.get(Booking, booking.id).status is BookingStatus.ARRIVED
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == AuditAction.STATUS_CHANGED)
    ).one()
    assert event.user_id == mei.user_id
    assert mei.post(url, json={"status": "arrived"}).status_code == 409, "already arrived"
    assert james.post(url, json={"status": "completed"}).status_code == 404
    assert session.get(Booking, booking.id).status is BookingStatus.ARRIVED


@pytest.mark.parametrize(
    "body", [{"status": "cancelled"}, {"status": "ARRIVED"}, {}, {"status": 1}]
)
def test_a_status_that_cannot_be_set_gets_422(setup, book, reception, body):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)

    answer = reception.post(f"/api/v1/staff/bookings/{booking.id}/status", json=body)

    assert answer.status_code == 422
    assert "status" in answer.json["fields"]


# --- Patients -----------------------------------------------------------------------------------


def test_patients_are_scoped_and_intake_answers_hidden_from_reception(
    session, setup, book, admin, reception, mei, james
):
    ann = book_first_visit(
        session, setup, london("2026-11-24", "10:00"), setup.mei, medications="warfarin"
    ).patient
    bob = book(london("2026-11-25", "10:00"), practitioner=setup.james, name="Bob Stone").patient
    url = f"/api/v1/staff/patients/{ann.id}"

    assert ids(reception.get("/api/v1/staff/patients")) == [ann.id, bob.id]
    assert ids(mei.get("/api/v1/staff/patients")) == [ann.id]
    assert ids(reception.get("/api/v1/staff/patients", q="stone")) == [bob.id]
    for viewer in (admin, mei):
        assert viewer.get(url).json["intake"]["medications"] == "warfarin"
    shown = reception.get(url)
    assert shown.status_code == 200
    assert shown.json["name"] == "Ann Lee"
    assert shown.json["intake_on_file"] is True
    assert shown.json["intake"] is None
    assert [b["start"] for b in shown.json["upcoming"]] == ["2026-11-24T10:00:00+00:00"]
    assert shown.json["counts"] == {"completed": 0, "no_shows": 0, "late_cancellations": 0}
    assert james.get(url).status_code == 404, "not his patient"
    listed = reception.get("/api/v1/staff/patients").json["items"][0]
    assert listed["next_visit"] == "2026-11-24T10:00:00+00:00"
    assert listed["erased"] is False


# --- The schedule and busy time -----------------------------------------------------------------


@pytest.fixture
def busy(session):
    def make(practitioner, start, end, summary):
        event = ExternalEvent(
            practitioner_id=practitioner.id, uid=f"{summary}@example.org", summary=summary
        )
        session.add(event)
        session.flush()
        session.add(
            BusyTime(
                event_id=event.id,
                practitioner_id=practitioner.id,
                occurrence=start,
                start_at=start,
                end_at=end,
                summary=summary,
            )
        )
        session.commit()

    return make


def test_the_schedule_gathers_bookings_and_time_away_per_practitioner(
    session, setup, book, busy, make_time_off, reception, mei
):
    visit = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    gone = book(london("2026-11-24", "14:00"), practitioner=setup.mei)
    cancel_booking(session, clinic=setup.clinic, booking=gone, now=NOW)
    session.commit()
    busy(setup.mei, london("2026-11-25", "10:00"), london("2026-11-25", "11:00"), "Dentist")
    busy(setup.mei, london("2026-12-09", "10:00"), london("2026-12-09", "11:00"), "Later")
    make_time_off(setup.james, london("2026-11-26", "00:00"), london("2026-11-27", "00:00"))

    answer = reception.get("/api/v1/staff/schedule", **WEEK)
    own = mei.get("/api/v1/staff/schedule", **WEEK)

    assert answer.status_code == 200
    assert answer.json["timezone"] == "Europe/London"
    assert (answer.json["start"], answer.json["end"]) == ("2026-11-23", "2026-11-29")
    columns = {column["id"]: column for column in answer.json["practitioners"]}
    assert set(columns) == {setup.mei.id, setup.james.id}
    assert [b["id"] for b in columns[setup.mei.id]["bookings"]] == [visit.id]
    assert columns[setup.mei.id]["busy"] == [
        {
            "kind": "busy",
            "start": "2026-11-25T10:00:00+00:00",
            "end": "2026-11-25T11:00:00+00:00",
            "label": "Dentist",
        }
    ]
    assert columns[setup.james.id]["bookings"] == []
    assert [b["kind"] for b in columns[setup.james.id]["busy"]] == ["off"]
    assert [column["id"] for column in own.json["practitioners"]] == [setup.mei.id]
    other = mei.get("/api/v1/staff/schedule", **WEEK, practitioner=setup.james.id)
    assert other.status_code == 403


def test_busy_time_for_a_practitioner(setup, busy, make_time_off, reception, mei):
    busy(setup.mei, london("2026-11-25", "10:00"), london("2026-11-25", "11:00"), "Dentist")
    make_time_off(setup.mei, london("2026-11-27", "13:00"), london("2026-11-27", "18:00"))
    busy(setup.james, london("2026-11-25", "10:00"), london("2026-11-25", "11:00"), "Gym")

    asked = reception.get("/api/v1/staff/busy", **WEEK, practitioner=setup.mei.id)
    own = mei.get("/api/v1/staff/busy", **WEEK)

    assert asked.status_code == 200
    assert asked.json["practitioner"] == setup.mei.id
    assert [(b["kind"], b["label"]) for b in asked.json["busy"]] == [
        ("busy", "Dentist"),
        ("off", "Time off"),
    ]
    assert own.json == asked.json
    assert all(OFFSET.match(b["start"]) and OFFSET.match(b["end"]) for b in own.json["busy"])
    assert mei.get("/api/v1/staff/busy", **WEEK, practitioner=setup.james.id).status_code == 403


def test_times_in_summer_carry_the_summer_offset(session, setup, reception):
    summer = london("2027-06-15", "10:00")
    answer = reception.post("/api/v1/staff/bookings", json=booking_body(setup, summer))

    assert answer.status_code == 201, answer.json
    assert answer.json["start"] == "2027-06-15T10:00:00+01:00"
    listed = reception.get("/api/v1/staff/bookings", start="2027-06-15", end="2027-06-15")
    assert listed.json["items"][0]["start"] == "2027-06-15T10:00:00+01:00"
    assert timedelta(0) < summer - NOW
