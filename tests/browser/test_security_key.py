"""Issue 8: a security key added to two-step login and used to log in, in Chromium with its
virtual authenticator (the DevTools protocol's WebAuthn domain), through static/security_key.js
and the browser's own navigator.credentials, as a person with a USB key would.

Browsers give keys only to a named site, so this test serves the app as ``localhost``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyotp
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.staff.models import Role, SecurityKey, User
from tests.browser.conftest import DESKTOP, arrive, expect
from tests.browser.test_staff_journeys import give_password, log_in
from tests.conftest import Clock

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page


@pytest.fixture
def context(
    browser: Browser, live_url: str, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BrowserContext]:
    """A fresh profile that reaches the app as http://localhost:PORT, its BASE_URL."""
    local = live_url.replace("127.0.0.1", "localhost")
    monkeypatch.setitem(app.config, "BASE_URL", local)
    fresh = browser.new_context(
        base_url=local, viewport=DESKTOP, locale="en-GB", timezone_id="Europe/London"
    )
    fresh.set_default_timeout(10_000)
    yield fresh
    fresh.close()


def virtual_key(page: Page) -> Callable[[], list[dict[str, Any]]]:
    """Plug a USB security key into the tab (it answers at once, as if touched); return a
    function listing the credentials on it."""
    devtools = page.context.new_cdp_session(page)
    devtools.send("WebAuthn.enable", {"enableUI": False})
    made = devtools.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": False,
                "hasUserVerification": False,
                "automaticPresenceSimulation": True,
            }
        },
    )

    def credentials() -> list[dict[str, Any]]:
        listed = devtools.send(
            "WebAuthn.getCredentials", {"authenticatorId": made["authenticatorId"]}
        )
        found: list[dict[str, Any]] = listed["credentials"]
        return found

    return credentials


def test_a_security_key_is_added_and_then_logs_in_instead_of_a_code(
    page: Page, make_user: Callable[..., User], clock: Clock, session: Session
) -> None:
    user = make_user(Role.PRACTITIONER)
    credentials = virtual_key(page)
    log_in(page, user.email)
    page.goto("/staff/two-factor")
    arrive(page, "**/staff/two-factor")
    secret = page.locator("code.secret").inner_text().replace(" ", "")
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(clock.now))
    page.get_by_role("button", name="Switch two-step login on").click()
    arrive(page, "**/staff/two-factor")
    page.goto("/staff/two-factor")
    arrive(page, "**/staff/two-factor")

    expect(page.get_by_text("No security keys yet.")).to_be_visible()
    add = page.get_by_role("button", name="Add a security key")
    add.click()  # without a name: the page asks for one before the key is touched
    expect(page.get_by_text("Please give the key a name first.")).to_be_visible()
    assert credentials() == []
    page.get_by_label("A name for the key").fill("Blue key")
    add.click()
    arrive(page, "**/staff/two-factor", shot="security-keys")
    expect(page.get_by_text("The key “Blue key” is added")).to_be_visible()
    expect(page.get_by_role("cell", name="Blue key", exact=True)).to_be_visible()
    [on_key] = credentials()
    session.rollback()
    stored = session.scalars(select(SecurityKey)).one()
    assert stored.credential_id.rstrip("=") == on_key["credentialId"].rstrip("=").replace(
        "+", "-"
    ).replace("/", "_")

    page.get_by_role("button", name=f"Log out {user.email}").click()
    arrive(page, "**/staff/login")
    give_password(page, user.email)
    arrive(page, "**/staff/login/code", shot="security-key-login")
    page.get_by_role("button", name="Use my security key").click()
    arrive(page, "**/staff/")
    expect(page.get_by_role("button", name=f"Log out {user.email}")).to_be_visible()
    session.rollback()
    used = session.scalars(select(SecurityKey)).one()
    assert used.last_used_at == clock.now
    assert used.sign_count == credentials()[0]["signCount"] > 0

    page.goto("/staff/two-factor")
    arrive(page, "**/staff/two-factor")
    page.get_by_role("button", name="Remove the key Blue key").click()
    arrive(page, "**/staff/two-factor")
    expect(page.get_by_text(re.compile("The key “Blue key” is removed"))).to_be_visible()
    expect(page.get_by_text("No security keys yet.")).to_be_visible()
