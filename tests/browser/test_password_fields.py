"""Issue 8 and 9: password fields in a real browser: a "Show" button on each, and on a new
password a meter that asks the server how guessable it is as the person types; then two-step
login set up with an app and used to log in."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pyotp

from scheduler.staff.models import Role, User
from tests.browser.conftest import arrive, assert_accessible, expect, screenshot
from tests.browser.test_staff_journeys import give_password, log_in
from tests.conftest import PASSWORD, Clock

if TYPE_CHECKING:
    from playwright.sync_api import Page


def test_a_new_password_shows_how_guessable_it_is_and_can_be_shown(
    page: Page, make_user: Callable[..., User]
) -> None:
    user = make_user(Role.RECEPTION)
    log_in(page, user.email)
    page.goto("/staff/password")
    arrive(page, "**/staff/password")
    new = page.get_by_label("New password", exact=True)
    meter = page.locator("#new-strength")
    status = page.locator("#new-strength-text")

    new.fill("michaeljordan23")
    expect(status).to_have_text(re.compile("easy to guess|still guessable", re.IGNORECASE))
    assert int(meter.get_attribute("value") or "9") < 3
    new.fill("quiet otters borrow lanterns")
    expect(status).to_have_text("Very hard to guess")
    expect(meter).to_have_attribute("value", "4")
    assert_accessible(page)  # with the meter and its words shown
    if os.environ.get("SCREENSHOTS") == "1":
        screenshot(page, "password-meter")

    show = page.get_by_role("button", name="Show").nth(1)  # the current password's is first
    show.click()
    expect(new).to_have_attribute("type", "text")
    expect(page.get_by_role("button", name="Hide")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="Hide").click()
    expect(new).to_have_attribute("type", "password")

    page.get_by_label("Current password").fill(PASSWORD)
    new.fill("quiet otters borrow lanterns")
    page.get_by_label("New password again").fill("quiet otters borrow lanterns")
    page.get_by_role("button", name="Change password").click()
    arrive(page, "**/staff/")
    expect(page.get_by_text("Your password is changed.")).to_be_visible()


def test_two_step_login_is_set_up_with_an_app_and_asked_for_at_the_next_login(
    page: Page, make_user: Callable[..., User], clock: Clock
) -> None:
    user = make_user(Role.PRACTITIONER)
    log_in(page, user.email)
    page.get_by_role("navigation", name="Staff area").get_by_role(
        "link", name="Two-step login"
    ).click()
    arrive(page, "**/staff/two-factor", shot="two-factor-setup")
    qr = page.get_by_role("img", name=re.compile("QR code"))
    expect(qr).to_be_visible()
    page.wait_for_function(  # the QR code loads, as a picture
        "() => document.querySelector('img.qr').complete"
        " && document.querySelector('img.qr').naturalWidth > 0"
    )
    secret = page.locator("code.secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)

    page.get_by_label("Code").fill(totp.at(clock.now))
    page.get_by_role("button", name="Switch two-step login on").click()
    arrive(page, "**/staff/two-factor")
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    expect(page.locator("ul.codes li")).to_have_count(10)

    page.get_by_role("button", name=f"Log out {user.email}").click()
    arrive(page, "**/staff/login")
    give_password(page, user.email)
    arrive(page, "**/staff/login/code", shot="two-factor-code")
    page.get_by_label("Code").fill("000000")
    page.get_by_role("button", name="Log in").click()
    arrive(page, "**/staff/login/code")
    expect(page.get_by_text("That code is wrong")).to_be_visible()
    clock.now += timedelta(seconds=30)  # the code of the next step: each works once
    page.get_by_label("Code").fill(totp.at(clock.now))
    page.get_by_role("button", name="Log in").click()
    arrive(page, "**/staff/")
    expect(page.get_by_role("button", name=f"Log out {user.email}")).to_be_visible()
