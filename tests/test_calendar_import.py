"""Calendar import: files as Google, Outlook, Apple, Thunderbird and Nextcloud write them, and
hostile ones, turned into busy time that availability respects.

The corpus is in ``tests/calendars/``. Every test says what ended up blocked: busy rows in UTC,
the slots offered around them, the report's counts, or where a refused file went wrong.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from scheduler.booking.models import Booking, BookingStatus
from scheduler.booking.operations import find_slots
from scheduler.calendars.imports import ImportReport, import_calendar_file
from scheduler.calendars.models import BusyTime, ExternalEvent
from scheduler.calendars.reading import CalendarFileError, Limits, read_calendar_file
from tests.conftest import NOW, london

CORPUS = Path(__file__).parent / "calendars"
LONDON = ZoneInfo("Europe/London")

GOOGLE_UID = "7kq3v9m2p1c8r4t6b0n5d2f8g1@google.com"
TEACHING_UID = "0q8v3m6c1k2r7t9s5b4n1d6f3h@google.com"
SUPERVISION_UID = "3c5e7g9i1k3m5o7q9s1u3w5y7a@google.com"
HOLIDAY_UID = "1a3c5e7g9i2k4m6o8q0s2u4w6y@google.com"
REMINDER_UID = "9z7x5v3t1r9p7n5l3j1h9f7d5b@google.com"
OUTLOOK_SERIES_UID = (
    "040000008200E00074C5B7101A82E00800000000F0B1C2D3E4F5DB01000000000000000010000000"
    "1122334455667788990011AABBCCDDEE"
)


# --------------------------------------------------------------------------------- helpers


def utc(text: str) -> datetime:
    """``utc("2026-12-01 10:00")``: an aware UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def import_file(
    session, setup, path: str, *, practitioner=None, limits: Limits | None = None
) -> ImportReport:
    """Import a corpus file for a practitioner (Mei unless told) at NOW, and commit."""
    report = import_calendar_file(
        session,
        clinic=setup.clinic,
        practitioner=practitioner or setup.mei,
        data=(CORPUS / path).read_bytes(),
        name=Path(path).name,
        now=NOW,
        limits=limits or Limits(),
    )
    session.commit()
    return report


def refuse(session, setup, path: str, *, limits: Limits | None = None) -> str:
    """Import a file that must be refused whole; return the refusal's message."""
    with pytest.raises(CalendarFileError) as refused:
        import_file(session, setup, path, limits=limits)
    session.rollback()
    return refused.value.message


def busy(session, practitioner, uid: str | None = None) -> list[tuple[datetime, datetime]]:
    """The practitioner's live busy time (start, end) in UTC, in order; one series if ``uid``."""
    query = select(BusyTime.start_at, BusyTime.end_at).where(
        BusyTime.practitioner_id == practitioner.id, BusyTime.cancelled.is_(False)
    )
    if uid is not None:
        query = query.join(ExternalEvent).where(ExternalEvent.uid == uid)
    return [tuple(row) for row in session.execute(query.order_by(BusyTime.start_at))]


def summaries(session, practitioner) -> list[str]:
    query = select(BusyTime.summary).where(
        BusyTime.practitioner_id == practitioner.id, BusyTime.cancelled.is_(False)
    )
    return list(session.scalars(query.order_by(BusyTime.start_at)))


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def counts(report: ImportReport) -> tuple[int, int, int, int, int]:
    """(imported, updated, cancelled, skipped, errors)."""
    return report.imported, report.updated, report.cancelled, report.skipped, report.errors


def offered(session, setup, day: str, practitioner) -> set[str]:
    """The London wall-clock starts of follow-up slots the practitioner is offered on ``day``."""
    slots = find_slots(
        session,
        clinic=setup.clinic,
        treatment=setup.follow_up,
        practitioner=practitioner,
        first_day=date.fromisoformat(day),
        last_day=date.fromisoformat(day),
        now=NOW,
    )
    return {slot.start.astimezone(LONDON).strftime("%H:%M") for slot in slots}


def run_cli(app, session, practitioner, *paths: str):
    """Run ``calendar import PATHS… --practitioner EMAIL``; then let ``session`` see its commits."""
    email = practitioner.email
    files = [str(CORPUS / path) for path in paths]
    result = app.test_cli_runner().invoke(
        args=["calendar", "import", *files, "--practitioner", email]
    )
    session.rollback()  # end the test's read snapshot (SQLite WAL, PostgreSQL alike)
    return result


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# ------------------------------------------------------------- Google Calendar invites (iTIP)


