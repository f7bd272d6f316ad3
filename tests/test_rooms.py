"""Rooms: a treatment that needs a kind of room is only booked into rooms of that kind, the
admin sets kinds on the set-up pages, and reception moves a booking to another free room."""

from __future__ import annotations

import html
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.audit import Actor, AuditAction, AuditEvent
from scheduler.booking import operations
from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import RoomTaken, move_to_room
from scheduler.clinic.models import Clinic, Room, Treatment
from scheduler.db import begin_write
from scheduler.extensions import db
from scheduler.notifications.models import Notification
from scheduler.staff.models import Role
from tests.conftest import NOW, csrf_token, log_in, london, token_of

TUESDAY = date(2026, 11, 24)
RECEPTION = Actor("reception@clinic.example")
TUESDAY_10 = london("2026-11-24", "10:00")


def fresh(session: Session) -> Session:
    """The test's session, reading what the app committed since."""
    session.rollback()
    session.expire_all()
    return session


def as_role(app: Flask, make_user, role: Role) -> FlaskClient:
    client = app.test_client()
    log_in(client, make_user(role).email)
    return client


@pytest.fixture
def desk(app, make_user) -> FlaskClient:
    """A logged-in receptionist's browser."""
    return as_role(app, make_user, Role.RECEPTION)


@pytest.fixture
def admin(app, make_user) -> FlaskClient:
    """A logged-in admin's browser."""
    return as_role(app, make_user, Role.ADMIN)


@pytest.fixture
def cupping(setup, make_room, make_treatment, session) -> Treatment:
    """Cupping, which needs a cupping room; the clinic has one (the Studio), and Mei and
    James give it."""
    make_room("Studio", kind="cupping")
    treatment = make_treatment(
        name="Cupping", duration_minutes=30, buffer_minutes=10, room_kind="cupping"
    )
    for practitioner in (setup.mei, setup.james):
        practitioner.treatments.append(treatment)
    session.commit()
    return treatment


def slot_times(client: FlaskClient, treatment: Treatment, practitioner, day: date = TUESDAY):
    """The free start times (HH:MM, clinic time) the public API offers on ``day``."""
    answer = client.get(
        f"/api/v1/slots?service={treatment.id}&practitioner={practitioner.id}&start={day}&end={day}"
    )
    assert answer.status_code == 200, answer.json
    return [slot["start"][11:16] for slot in answer.json["slots"]]


def book_online(client: FlaskClient, treatment: Treatment, practitioner, start, email: str):
    answer = client.post(
        "/api/v1/bookings",
        json={
            "service": treatment.id,
            "practitioner": practitioner.id,
            "start": start.isoformat(),
            "patient": {"name": "Ann Lee", "email": email},
        },
    )
    return answer


def rooms_by_name(session: Session) -> dict[str, Room]:
    return {room.name: room for room in fresh(session).scalars(select(Room))}


# --- Availability ---------------------------------------------------------------------------


def test_a_treatment_that_needs_a_kind_is_booked_only_into_a_room_of_it(
    client, session, setup, cupping
):
    answer = book_online(client, cupping, setup.mei, TUESDAY_10, "ann@example.org")

    assert answer.status_code == 201, answer.json
    booking = fresh(session).scalars(select(Booking)).one()
    assert booking.room.name == "Studio", "the only cupping room, though two others are free"
    assert answer.json["room"] == "Studio"


def test_when_the_room_of_the_kind_is_taken_the_time_is_not_offered(
    client, session, setup, cupping
):
    assert "10:00" in slot_times(client, cupping, setup.james)
    book_online(client, cupping, setup.mei, TUESDAY_10, "ann@example.org")

    james = slot_times(client, cupping, setup.james)
    assert "10:00" not in james, "James is free, but the Studio is not"
    assert "09:30" not in james, "09:30-10:00 and its 10-minute buffer would reach 10:10"
    assert "10:30" not in james, "the Studio is kept for 10 minutes after Mei's visit"
    assert {"09:15", "10:45"} <= set(james)
    assert "10:00" in slot_times(client, setup.follow_up, setup.james), "ordinary rooms are free"

    refused = book_online(client, cupping, setup.james, TUESDAY_10, "ben@example.org")
    assert refused.status_code == 409
    assert all(slot["start"][11:16] != "10:00" for slot in refused.json["alternatives"])


