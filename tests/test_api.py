"""The public JSON API, called through the test client against the migrated database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from scheduler.booking.models import Booking, BookingStatus
from tests.conftest import london

TUESDAY = "2026-11-24"  # the day after the fixed clock's Monday, clear of the 12 hours' notice
CONTRACT_BOOKING_KEYS = {
    "token",
    "status",
    "start",
    "end",
    "service",
    "practitioner",
    "manage_url",
    "ics_url",
}


class Api:
    """The test client, with the test's own session kept out of the requests' way.

    Before and after each call the test's session ends its read transaction, so it never holds
    an old snapshot (SQLite) while a request writes, and reads afterwards what was committed.
    """

    def __init__(self, client: FlaskClient, session: Session) -> None:
        self._client = client
        self._session = session

    def get(self, url: str, **params: Any) -> TestResponse:
        return self._call(self._client.get, url, query_string=params)

    def post(self, url: str, json: Any = None, **options: Any) -> TestResponse:
        if json is not None:
            options["json"] = json
        return self._call(self._client.post, url, **options)

    def _call(self, method: Any, url: str, **options: Any) -> TestResponse:
        self._session.rollback()
        response = method(url, **options)
        self._session.rollback()
        return response


@pytest.fixture
def api(client: FlaskClient, session: Session) -> Api:
    """Call the API as a script would."""
    return Api(client, session)


def iso(day: str, hhmm: str) -> str:
    """The ISO 8601 form, with offset, the API uses for a London wall time."""
    return london(day, hhmm).isoformat()


def booking_body(setup: Any, start: str | None = None, **changes: Any) -> dict[str, Any]:
    """A valid ``POST /api/v1/bookings`` body: a follow-up with Mei on Tuesday at 10:00."""
    body: dict[str, Any] = {
        "service": setup.follow_up.id,
        "practitioner": setup.mei.id,
        "start": start or iso(TUESDAY, "10:00"),
        "patient": {"name": "Ann Example", "email": "Ann@Example.org", "phone": "+44 7700 900123"},
        "notes": "Lower back pain",
    }
    body.update(changes)
    return body


def booking_count(session: Session) -> int:
    """How many rows the bookings table holds."""
    return session.scalar(select(func.count()).select_from(Booking))


def stored(session: Session, token: str) -> Booking:
    """The booking row with this token, as the database holds it now."""
    return session.scalars(select(Booking).where(Booking.manage_token == token)).one()


def error_of(response: TestResponse, status: int) -> dict[str, Any]:
    """Check ``response`` is a JSON error with ``status`` in the contract's shape; return it."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert isinstance(body["error"], str)
    assert body["error"]
    assert isinstance(body["fields"], dict)
    return body


def starts_of(slots: list[dict[str, Any]]) -> list[str]:
    return [slot["start"] for slot in slots]


# Services and practitioners


def test_services_list_each_treatment_with_the_contract_keys(api, setup):
    response = api.get("/api/v1/services")

    assert response.status_code == 200
    by_name = {service["name"]: service for service in response.get_json()}
    assert set(by_name) == {"Initial consultation", "Follow-up treatment"}
    initial = by_name["Initial consultation"]
    assert {"id", "name", "duration_minutes", "first_visit"} <= set(initial)
    assert (initial["id"], initial["duration_minutes"], initial["first_visit"]) == (
        setup.initial.id,
        90,
        True,
    )
    assert by_name["Follow-up treatment"]["first_visit"] is False


def test_services_leave_out_treatments_no_longer_offered(api, setup, make_treatment):
    make_treatment(name="Cupping", active=False)

    names = [service["name"] for service in api.get("/api/v1/services").get_json()]

    assert "Cupping" not in names


def test_practitioners_list_credentials_and_the_services_they_give(api, setup):
    response = api.get("/api/v1/practitioners")

    assert response.status_code == 200
    by_id = {p["id"]: p for p in response.get_json()}
    assert set(by_id) == {setup.mei.id, setup.james.id}
    mei = by_id[setup.mei.id]
    assert {"id", "name", "credentials", "service_ids"} <= set(mei)
    assert mei["name"] == "Mei Lin"
    assert mei["credentials"] == "BSc (Hons) Acupuncture"
    assert mei["service_ids"] == sorted([setup.initial.id, setup.follow_up.id])


# Slots


def test_slots_answer_with_the_clinic_timezone_and_a_list_of_slots(api, setup):
    response = api.get("/api/v1/slots", service=setup.follow_up.id, start=TUESDAY, end=TUESDAY)

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"timezone", "slots"}
    assert body["timezone"] == "Europe/London"
    assert body["slots"]
    assert all(set(slot) == {"start", "end", "practitioner"} for slot in body["slots"])