def test_a_google_invite_blocks_its_time_in_utc(session, setup):
    report = import_file(session, setup, "google/invite.eml")

    assert counts(report) == (1, 0, 0, 0, 0)
    assert busy(session, setup.mei) == [(utc("2026-12-01 10:00"), utc("2026-12-01 11:30"))]
    assert summaries(session, setup.mei) == ["CPD seminar: tongue diagnosis"]
    assert busy(session, setup.james) == []


def test_a_google_invite_and_its_ics_attachment_count_as_one_event(session, setup):
    parsed = read_calendar_file(
        (CORPUS / "google/invite.eml").read_bytes(), name="invite.eml", limits=Limits()
    )

    assert len(parsed.calendars) == 1
    report = import_file(session, setup, "google/invite.eml")
    assert (report.imported, report.skipped) == (1, 0)
    assert count(session, BusyTime) == 1


def test_busy_time_from_an_invite_is_no_longer_offered_but_the_hours_around_it_are(session, setup):
    before = offered(session, setup, "2026-12-01", setup.mei)
    import_file(session, setup, "google/invite.eml")  # 10:00–11:30
    after = offered(session, setup, "2026-12-01", setup.mei)

    # A follow-up is 60 minutes plus a 15-minute buffer, so 9:00 would run into 10:00.
    assert {"09:00", "10:00", "10:30", "11:15"} <= before
    assert not {"09:00", "09:15", "10:00", "10:30", "11:15"} & after
    assert "11:30" in after
    assert "14:00" in after
    assert "10:00" in offered(session, setup, "2026-12-01", setup.james)


def test_reimporting_the_same_invite_imports_nothing(session, setup):
    import_file(session, setup, "google/invite.eml")

    again = import_file(session, setup, "google/invite.eml")

    assert counts(again) == (0, 0, 0, 1, 0)
    assert busy(session, setup.mei) == [(utc("2026-12-01 10:00"), utc("2026-12-01 11:30"))]
    assert count(session, ExternalEvent) == 1


def test_an_update_with_a_higher_sequence_moves_the_busy_time(session, setup):
    import_file(session, setup, "google/invite.eml")

    report = import_file(session, setup, "google/update.eml")

    assert counts(report) == (0, 1, 0, 0, 0)
    assert busy(session, setup.mei) == [(utc("2026-12-01 14:00"), utc("2026-12-01 15:30"))]
    assert "10:00" in offered(session, setup, "2026-12-01", setup.mei)
    assert "14:00" not in offered(session, setup, "2026-12-01", setup.mei)


def test_an_update_that_only_lengthens_the_meeting_extends_the_busy_time(session, setup):
    import_file(session, setup, "google/invite.eml")

    report = import_file(session, setup, "google/extended.eml")  # same start, ends 12:00

    assert counts(report) == (0, 1, 0, 0, 0)
    assert busy(session, setup.mei) == [(utc("2026-12-01 10:00"), utc("2026-12-01 12:00"))]


def test_a_stale_invite_after_its_update_changes_nothing(session, setup):
    import_file(session, setup, "google/invite.eml")
    import_file(session, setup, "google/update.eml")

    stale = import_file(session, setup, "google/invite.eml")  # SEQUENCE 0 after 1

    assert counts(stale) == (0, 0, 0, 1, 0)
    assert busy(session, setup.mei) == [(utc("2026-12-01 14:00"), utc("2026-12-01 15:30"))]
    event = session.scalars(select(ExternalEvent)).one()
    assert event.sequence == 1


def test_a_cancel_removes_the_busy_time(session, setup):
    import_file(session, setup, "google/invite.eml")
    import_file(session, setup, "google/update.eml")

    report = import_file(session, setup, "google/cancel.eml")

    assert counts(report) == (0, 0, 1, 0, 0)
    assert busy(session, setup.mei) == []
    assert {"10:00", "14:00"} <= offered(session, setup, "2026-12-01", setup.mei)
    event = session.scalars(select(ExternalEvent)).one()
    assert event.cancelled
    assert event.sequence == 2


