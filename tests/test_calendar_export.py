"""Calendar output: one booking's file, invites, cancellations, feeds and `calendar export`."""

from __future__ import annotations

from datetime import timedelta

from icalendar import Calendar
from sqlalchemy import select

from scheduler.booking.operations import cancel_booking, reschedule_booking
from scheduler.calendars.export import (
    Method,
    booking_calendar,
    clean_param,
    clean_text,
    first_name_and_initial,
)
from scheduler.clinic.checklists import checklist_for
from scheduler.clinic.models import Practitioner
from tests.calendar_readers import check_all, split_by_uid
from tests.conftest import london

pytest_plugins = ["tests.calendar_readers"]

BASE = "https://clinic.test"


def events(data: bytes) -> list:
    return Calendar.from_ical(data).walk("VEVENT")


def unfolded(data: bytes) -> list[str]:
    return data.decode().replace("\r\n ", "").split("\r\n")


def test_a_download_carries_the_clinic_zone_and_an_rrule_vtimezone(book, setup, clock, session):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    checklist = checklist_for(session, setup.clinic, booking.treatment).before(booking.treatment)

    data = booking_calendar(setup.clinic, booking, base_url=BASE, now=clock(), checklist=checklist)

    lines = unfolded(data)
    assert "METHOD:PUBLISH" in lines
    assert "DTSTART;TZID=Europe/London:20261124T100000" in lines
    assert "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3" in lines
    assert "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10" in lines
    assert not any(line.startswith("RDATE") for line in lines)
    [event] = events(data)
    assert str(event["UID"]) == booking.calendar_uid
    assert event.decoded("DTSTART") == booking.start_at
    assert str(event["URL"]) == f"{BASE}/b/{booking.manage_token}"
    assert "Bring a list of your medications and supplements." in str(event["DESCRIPTION"])
    assert "ATTENDEE" not in event


def test_an_invite_names_the_patient_as_attendee_with_rsvp(book, setup, clock):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)

    [event] = events(
        booking_calendar(setup.clinic, booking, base_url=BASE, now=clock(), method=Method.REQUEST)
    )

    attendee = event["ATTENDEE"]
    assert str(attendee) == f"mailto:{booking.patient.email}"
    assert attendee.params["RSVP"] == "TRUE"
    assert str(event["ORGANIZER"]) == "mailto:clinic@clinic.test"


def test_a_cancellation_has_a_higher_sequence_and_cancelled_status(book, setup, session, clock):
    booking = book(london("2026-11-26", "10:00"), practitioner=setup.mei)
    reschedule_booking(
        session,
        clinic=setup.clinic,
        booking=booking,
        start=london("2026-11-26", "14:00"),
        now=clock(),
    )
    cancel_booking(session, clinic=setup.clinic, booking=booking, now=clock())
    session.commit()

    data = booking_calendar(setup.clinic, booking, base_url=BASE, now=clock(), method=Method.CANCEL)

    assert "METHOD:CANCEL" in unfolded(data)
    [event] = events(data)
    assert event["SEQUENCE"] == 2
    assert str(event["STATUS"]) == "CANCELLED"


def test_text_from_people_cannot_break_out_of_its_property(book, setup, session, clock):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    booking.patient.name = 'Eve"\r\nATTENDEE:mailto:evil@example.org\r\nX-EVIL:1'
    setup.clinic.address = "1 Road\r\nX-INJECTED:yes"
    session.commit()

    data = booking_calendar(
        setup.clinic, booking, base_url=BASE, now=clock(), method=Method.REQUEST
    )

    lines = unfolded(data)
    assert not any(
        line.startswith(("X-EVIL", "X-INJECTED", "ATTENDEE:mailto:evil")) for line in lines
    )
    [event] = events(data)
    assert '"' not in event["ATTENDEE"].params["CN"]
    assert str(event["LOCATION"]) == "1 Road X-INJECTED:yes"


def test_cleaning_keeps_ordinary_text_and_drops_control_characters():
    assert clean_text("Ann\x00 Lee\x1b") == "Ann Lee"
    assert clean_text("one\r\ntwo", multiline=True) == "one\ntwo"
    assert clean_param('Dr "Mei" Lin') == "Dr 'Mei' Lin"
    assert first_name_and_initial("Ann Marie Lee") == "Ann L."
    assert first_name_and_initial("Cher") == "Cher"


def feed_url(session, practitioner) -> str:
    token = session.scalar(
        select(Practitioner.feed_token).where(Practitioner.id == practitioner.id)
    )
    return f"/feeds/{token}.ics"