def test_slot_times_are_iso_8601_with_the_clinics_offset(api, setup):
    slots = api.get(
        "/api/v1/slots", service=setup.follow_up.id, start=TUESDAY, end=TUESDAY
    ).get_json()["slots"]

    assert slots[0]["start"] == "2026-11-24T09:00:00+00:00"
    assert slots[0]["end"] == "2026-11-24T10:00:00+00:00"


def test_slot_times_carry_the_summer_offset(api, setup, clock):
    clock.now = london("2027-06-01", "08:00")

    slots = api.get(
        "/api/v1/slots", service=setup.follow_up.id, start="2027-06-08", end="2027-06-08"
    ).get_json()["slots"]

    assert slots[0]["start"] == "2027-06-08T09:00:00+01:00"
    assert datetime.fromisoformat(slots[0]["start"]).utcoffset() == timedelta(hours=1)


def test_slots_without_a_practitioner_give_one_slot_per_start(api, setup):
    slots = api.get(
        "/api/v1/slots", service=setup.follow_up.id, start=TUESDAY, end=TUESDAY
    ).get_json()["slots"]

    starts = starts_of(slots)
    assert len(starts) == len(set(starts)) == 24  # 09:00-11:45 and 14:00-16:45
    assert starts[-1] == "2026-11-24T16:45:00+00:00"


def test_slots_cover_both_dates_inclusive(api, setup):
    slots = api.get(
        "/api/v1/slots", service=setup.follow_up.id, start=TUESDAY, end="2026-11-25"
    ).get_json()["slots"]

    days = {slot["start"][:10] for slot in slots}
    assert days == {"2026-11-24", "2026-11-25"}
    assert slots[-1]["start"] == "2026-11-25T16:45:00+00:00"


def test_slots_filtered_by_practitioner_are_all_theirs(api, setup):
    slots = api.get(
        "/api/v1/slots",
        service=setup.follow_up.id,
        start=TUESDAY,
        end=TUESDAY,
        practitioner=setup.james.id,
    ).get_json()["slots"]

    assert len(slots) == 24
    assert {slot["practitioner"] for slot in slots} == {setup.james.id}


def test_slots_leave_out_a_practitioners_booked_time(api, setup, book):
    book(london(TUESDAY, "10:00"), practitioner=setup.mei)

    slots = api.get(
        "/api/v1/slots",
        service=setup.follow_up.id,
        start=TUESDAY,
        end=TUESDAY,
        practitioner=setup.mei.id,
    ).get_json()["slots"]

    starts = starts_of(slots)
    assert iso(TUESDAY, "09:00") not in starts  # its buffer would run into 10:00
    assert iso(TUESDAY, "10:00") not in starts
    assert iso(TUESDAY, "11:15") in starts


def test_slots_for_anyone_offer_whoever_is_free(api, setup, book):
    book(london(TUESDAY, "10:00"), practitioner=setup.mei)

    slots = api.get(
        "/api/v1/slots", service=setup.follow_up.id, start=TUESDAY, end=TUESDAY
    ).get_json()["slots"]

    at_ten = [slot for slot in slots if slot["start"] == iso(TUESDAY, "10:00")]
    assert [slot["practitioner"] for slot in at_ten] == [setup.james.id]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"start": TUESDAY, "end": TUESDAY}, "service", id="no service"),
        pytest.param({"service": "1", "end": TUESDAY}, "start", id="no start"),
        pytest.param({"service": "1", "start": TUESDAY}, "end", id="no end"),
        pytest.param({"service": "abc", "start": TUESDAY, "end": TUESDAY}, "service", id="word"),
        pytest.param({"service": "0", "start": TUESDAY, "end": TUESDAY}, "service", id="zero"),
        pytest.param({"service": "1", "start": "2026-13-01", "end": TUESDAY}, "start", id="month"),
        pytest.param({"service": "1", "start": TUESDAY, "end": "tomorrow"}, "end", id="word end"),
        pytest.param(
            {"service": "1", "start": TUESDAY, "end": TUESDAY, "practitioner": "mei"},
            "practitioner",
            id="practitioner name",
        ),
    ],
)
def test_slots_with_missing_or_invalid_parameters_answer_422(api, setup, params, field):
    body = error_of(api.get("/api/v1/slots", **params), 422)

    assert field in body["fields"]


def test_slots_ignore_query_parameters_they_do_not_know(api, setup):
    response = api.get(
        "/api/v1/slots", service=setup.follow_up.id, start="2026-11-24", end="2026-11-24", _="17"
    )

    assert response.status_code == 200
    assert response.json["slots"]