@pytest.mark.parametrize("late", ["google/invite.eml", "google/update.eml"])
def test_an_older_request_arriving_after_the_cancel_does_not_bring_it_back(session, setup, late):
    import_file(session, setup, "google/invite.eml")
    import_file(session, setup, "google/cancel.eml")

    report = import_file(session, setup, late)

    assert counts(report) == (0, 0, 0, 1, 0)
    assert busy(session, setup.mei) == []


def test_a_cancel_that_arrives_before_its_invite_keeps_the_invite_from_blocking(session, setup):
    first = import_file(session, setup, "google/cancel.eml")
    late = import_file(session, setup, "google/invite.eml")

    assert counts(first) == (0, 0, 0, 1, 0)
    assert counts(late) == (0, 0, 0, 1, 0)
    assert busy(session, setup.mei) == []


def test_the_same_invite_for_two_practitioners_blocks_each_of_them(session, setup):
    import_file(session, setup, "google/invite.eml", practitioner=setup.mei)
    report = import_file(session, setup, "google/invite.eml", practitioner=setup.james)

    assert report.imported == 1
    expected = [(utc("2026-12-01 10:00"), utc("2026-12-01 11:30"))]
    assert busy(session, setup.mei) == expected
    assert busy(session, setup.james) == expected


def test_new_busy_time_over_a_booking_lists_the_clash_and_keeps_the_booking(session, setup, book):
    booking = book(london("2026-12-01", "10:30"), practitioner=setup.mei)
    elsewhere = book(london("2026-12-01", "10:30"), practitioner=setup.james)

    report = import_file(session, setup, "google/invite.eml")

    assert [clash.booking.id for clash in report.clashes] == [booking.id]
    [clash] = report.clashes
    assert clash.summary == "CPD seminar: tongue diagnosis"
    assert (clash.start, clash.end) == (utc("2026-12-01 10:00"), utc("2026-12-01 11:30"))
    session.expire_all()
    kept = session.get(Booking, booking.id)
    assert kept.status is BookingStatus.CONFIRMED
    assert kept.start_at == london("2026-12-01", "10:30")
    assert session.get(Booking, elsewhere.id).status is BookingStatus.CONFIRMED


# ------------------------------------------------------------- Google secret-address feed


def test_a_google_feed_reports_what_it_imported_and_passed_over(session, setup):
    report = import_file(session, setup, "google/basic.ics")

    # Teaching, supervision, the days away and the dentist; the reminder (free) and the
    # 2024 training day (outside the window) are passed over.
    assert counts(report) == (4, 0, 0, 2, 0)
    assert report.problems == []
    assert "Old training day" not in summaries(session, setup.mei)
    assert "Renew insurance (reminder)" not in summaries(session, setup.mei)


def test_a_weekly_google_series_leaves_out_its_exdate_and_moves_its_moved_instance(session, setup):
    import_file(session, setup, "google/basic.ics")

    assert busy(session, setup.mei, TEACHING_UID) == [
        (utc("2026-11-25 14:00"), utc("2026-11-25 16:00")),
        (utc("2026-12-02 14:00"), utc("2026-12-02 16:00")),
        (utc("2026-12-10 09:00"), utc("2026-12-10 11:00")),  # moved from Wed 9 Dec 14:00
        (utc("2026-12-16 14:00"), utc("2026-12-16 16:00")),
        # 23 December is an EXDATE.
        (utc("2026-12-30 14:00"), utc("2026-12-30 16:00")),
    ]
    assert "14:00" in offered(session, setup, "2026-12-09", setup.mei)
    assert "14:00" in offered(session, setup, "2026-12-23", setup.mei)
    assert "14:00" not in offered(session, setup, "2026-12-16", setup.mei)
    assert "09:00" not in offered(session, setup, "2026-12-10", setup.mei)


def test_x_wr_timezone_makes_google_utc_times_london_wall_times_across_the_clock_change(
    session, setup
):
    import_file(session, setup, "google/basic.ics")

    # DTSTART:20270302T100000Z weekly: 10:00 in London stays 10:00 after 28 March (BST).
    assert busy(session, setup.mei, SUPERVISION_UID) == [
        (utc("2027-03-02 10:00"), utc("2027-03-02 11:00")),
        (utc("2027-03-09 10:00"), utc("2027-03-09 11:00")),
        (utc("2027-03-16 10:00"), utc("2027-03-16 11:00")),
        (utc("2027-03-23 10:00"), utc("2027-03-23 11:00")),
        (utc("2027-03-30 09:00"), utc("2027-03-30 10:00")),
        (utc("2027-04-06 09:00"), utc("2027-04-06 10:00")),
    ]