def test_no_time_is_offered_when_no_room_in_use_is_of_the_kind(
    client, session, setup, make_room, make_treatment
):
    make_room("Old electro room", kind="electro-acupuncture", active=False)
    electro = make_treatment(name="Electro-acupuncture", room_kind="electro-acupuncture")
    setup.mei.treatments.append(electro)
    session.commit()

    assert slot_times(client, electro, setup.mei) == []
    assert slot_times(client, setup.follow_up, setup.mei)[0] == "09:00"


def cupping_export(uid: str, patient: str, email: str) -> str:
    """Another scheduler's export of one cupping appointment on Wednesday at 10:00."""
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Old Clinic Software//EN\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261120T090000Z\r\n"
        f"DTSTART:20261125T100000Z\r\nDTEND:20261125T103000Z\r\nSUMMARY:Cupping - {patient}\r\n"
        f"ATTENDEE;CN={patient}:mailto:{email}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def test_an_imported_appointment_is_put_in_a_room_of_the_kind_its_treatment_needs(
    app, tmp_path, session, setup, cupping
):
    files = {
        setup.mei: cupping_export("cup-1@oldclinic", "Anna Berg", "anna@example.org"),
        setup.james: cupping_export("cup-2@oldclinic", "Ben Cole", "ben@example.org"),
    }
    for practitioner, calendar in files.items():
        path = tmp_path / f"{practitioner.id}.ics"
        path.write_text(calendar)
        result = app.test_cli_runner().invoke(
            args=[
                "calendar",
                "import",
                str(path),
                "--practitioner",
                practitioner.email,
                "--as",
                "appointments",
            ]
        )
        assert result.exit_code == 0, result.output

    [booking] = fresh(session).scalars(select(Booking)).all()
    assert (booking.practitioner_id, booking.room.name) == (setup.mei.id, "Studio")
    assert "no cupping room is free then" in result.output, "James's finds no cupping room"
    assert result.output.strip().endswith("imported 0, updated 0, cancelled 0, skipped 0, errors 1")


# --- Set-up ---------------------------------------------------------------------------------


def send(client: FlaskClient, path: str, **data: object):
    """Post a set-up form with the CSRF token."""
    return client.post(path, data={"csrf_token": token_of(client, "/staff/setup/"), **data})


def test_the_admin_gives_rooms_kinds_and_a_treatment_a_kind_to_need(admin, client, session, setup):
    added = send(admin, "/staff/setup/rooms", name="Studio", kind="  Cupping ")
    assert added.status_code == 303
    studio = rooms_by_name(session)["Studio"]
    assert studio.kind == "cupping", "kept in one spelling, so it matches"
    garden = setup.rooms[0]
    edited = send(admin, f"/staff/setup/rooms/{garden.id}", name="Garden room", kind="Treatment")
    assert edited.status_code == 303
    assert rooms_by_name(session)["Garden room"].kind == "treatment"
    listing = admin.get("/staff/setup/rooms").text
    assert "<td>cupping</td>" in listing
    assert '<option value="cupping">' in listing, "existing kinds are suggested"

    form = admin.get(f"/staff/setup/treatments/{setup.follow_up.id}").text
    assert '<option value="cupping">cupping</option>' in form
    assert '<option selected value="">Any room</option>' in form
    saved = send(
        admin,
        f"/staff/setup/treatments/{setup.follow_up.id}",
        name="Follow-up treatment",
        duration_minutes="60",
        buffer_minutes="15",
        position="0",
        room_kind="cupping",
        practitioners=[setup.mei.id],
    )

    assert saved.status_code == 303
    assert fresh(session).get(Treatment, setup.follow_up.id).room_kind == "cupping"
    assert "Needs a cupping room" in admin.get("/staff/setup/treatments").text
    answer = book_online(client, setup.follow_up, setup.mei, TUESDAY_10, "ann@example.org")
    assert answer.json["room"] == "Studio"


