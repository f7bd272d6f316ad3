"""Schemathesis on every staff operation, ``/api/v1/staff/…``, with a real personal API token
(an admin's, then a practitioner's), so generated calls reach the real handlers: no server
error, and every answer one the document describes.

``test_openapi.py`` runs schemathesis without a token, where every staff call stops at 401.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from sqlalchemy.orm import Session

from scheduler.booking.models import Booking
from scheduler.booking.operations import cancel_booking
from scheduler.staff.models import Role, User
from scheduler.staff.tokens import issue_token
from tests.conftest import NOW, Clock, Setup, london

OPENAPI = "/api/v1/openapi.json"
STAFF = "/api/v1/staff/"
TUESDAY = "2026-11-24"
# As in test_openapi: schema-valid data may still be refused for what a schema cannot say
# (an unknown service id, a time already taken, a status the visit cannot take now). And
# invalid data may be accepted where the API is lenient on purpose: it ignores query
# parameters it does not know (a cache buster, say), and schemathesis counts the token's
# header, which the test sends itself, as data it left out.
EXCLUDED_CHECKS = [positive_data_acceptance, negative_data_rejection]
GENERATION = settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@dataclass(frozen=True)
class Clinic:
    """What the calls can find: a token per role, and the ids of real bookings, patients,
    practitioners and treatments."""

    tokens: dict[Role, str]
    booking_ids: list[int]
    patient_ids: list[int]
    practitioner_ids: list[int]
    service_ids: list[int]


@pytest.fixture
def clinic(
    session: Session,
    setup: Setup,
    book: Callable[..., Booking],
    make_user: Callable[..., User],
    make_time_off: Callable[..., Any],
    clock: Clock,
) -> Clinic:
    """Tuesday's visits (a first visit with intake answers with Mei, one with James, one
    cancelled), Mei's afternoon off, and the clock at 10:30 that day, so every status can be
    tried on a visit that has started."""
    first = book(london(TUESDAY, "10:00"), practitioner=setup.mei, treatment=setup.initial)
    other = book(london(TUESDAY, "10:00"), practitioner=setup.james)
    cancelled = cancel_booking(
        session,
        clinic=setup.clinic,
        booking=book(london(TUESDAY, "14:00"), practitioner=setup.mei),
        now=NOW,
    )
    make_time_off(setup.mei, london(TUESDAY, "15:00"), london(TUESDAY, "18:00"))
    tokens = {}
    for role in (Role.ADMIN, Role.PRACTITIONER):
        _, tokens[role] = issue_token(session, user=make_user(role), name="Fuzzing", now=NOW)
    session.commit()
    found = Clinic(
        tokens=tokens,
        booking_ids=[first.id, other.id, cancelled.id],
        patient_ids=[first.patient_id, other.patient_id],
        practitioner_ids=[setup.mei.id, setup.james.id],
        service_ids=[setup.follow_up.id, setup.initial.id],
    )
    session.rollback()
    clock.now = london(TUESDAY, "10:30")
    return found


def cases(operation: Any, clinic: Clinic) -> Any:
    """Valid and invalid calls of ``operation`` on the clinic's real bookings and patients.

    Where it takes a practitioner or dates, half the calls name a real practitioner and
    Tuesday's week; half the bookings ask for a real treatment at a time that may be free.
    The other half is whatever schemathesis makes up.
    """
    in_path = {
        name: st.sampled_from(ids)
        for name, ids in (("booking_id", clinic.booking_ids), ("patient_id", clinic.patient_ids))
        if "{" + name + "}" in operation.path
    }
    taken = {parameter.name for parameter in operation.query}
    in_query = {
        name: st.sampled_from(values)
        for name, values in (
            ("practitioner", clinic.practitioner_ids),
            ("start", [TUESDAY]),
            ("end", [TUESDAY, "2026-11-29"]),
        )
        if name in taken
    }

    def generated(path: dict[str, Any], query: dict[str, Any] | None = None) -> Any:
        given = {"path_parameters": path or None, "query": query}
        return st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE, **given),
            operation.as_strategy(GenerationMode.NEGATIVE, **given),
        )

    paths = st.fixed_dictionaries(in_path)
    made_up = paths.flatmap(generated)
    if operation.method.upper() == "POST" and operation.path == STAFF + "bookings":
        asked = operation.as_strategy(GenerationMode.POSITIVE)
        return st.one_of(made_up, st.tuples(asked, clinic_times(clinic)).map(at_a_real_time))
    if not in_query:
        return made_up
    real = st.tuples(paths, st.fixed_dictionaries(in_query)).flatmap(lambda both: generated(*both))
    return st.one_of(made_up, real)


def clinic_times(clinic: Clinic) -> Any:
    """A real treatment, practitioner (or anyone) and a time on Tuesday afternoon."""
    return st.tuples(
        st.sampled_from(clinic.service_ids),
        st.sampled_from([*clinic.practitioner_ids, None]),
        st.sampled_from(["14:00", "14:15", "16:00", "17:00"]),
    )


def at_a_real_time(generated: tuple[Any, tuple[int, int | None, str]]) -> Any:
    """The generated booking, for the treatment, practitioner and time given."""
    case, (service, practitioner, hhmm) = generated
    if isinstance(case.body, dict):
        case.body.update(
            service=service,
            practitioner=practitioner,
            start=london(TUESDAY, hhmm).isoformat(),
        )
    return case


@pytest.mark.parametrize("role", [Role.ADMIN, Role.PRACTITIONER], ids=lambda r: r.value)
def test_generated_staff_calls_with_a_real_token_reach_the_handlers_and_match_the_document(
    app: Flask, clinic: Clinic, role: Role, subtests: Any
):
    schema = schemathesis.openapi.from_wsgi(OPENAPI, app)
    operations = [
        schema[path][method] for path in schema if path.startswith(STAFF) for method in schema[path]
    ]
    assert len(operations) == 8
    headers = {"Authorization": f"Bearer {clinic.tokens[role]}"}
    answered: Counter[tuple[str, int]] = Counter()

    for operation in operations:

        @given(case=cases(operation, clinic))
        @GENERATION
        def call(case: Any) -> None:
            response = case.call_and_validate(headers=headers, excluded_checks=EXCLUDED_CHECKS)
            answered[(case.operation.label, response.status_code)] += 1

        with subtests.test(operation.label):
            call()

    reached = {label for (label, status) in answered if status != 401}
    assert reached == {operation.label for operation in operations}, "the token is taken"
    succeeded = {label for (label, status) in answered if status < 300}
    assert {op.label for op in operations if op.method.upper() == "GET"} <= succeeded