def test_a_feed_fetched_again_after_a_week_was_taken_out_drops_only_that_week(session, setup):
    import_file(session, setup, "google/basic.ics")

    report = import_file(session, setup, "google/basic-a-week-later.ics")

    # Only the teaching series changed (30 December is now an EXDATE too).
    assert counts(report) == (0, 1, 0, 5, 0)
    assert busy(session, setup.mei, TEACHING_UID) == [
        (utc("2026-11-25 14:00"), utc("2026-11-25 16:00")),
        (utc("2026-12-02 14:00"), utc("2026-12-02 16:00")),
        (utc("2026-12-10 09:00"), utc("2026-12-10 11:00")),
        (utc("2026-12-16 14:00"), utc("2026-12-16 16:00")),
    ]


def test_an_all_day_google_event_blocks_whole_clinic_days(session, setup):
    import_file(session, setup, "google/basic.ics")

    row = session.scalars(
        select(BusyTime).join(ExternalEvent).where(ExternalEvent.uid == HOLIDAY_UID)
    ).one()
    assert (row.start_at, row.end_at) == (utc("2026-12-14 00:00"), utc("2026-12-16 00:00"))
    assert row.all_day
    assert offered(session, setup, "2026-12-14", setup.mei) == set()
    assert offered(session, setup, "2026-12-15", setup.mei) == set()
    assert "09:00" in offered(session, setup, "2026-12-16", setup.mei)


def test_an_event_marked_free_blocks_nothing(session, setup):
    before = offered(session, setup, "2026-12-03", setup.mei)
    import_file(session, setup, "google/basic.ics")

    assert busy(session, setup.mei, REMINDER_UID) == []
    assert offered(session, setup, "2026-12-03", setup.mei) == before
    assert "11:45" in before  # 11:45–12:45 would overlap the free 12:00–12:30 reminder


def test_reimporting_a_google_feed_imports_nothing_and_changes_nothing(session, setup):
    import_file(session, setup, "google/basic.ics")
    rows = busy(session, setup.mei)

    again = import_file(session, setup, "google/basic.ics")

    assert counts(again) == (0, 0, 0, 6, 0)
    assert busy(session, setup.mei) == rows
    assert len(rows) == 5 + 6 + 1 + 1


# ------------------------------------------------------------------------- Outlook / Exchange


def test_an_outlook_invite_in_windows_1252_quoted_printable_keeps_its_accents(session, setup):
    report = import_file(session, setup, "outlook/invite-w-europe.eml")

    assert counts(report) == (1, 0, 0, 0, 0)
    assert report.notes == []
    assert summaries(session, setup.mei) == ["Fallbesprechung mit Zoë – Café Müller"]


def test_an_outlook_invite_in_w_europe_standard_time_is_berlin_time(session, setup):
    import_file(session, setup, "outlook/invite-w-europe.eml")

    # 15:00–16:30 in Berlin (UTC+1 in December) is 14:00–15:30 in London and UTC.
    assert busy(session, setup.mei) == [(utc("2026-12-02 14:00"), utc("2026-12-02 15:30"))]
    assert "14:00" not in offered(session, setup, "2026-12-02", setup.mei)
    assert "15:30" in offered(session, setup, "2026-12-02", setup.mei)


def test_windows_zone_names_without_a_vtimezone_are_understood(session, setup):
    report = import_file(session, setup, "outlook/windows-zone-names.ics")

    assert counts(report) == (2, 0, 0, 0, 0)
    assert busy(session, setup.mei) == [
        # 11:00 W. Europe Standard Time in November is 10:00 UTC.
        (utc("2026-11-26 10:00"), utc("2026-11-26 11:00")),
        # 11:00 GMT Standard Time in June (BST) is 10:00 UTC.
        (utc("2027-06-17 10:00"), utc("2027-06-17 11:00")),
    ]
    assert not any("floating" in note for note in report.notes)