def test_a_kind_no_room_has_is_refused_for_a_treatment(admin, session, setup, make_room):
    make_room("Studio", kind="cupping")

    answer = send(
        admin,
        f"/staff/setup/treatments/{setup.follow_up.id}",
        name="Follow-up treatment",
        duration_minutes="60",
        buffer_minutes="15",
        position="0",
        room_kind="cuping",
        practitioners=[setup.mei.id],
    )

    assert answer.status_code == 422
    assert "Choose a kind of room from the list" in html.unescape(answer.text)
    assert fresh(session).get(Treatment, setup.follow_up.id).room_kind is None


def test_the_admin_is_warned_when_a_treatment_is_left_without_a_room_of_its_kind(
    admin, client, session, setup, cupping, book
):
    studio = rooms_by_name(session)["Studio"]
    booking = book(TUESDAY_10, treatment=cupping, practitioner=setup.mei)

    answer = send(admin, f"/staff/setup/rooms/{studio.id}", name="Studio", kind="")

    assert answer.status_code == 303
    page = html.unescape(admin.get("/staff/setup/rooms").text)
    assert "No room in use is of the kind cupping, so Cupping cannot be booked" in page
    assert "1 coming booking in Studio for another kind of room still stands" in page
    assert slot_times(client, cupping, setup.mei) == []
    assert fresh(session).get(Booking, booking.id).room_id == studio.id, "bookings stay put"

    send(admin, f"/staff/setup/rooms/{studio.id}", name="Studio", kind="cupping")
    send(admin, f"/staff/setup/rooms/{studio.id}/archive")
    page = html.unescape(admin.get("/staff/setup/rooms").text)
    assert "No room in use is of the kind cupping, so Cupping cannot be booked" in page


def test_a_bad_room_kind_is_refused_next_to_the_field(admin, session, setup):
    for kind, message in (
        ("x" * 61, "Please keep the kind to 60 characters."),
        ("two\nlines", "Please keep this to one line"),
    ):
        answer = send(admin, "/staff/setup/rooms", name="Studio", kind=kind)
        assert answer.status_code == 422
        assert message in html.unescape(answer.text)
    assert "Studio" not in rooms_by_name(session)


# --- Moving a booking to another room -----------------------------------------------------------


def room_form(booking: Booking) -> str:
    """The start of the form that moves ``booking`` to another room."""
    return f'<form method="post" action="/staff/bookings/{booking.id}/room"'


def room_of(session: Session, booking: Booking) -> str:
    return fresh(session).get_one(Booking, booking.id).room.name


def move(client: FlaskClient, booking: Booking, room: Room | str):
    token = token_of(client, f"/staff/bookings/{booking.id}")
    value = room if isinstance(room, str) else str(room.id)
    return client.post(
        f"/staff/bookings/{booking.id}/room", data={"csrf_token": token, "room": value}
    )


def test_reception_moves_a_booking_to_a_free_room_and_the_patient_is_not_troubled(
    desk, session, setup, book
):
    garden, courtyard = setup.rooms
    booking = book(TUESDAY_10, practitioner=setup.mei)
    assert booking.room_id == garden.id
    sequence = booking.sequence
    messages = len(fresh(session).scalars(select(Notification)).all())

    page = desk.get(f"/staff/bookings/{booking.id}").text
    assert f'<option value="{courtyard.id}">Courtyard room</option>' in page
    assert f'<option value="{garden.id}"' not in page, "its own room is not offered"

    answer = move(desk, booking, courtyard)

    assert answer.status_code == 303
    assert room_of(session, booking) == "Courtyard room"
    moved = session.get_one(Booking, booking.id)
    assert moved.sequence == sequence, "the patient's invite does not name the room"
    assert len(session.scalars(select(Notification)).all()) == messages, "no mail about it"
    entry = session.scalars(
        select(AuditEvent).where(AuditEvent.booking_id == booking.id).order_by(AuditEvent.id)
    ).all()[-1]
    assert (entry.action, entry.actor, entry.detail) == (
        AuditAction.ROOM_CHANGED,
        "reception@clinic.example",
        "from Garden room to Courtyard room",
    )
    shown = desk.get(answer.headers["Location"]).text
    assert "The booking is now in Courtyard room." in shown
    assert "Room changed: from Garden room to Courtyard room" in shown


