"""The OpenAPI document: valid OpenAPI 3.1, naming every API route, matching what the API
answers in real flows and under schemathesis, and readable as a page."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import ValidationError
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from scheduler.api.openapi import build_document, documented
from scheduler.api.responses import BookingOut, ErrorOut, ServiceOut, WaitlistEntryOut, shaped
from scheduler.api.schemas import SlotQuery
from scheduler.waitlist.models import EntryStatus
from tests.conftest import london

TUESDAY = "2026-11-24"
OPENAPI = "/api/v1/openapi.json"


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    """The document, as the API serves it."""
    response = client.get(OPENAPI)
    assert response.status_code == 200
    return response.get_json()


def schema_validator(spec: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for ``schema``, its ``$ref`` resolved within the document."""
    return Draft202012Validator(
        {**schema, "components": spec["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def operation_for(spec: dict[str, Any], method: str, url: str) -> tuple[str, dict[str, Any]]:
    """The documented path and operation a request went to."""
    path = url.split("?")[0]
    for template, methods in spec["paths"].items():
        parts = re.split(r"(\{[^}]+\})", template)
        pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        if re.fullmatch(pattern, path) and method in methods:
            return template, methods[method]
    raise AssertionError(f"{method.upper()} {path} is not in the document")


def check_against_document(
    spec: dict[str, Any], method: str, url: str, response: TestResponse
) -> None:
    """Assert the status is documented for the call and the body matches its schema."""
    template, operation = operation_for(spec, method, url)
    documented = operation["responses"]
    status = str(response.status_code)
    assert status in documented, f"{method.upper()} {template} answered {status}, undocumented"
    assert response.mimetype == "application/json"
    schema = documented[status]["content"]["application/json"]["schema"]
    errors = [e.message for e in schema_validator(spec, schema).iter_errors(response.get_json())]
    assert not errors, f"{method.upper()} {template} {status}: {errors}"


class DocumentedApi:
    """The test client; every answer is checked against the document before the test sees it.

    The test's own session ends its read transaction around each call, so it reads afterwards
    what the request committed.
    """

    def __init__(self, client: FlaskClient, session: Session, spec: dict[str, Any]) -> None:
        self._client = client
        self._session = session
        self._spec = spec

    def get(self, url: str) -> TestResponse:
        return self._call("get", url)

    def post(self, url: str, json: Any = None, **options: Any) -> TestResponse:
        if json is not None:
            options["json"] = json
        return self._call("post", url, **options)

    def _call(self, method: str, url: str, **options: Any) -> TestResponse:
        self._session.rollback()
        response = getattr(self._client, method)(url, **options)
        self._session.rollback()
        check_against_document(self._spec, method, url, response)
        return response


@pytest.fixture
def api(client: FlaskClient, session: Session, spec: dict[str, Any]) -> DocumentedApi:
    """Call the API; each answer must be one the document describes."""
    return DocumentedApi(client, session, spec)


def iso(day: str, hhmm: str) -> str:
    return london(day, hhmm).isoformat()


def booking_body(setup: Any, start: str | None = None, **changes: Any) -> dict[str, Any]:
    """A follow-up with Mei on Tuesday at 10:00."""
    body: dict[str, Any] = {
        "service": setup.follow_up.id,
        "practitioner": setup.mei.id,
        "start": start or iso(TUESDAY, "10:00"),
        "patient": {"name": "Ann Example", "email": "ann@example.org", "phone": "+44 7700 900123"},
    }
    body.update(changes)
    return body


# The document itself


def test_the_document_is_valid_openapi_3_1(spec):
    OpenAPIV31SpecValidator(spec).validate()
    assert spec["openapi"].startswith("3.1")


def api_routes(app: Flask) -> set[tuple[str, str]]:
    """Every (path, method) the app serves under /api/v1, in OpenAPI's path form."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                routes.add((path, method.lower()))
    return routes


def test_every_api_route_is_in_the_document_and_nothing_else(app, spec):
    documented = {(path, method) for path, methods in spec["paths"].items() for method in methods}

    assert api_routes(app) == documented


def test_the_api_blueprints_routes_are_all_under_api_v1(app):
    api_rules = [rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")]

    assert api_rules
    assert all(rule.startswith("/api/v1/") for rule in api_rules)


def test_every_operation_has_a_unique_id_a_summary_and_a_503(spec):
    ids = [op["operationId"] for methods in spec["paths"].values() for op in methods.values()]

    assert len(ids) == len(set(ids))
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            assert operation["summary"], (method, path)
            if path != OPENAPI:
                assert "503" in operation["responses"], (method, path)


def test_calls_with_a_json_body_document_the_errors_parsing_it_gives(spec):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if "requestBody" in operation:
                assert {"400", "413", "415", "422"} <= set(operation["responses"]), (method, path)


def test_path_parameters_are_documented_as_the_url_rule_takes_them(spec):
    operation = spec["paths"]["/api/v1/bookings/{token}"]["get"]

    assert operation["parameters"] == [
        {
            "name": "token",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
            "description": "The booking's token (`token` in the booking).",
        }
    ]


def test_query_parameters_come_from_the_query_model(spec):
    parameters = {p["name"]: p for p in spec["paths"]["/api/v1/slots"]["get"]["parameters"]}

    assert set(parameters) == {"service", "start", "end", "practitioner"}
    assert parameters["start"]["required"] is True
    assert parameters["start"]["schema"]["format"] == "date"
    # Optional in the query string means left out: there is no null to send.
    assert parameters["practitioner"]["required"] is False
    assert parameters["practitioner"]["schema"]["type"] == "integer"


def test_every_example_in_the_document_matches_its_schema(spec):
    checked = 0
    for methods in spec["paths"].values():
        for operation in methods.values():
            media = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for example in (media or {}).get("examples", {}).values():
                schema_validator(spec, media["schema"]).validate(example["value"])
                checked += 1
    for schema in spec["components"]["schemas"].values():
        for example in schema.get("examples", []):
            schema_validator(spec, schema).validate(example)
            checked += 1
    assert checked >= 5


def test_staff_calls_can_ask_for_a_bearer_token(spec):
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]

    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}


def test_a_documented_token_call_asks_for_the_bearer_token_and_answers_401():
    app = Flask(__name__)
    app.config["BASE_URL"] = "https://clinic.test"

    @app.get("/api/v1/staff/things/<int:thing_id>")
    @documented(
        tag="Things",
        query=SlotQuery,
        bearer=True,
        params={"thing_id": "The thing's id."},
        responses={200: ServiceOut, 403: (ErrorOut, "Not yours.")},
    )
    def thing(thing_id: int) -> str:
        """Show a thing."""
        return ""

    spec = build_document(app)
    operation = spec["paths"]["/api/v1/staff/things/{thing_id}"]["get"]

    OpenAPIV31SpecValidator(spec).validate()
    assert operation["security"] == [{"bearerAuth": []}]
    assert operation["summary"] == "Show a thing."
    assert set(operation["responses"]) == {"200", "401", "403", "422", "503"}
    assert operation["responses"]["403"]["description"] == "Not yours."
    assert operation["parameters"][0] == {
        "name": "thing_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
        "description": "The thing's id.",
    }
    assert spec["tags"] == [{"name": "Things"}]


def test_the_waitlist_status_covers_every_status_an_entry_has():
    listed = set(WaitlistEntryOut.model_fields["status"].annotation.__args__)

    assert listed == {status.value for status in EntryStatus} | {"expired"}


def test_an_answer_with_a_key_its_model_does_not_describe_is_refused(api, setup):
    token = api.post("/api/v1/bookings", booking_body(setup)).get_json()["token"]
    booking = api.get(f"/api/v1/bookings/{token}").get_json()

    assert shaped(BookingOut, booking) == booking
    with pytest.raises(ValidationError):
        shaped(BookingOut, {**booking, "secret": "x"})


def test_the_document_describes_the_clinics_server(spec):
    assert spec["servers"] == [{"url": "https://clinic.test", "description": "This clinic"}]


# Real flows, every answer checked against the document


def test_the_clinic_and_its_free_times_match_the_document(api, setup):
    services = api.get("/api/v1/services").get_json()
    practitioners = api.get("/api/v1/practitioners").get_json()
    slots = api.get(f"/api/v1/slots?service={setup.follow_up.id}&start={TUESDAY}&end={TUESDAY}")

    assert {s["id"] for s in services} == {setup.initial.id, setup.follow_up.id}
    assert len(practitioners) == 2
    assert slots.get_json()["slots"]


def test_slot_errors_match_the_document(api, setup):
    assert api.get("/api/v1/slots?service=x&start=2026-11-24&end=2026-11-24").status_code == 422
    assert api.get("/api/v1/slots?service=999&start=2026-11-24&end=2026-11-24").status_code == 422
    assert api.get("/api/v1/slots?service=1&start=2026-11-24&end=2027-11-24").status_code == 422


def test_a_booking_its_cancellation_and_a_second_cancellation_match_the_document(api, setup):
    created = api.post("/api/v1/bookings", booking_body(setup))
    token = created.get_json()["token"]
    shown = api.get(f"/api/v1/bookings/{token}")
    cancelled = api.post(f"/api/v1/bookings/{token}/cancel", {"reason": "Better"})
    again = api.post(f"/api/v1/bookings/{token}/cancel")

    assert created.status_code == 201
    assert shown.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"
    assert again.status_code == 409


def test_a_reschedule_and_its_refusals_match_the_document(api, setup, book):
    book(london(TUESDAY, "14:00"), practitioner=setup.mei)
    token = api.post("/api/v1/bookings", booking_body(setup)).get_json()["token"]

    moved = api.post(f"/api/v1/bookings/{token}/reschedule", {"start": iso(TUESDAY, "11:00")})
    taken = api.post(f"/api/v1/bookings/{token}/reschedule", {"start": iso(TUESDAY, "14:00")})
    past = api.post(f"/api/v1/bookings/{token}/reschedule", {"start": iso("2026-11-20", "10:00")})

    assert moved.status_code == 200
    assert taken.status_code == 409
    assert taken.get_json()["alternatives"]
    assert past.status_code == 422


def test_a_taken_time_matches_the_document_with_its_alternatives(api, setup, book):
    book(london(TUESDAY, "10:00"), practitioner=setup.mei)

    response = api.post("/api/v1/bookings", booking_body(setup))

    assert response.status_code == 409
    assert response.get_json()["alternatives"]


def test_a_course_and_a_course_that_clashes_match_the_document(api, setup, book):
    repeat = {"count": 3, "every_weeks": 1}
    booked = api.post("/api/v1/bookings", booking_body(setup, repeat=repeat))
    book(london("2026-12-15", "11:00"), practitioner=setup.mei)
    clashing = api.post(
        "/api/v1/bookings", booking_body(setup, start=iso("2026-12-01", "11:00"), repeat=repeat)
    )

    assert booked.status_code == 201
    assert len(booked.get_json()["course"]) == 3
    assert booked.get_json()["course"][0]["course"] == {"session": 1, "of": 3, "attended": 0}
    assert clashing.status_code == 409
    assert clashing.get_json()["conflicts"][0]["alternatives"]


def test_a_first_visit_with_and_without_consent_matches_the_document(api, setup):
    body = booking_body(setup, service=setup.initial.id)

    refused = api.post("/api/v1/bookings", body)
    booked = api.post("/api/v1/bookings", {**body, "intake": {"consent": True}})

    assert refused.status_code == 422
    assert booked.status_code == 201


@pytest.mark.parametrize(
    ("options", "status"),
    [
        ({"data": "service=1", "content_type": "application/x-www-form-urlencoded"}, 415),
        ({"data": "{not json", "content_type": "application/json"}, 400),
        ({"json": [1, 2]}, 422),
        ({"json": {"service": 1, "surprise": True}}, 422),
        ({"data": "x" * (1024 * 1024 + 1), "content_type": "application/json"}, 413),
    ],
)
def test_bodies_the_api_refuses_match_the_document(api, setup, options, status):
    assert api.post("/api/v1/bookings", **options).status_code == status


def test_unknown_tokens_match_the_document(api, setup):
    assert api.get("/api/v1/bookings/nope").status_code == 404
    assert api.post("/api/v1/bookings/nope/cancel").status_code == 404
    assert api.post("/api/v1/bookings/nope/reschedule", {"start": iso(TUESDAY, "11:00")})
    assert api.get("/api/v1/waitlist/nope").status_code == 404
    assert api.post("/api/v1/waitlist/nope/leave").status_code == 404


def test_a_clinic_not_yet_set_up_matches_the_document(api):
    assert api.get(f"/api/v1/slots?service=1&start={TUESDAY}&end={TUESDAY}").status_code == 503
    assert api.post("/api/v1/bookings", {"service": 1}).status_code == 503


def test_the_waitlist_matches_the_document(api, setup):
    body = {
        "service": setup.follow_up.id,
        "practitioner": None,
        "dates": ["2026-11-25", "2026-11-26"],
        "patient": {"name": "Ann Example", "email": "ann@example.org"},
    }
    joined = api.post("/api/v1/waitlist", body)
    token = joined.get_json()["token"]
    shown = api.get(f"/api/v1/waitlist/{token}")
    left = api.post(f"/api/v1/waitlist/{token}/leave")
    again = api.post(f"/api/v1/waitlist/{token}/leave")
    past = api.post("/api/v1/waitlist", {**body, "dates": ["2026-11-01"]})

    assert joined.status_code == 201
    assert shown.get_json()["status"] == "waiting"
    assert left.get_json()["status"] == "left"
    assert again.status_code == 409
    assert past.status_code == 422


# The reference page


def test_the_reference_page_shows_every_operation_and_shape(client, spec, setup):
    response = client.get("/api/docs")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            assert f'id="op-{operation["operationId"]}"' in page
            assert f"{method.upper()} {path}" in page
    for name in spec["components"]["schemas"]:
        assert f'id="schema-{name}"' in page
    assert "Test Acupuncture" in page  # in the site's frame


def test_the_reference_page_needs_no_script_and_nothing_from_elsewhere(client):
    page = client.get("/api/docs").get_data(as_text=True)

    assert "<script" not in page
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)
    ids = re.findall(r'id="([^"]+)"', page)
    links = set(re.findall(r'href="#([^"]+)"', page))
    assert len(ids) == len(set(ids))
    assert links <= set(ids), links - set(ids)


def test_the_reference_page_shows_a_calls_body_fields_and_examples(client, setup):
    page = client.get("/api/docs").get_data(as_text=True)
    booking = page[page.index('id="op-create_booking"') : page.index('id="op-get_booking"')]

    for field in ("service", "practitioner", "start", "patient", "intake", "repeat"):
        assert f"<code>{field}</code>" in booking
    assert "Example: A course of six weekly sessions" in booking
    assert "Example answer 201 (BookingOut)" in booking
    assert "Example answer 201 (CourseOut)" in booking


# Schemathesis: generated calls against the document, through the app in-process

# Every check but one: schema-valid data may still be refused (422) for what a schema cannot
# say, such as an unknown service id, a time already taken or a first visit without consent.
EXCLUDED_CHECKS = [positive_data_acceptance]
GENERATION = settings(
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def api_schema(request: pytest.FixtureRequest, app: Flask, setup: Any, book: Any) -> Any:
    """The document as schemathesis reads it, over the small clinic with a booking."""
    # schemathesis 4.32 reads and renames ``node._nodeid``, which pytest 9.2 no longer has.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    book(london(TUESDAY, "10:00"), practitioner=setup.mei)
    return schemathesis.openapi.from_wsgi(OPENAPI, app)


generated = schemathesis.pytest.from_fixture("api_schema")


@generated.parametrize()
@GENERATION
def test_generated_calls_get_no_server_error_and_answers_match_the_document(case):
    case.call_and_validate(excluded_checks=EXCLUDED_CHECKS)


def test_generated_calls_on_a_real_booking_and_waitlist_place_match_the_document(
    app, client, setup, book, subtests
):
    tokens = {
        "/api/v1/bookings/{token}": book(london(TUESDAY, "11:30")).manage_token,
        "/api/v1/waitlist/{token}": client.post(
            "/api/v1/waitlist",
            json={
                "service": setup.follow_up.id,
                "dates": [TUESDAY],
                "patient": {"name": "Ann Example", "email": "ann@example.org"},
            },
        ).get_json()["token"],
    }
    schema = schemathesis.openapi.from_wsgi(OPENAPI, app)
    operations = [
        schema[path][method]
        for path in schema
        for method in schema[path]
        if any(path.startswith(prefix) for prefix in tokens)
    ]
    assert len(operations) == 5

    for operation in operations:
        token = next(t for prefix, t in tokens.items() if operation.path.startswith(prefix))

        @given(case=operation.as_strategy(path_parameters={"token": token}))
        @GENERATION
        def call(case: Any) -> None:
            case.call_and_validate(excluded_checks=EXCLUDED_CHECKS)

        with subtests.test(operation.label):
            call()


def on_the_clinics_ids(setup: Any) -> Any:
    """A generated booking body, re-aimed at a real treatment, practitioner (or anyone) and a
    time in Tuesday's working hours, so it reaches the booking code, not the id checks."""
    targets = st.tuples(
        st.sampled_from([setup.follow_up.id, setup.initial.id]),
        st.sampled_from([setup.mei.id, setup.james.id, None]),
        st.sampled_from(["09:00", "10:00", "11:30", "14:00", "16:15"]),
        st.booleans(),
    )

    def aim(generated: tuple[Any, tuple[int, int | None, str, bool]]) -> Any:
        case, (service, practitioner, hhmm, consent) = generated
        if isinstance(case.body, dict):
            case.body.update(
                service=service,
                practitioner=practitioner,
                start=london(TUESDAY, hhmm).isoformat(),
            )
            if service == setup.initial.id:
                case.body["intake"] = {"medications": "", "conditions": [], "consent": consent}
        return case

    return aim, targets


def test_generated_bookings_and_slot_queries_on_real_ids_reach_the_handlers(app, setup, subtests):
    schema = schemathesis.openapi.from_wsgi(OPENAPI, app)
    aim, targets = on_the_clinics_ids(setup)
    strategies = {
        "POST /api/v1/bookings": st.tuples(
            schema["/api/v1/bookings"]["POST"].as_strategy(GenerationMode.POSITIVE), targets
        ).map(aim),
        "GET /api/v1/slots": schema["/api/v1/slots"]["GET"].as_strategy(
            GenerationMode.POSITIVE,
            query={"service": setup.follow_up.id, "start": TUESDAY, "end": "2026-11-27"},
        ),
    }
    answered: Counter[tuple[str, int]] = Counter()

    for label, strategy in strategies.items():

        @given(case=strategy)
        @GENERATION
        def call(case: Any) -> None:
            response = case.call_and_validate(excluded_checks=EXCLUDED_CHECKS)
            answered[(case.operation.label, response.status_code)] += 1

        with subtests.test(label):
            call()

    statuses = {label: {s for (seen, s) in answered if seen == label} for label in strategies}
    assert 201 in statuses["POST /api/v1/bookings"], statuses
    assert 409 in statuses["POST /api/v1/bookings"], "a time booked twice is refused"
    assert 200 in statuses["GET /api/v1/slots"], statuses
