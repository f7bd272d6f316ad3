"""Issue 9: the staff's journeys in a real browser, on a desktop screen.

Reception books a phone caller, moves a patient and marks a no-show from the week and day
views; the owner edits a checklist and reads the mail it makes; someone imports a calendar
file. Every page on the way is checked with axe-core by ``arrive``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.booking.models import Booking, BookingStatus
from scheduler.calendars.models import BusyTime
from scheduler.staff.models import Role, User
from tests.browser.conftest import arrive, expect
from tests.conftest import PASSWORD, Clock, Setup, london

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route


def give_password(page: Page, email: str, password: str = PASSWORD) -> None:
    """Fill in and send the login page's form."""
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def log_in(page: Page, email: str) -> None:
    """Log in through the login page, as staff do each morning."""
    page.goto("/staff/login")
    arrive(page, "**/staff/login")
    give_password(page, email)
    arrive(page, "**/staff/")
    expect(page.get_by_role("button", name=f"Log out {email}")).to_be_visible()


def staff_link(page: Page, name: str) -> None:
    """Follow a link of the staff area's menu."""
    page.get_by_role("navigation", name="Staff area").get_by_role(
        "link", name=name, exact=True
    ).click()


def test_reception_books_a_caller_moves_a_patient_and_marks_a_no_show(
    page: Page,
    setup: Setup,
    session: Session,
    book: Callable[..., Booking],
    make_user: Callable[..., User],
    clock: Clock,
) -> None:
    moving = book(london("2026-11-24", "10:00"), practitioner=setup.mei, name="Bea Morgan")
    clock.now -= timedelta(days=1)  # booked yesterday for this afternoon
    absent = book(london("2026-11-23", "14:00"), practitioner=setup.mei, name="Cy Abbott")
    clock.now += timedelta(days=1)
    desk = make_user(Role.RECEPTION, email="desk@clinic.example")

    log_in(page, desk.email)
    staff_link(page, "Week")
    arrive(page, "**/staff/week")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        re.compile(r"^Week of 23 November 2026")
    )

    # A caller wants a follow-up with James on Tuesday at 10:00.
    staff_link(page, "Bookings")
    arrive(page, "**/staff/bookings/")
    page.get_by_role("link", name="Book for a caller").click()
    arrive(page, "**/staff/bookings/new")
    page.get_by_label("Treatment").select_option(label="Follow-up treatment (1 h)")
    page.get_by_label("Practitioner").select_option(label="James Okafor")
    page.get_by_role("button", name="Show free times").click()
    arrive(page, "**/staff/bookings/new?*")
    page.get_by_role("link", name="Tuesday 24 November 2026, 10:00 GMT").click()
    arrive(page, "**/staff/bookings/new/details?*")
    expect(page.locator(".summary")).to_contain_text("With James Okafor")
    page.get_by_label("Patient's full name").fill("Ada Caller")
    page.get_by_label("Patient's email").fill("ada@example.org")
    page.get_by_label("Phone").fill("+44 20 7946 0000")
    page.get_by_label(re.compile("^Anything the practitioner should know")).fill(
        "Lower back, since a fall"
    )
    page.get_by_role("button", name="Book and send the confirmation").click()
    arrive(page, re.compile(r"/staff/bookings/\d+$"), shot="booking-detail")
    expect(page.get_by_role("status")).to_contain_text("Booked. The patient is sent the")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Follow-up treatment, Tuesday 24 November 2026, 10:00 GMT"
    )
    expect(page.locator("dl.summary")).to_contain_text("Ada Caller")
    expect(page.locator("dl.summary")).to_contain_text("James Okafor")

    # Bea, in Mei's week, moves from Tuesday 10:00 to Wednesday 14:00.
    staff_link(page, "Week")
    arrive(page, "**/staff/week")
    chooser = page.locator("form", has=page.get_by_label("Practitioner"))
    chooser.get_by_label("Practitioner").select_option(label="Mei Lin")
    chooser.get_by_role("button", name="Show").click()
    arrive(page, "**/staff/week?*", shot="staff-week")
    expect(page.get_by_role("heading", level=1)).to_have_text("Week of 23 November 2026: Mei Lin")
    tuesday = page.get_by_role("region", name="Tue 24 Nov")
    tuesday.get_by_role("link", name="Bea Morgan").click()
    arrive(page, f"**/staff/bookings/{moving.id}")
    page.get_by_role("link", name="Move to another time or practitioner").click()
    arrive(page, "**/reschedule")
    expect(page.get_by_role("heading", name="Free times with Mei Lin")).to_be_visible()
    page.get_by_role("link", name="Wednesday 25 November 2026, 14:00 GMT").click()
    arrive(page, "**/reschedule?*")
    page.get_by_role("button", name="Move the booking").click()
    arrive(page, f"**/staff/bookings/{moving.id}")
    expect(page.get_by_role("status")).to_have_text(
        "The booking is moved and the patient will be told."
    )
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Follow-up treatment, Wednesday 25 November 2026, 14:00 GMT"
    )

    # Cy has not come by 14:20 for his 14:00 visit.
    clock.now = london("2026-11-23", "14:20")
    staff_link(page, "Day")
    arrive(page, "**/staff/day")
    page.get_by_role("link", name="Cy Abbott").click()
    arrive(page, f"**/staff/bookings/{absent.id}")
    page.get_by_role("region", name="Mark the visit").get_by_role("button", name="No-show").click()
    arrive(page, f"**/staff/bookings/{absent.id}")
    expect(page.get_by_role("status")).to_have_text("Marked no-show.")
    expect(page.locator("dl.summary")).to_contain_text("No-show")

    session.rollback()
    caller = session.scalars(select(Booking).where(Booking.id.not_in([moving.id, absent.id]))).one()
    assert (caller.start_at, caller.practitioner_id) == (
        london("2026-11-24", "10:00"),
        setup.james.id,
    )
    assert caller.patient.name == "Ada Caller"
    assert session.get_one(Booking, moving.id).start_at == london("2026-11-25", "14:00")
    assert session.get_one(Booking, absent.id).status is BookingStatus.NO_SHOW