def test_a_room_taken_at_that_time_is_not_offered_and_is_refused(desk, session, setup, book):
    garden, courtyard = setup.rooms
    mine = book(TUESDAY_10, practitioner=setup.mei)  # 10:00-11:00, the room kept until 11:15
    # James's visit starts as Mei's ends, inside her buffer, so it took the other room.
    theirs = book(london("2026-11-24", "11:00"), practitioner=setup.james)
    assert (mine.room_id, theirs.room_id) == (garden.id, courtyard.id)

    page = desk.get(f"/staff/bookings/{mine.id}").text
    assert "No other room is free for this visit." in page

    answer = move(desk, mine, courtyard)

    assert answer.status_code == 409
    assert "Courtyard room is taken at that time; choose another room." in answer.text
    assert room_of(session, mine) == "Garden room"


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("same", 422, "The booking is already in Garden room."),
        ("kind", 422, "Cupping needs a cupping room, and Courtyard room is not one."),
        ("archived", 422, "Annex is archived; choose a room in use."),
        ("unknown", 422, "Choose a room from the list."),
        ("garbage", 422, "Choose a room from the list."),
    ],
)
def test_moving_to_a_room_that_cannot_take_it_is_refused(
    desk, session, setup, book, make_room, make_treatment, case, status, message
):
    courtyard = setup.rooms[1]
    annex = make_room("Annex", active=False)
    treatment = setup.follow_up
    if case == "kind":
        make_room("Studio", kind="cupping")
        treatment = make_treatment(name="Cupping", duration_minutes=30, room_kind="cupping")
        setup.mei.treatments.append(treatment)
        session.commit()
    booking = book(TUESDAY_10, practitioner=setup.mei, treatment=treatment)
    target = {
        "same": booking.room,
        "kind": courtyard,
        "archived": annex,
        "unknown": "9999",
        "garbage": "²",
    }[case]
    before = room_of(session, booking)

    answer = move(desk, booking, target)

    assert answer.status_code == status
    assert message in html.unescape(answer.text)
    assert room_of(session, booking) == before


def test_a_cancelled_or_past_booking_keeps_its_room(desk, session, setup, book, clock):
    courtyard = setup.rooms[1]
    cancelled = book(TUESDAY_10, practitioner=setup.mei)
    token = token_of(desk, f"/staff/bookings/{cancelled.id}")
    desk.post(
        f"/staff/bookings/{cancelled.id}/cancel", data={"csrf_token": token, "reason": "Unwell"}
    )
    session.rollback()  # leave the snapshot from before the request wrote
    past = book(london("2026-11-25", "10:00"), practitioner=setup.mei)
    assert room_form(past) in desk.get(f"/staff/bookings/{past.id}").text

    refused = move(desk, cancelled, courtyard)
    assert refused.status_code == 422
    assert "This booking is cancelled; it has no room to change." in refused.text

    clock.now = london("2026-11-26", "09:00")
    assert room_form(past) not in desk.get(f"/staff/bookings/{past.id}").text
    late = move(desk, past, courtyard)
    assert late.status_code == 422
    assert "This visit was on an earlier day; its room can no longer change." in late.text
    assert room_of(session, past) == "Garden room"