def test_an_outlook_customized_time_zone_follows_its_own_rules_across_the_clock_change(
    session, setup
):
    report = import_file(session, setup, "outlook/series-customized-zone.eml")

    assert counts(report) == (1, 0, 0, 0, 0)
    # Mondays 09:00 in a UTC+1 zone that moves to UTC+2 on the last Sunday of March.
    assert busy(session, setup.mei) == [
        (utc("2027-03-15 08:00"), utc("2027-03-15 09:00")),
        (utc("2027-03-22 08:00"), utc("2027-03-22 09:00")),
        (utc("2027-03-29 07:00"), utc("2027-03-29 08:00")),
        (utc("2027-04-05 07:00"), utc("2027-04-05 08:00")),
    ]


def test_an_outlook_instance_cancel_removes_only_that_occurrence(session, setup):
    import_file(session, setup, "outlook/series-customized-zone.eml")

    report = import_file(session, setup, "outlook/cancel-one-instance.eml")

    assert counts(report) == (0, 0, 1, 0, 0)
    assert busy(session, setup.mei) == [
        (utc("2027-03-15 08:00"), utc("2027-03-15 09:00")),
        (utc("2027-03-29 07:00"), utc("2027-03-29 08:00")),
        (utc("2027-04-05 07:00"), utc("2027-04-05 08:00")),
    ]
    event = session.scalars(select(ExternalEvent)).one()
    assert not event.cancelled


def test_an_outlook_instance_moved_on_its_own_moves_only_that_occurrence(session, setup):
    import_file(session, setup, "outlook/series-customized-zone.eml")

    report = import_file(session, setup, "outlook/move-one-instance.eml")

    assert counts(report) == (0, 1, 0, 0, 0)
    assert busy(session, setup.mei) == [
        (utc("2027-03-15 08:00"), utc("2027-03-15 09:00")),
        (utc("2027-03-22 08:00"), utc("2027-03-22 09:00")),
        # 29 March moved from 09:00 to 14:00 in the zone, now UTC+2.
        (utc("2027-03-29 12:00"), utc("2027-03-29 13:00")),
        (utc("2027-04-05 07:00"), utc("2027-04-05 08:00")),
    ]


def test_an_instance_cancel_imported_twice_cancels_once(session, setup):
    import_file(session, setup, "outlook/series-customized-zone.eml")
    import_file(session, setup, "outlook/cancel-one-instance.eml")

    again = import_file(session, setup, "outlook/cancel-one-instance.eml")

    assert counts(again) == (0, 0, 0, 1, 0)
    assert len(busy(session, setup.mei)) == 3


def test_the_original_series_invite_arriving_again_does_not_restore_a_cancelled_instance(
    session, setup
):
    import_file(session, setup, "outlook/series-customized-zone.eml")
    import_file(session, setup, "outlook/cancel-one-instance.eml")  # instance SEQUENCE 1

    late = import_file(session, setup, "outlook/series-customized-zone.eml")  # SEQUENCE 0

    assert (late.imported, late.updated) == (0, 0)
    assert (utc("2027-03-22 08:00"), utc("2027-03-22 09:00")) not in busy(
        session, setup.mei, OUTLOOK_SERIES_UID
    )


# ------------------------------------------------------------------- Apple Calendar (iCloud)


def test_apple_events_with_duration_and_an_iana_vtimezone(session, setup):
    report = import_file(session, setup, "apple/icloud.ics")

    assert counts(report) == (2, 0, 0, 0, 0)
    assert busy(session, setup.mei) == [
        # Physio: weekly, 08:30 Berlin for 45 minutes.
        (utc("2026-11-30 07:30"), utc("2026-11-30 08:15")),
        # Study group: 10:00 Berlin for an hour and a half.
        (utc("2026-12-04 09:00"), utc("2026-12-04 10:30")),
        (utc("2026-12-07 07:30"), utc("2026-12-07 08:15")),
        (utc("2026-12-14 07:30"), utc("2026-12-14 08:15")),
    ]
    assert "09:00" not in offered(session, setup, "2026-12-04", setup.mei)
    assert "10:30" in offered(session, setup, "2026-12-04", setup.mei)


# ------------------------------------------------------------------ Thunderbird (Lightning)


def test_a_thunderbird_file_with_lf_line_endings_imports_its_rdates(session, setup):
    data = (CORPUS / "thunderbird/lightning.ics").read_bytes()
    assert b"\r\n" not in data

    report = import_file(session, setup, "thunderbird/lightning.ics")

    assert counts(report) == (2, 0, 0, 0, 0)
    assert busy(session, setup.mei, "7e2d1c0b-9a8f-4e7d-6c5b-4a3f2e1d0c9b") == [
        (utc("2026-11-30 10:00"), utc("2026-11-30 11:00")),
        (utc("2026-12-07 10:00"), utc("2026-12-07 11:00")),
        (utc("2026-12-14 10:00"), utc("2026-12-14 11:00")),
    ]