def test_slots_with_the_end_before_the_start_answer_422(api, setup):
    response = api.get("/api/v1/slots", service=setup.follow_up.id, start="2026-11-25", end=TUESDAY)

    assert "end" in error_of(response, 422)["fields"]


def test_slots_for_more_than_62_days_answer_422(api, setup):
    response = api.get("/api/v1/slots", service=setup.follow_up.id, start=TUESDAY, end="2027-01-26")

    assert "end" in error_of(response, 422)["fields"]


def test_slots_for_62_days_are_answered(api, setup):
    response = api.get("/api/v1/slots", service=setup.follow_up.id, start=TUESDAY, end="2027-01-25")

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param("9999-12-30", "9999-12-31", id="last days"),
        pytest.param("0001-01-01", "0001-01-02", id="first days"),
    ],
)
def test_slots_at_the_ends_of_the_calendar_answer_without_a_server_error(api, setup, start, end):
    """Valid dates that nobody can book: no slots, or a 422 saying they are out of range."""
    response = api.get("/api/v1/slots", service=setup.follow_up.id, start=start, end=end)

    if response.status_code == 200:
        assert response.get_json()["slots"] == []
    else:
        error_of(response, 422)


def test_slots_for_an_unknown_service_answer_422(api, setup):
    response = api.get("/api/v1/slots", service=9999, start=TUESDAY, end=TUESDAY)

    assert "service" in error_of(response, 422)["fields"]


def test_slots_for_an_unknown_practitioner_answer_422(api, setup):
    response = api.get(
        "/api/v1/slots",
        service=setup.follow_up.id,
        start=TUESDAY,
        end=TUESDAY,
        practitioner=9999,
    )

    assert "practitioner" in error_of(response, 422)["fields"]


# Booking


def test_booking_answers_201_with_the_contract_keys(api, setup):
    response = api.post("/api/v1/bookings", booking_body(setup))

    assert response.status_code == 201
    body = response.get_json()
    assert set(body) >= CONTRACT_BOOKING_KEYS
    assert body["status"] == "confirmed"
    assert body["start"] == "2026-11-24T10:00:00+00:00"
    assert body["end"] == "2026-11-24T11:00:00+00:00"
    assert body["service"] == setup.follow_up.id
    assert body["practitioner"] == setup.mei.id


def test_booking_links_are_absolute_under_the_base_url(api, setup):
    body = api.post("/api/v1/bookings", booking_body(setup)).get_json()

    assert body["manage_url"] == f"https://clinic.test/b/{body['token']}"
    assert body["ics_url"] == f"https://clinic.test/b/{body['token']}.ics"


def test_booking_is_stored_for_the_patient(api, session, setup):
    token = api.post("/api/v1/bookings", booking_body(setup)).get_json()["token"]

    booking = stored(session, token)
    assert booking.status == BookingStatus.CONFIRMED
    assert booking.practitioner_id == setup.mei.id
    assert booking.start_at == london(TUESDAY, "10:00")
    assert booking.blocked_until == london(TUESDAY, "11:15")
    assert booking.patient.email == "ann@example.org"
    assert booking.notes == "Lower back pain"


def test_booking_with_practitioner_null_picks_someone_free(api, setup, book):
    book(london(TUESDAY, "10:00"), practitioner=setup.mei)

    response = api.post("/api/v1/bookings", booking_body(setup, practitioner=None))

    assert response.status_code == 201
    assert response.get_json()["practitioner"] == setup.james.id


def test_booking_a_taken_time_answers_409_with_alternatives(api, session, setup, book):
    book(london(TUESDAY, "10:00"), practitioner=setup.mei)
    before = booking_count(session)

    body = error_of(api.post("/api/v1/bookings", booking_body(setup)), 409)

    assert body["alternatives"]
    assert all(set(slot) == {"start", "end", "practitioner"} for slot in body["alternatives"])
    assert iso(TUESDAY, "10:00") not in starts_of(body["alternatives"])
    assert {slot["practitioner"] for slot in body["alternatives"]} == {setup.mei.id}
    assert booking_count(session) == before


def test_booking_off_the_slot_step_answers_409_with_the_nearest_times(api, session, setup):
    response = api.post("/api/v1/bookings", booking_body(setup, start=iso(TUESDAY, "10:07")))

    body = error_of(response, 409)
    assert starts_of(body["alternatives"]) == [
        iso(TUESDAY, "09:30"),
        iso(TUESDAY, "09:45"),
        iso(TUESDAY, "10:00"),
        iso(TUESDAY, "10:15"),
        iso(TUESDAY, "10:30"),
    ]
    assert booking_count(session) == 0