def test_a_feed_lists_live_sessions_with_first_name_and_initial(
    client, session, setup, book, clock
):
    kept = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    dropped = book(london("2026-11-25", "10:00"), practitioner=setup.mei)
    book(london("2026-11-24", "10:00"), practitioner=setup.james)
    cancel_booking(session, clinic=setup.clinic, booking=dropped, now=clock())
    kept.patient.name = "Annabel Whitworth"
    session.commit()

    response = client.get(feed_url(session, setup.mei))

    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    [event] = events(response.data)
    assert str(event["UID"]) == kept.calendar_uid
    assert str(event["SUMMARY"]) == "Follow-up treatment: Annabel W."
    assert "Whitworth" not in response.get_data(as_text=True)
    assert kept.patient.email not in response.get_data(as_text=True)


def test_a_feed_answers_304_while_nothing_changes(client, session, setup, book, clock):
    book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    url = feed_url(session, setup.mei)
    first = client.get(url)

    again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    by_date = client.get(url, headers={"If-Modified-Since": first.headers["Last-Modified"]})

    assert again.status_code == 304
    assert again.data == b""
    assert by_date.status_code == 304
    assert client.get(url).data == first.data


def test_a_feed_changes_its_etag_when_a_session_is_booked_or_cancelled(
    client, session, setup, book, clock
):
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    url = feed_url(session, setup.mei)
    before = client.get(url).headers["ETag"]

    clock.now += timedelta(seconds=5)
    cancel_booking(session, clinic=setup.clinic, booking=booking, now=clock())
    session.commit()

    response = client.get(url, headers={"If-None-Match": before})
    assert response.status_code == 200
    assert response.headers["ETag"] != before
    assert events(response.data) == []


def test_a_rotated_feed_token_retires_the_old_address(app, client, session, setup):
    old = feed_url(session, setup.mei)

    result = app.test_cli_runner().invoke(
        args=["calendar", "feed-url", "--practitioner", setup.mei.email, "--rotate"]
    )

    assert result.exit_code == 0, result.output
    new = result.output.strip().removeprefix("https://clinic.test")
    session.rollback()
    assert new == feed_url(session, setup.mei)
    assert new != old
    assert client.get(old).status_code == 404
    assert client.get(new).status_code == 200


def test_calendar_export_writes_a_practitioners_sessions(app, session, setup, book, tmp_path):
    inside = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    book(london("2026-11-27", "10:00"), practitioner=setup.mei)
    target = tmp_path / "mei.ics"

    result = app.test_cli_runner().invoke(
        args=[
            "calendar",
            "export",
            "--practitioner",
            str(setup.mei.id),
            "--start",
            "2026-11-23",
            "--end",
            "2026-11-25",
            "-o",
            str(target),
        ]
    )

    assert result.exit_code == 0, result.output
    assert [str(e["UID"]) for e in events(target.read_bytes())] == [inside.calendar_uid]


def test_calendar_export_explains_bad_arguments(app, setup):
    runner = app.test_cli_runner()

    unknown = runner.invoke(
        args=[
            "calendar",
            "export",
            "--practitioner",
            "nobody@clinic.test",
            "--start",
            "2026-11-23",
            "--end",
            "2026-11-25",
        ]
    )
    backwards = runner.invoke(
        args=[
            "calendar",
            "export",
            "--practitioner",
            setup.mei.email,
            "--start",
            "2026-11-25",
            "--end",
            "2026-11-23",
        ]
    )

    assert unknown.exit_code == 1
    assert unknown.output.startswith("Error: no practitioner has the email address or id")
    assert backwards.exit_code == 1
    assert "Error: --end is before --start" in backwards.output


def test_every_kind_of_output_passes_three_independent_readers(
    client, session, setup, book, clock, caldav
):
    """icalendar's round trip, vobject's validate() and a real CalDAV server (Radicale)."""
    first = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    second = book(london("2026-11-25", "10:00"), practitioner=setup.mei, treatment=setup.initial)
    first.patient.name = 'Zoë "Z" O\'Brien; Smith, Jr.'
    session.commit()
    outputs = [
        booking_calendar(setup.clinic, first, base_url=BASE, now=clock()),
        booking_calendar(setup.clinic, second, base_url=BASE, now=clock(), method=Method.REQUEST),
        *split_by_uid(client.get(feed_url(session, setup.mei)).data).values(),
    ]
    cancel_booking(session, clinic=setup.clinic, booking=second, now=clock())
    session.commit()
    outputs.append(
        booking_calendar(setup.clinic, second, base_url=BASE, now=clock(), method=Method.CANCEL)
    )

    for data in outputs:
        [event] = events(data)
        # CalDAV keeps one resource per UID: a later file of the same booking replaces it.
        check_all(data, caldav, str(event["UID"]).replace("@", "-"))