def test_a_floating_time_is_taken_in_the_clinic_zone_with_a_note(session, setup):
    report = import_file(session, setup, "thunderbird/lightning.ics")

    # 17:00–19:00 with no zone, in June: London is on BST, so 16:00–18:00 UTC.
    assert busy(session, setup.mei, "0b7c5a9e-3f1d-4c2b-9e8a-6d5f4c3b2a10") == [
        (utc("2027-06-10 16:00"), utc("2027-06-10 18:00"))
    ]
    [note] = [note for note in report.notes if "floating" in note]
    assert "Europe/London" in note


# ---------------------------------------------------------------------------------- Nextcloud


def test_a_nextcloud_file_of_several_calendars_with_a_bom_imports_every_event(session, setup):
    data = (CORPUS / "nextcloud/personal.ics").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"BEGIN:VCALENDAR") == 2

    report = import_file(session, setup, "nextcloud/personal.ics")

    assert counts(report) == (2, 0, 0, 0, 0)
    assert busy(session, setup.mei) == [
        (utc("2026-12-01 15:00"), utc("2026-12-01 16:00")),
        (utc("2026-12-03 09:30"), utc("2026-12-03 10:30")),
    ]


def test_a_character_split_across_a_fold_is_read_whole(session, setup):
    data = (CORPUS / "nextcloud/personal.ics").read_bytes()
    assert "気".encode() not in data  # the fold falls inside it

    report = import_file(session, setup, "nextcloud/personal.ics")

    assert report.notes == []
    assert summaries(session, setup.mei)[0] == (
        "Qi Gong für Anfänger – Übungsgruppe mit Frau Öztürk, Thema 気功 und Atmung"
    )


# ------------------------------------------------------------- files refused whole, located


def test_a_file_that_is_not_a_calendar_is_refused_at_line_1(session, setup):
    message = refuse(session, setup, "malformed/not-a-calendar.ics")

    assert message.startswith("line 1:")
    assert "not a calendar line" in message
    assert count(session, ExternalEvent) == count(session, BusyTime) == 0


def test_a_truncated_file_is_refused_and_its_complete_events_are_not_half_written(session, setup):
    message = refuse(session, setup, "malformed/truncated.ics")

    assert message == ("the file ends inside BEGIN:VEVENT from line 11 (it may be cut short)")
    assert count(session, ExternalEvent) == count(session, BusyTime) == 0


def test_an_end_that_closes_the_wrong_component_is_located(session, setup):
    message = refuse(session, setup, "malformed/end-mismatch.ics")

    assert message == "line 10: END:VTODO closes BEGIN:VEVENT from line 4"
    assert count(session, BusyTime) == 0


def test_components_nested_too_deep_are_refused_where_the_limit_is_passed(session, setup):
    message = refuse(session, setup, "malformed/nested-too-deep.ics")

    assert message == "line 16: components nested more than 8 deep"
    assert count(session, BusyTime) == 0


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(session, setup):
    message = refuse(session, setup, "google/basic.ics", limits=Limits(max_bytes=1000))

    assert message.startswith("the file is ")
    assert message.endswith("; the limit is 1000 bytes")
    assert count(session, ExternalEvent) == count(session, BusyTime) == 0
    # Garbage over the cap gets the same answer: the size is checked before any parsing.
    with pytest.raises(CalendarFileError, match="the limit is 1000 bytes"):
        read_calendar_file(b"\x00garbage" * 200, name="x.ics", limits=Limits(max_bytes=1000))


def test_a_file_with_too_many_events_is_refused_at_the_first_one_too_many(session, setup):
    message = refuse(session, setup, "google/basic.ics", limits=Limits(max_events=3))

    assert message == ("line 72: the file holds more than 3 events; split it into smaller files")
    assert count(session, ExternalEvent) == count(session, BusyTime) == 0


# ---------------------------------------------------------- bad events in otherwise good files