def test_booking_a_practitioners_first_free_time_after_a_booking_succeeds(api, setup, book):
    """11:15 is when Mei's 10:00 session and its 15-minute buffer end."""
    book(london(TUESDAY, "10:00"), practitioner=setup.mei)

    response = api.post("/api/v1/bookings", booking_body(setup, start=iso(TUESDAY, "11:15")))

    assert response.status_code == 201


LONG_NAME = "A" * 10_000


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"start": "2026-11-20T10:00:00+00:00"}, "start", id="past"),
        pytest.param({"start": "2026-11-23T14:00:00+00:00"}, "start", id="inside notice"),
        pytest.param({"start": "2027-01-23T10:00:00+00:00"}, "start", id="beyond horizon"),
        pytest.param({"start": "2026-11-24T10:00:00"}, "start", id="naive datetime"),
        pytest.param({"start": "next tuesday"}, "start", id="not a datetime"),
        pytest.param({"start": "0001-01-01T00:00:00+01:00"}, "start", id="year 1"),
        pytest.param(
            {"patient": {"name": "Ann", "email": "ann@example"}}, "patient.email", id="email"
        ),
        pytest.param(
            {"patient": {"name": LONG_NAME, "email": "ann@example.org"}},
            "patient.name",
            id="10000-char name",
        ),
        pytest.param(
            {"patient": {"name": "", "email": "ann@example.org"}}, "patient.name", id="no name"
        ),
        pytest.param({"patient": {"name": "Ann"}}, "patient.email", id="no email"),
        pytest.param({"service": 9999}, "service", id="unknown service"),
        pytest.param({"service": "1"}, "service", id="service as string"),
        pytest.param({"service": True}, "service", id="service as bool"),
        pytest.param({"practitioner": 9999}, "practitioner", id="unknown practitioner"),
        pytest.param({"coupon": "FREE"}, "coupon", id="unknown field"),
    ],
)
def test_invalid_booking_answers_422_and_writes_nothing(api, session, setup, book, changes, field):
    book(london(TUESDAY, "14:00"), practitioner=setup.james)
    before = booking_count(session)

    response = api.post("/api/v1/bookings", booking_body(setup, **changes))

    assert field in error_of(response, 422)["fields"]
    assert booking_count(session) == before


def test_booking_in_the_past_says_the_time_has_passed(api, setup):
    response = api.post("/api/v1/bookings", booking_body(setup, start=iso("2026-11-20", "10:00")))

    assert "passed" in error_of(response, 422)["error"]


def test_booking_sent_as_a_form_answers_415(api, session, setup):
    form = {"service": str(setup.follow_up.id), "start": iso(TUESDAY, "10:00")}

    response = api.post("/api/v1/bookings", data=form)

    error_of(response, 415)
    assert booking_count(session) == 0


def test_booking_with_malformed_json_answers_400(api, session, setup):
    response = api.post("/api/v1/bookings", data='{"service": 1,', content_type="application/json")

    error_of(response, 400)
    assert booking_count(session) == 0


def test_booking_with_deeply_nested_malformed_json_answers_400(api, session, setup):
    response = api.post("/api/v1/bookings", data="[" * 100_000, content_type="application/json")

    error_of(response, 400)
    assert booking_count(session) == 0


def test_booking_body_that_is_not_an_object_answers_422(api, session, setup):
    response = api.post("/api/v1/bookings", [booking_body(setup)])

    error_of(response, 422)
    assert booking_count(session) == 0


def test_booking_body_of_json_null_is_valid_json_but_not_an_object(api, session, setup):
    response = api.post("/api/v1/bookings", data="null", content_type="application/json")

    assert error_of(response, 422)["error"] == "The body must be a JSON object."
    assert booking_count(session) == 0


# One booking, by its token


def test_booking_is_shown_to_the_holder_of_its_token(api, setup, book):
    booking = book(london(TUESDAY, "10:00"), practitioner=setup.mei)
    token = booking.manage_token

    response = api.get(f"/api/v1/bookings/{token}")

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) >= CONTRACT_BOOKING_KEYS
    assert (body["token"], body["status"], body["start"]) == (
        token,
        "confirmed",
        "2026-11-24T10:00:00+00:00",
    )


def test_unknown_token_answers_a_json_404(api, setup):
    error_of(api.get("/api/v1/bookings/no-such-token"), 404)


# Cancelling


