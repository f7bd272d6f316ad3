"""`calendar import --as appointments`: another scheduler's export becomes bookings."""

from __future__ import annotations

from sqlalchemy import select

from scheduler.booking.models import Booking, BookingStatus
from tests.conftest import london


def export(*events: str, method: str = "PUBLISH") -> str:
    """A calendar as another clinic scheduler exports a practitioner's appointments."""
    body = "".join(f"BEGIN:VEVENT\r\n{event.strip()}\r\nEND:VEVENT\r\n" for event in events)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Old Clinic Software//EN\r\n"
        f"METHOD:{method}\r\n{body}END:VCALENDAR\r\n"
    )


def appointment(uid: str, start: str, end: str, summary: str, extra: str = "") -> str:
    return (
        f"UID:{uid}\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\n"
        f"SUMMARY:{summary}\r\nORGANIZER;CN=Old Clinic:mailto:desk@oldclinic.example\r\n{extra}"
    )


ANNA = appointment(
    "appt-1@oldclinic",
    "20261125T100000Z",
    "20261125T110000Z",
    "Follow-up treatment - Anna Berg",
    "ATTENDEE;CN=Anna Berg;RSVP=TRUE:mailto:anna@example.org",
)
BEN = appointment(
    "appt-2@oldclinic",
    "20261126T140000Z",
    "20261126T153000Z",
    "Acupuncture",
    "DESCRIPTION:Patient: Ben Cole <ben.cole@example.org>\\nPhone 0770",
)


def run(app, tmp_path, setup, text, name="old.ics"):
    path = tmp_path / name
    path.write_text(text)
    return app.test_cli_runner().invoke(
        args=[
            "calendar",
            "import",
            str(path),
            "--practitioner",
            setup.mei.email,
            "--as",
            "appointments",
        ]
    )


def bookings(session):
    session.rollback()
    return session.scalars(select(Booking).order_by(Booking.start_at)).all()


def test_appointments_become_bookings_with_their_patients_and_treatments(
    app, session, setup, tmp_path
):
    result = run(app, tmp_path, setup, export(ANNA, BEN))

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "imported 2, updated 0, cancelled 0, skipped 0, errors 0"
    )
    anna, ben = bookings(session)
    assert (anna.patient.name, anna.patient.email) == ("Anna Berg", "anna@example.org")
    assert anna.treatment.name == "Follow-up treatment", "matched by the name in the summary"
    assert (anna.start_at, anna.end_at) == (
        london("2026-11-25", "10:00"),
        london("2026-11-25", "11:00"),
    )
    assert anna.calendar_uid == "appt-1@oldclinic", "the UID is kept, so updates find it"
    assert anna.practitioner_id == setup.mei.id
    assert anna.status is BookingStatus.CONFIRMED
    assert (ben.patient.name, ben.patient.email) == ("Ben Cole", "ben.cole@example.org")
    assert ben.treatment.name == "Initial consultation", "matched by its length, 90 minutes"
    assert ben.room_id is not None


def test_an_appointment_without_patient_or_matching_treatment_is_reported(
    app, session, setup, tmp_path
):
    nobody = appointment("appt-3@oldclinic", "20261127T100000Z", "20261127T110000Z", "Admin")
    odd = appointment(
        "appt-4@oldclinic",
        "20261127T120000Z",
        "20261127T121700Z",
        "Reiki",
        "ATTENDEE;CN=Cara Diaz:mailto:cara@example.org",
    )

    result = run(app, tmp_path, setup, export(ANNA, nobody, odd))

    assert result.exit_code == 0
    assert result.output.splitlines()[-1] == (
        "imported 1, updated 0, cancelled 0, skipped 0, errors 2"
    )
    assert "no patient" in result.output
    assert "no treatment matches it by name or by its length (17 minutes)" in result.output
    assert [b.calendar_uid for b in bookings(session)] == ["appt-1@oldclinic"]


def test_an_appointment_clashing_with_a_booking_here_is_reported_not_forced(
    app, session, setup, tmp_path, book
):
    here = book(london("2026-11-25", "10:30"), practitioner=setup.mei)

    result = run(app, tmp_path, setup, export(ANNA))

    assert result.output.splitlines()[-1].endswith("errors 1")
    assert "clashes: Mei Lin already has a booking then" in result.output
    assert [b.id for b in bookings(session)] == [here.id]


def test_importing_a_later_export_moves_and_cancels_the_same_bookings(
    app, session, setup, tmp_path
):
    run(app, tmp_path, setup, export(ANNA, BEN))
    assert run(app, tmp_path, setup, export(ANNA, BEN)).output.splitlines()[-1] == (
        "imported 0, updated 0, cancelled 0, skipped 2, errors 0"
    )
    moved = ANNA.replace("T100000Z", "T120000Z").replace("T110000Z", "T130000Z")
    moved = moved.replace("UID:", "SEQUENCE:1\r\nUID:")
    cancelled = BEN + "\r\nSTATUS:CANCELLED"

    result = run(app, tmp_path, setup, export(moved, cancelled))

    assert result.output.splitlines()[-1] == (
        "imported 0, updated 1, cancelled 1, skipped 0, errors 0"
    )
    anna, ben = bookings(session)
    assert anna.start_at == london("2026-11-25", "12:00")
    assert anna.sequence >= 1, "a calendar app sees the move as newer"
    assert ben.status is BookingStatus.CANCELLED


def test_past_appointments_stay_in_the_old_system(app, session, setup, tmp_path):
    past = appointment(
        "appt-0@oldclinic",
        "20261110T100000Z",
        "20261110T110000Z",
        "Follow-up treatment",
        "ATTENDEE;CN=Anna Berg:mailto:anna@example.org",
    )

    result = run(app, tmp_path, setup, export(past, ANNA))

    assert result.output.splitlines()[-1] == (
        "imported 1, updated 0, cancelled 0, skipped 1, errors 0"
    )
    assert len(bookings(session)) == 1


def test_a_file_that_does_not_parse_imports_no_appointments(app, session, setup, tmp_path):
    broken = export(ANNA, BEN).replace("END:VEVENT\r\nEND:VCALENDAR", "END:VCALENDAR")

    result = run(app, tmp_path, setup, broken)

    assert result.exit_code == 1
    assert "closes BEGIN:VEVENT" in result.output
    assert bookings(session) == []
