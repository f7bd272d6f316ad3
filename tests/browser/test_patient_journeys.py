"""Issue 9: a patient's journeys in a real browser, on a phone-sized screen.

Each step is what a person does (follow a link by its text, tick a box by its label, press a
button by its name) and each check is what they would see. Every page on the way is checked
with axe-core by ``arrive``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from icalendar import Calendar
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.booking.models import Booking, BookingStatus
from scheduler.waitlist.models import EntryStatus, WaitlistEntry
from tests.browser.conftest import PHONE, arrive, expect
from tests.conftest import Setup, london

if TYPE_CHECKING:
    from playwright.sync_api import Page


def downloaded_event(page: Page, link_name: str) -> tuple[str, datetime, datetime, str]:
    """Click the link that downloads a calendar file; return its file name and its one event's
    start, end and summary."""
    with page.expect_download() as download:
        page.get_by_role("link", name=link_name).click()
    saved = Path(download.value.path())
    calendar = Calendar.from_ical(saved.read_bytes())
    (event,) = calendar.walk("VEVENT")
    start, end = event.decoded("DTSTART"), event.decoded("DTEND")
    return download.value.suggested_filename, start, end, str(event.get("SUMMARY"))


def test_a_new_patient_books_a_first_visit_downloads_it_moves_it_and_cancels_it(
    page: Page, setup: Setup, session: Session
) -> None:
    page.set_viewport_size(PHONE)
    page.goto("/")
    arrive(page, "**/", shot="home")
    expect(page.get_by_role("heading", level=1)).to_have_text(setup.clinic.name)

    page.get_by_role("main").get_by_role("link", name="Book a session").click()
    arrive(page, "**/book")
    page.get_by_role("radio", name=re.compile(r"^Initial consultation")).check()
    page.get_by_label("Practitioner").select_option(label="Mei Lin")
    page.get_by_role("button", name="Show free times").click()
    arrive(page, "**/book?*", shot="slot-picker")
    expect(page.get_by_role("heading", level=2).first).to_have_text(
        "Free times for Initial consultation with Mei Lin"
    )
    # 12 hours' notice: nothing is left today, Monday.
    monday = page.locator("section.day").filter(has_text="Monday 23 November")
    expect(monday).to_contain_text("No free times")

    page.get_by_role("link", name="Tuesday 24 November 2026, 10:00 GMT").click()
    arrive(page, "**/book/confirm?*", shot="details-form")
    expect(page.locator(".summary")).to_contain_text(
        "Tuesday 24 November 2026, 10:00 to 11:30 GMT (Europe/London)"
    )

    # Pressing Book with nothing filled in says what is missing, next to each field.
    page.get_by_role("button", name="Book", exact=True).click()
    arrive(page, "**/book/confirm?*")
    name = page.get_by_label("Full name")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_have_accessible_description("Please enter your name.")

    name.fill("Ada Lovelace")
    page.get_by_label("Email").fill("ada@example.org")
    page.get_by_label("Phone").fill("+44 7700 900123")
    page.get_by_label(re.compile("^Medications and supplements")).fill("Warfarin 5 mg daily")
    page.get_by_role("checkbox", name=re.compile("^I take anticoagulants")).check()
    page.get_by_role("button", name="Book", exact=True).click()
    arrive(page, "**/book/confirm?*")
    consent = page.get_by_role("checkbox", name=re.compile("^I consent to acupuncture"))
    expect(consent).to_have_accessible_description(
        "Please give your consent to treatment; we cannot treat you without it."
    )
    expect(page.get_by_label(re.compile("^Medications and supplements"))).to_have_value(
        "Warfarin 5 mg daily"
    )
    assert session.scalars(select(Booking)).first() is None
    consent.check()
    page.get_by_role("button", name="Book", exact=True).click()
    arrive(page, "**/b/*", shot="manage")
    expect(page.get_by_role("status")).to_have_text(
        "Your session is booked. We look forward to seeing you."
    )
    summary = page.locator(".summary")
    expect(summary).to_contain_text("Confirmed")
    expect(summary).to_contain_text("Initial consultation with Mei Lin")
    expect(summary).to_contain_text("Tuesday 24 November 2026, 10:00 to 11:30")
    expect(page.get_by_role("heading", name="How to prepare")).to_be_visible()

    filename, start, end, title = downloaded_event(page, "Add to calendar (.ics)")
    assert filename.endswith(".ics")
    assert (start, end) == (london("2026-11-24", "10:00"), london("2026-11-24", "11:30"))
    assert "Initial consultation" in title

    # The health answers can be given again before the visit.
    page.get_by_role("link", name="Update your health answers").click()
    arrive(page, "**/b/*/intake")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your health answers")
    expect(page.get_by_role("button", name="Save my answers")).to_be_visible()
    page.get_by_role("link", name="Back to your booking").click()
    arrive(page, "**/b/*")

    page.get_by_role("link", name="Change the time").click()
    arrive(page, "**/reschedule")
    page.get_by_role("link", name="Wednesday 25 November 2026, 14:00 GMT").click()
    arrive(page, "**/reschedule?start=*")
    expect(page.locator("form.summary")).to_contain_text(
        "Move it to Wednesday 25 November 2026, 14:00 GMT?"
    )
    page.get_by_role("button", name="Move my booking").click()
    arrive(page, "**/b/*")
    expect(page.get_by_role("status")).to_have_text("Your booking has been moved.")
    expect(summary).to_contain_text("Wednesday 25 November 2026, 14:00 to 15:30")
    _, start, _, _ = downloaded_event(page, "Add to calendar (.ics)")
    assert start == london("2026-11-25", "14:00")

    page.get_by_role("link", name="Cancel", exact=True).click()
    arrive(page, "**/cancel")
    page.get_by_label("Reason (optional)").fill("Feeling better")
    page.get_by_role("button", name="Yes, cancel it").click()
    arrive(page, "**/b/*")
    expect(page.get_by_role("status")).to_have_text("Your booking is cancelled.")
    expect(summary).to_contain_text("Cancelled")
    expect(page.get_by_role("link", name="Add to calendar (.ics)")).to_have_count(0)

    session.rollback()
    booking = session.scalars(select(Booking)).one()
    assert booking.status is BookingStatus.CANCELLED
    assert booking.start_at == london("2026-11-25", "14:00")
    assert booking.patient.email == "ada@example.org"
    assert booking.patient.intake is not None
    assert booking.patient.intake.flags == ["anticoagulants"]


def test_a_patient_books_a_weekly_course_and_takes_another_practitioner_for_a_clash(
    page: Page, setup: Setup, session: Session, book: Callable[..., Booking]
) -> None:
    book(london("2026-12-08", "10:00"), practitioner=setup.mei)  # Mei is taken that Tuesday
    page.set_viewport_size(PHONE)
    page.goto("/book")
    arrive(page, "**/book")
    page.get_by_role("radio", name=re.compile(r"^Follow-up treatment")).check()
    page.get_by_label("Practitioner").select_option(label="Mei Lin")
    page.get_by_role("button", name="Show free times").click()
    arrive(page, "**/book?*")
    page.get_by_role("link", name="Tuesday 24 November 2026, 10:00 GMT").click()
    arrive(page, "**/book/confirm?*")

    expect(page.get_by_role("group", name=re.compile("A course of treatment"))).to_be_visible()
    page.get_by_label("Full name").fill("Grace Hopper")
    page.get_by_label("Email").fill("grace@example.org")
    page.get_by_label("Sessions").select_option(label="A course of 6 sessions")
    page.get_by_label("How often").select_option(label="Every week")
    page.get_by_role("button", name="Book", exact=True).click()
    arrive(page, "**/book/confirm?*")

    clashes = page.get_by_role("region", name="Choose another time for this date")
    expect(clashes).to_contain_text("Nothing is booked until you choose.")
    clash = clashes.get_by_role("group", name="Tuesday 8 December 2026, 10:00 GMT")
    expect(clash).to_contain_text("not free with Mei Lin")
    session.rollback()
    assert len(session.scalars(select(Booking)).all()) == 1, "nothing of the course is booked"
    clash.get_by_role("radio", name="Tuesday 8 December 2026, 10:00 GMT with James Okafor").check()
    # What was typed is still there.
    expect(page.get_by_label("Full name")).to_have_value("Grace Hopper")
    expect(page.get_by_label("Sessions")).to_have_value("6")
    page.get_by_role("button", name="Book the course").click()
    arrive(page, "**/b/*")

    expect(page.get_by_role("status")).to_have_text(
        "Your session is booked. We look forward to seeing you."
    )
    course = page.get_by_role("region", name="Your course of treatment")
    expect(course).to_contain_text("This is session 1 of 6. 0 of 6 attended.")
    sessions = course.get_by_role("listitem")
    expect(sessions).to_have_count(6)
    expect(sessions.nth(2)).to_contain_text(
        "Tuesday 8 December 2026, 10:00 GMT, Follow-up treatment with James Okafor"
    )
    expect(sessions.nth(5)).to_contain_text(
        "Tuesday 29 December 2026, 10:00 GMT, Follow-up treatment with Mei Lin"
    )

    # Each session has its own page, linked from the course.
    sessions.nth(2).get_by_role("link").click()
    arrive(page, "**/b/*")
    expect(page.locator(".summary")).to_contain_text("Follow-up treatment with James Okafor")
    expect(page.get_by_role("region", name="Your course of treatment")).to_contain_text(
        "This is session 3 of 6."
    )

    session.rollback()
    graces = session.scalars(
        select(Booking).where(Booking.course_id.is_not(None)).order_by(Booking.start_at)
    ).all()
    assert [(b.start_at.astimezone(UTC).day, b.practitioner.name) for b in graces] == [
        (24, "Mei Lin"),
        (1, "Mei Lin"),
        (8, "James Okafor"),
        (15, "Mei Lin"),
        (22, "Mei Lin"),
        (29, "Mei Lin"),
    ]


def test_a_patient_with_no_suitable_time_joins_the_waitlist_then_leaves_it(
    page: Page, setup: Setup, session: Session
) -> None:
    page.set_viewport_size(PHONE)
    page.goto(f"/book?service={setup.follow_up.id}&practitioner={setup.mei.id}")
    arrive(page, "**/book?*")
    page.get_by_role("link", name="Join the waitlist").click()
    arrive(page, "**/waitlist?*")
    expect(page.locator(".summary")).to_contain_text("Follow-up treatment")
    expect(page.locator(".summary")).to_contain_text("With Mei Lin")

    # Joining without a day says so, at the days.
    page.get_by_label("Full name").fill("Alan Turing")
    page.get_by_label("Email").fill("alan@example.org")
    page.get_by_role("button", name="Join the waitlist").click()
    arrive(page, "**/waitlist?*")
    days = page.get_by_role("group", name="The days you could come")
    expect(days).to_have_accessible_description(re.compile("day", re.IGNORECASE))
    assert session.scalars(select(WaitlistEntry)).first() is None

    days.get_by_role("checkbox", name="Wednesday 25 November 2026").check()
    days.get_by_role("checkbox", name="Friday 27 November 2026").check()
    page.get_by_role("button", name="Join the waitlist").click()
    arrive(page, "**/waitlist/*")
    expect(page.get_by_role("status")).to_have_text(
        "You are on the waitlist. We will email you when a time comes free."
    )
    place = page.locator(".summary")
    expect(place).to_contain_text("Waiting")
    expect(place).to_contain_text("Follow-up treatment with Mei Lin")
    expect(place.get_by_role("listitem")).to_have_text(
        ["Wednesday 25 November 2026", "Friday 27 November 2026"]
    )
    session.rollback()
    entry = session.scalars(select(WaitlistEntry)).one()
    assert entry.status is EntryStatus.WAITING
    assert entry.patient.email == "alan@example.org"

    page.get_by_role("button", name="Leave the waitlist").click()
    arrive(page, "**/waitlist/*")
    expect(page.get_by_role("status")).to_have_text(
        "You have left the waitlist. We will not write about it again."
    )
    expect(place).to_contain_text("You have left the waitlist")
    session.rollback()
    assert session.scalars(select(WaitlistEntry)).one().status is EntryStatus.LEFT