def test_cancel_answers_200_with_the_cancelled_booking(api, session, setup, book):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token

    response = api.post(f"/api/v1/bookings/{token}/cancel")

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "cancelled"
    assert body["late_cancellation"] is False
    assert stored(session, token).status == BookingStatus.CANCELLED


def test_cancel_records_the_reason_given(api, session, setup, book):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token

    response = api.post(f"/api/v1/bookings/{token}/cancel", {"reason": "Feeling better"})

    assert response.status_code == 200
    assert stored(session, token).cancellation_reason == "Feeling better"


def test_cancel_within_24_hours_is_recorded_as_late(api, session, setup, book, clock):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token
    clock.now = london(TUESDAY, "10:00") - timedelta(hours=23)

    response = api.post(f"/api/v1/bookings/{token}/cancel")

    assert response.get_json()["late_cancellation"] is True
    assert stored(session, token).late_cancellation is True


def test_cancel_exactly_24_hours_ahead_is_not_late(api, setup, book, clock):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token
    clock.now = london(TUESDAY, "10:00") - timedelta(hours=24)

    response = api.post(f"/api/v1/bookings/{token}/cancel")

    assert response.get_json()["late_cancellation"] is False


def test_cancelling_twice_answers_409(api, setup, book):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token
    api.post(f"/api/v1/bookings/{token}/cancel")

    error_of(api.post(f"/api/v1/bookings/{token}/cancel"), 409)


def test_cancelled_time_can_be_booked_again(api, setup, book):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token
    api.post(f"/api/v1/bookings/{token}/cancel")

    response = api.post("/api/v1/bookings", booking_body(setup))

    assert response.status_code == 201


def test_cancelling_an_unknown_token_answers_404(api, setup):
    error_of(api.post("/api/v1/bookings/no-such-token/cancel"), 404)


# Rescheduling


def test_reschedule_moves_the_booking_and_keeps_its_token(api, session, setup, book):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token

    response = api.post(
        f"/api/v1/bookings/{token}/reschedule", {"start": iso("2026-11-25", "14:00")}
    )

    assert response.status_code == 200
    body = response.get_json()
    assert body["token"] == token
    assert body["start"] == "2026-11-25T14:00:00+00:00"
    assert body["end"] == "2026-11-25T15:00:00+00:00"
    assert stored(session, token).start_at == london("2026-11-25", "14:00")


def test_reschedule_bumps_the_calendar_sequence(api, session, setup, book):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token
    before = stored(session, token).sequence

    api.post(f"/api/v1/bookings/{token}/reschedule", {"start": iso(TUESDAY, "14:00")})

    assert stored(session, token).sequence == before + 1


def test_reschedule_may_overlap_the_bookings_own_old_time(api, setup, book):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token

    response = api.post(f"/api/v1/bookings/{token}/reschedule", {"start": iso(TUESDAY, "10:30")})

    assert response.status_code == 200


def test_reschedule_to_a_taken_time_answers_409_and_leaves_the_booking(api, session, setup, book):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token
    book(london(TUESDAY, "14:00"), practitioner=setup.mei)

    response = api.post(f"/api/v1/bookings/{token}/reschedule", {"start": iso(TUESDAY, "14:00")})

    assert error_of(response, 409)["alternatives"]
    booking = stored(session, token)
    assert (booking.start_at, booking.sequence) == (london(TUESDAY, "10:00"), 0)


def test_reschedule_into_the_past_answers_422(api, session, setup, book):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token

    response = api.post(
        f"/api/v1/bookings/{token}/reschedule", {"start": "2026-11-20T10:00:00+00:00"}
    )

    assert "start" in error_of(response, 422)["fields"]
    assert stored(session, token).start_at == london(TUESDAY, "10:00")


def test_reschedule_without_an_offset_answers_422(api, setup, book):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token

    response = api.post(f"/api/v1/bookings/{token}/reschedule", {"start": "2026-11-24T14:00"})

    assert "start" in error_of(response, 422)["fields"]


def test_reschedule_of_a_cancelled_booking_answers_409(api, setup, book):
    token = book(london(TUESDAY, "10:00"), practitioner=setup.mei).manage_token
    api.post(f"/api/v1/bookings/{token}/cancel")

    response = api.post(f"/api/v1/bookings/{token}/reschedule", {"start": iso(TUESDAY, "14:00")})

    error_of(response, 409)


# Anything else under /api/v1


def test_unknown_api_path_answers_a_json_404(api, setup):
    assert error_of(api.get("/api/v1/whatever"), 404)["fields"] == {}


def test_wrong_method_on_an_api_path_answers_a_json_405(api, setup):
    error_of(api.get("/api/v1/bookings"), 405)