def test_an_unknown_tzid_skips_that_event_by_name_and_imports_the_rest(session, setup):
    report = import_file(session, setup, "malformed/unknown-tzid.ics")

    assert counts(report) == (1, 0, 0, 0, 1)
    [problem] = report.problems
    assert "Mars/Olympus_Mons" in problem
    assert "Base camp briefing" in problem
    assert busy(session, setup.mei) == [(utc("2026-12-01 09:00"), utc("2026-12-01 10:00"))]
    assert busy(session, setup.mei, "mars@test") == []


def test_a_broken_dtstart_skips_that_event_and_imports_the_rest(session, setup):
    report = import_file(session, setup, "malformed/broken-dtstart.ics")

    assert counts(report) == (1, 0, 0, 0, 1)
    [problem] = report.problems
    assert "DTSTART" in problem
    assert "broken@test" in problem
    assert busy(session, setup.mei) == [(utc("2026-12-01 09:00"), utc("2026-12-01 10:00"))]


def test_a_secondly_rule_is_refused_for_that_event_only(session, setup):
    report = import_file(session, setup, "malformed/secondly.ics")

    assert counts(report) == (1, 0, 0, 0, 1)
    [problem] = report.problems
    assert "secondly" in problem
    assert "Every second" in problem
    assert busy(session, setup.mei) == [(utc("2026-12-01 09:00"), utc("2026-12-01 10:00"))]
    assert busy(session, setup.mei, "secondly@test") == []


def test_newlines_and_control_characters_in_a_summary_stay_inside_that_event(session, setup):
    report = import_file(session, setup, "malformed/injection.ics")

    assert counts(report) == (2, 0, 0, 0, 0)
    uids = set(session.scalars(select(ExternalEvent.uid)))
    assert uids == {"lunch@test", "bell@test"}
    assert busy(session, setup.mei) == [
        (utc("2026-12-01 12:00"), utc("2026-12-01 12:30")),
        (utc("2026-12-02 09:00"), utc("2026-12-02 09:30")),
    ]
    for text in summaries(session, setup.mei):
        assert text.isprintable(), repr(text)
    # The bare CR did not end the line: nothing was booked for 3 December.
    assert "09:00" in offered(session, setup, "2026-12-03", setup.mei)


def test_an_imported_summary_cannot_inject_a_line_into_the_practitioners_feed(
    app, session, setup, book
):
    book(london("2026-12-01", "15:00"), practitioner=setup.mei)
    import_file(session, setup, "malformed/injection.ics")

    response = app.test_client().get(f"/feeds/{setup.mei.feed_token}.ics")

    assert response.status_code == 200
    lines = response.get_data().decode().replace("\r\n ", "").split("\r\n")
    assert lines.count("BEGIN:VEVENT") == 1
    assert not any("injected" in line for line in lines)
    assert not any(ch in response.get_data().decode() for ch in "\x07\x1b")


# ------------------------------------------------------------------------------------ the CLI


def test_the_cli_imports_a_file_and_ends_with_the_counts(app, session, setup):
    result = run_cli(app, session, setup.mei, "google/basic.ics")

    assert result.exit_code == 0, result.output
    assert last_line(result.stdout) == "imported 4, updated 0, cancelled 0, skipped 2, errors 0"
    assert len(busy(session, setup.mei)) == 13


def test_the_cli_applies_an_outlook_series_and_its_instance_cancel_in_order(app, session, setup):
    result = run_cli(
        app,
        session,
        setup.mei,
        "outlook/series-customized-zone.eml",
        "outlook/cancel-one-instance.eml",
    )

    assert result.exit_code == 0, result.output
    assert last_line(result.stdout) == "imported 1, updated 0, cancelled 1, skipped 0, errors 0"
    assert (utc("2027-03-22 08:00"), utc("2027-03-22 09:00")) not in busy(session, setup.mei)
    assert len(busy(session, setup.mei)) == 3


def test_the_cli_applies_an_invite_and_its_update_that_lengthens_it(app, session, setup):
    result = run_cli(app, session, setup.mei, "google/invite.eml", "google/extended.eml")

    assert result.exit_code == 0, result.output
    assert last_line(result.stdout) == "imported 1, updated 1, cancelled 0, skipped 0, errors 0"
    assert busy(session, setup.mei) == [(utc("2026-12-01 10:00"), utc("2026-12-01 12:00"))]