def test_todays_visit_can_still_change_rooms_once_the_patient_has_arrived(
    desk, session, setup, book, clock
):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    clock.now = london("2026-11-24", "10:05")
    token = token_of(desk, f"/staff/bookings/{booking.id}")
    desk.post(
        f"/staff/bookings/{booking.id}/status", data={"csrf_token": token, "status": "arrived"}
    )

    answer = move(desk, booking, setup.rooms[1])

    assert answer.status_code == 303
    assert room_of(session, booking) == "Courtyard room"


def test_a_practitioner_cannot_move_a_booking_to_another_room(app, make_user, setup, book):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    client = as_role(app, make_user, Role.PRACTITIONER)
    page = client.get(f"/staff/bookings/{booking.id}").text
    assert room_form(booking) not in page

    answer = client.post(
        f"/staff/bookings/{booking.id}/room",
        data={"csrf_token": csrf_token(page), "room": str(setup.rooms[1].id)},
    )

    assert answer.status_code == 403


def test_a_room_taken_between_the_check_and_the_move_is_caught_by_the_database(
    session, setup, book, monkeypatch
):
    courtyard = setup.rooms[1]
    mine = book(TUESDAY_10, practitioner=setup.mei)
    book(TUESDAY_10, practitioner=setup.james)  # in the Courtyard room
    # As if another request took the room just after this one looked.
    monkeypatch.setattr(operations, "_room_is_free", lambda *args: True)
    booking = fresh(session).get_one(Booking, mine.id)

    with pytest.raises(RoomTaken, match="Courtyard room was just taken by another booking"):
        move_to_room(
            session,
            clinic=session.get_one(Clinic, setup.clinic.id),
            booking=booking,
            room=session.get_one(Room, courtyard.id),
            now=NOW,
            actor=RECEPTION,
        )
    session.commit()  # the transaction is still usable, and nothing changed

    assert room_of(session, mine) == "Garden room"
    assert not session.scalars(
        select(AuditEvent).where(AuditEvent.action == AuditAction.ROOM_CHANGED)
    ).all()


RACERS = 6


def test_racing_moves_into_one_free_room_leave_exactly_one_booking_there(
    app, session, setup, book, make_room, make_practitioner
):
    practitioners = [setup.mei, setup.james] + [
        make_practitioner(treatments=[setup.follow_up]) for _ in range(RACERS - 2)
    ]
    for number in range(RACERS - 2):
        make_room(f"Room {number + 3}")
    spare = make_room("Spare room")
    ids = [book(TUESDAY_10, practitioner=p).id for p in practitioners]
    assert spare.id not in {session.get_one(Booking, i).room_id for i in ids}
    session.rollback()
    barrier = threading.Barrier(RACERS)

    def attempt(booking_id: int) -> str:
        with app.app_context():
            own = db.session()
            try:
                barrier.wait(timeout=30)
                begin_write(own)
                try:
                    move_to_room(
                        own,
                        clinic=own.get_one(Clinic, setup.clinic.id),
                        booking=own.get_one(Booking, booking_id),
                        room=own.get_one(Room, spare.id),
                        now=NOW,
                        actor=RECEPTION,
                    )
                    own.commit()
                    return "moved"
                except RoomTaken:
                    own.rollback()
                    return "taken"
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        outcomes = Counter(pool.map(attempt, ids))

    assert outcomes == {"moved": 1, "taken": RACERS - 1}
    in_spare = fresh(session).scalars(
        select(Booking).where(
            Booking.room_id == spare.id, Booking.status == BookingStatus.CONFIRMED
        )
    )
    assert len(in_spare.all()) == 1


def test_the_booking_page_names_the_room_and_the_kind_the_treatment_needs(
    desk, setup, book, cupping
):
    booking = book(TUESDAY_10, practitioner=setup.mei, treatment=cupping)

    page = html.unescape(desk.get(f"/staff/bookings/{booking.id}").text)

    assert re.search(r"Studio <small>\(cupping\)</small>", page)
    assert "Cupping needs a cupping room" in page
    assert "No other room of the cupping kind is free for this visit." in page