def test_the_owner_edits_a_checklist_and_previews_the_mail(
    page: Page, setup: Setup, make_user: Callable[..., User]
) -> None:
    owner = make_user(Role.ADMIN, email="owner@clinic.example")
    log_in(page, owner.email)
    staff_link(page, "Set-up")
    arrive(page, "**/staff/setup/")
    page.get_by_role("navigation", name="Set-up").get_by_role("link", name="Checklists").click()
    arrive(page, "**/staff/setup/checklists")

    preparation = page.get_by_role("textbox", name=re.compile("before", re.IGNORECASE)).first
    expect(preparation).to_have_value(re.compile("Wear loose, comfortable clothing"))
    preparation.fill("Have a light meal an hour or two before.\nWear a top with loose sleeves.")
    page.get_by_role("button", name="Save the checklists").click()
    arrive(page, "**/staff/setup/checklists")
    expect(page.get_by_role("status")).to_have_text(
        "The checklist is saved; the preview below shows it."
    )

    preview = page.get_by_role("region", name="The mail as patients will see it")
    expect(preview).to_contain_text("Have a light meal an hour or two before.")
    expect(preview).not_to_contain_text("Wear loose, comfortable clothing")
    # The HTML as the patient's mail program shows it, in its sandboxed frame.
    frames = preview.locator("iframe")
    expect(frames.first).to_be_visible()
    titles = frames.evaluate_all("frames => frames.map(frame => frame.title)")
    assert len(set(titles)) == len(titles) > 1, (
        f"frames a screen reader cannot tell apart: {titles}"
    )
    shown = [
        frames.nth(index).content_frame.locator("body").inner_text()
        for index in range(frames.count())
    ]
    assert any("Wear a top with loose sleeves." in text for text in shown), shown
    assert not any("Wear loose, comfortable clothing" in text for text in shown), shown

    # The frames run no script (their policy sandboxes them), so axe cannot look inside. Open
    # each mail on its own, as a mail program shows it: without this site's policy.
    page.route("**/staff/setup/checklists/mail/*", without_policy)
    for url in [frames.nth(index).get_attribute("src") for index in range(frames.count())]:
        assert url
        page.goto(url)
        arrive(page, "**/staff/setup/checklists/mail/*")


