"""A Python client generated from the served OpenAPI document by openapi-python-client, used
without edits against the app over real HTTP: the public calls an integrator makes (the clinic,
free times, book, read, move, cancel) and the staff calls with a personal API token, every
answer parsed into the client's typed models.

When generating fails, or the client cannot parse an answer, the document is what is wrong.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session
from werkzeug.serving import WSGIRequestHandler, make_server

from scheduler.staff.models import Role, User
from scheduler.staff.tokens import issue_token
from tests.conftest import NOW, Clock, Setup, london

OPENAPI = "/api/v1/openapi.json"
PACKAGE = "clinic_api_client"
TUESDAY = date(2026, 11, 24)


class Generated:
    """The generated package: its models, and each operation's module by tag and id."""

    def __init__(self, package: ModuleType) -> None:
        self.package = package
        self.models = importlib.import_module(f"{package.__name__}.models")

    def call(self, tag: str, operation_id: str) -> ModuleType:
        """The module of one operation, e.g. ``call("bookings", "create_booking")``."""
        return importlib.import_module(f"{self.package.__name__}.api.{tag}.{operation_id}")

    def client(self, base_url: str, token: str | None = None) -> Any:
        """A client that raises on any status the document does not name for the call."""
        if token is None:
            return self.package.Client(base_url=base_url, raise_on_unexpected_status=True)
        return self.package.AuthenticatedClient(
            base_url=base_url, token=token, raise_on_unexpected_status=True
        )


