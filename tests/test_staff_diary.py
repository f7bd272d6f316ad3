"""The staff's day and week: what each view shows, to whom, and where it is drawn."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from scheduler.calendars.models import BusyTime, ExternalEvent
from scheduler.staff.diary import day_grid
from scheduler.staff.models import Role
from tests.conftest import log_in, london

WEDNESDAY = "2026-11-25"


@pytest.fixture
def busy(session, setup):
    """Imported busy time for a practitioner: ``busy(practitioner, start, end, summary)``."""

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


def blocks_of(html: str) -> list[str]:
    """The text of each block on the page, whitespace collapsed."""
    found = re.findall(r'<li class="block[^"]*"[^>]*>(.*?)</li>', html, flags=re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", block).split()) for block in found]


def test_the_day_shows_each_practitioners_bookings_busy_time_and_time_off(
    client, make_user, setup, book, busy, make_time_off
):
    booking = book(london(WEDNESDAY, "10:00"), practitioner=setup.mei)
    busy(setup.james, london(WEDNESDAY, "14:00"), london(WEDNESDAY, "15:00"), "Dentist")
    make_time_off(setup.mei, london(WEDNESDAY, "16:00"), london(WEDNESDAY, "18:00"))
    log_in(client, make_user(Role.RECEPTION).email)

    page = client.get(f"/staff/day?date={WEDNESDAY}")

    assert page.status_code == 200
    assert "Wednesday 25 November 2026" in page.text
    # Practitioners in alphabetical order, each one's blocks in time order.
    assert blocks_of(page.text) == [
        "14:00–15:00 Busy: Dentist",
        f"10:00–11:00 {booking.patient.name} Follow-up treatment · Garden room",
        "16:00–18:00 Time off: Time off",
    ]
    columns = re.findall(r'<section class="grid-column" aria-label="([^"]+)">', page.text)
    assert columns == ["James Okafor", "Mei Lin"]


def test_a_practitioner_sees_only_their_own_day(client, make_user, setup, book):
    mine = book(london(WEDNESDAY, "10:00"), practitioner=setup.mei)
    theirs = book(london(WEDNESDAY, "11:30"), practitioner=setup.james)
    log_in(client, make_user(Role.PRACTITIONER, practitioner=setup.mei).email)

    page = client.get(f"/staff/day?date={WEDNESDAY}&by=room")

    assert mine.patient.name in page.text
    assert theirs.patient.name not in page.text
    assert "James Okafor" not in page.text


def test_the_day_by_room_puts_each_booking_in_its_room(client, make_user, setup, book):
    first = book(london(WEDNESDAY, "10:00"), practitioner=setup.mei)
    second = book(london(WEDNESDAY, "10:00"), practitioner=setup.james)
    log_in(client, make_user(Role.ADMIN).email)

    page = client.get(f"/staff/day?date={WEDNESDAY}&by=room")

    garden = page.text.index('aria-label="Garden room"')
    courtyard = page.text.index('aria-label="Courtyard room"')
    assert garden < page.text.index(first.patient.name) < courtyard
    assert courtyard < page.text.index(second.patient.name)


def test_the_week_shows_a_practitioners_days_side_by_side(client, make_user, setup, book):
    booking = book(london("2026-11-27", "15:00"), practitioner=setup.james)
    log_in(client, make_user(Role.ADMIN).email)

    page = client.get(f"/staff/week?date={WEDNESDAY}&practitioner={setup.james.id}")

    assert page.status_code == 200
    assert "Week of 23 November 2026: James Okafor" in page.text
    columns = re.findall(r'<section class="grid-column" aria-label="([^"]+)">', page.text)
    assert columns == [
        "Mon 23 Nov",
        "Tue 24 Nov",
        "Wed 25 Nov",
        "Thu 26 Nov",
        "Fri 27 Nov",
        "Sat 28 Nov",
        "Sun 29 Nov",
    ]
    friday = page.text.index('aria-label="Fri 27 Nov"')
    assert friday < page.text.index(booking.patient.name) < page.text.index('aria-label="Sat')


def test_a_practitioner_cannot_open_another_practitioners_week(client, make_user, setup, book):
    theirs = book(london(WEDNESDAY, "11:30"), practitioner=setup.james)
    log_in(client, make_user(Role.PRACTITIONER, practitioner=setup.mei).email)

    page = client.get(f"/staff/week?date={WEDNESDAY}&practitioner={setup.james.id}")

    assert page.status_code == 200
    assert "You cannot see that practitioner&#39;s week" in page.text
    assert theirs.patient.name not in page.text
    assert "Week of 23 November 2026: Mei Lin" in page.text


@pytest.mark.parametrize("raw", ["tomorrow", "2026-13-01", "1066-10-14", "2026-11-25%00"])
def test_a_bad_date_shows_today_and_says_what_to_fix(client, make_user, setup, raw):
    log_in(client, make_user(Role.RECEPTION).email)

    page = client.get(f"/staff/day?date={raw}")

    assert page.status_code == 200
    assert "Showing today." in page.text
    assert "Monday 23 November 2026" in page.text


def test_the_day_navigation_moves_by_a_day_and_the_week_by_a_week(client, make_user, setup):
    log_in(client, make_user(Role.RECEPTION).email)

    day = client.get(f"/staff/day?date={WEDNESDAY}").text
    week = client.get(f"/staff/week?date={WEDNESDAY}").text

    assert 'href="/staff/day?date=2026-11-24" rel="prev"' in day
    assert 'href="/staff/day?date=2026-11-26" rel="next"' in day
    assert 'href="/staff/day?date=2026-11-23">Today' in day
    assert f"practitioner={setup.james.id}" in week  # the first by name
    assert "date=2026-12-02" in week


def test_the_day_sheet_lists_each_booking_with_the_patients_phone(client, make_user, setup, book):
    booking = book(london(WEDNESDAY, "10:00"), practitioner=setup.mei, treatment=setup.initial)
    log_in(client, make_user(Role.RECEPTION).email)

    page = client.get(f"/staff/day/sheet?date={WEDNESDAY}")

    assert page.status_code == 200
    assert booking.patient.name in page.text
    assert "+44 7700 900000" in page.text
    assert "(first visit)" in page.text


def test_blocks_sit_at_their_wall_clock_time_even_on_the_day_clocks_change(
    session, setup, book, clock
):
    clock.now = datetime(2027, 3, 20, 8, 0, tzinfo=UTC)
    # Clocks go forward at 01:00 on Sunday 28 March 2027; Monday 29th is the first BST weekday.
    booking = book(london("2027-03-29", "10:00"), practitioner=setup.mei)

    grid = day_grid(session, setup.clinic, date(2027, 3, 29), [setup.mei])

    [column] = grid.columns
    [block] = column.blocks
    assert block.booking is not None
    assert block.booking.id == booking.id
    assert (grid.first_hour, grid.last_hour) == (8, 19)
    # 10:00 is two hours into an eleven-hour grid; an hour is 1/11 of it.
    assert grid.top(block, column.day) == round(100 * 120 / 660, 3)
    assert grid.height(block, column.day) == round(100 * 60 / 660, 3)
    assert [(o.start, o.end) for o in column.opening] == [
        (london("2027-03-29", "09:00"), london("2027-03-29", "13:00")),
        (london("2027-03-29", "14:00"), london("2027-03-29", "18:00")),
    ]


def test_the_grid_widens_for_a_booking_outside_the_usual_hours(session, setup, busy):
    busy(setup.mei, london(WEDNESDAY, "06:30"), london(WEDNESDAY, "07:15"), "Early swim")
    busy(setup.mei, london(WEDNESDAY, "20:00"), london(WEDNESDAY, "21:30"), "Late class")

    grid = day_grid(session, setup.clinic, date(2026, 11, 25), [setup.mei])

    assert (grid.first_hour, grid.last_hour) == (6, 22)