def without_policy(route: Route) -> None:
    """Answer as the app does, less the Content-Security-Policy header."""
    answer = route.fetch()
    headers = {k: v for k, v in answer.headers.items() if k != "content-security-policy"}
    route.fulfill(response=answer, headers=headers)


def test_a_practitioners_calendar_file_is_imported_from_the_staff_area(
    page: Page,
    setup: Setup,
    session: Session,
    make_user: Callable[..., User],
    tmp_path: Path,
) -> None:
    desk = make_user(Role.RECEPTION, email="desk@clinic.example")
    exported = tmp_path / "mei.ics"
    exported.write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//Calendar//EN\r\n"
        "BEGIN:VEVENT\r\nUID:dentist-1@example.org\r\nDTSTAMP:20261120T090000Z\r\n"
        "DTSTART:20261124T110000Z\r\nDTEND:20261124T120000Z\r\nSUMMARY:Dentist\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n",
        encoding="utf-8",
    )

    log_in(page, desk.email)
    staff_link(page, "Calendars")
    arrive(page, "**/staff/calendars")
    importing = page.get_by_role("region", name="Import calendar files")
    importing.get_by_label("Practitioner").select_option(label="Mei Lin")
    importing.get_by_label(re.compile("^Calendar files")).set_input_files(exported)
    importing.get_by_role("radio", name="Busy time that blocks bookings").check()
    importing.get_by_role("button", name="Import").click()
    arrive(page, "**/staff/calendars/import")

    report = page.get_by_role("region", name="What the import did")
    expect(report.get_by_role("status")).to_have_text(
        "imported 1, updated 0, cancelled 0, skipped 0, errors 0"
    )
    expect(page.get_by_role("region", name="Busy time in the next two weeks")).to_contain_text(
        "Mei Lin: Tuesday 24 November 2026, 11:00 GMT to 12:00 — Dentist"
    )
    session.rollback()
    busy = session.scalars(select(BusyTime)).one()
    assert (busy.practitioner_id, busy.start_at) == (setup.mei.id, london("2026-11-24", "11:00"))

    # Patients can no longer book Mei then.
    page.goto(f"/book?service={setup.follow_up.id}&practitioner={setup.mei.id}")
    arrive(page, "**/book?*")
    tuesday = page.locator("section.day").filter(has_text="Tuesday 24 November")
    expect(tuesday.get_by_role("link", name="Tuesday 24 November 2026, 09:00 GMT")).to_be_visible()
    expect(tuesday.get_by_role("link", name="Tuesday 24 November 2026, 11:00 GMT")).to_have_count(0)


def test_the_owner_gives_the_clinic_its_colour_and_the_booking_page_takes_it(
    page: Page, setup: Setup, make_user: Callable[..., User]
) -> None:
    owner = make_user(Role.ADMIN, email="owner@clinic.example")
    log_in(page, owner.email)
    page.goto("/staff/setup/clinic")
    arrive(page, "**/staff/setup/clinic")
    # The suite's clinic has a .test address, which the form (rightly) does not take.
    page.get_by_label("Email for patients' replies").fill("hello@example.com")
    colour = page.get_by_role("textbox", name=re.compile("^Brand colour"))
    # The picker is there with script on, and follows what is typed.
    picker = page.get_by_label("Pick the brand colour")
    expect(picker).to_be_visible()
    expect(picker).to_have_value("#2f6f5e")

    # Too light for white text: refused next to the field, saying what to change.
    colour.fill("#e8b4d0")
    page.get_by_role("button", name="Save", exact=True).click()
    arrive(page, "**/staff/setup/clinic")
    expect(page.locator("#brand_colour-error")).to_contain_text("Pick a darker colour.")
    expect(colour).to_have_attribute("aria-invalid", "true")

    colour.fill("#6B2D5C")
    expect(picker).to_have_value("#6b2d5c")
    page.get_by_role("button", name="Save", exact=True).click()
    arrive(page, "**/staff/setup/clinic")
    expect(page.get_by_role("status")).to_contain_text("saved")

    page.goto("/book")
    arrive(page, "**/book")
    button = page.get_by_role("button", name="Show free times")
    expect(button).to_have_css("background-color", "rgb(107, 45, 92)")
    expect(button).to_have_css("color", "rgb(255, 255, 255)")
    expect(page.locator("header .brand")).to_have_css("color", "rgb(107, 45, 92)")