def test_the_cli_refuses_a_broken_file_keeps_the_good_one_and_exits_1(app, session, setup):
    result = run_cli(app, session, setup.mei, "google/invite.eml", "malformed/truncated.ics")

    assert result.exit_code == 1
    assert last_line(result.stdout) == "imported 1, updated 0, cancelled 0, skipped 0, errors 1"
    assert "truncated.ics: the file ends inside BEGIN:VEVENT from line 11" in result.stderr
    assert busy(session, setup.mei) == [(utc("2026-12-01 10:00"), utc("2026-12-01 11:30"))]
    assert session.scalars(select(ExternalEvent.uid)).all() == [GOOGLE_UID]


def test_the_cli_refuses_a_file_over_the_configured_size_cap(app, session, setup, monkeypatch):
    monkeypatch.setitem(app.config, "CALENDAR_IMPORT_MAX_BYTES", 1000)

    result = run_cli(app, session, setup.mei, "google/basic.ics")

    assert result.exit_code == 1
    assert last_line(result.stdout) == "imported 0, updated 0, cancelled 0, skipped 0, errors 1"
    assert "limit of 1000 bytes" in result.stderr
    assert count(session, BusyTime) == 0


def test_the_cli_names_a_skipped_event_and_still_exits_0(app, session, setup):
    result = run_cli(app, session, setup.mei, "malformed/unknown-tzid.ics")

    assert result.exit_code == 0, result.output
    assert last_line(result.stdout) == "imported 1, updated 0, cancelled 0, skipped 0, errors 1"
    assert "Mars/Olympus_Mons" in result.stderr
    assert "Mars/Olympus_Mons" not in result.stdout
    assert busy(session, setup.mei) == [(utc("2026-12-01 09:00"), utc("2026-12-01 10:00"))]


def test_the_cli_reports_a_clash_and_the_booking_stays_confirmed(app, session, setup, book):
    booking = book(london("2026-12-01", "11:00"), practitioner=setup.mei)

    result = run_cli(app, session, setup.mei, "google/invite.eml")

    assert result.exit_code == 0, result.output
    [clash] = [line for line in result.stderr.splitlines() if line.startswith("Clash:")]
    assert "CPD seminar: tongue diagnosis" in clash
    assert "the booking was kept" in clash
    assert session.get(Booking, booking.id).status is BookingStatus.CONFIRMED
    assert busy(session, setup.mei) == [(utc("2026-12-01 10:00"), utc("2026-12-01 11:30"))]


def test_the_cli_prints_no_control_characters_from_an_imported_summary(app, session, setup, book):
    book(london("2026-12-02", "09:00"), practitioner=setup.mei)  # clashes with the bell event

    result = run_cli(app, session, setup.mei, "malformed/injection.ics")

    assert result.exit_code == 0, result.output
    assert "Clash:" in result.stderr
    assert "\x1b" not in result.output
    assert "\x07" not in result.output
    assert not any(
        line.startswith(("END:", "BEGIN:", "UID:")) for line in result.output.splitlines()
    )


# ------------------------------------------------------------- time limits and progress


def test_a_file_that_takes_too_long_is_refused_whole(session, setup):
    message = refuse(session, setup, "google/basic.ics", limits=Limits(seconds=0))

    assert "took longer than 0 seconds" in message
    assert count(session, BusyTime) == 0


def test_a_rule_that_never_matches_is_stopped_and_reported_not_searched_to_9999(
    session, setup, monkeypatch
):
    monkeypatch.setattr("scheduler.calendars.expansion.SERIES_SECONDS", 0.2)
    never = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//hostile//EN\r\nBEGIN:VEVENT\r\n"
        b"UID:never@hostile\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:20261125T100000Z\r\n"
        b"DTEND:20261125T110000Z\r\nRRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30\r\n"
        b"SUMMARY:Never again\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )

    report = import_calendar_file(
        session,
        clinic=setup.clinic,
        practitioner=setup.mei,
        data=never,
        name="never.ics",
        now=NOW,
        limits=Limits(seconds=5),
    )

    assert counts(report) == (0, 0, 0, 0, 1)
    assert "its repetition rule takes too long to work out" in report.problems[0]
    assert busy(session, setup.mei) == []


def test_the_command_shows_progress_for_a_large_file(app, session, setup, monkeypatch):
    monkeypatch.setattr("scheduler.calendars.commands.PROGRESS_FROM", 1)

    result = run_cli(app, session, setup.mei, "google/basic.ics")

    assert result.exit_code == 0
    assert "Reading basic.ics" in result.stderr
    assert "Reading" not in result.stdout, "the summary stays the only line on stdout"