@pytest.fixture(scope="session")
def generated(app: Flask, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    """Generate the client once per session from the document the app serves, and import it.

    The generator reads the document from a file, so it needs no network; its warnings (a
    schema it cannot turn into a model, say) fail the generation.
    """
    folder = tmp_path_factory.mktemp("client")
    document = folder / "openapi.json"
    document.write_bytes(app.test_client().get(OPENAPI).get_data())
    # Its post-generation hooks format the code with ruff, which the test extras install.
    bin_folder = str(Path(sys.executable).parent)
    result = subprocess.run(  # noqa: S603 (a fixed command with paths this fixture made)
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(folder / PACKAGE),
            "--meta",
            "none",
            "--fail-on-warning",
        ],
        cwd=folder,
        env={**os.environ, "PATH": bin_folder + os.pathsep + os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        yield Generated(importlib.import_module(PACKAGE))
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


class QuietHandler(WSGIRequestHandler):
    """Serves as usual without a log line per request (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@pytest.fixture(scope="session")
def base_url(app: Flask) -> Iterator[str]:
    """The app served over HTTP on loopback, as an integrator's program reaches it."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass(frozen=True)
class Ids:
    """The small clinic's ids, as an integrator's program would know them."""

    initial: int
    follow_up: int
    mei: int
    james: int


@pytest.fixture
def ids(setup: Setup, session: Session) -> Ids:
    """The small clinic's ids; the test's own session then ends its read transaction, so it
    never holds a snapshot while the server writes."""
    found = Ids(setup.initial.id, setup.follow_up.id, setup.mei.id, setup.james.id)
    session.rollback()
    return found


@pytest.fixture
def public(generated: Generated, base_url: str, ids: Ids) -> Iterator[Any]:
    """The generated client, without a token, on the small clinic."""
    with generated.client(base_url) as client:
        yield client


@pytest.fixture
def staff_token(session: Session, make_user: Callable[..., User]) -> Callable[[Role], str]:
    """``staff_token(role) -> token``: a new account of ``role`` and a personal API token."""

    def make(role: Role) -> str:
        user = make_user(role)
        _, token = issue_token(session, user=user, name="Integration", now=NOW)
        session.commit()
        session.rollback()
        return token

    return make


def tuesday(hhmm: str) -> datetime:
    return london(TUESDAY.isoformat(), hhmm)


def patient(generated: Generated, name: str = "Ann Lee") -> Any:
    return generated.models.PatientIn(name=name, email="ann@example.org", phone="+44 7700 900123")


def parsed(answer: Any, status: int, kind: type) -> Any:
    """The typed body of an answer with ``status``, checked to be a ``kind``."""
    assert answer.status_code == status, answer.content
    assert isinstance(answer.parsed, kind), answer.parsed
    return answer.parsed


# --- The clinic and its free times --------------------------------------------------------------


def test_the_client_lists_the_services_practitioners_and_free_times(generated, public, ids):
    models = generated.models
    initial, follow_up, mei = ids.initial, ids.follow_up, ids.mei

    services = generated.call("clinic", "list_services").sync(client=public)
    practitioners = generated.call("clinic", "list_practitioners").sync(client=public)
    slots = generated.call("slots", "list_slots").sync(
        client=public, service=follow_up, start=TUESDAY, end=TUESDAY, practitioner=mei
    )

    assert all(isinstance(service, models.ServiceOut) for service in services)
    assert {(s.id, s.first_visit) for s in services} == {(initial, True), (follow_up, False)}
    assert all(isinstance(p, models.PractitionerOut) for p in practitioners)
    assert {p.name for p in practitioners} == {"Mei Lin", "James Okafor"}
    assert {initial, follow_up} <= set(practitioners[0].service_ids)
    assert isinstance(slots, models.SlotsOut)
    assert slots.timezone == "Europe/London"
    first = slots.slots[0]
    assert isinstance(first, models.SlotOut)
    assert first.start == tuesday("09:00")
    assert first.start.utcoffset() is not None
    assert (first.end - first.start).total_seconds() == 60 * 60
    assert {slot.practitioner for slot in slots.slots} == {mei}


def test_the_client_hears_a_refused_query_as_a_typed_error(generated, public):
    answer = generated.call("slots", "list_slots").sync_detailed(
        client=public, service=2**31 - 1, start=TUESDAY, end=TUESDAY
    )

    error = parsed(answer, 422, generated.models.ErrorOut)
    assert "service" in error.fields.additional_properties


# --- Booking, reading, moving and cancelling ----------------------------------------------------


def test_the_client_books_a_first_visit_with_intake_then_reads_moves_and_cancels_it(
    generated, public, ids
):
    models = generated.models
    initial, mei = ids.initial, ids.mei
    body = models.BookingIn(
        service=initial,
        practitioner=mei,
        start=tuesday("10:00"),
        patient=patient(generated),
        notes="Lower back pain",
    )
    booking = generated.call("bookings", "create_booking")
    get_booking = generated.call("bookings", "get_booking")

    refused = booking.sync_detailed(client=public, body=body)
    body.intake = models.IntakeIn(
        consent=True, conditions=[models.Condition.DIABETES], medications="Metformin"
    )
    booked = parsed(booking.sync_detailed(client=public, body=body), 201, models.BookingOut)
    shown = get_booking.sync(booked.token, client=public)
    moved = generated.call("bookings", "reschedule_booking").sync(
        booked.token, client=public, body=models.RescheduleIn(start=tuesday("14:00"))
    )
    cancelled = generated.call("bookings", "cancel_booking").sync(
        booked.token, client=public, body=models.CancelIn(reason="Feeling better")
    )

    assert "intake.consent" in parsed(refused, 422, models.ErrorOut).fields.additional_properties
    assert booked.status is models.BookingStatus.CONFIRMED
    assert (booked.service, booked.practitioner) == (initial, mei)
    assert booked.start == tuesday("10:00")
    assert booked.patient.name == "Ann Lee"
    assert booked.course is None
    assert booked.manage_url.endswith(f"/b/{booked.token}")
    assert shown == booked
    assert isinstance(moved, models.BookingOut)
    assert moved.start == tuesday("14:00")
    assert moved.end == tuesday("15:30")
    assert isinstance(cancelled, models.BookingOut)
    assert cancelled.status is models.BookingStatus.CANCELLED
    assert get_booking.sync(booked.token, client=public).status is models.BookingStatus.CANCELLED


def test_the_client_books_a_course_and_reads_a_taken_time_with_its_alternatives(
    generated, public, ids
):
    models = generated.models
    follow_up, mei = ids.follow_up, ids.mei
    booking = generated.call("bookings", "create_booking")

    def body(start: datetime, **changes: Any) -> Any:
        return models.BookingIn(
            service=follow_up,
            practitioner=mei,
            start=start,
            patient=patient(generated),
            **changes,
        )

    course = booking.sync_detailed(
        client=public, body=body(tuesday("10:00"), repeat=models.RepeatIn(count=3))
    )
    taken = booking.sync_detailed(client=public, body=body(tuesday("10:00")))
    clash = booking.sync_detailed(
        client=public, body=body(tuesday("10:30"), repeat=models.RepeatIn(count=2))
    )

    booked = parsed(course, 201, models.CourseOut)
    assert (booked.sessions, booked.every_weeks) == (3, 1)
    assert [b.course.session for b in booked.course] == [1, 2, 3]
    assert all(isinstance(b, models.BookingOut) for b in booked.course)
    refused = parsed(taken, 409, models.SlotTakenOut)
    assert refused.alternatives
    assert all(isinstance(slot, models.SlotOut) for slot in refused.alternatives)
    clashing = parsed(clash, 409, models.CourseClashOut)
    assert clashing.conflicts[0].start == tuesday("10:30")


def test_the_client_reads_an_unknown_token_as_a_typed_404(generated, public):
    answer = generated.call("bookings", "get_booking").sync_detailed("no-such-token", client=public)

    assert parsed(answer, 404, generated.models.ErrorOut).fields.additional_properties == {}


# --- The staff side, with a personal API token --------------------------------------------------


def test_the_client_with_a_token_lists_bookings_and_marks_a_visit_arrived(
    generated, base_url, public, ids, staff_token, clock: Clock
):
    models = generated.models
    token = staff_token(Role.RECEPTION)
    booked = generated.call("bookings", "create_booking").sync(
        client=public,
        body=models.BookingIn(
            service=ids.follow_up,
            practitioner=ids.mei,
            start=tuesday("10:00"),
            patient=patient(generated),
        ),
    )
    assert isinstance(booked, models.BookingOut)

    with generated.client(base_url, token) as staff:
        page = generated.call("staff", "staff_bookings").sync(
            client=staff, start=TUESDAY, end=TUESDAY
        )
        assert isinstance(page, models.BookingPage)
        [listed] = page.items
        clock.now = tuesday("09:55")
        marked = generated.call("staff", "staff_booking_status").sync(
            listed.id, client=staff, body=models.StatusIn(status=models.StatusInStatus.ARRIVED)
        )
        shown = generated.call("staff", "staff_booking").sync(listed.id, client=staff)
        arrived_only = generated.call("staff", "staff_bookings").sync(
            client=staff, start=TUESDAY, status=models.BookingStatus.ARRIVED
        )

    assert isinstance(listed, models.StaffBooking)
    assert page.next_cursor is None
    assert listed.manage_url == booked.manage_url
    assert (listed.start, listed.practitioner_name) == (booked.start, "Mei Lin")
    assert listed.patient.email == "ann@example.org"
    assert listed.status is models.BookingStatus.CONFIRMED
    assert isinstance(marked, models.StaffBookingDetail)
    assert marked.status is models.BookingStatus.ARRIVED
    assert marked.intake is None
    assert isinstance(shown, models.StaffBookingDetail)
    assert shown.status is models.BookingStatus.ARRIVED
    assert [b.id for b in arrived_only.items] == [listed.id]


def test_the_client_hears_the_staff_apis_refusals_as_typed_errors(
    generated, base_url, ids, staff_token
):
    models = generated.models
    practitioner = staff_token(Role.PRACTITIONER)
    body = models.BookingIn(
        service=ids.follow_up, practitioner=None, start=tuesday("10:00"), patient=patient(generated)
    )

    with generated.client(base_url, "sk_" + "A" * 43) as stranger:
        unknown = generated.call("staff", "staff_bookings").sync_detailed(client=stranger)
    with generated.client(base_url, practitioner) as mei:
        not_front_desk = generated.call("staff", "staff_create_booking").sync_detailed(
            client=mei, body=body
        )
        missing = generated.call("staff", "staff_booking").sync_detailed(2**31 - 1, client=mei)

    assert parsed(unknown, 401, models.ErrorOut).error
    assert unknown.headers["WWW-Authenticate"].startswith("Bearer")
    assert parsed(not_front_desk, 403, models.ErrorOut).error
    assert parsed(missing, 404, models.ErrorOut).error
