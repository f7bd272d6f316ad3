"""Issue 9: the error pages a patient may meet, in a real browser on a phone: a page that is
not there, a booking link that leads nowhere, a bug (500), too many tries (429), a form too
large to send (413), a form that has expired (400) and an offer link that has (410). Each is
checked with axe-core by ``arrive`` and offers a way on."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from scheduler import config, create_app
from scheduler.booking.operations import PatientDetails, cancel_booking
from scheduler.extensions import db
from scheduler.waitlist.models import WaitlistOffer
from scheduler.waitlist.operations import join_waitlist
from tests.browser.conftest import PHONE, SHOWN_CLINIC, QuietHandler, Visits, arrive, expect
from tests.browser.test_staff_journeys import give_password
from tests.conftest import Setup, london

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page


def expect_error_page(page: Page, heading: str) -> None:
    """The page is an error page with ``heading``, in the site's layout, with ways on."""
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    expect(page.get_by_role("link", name=SHOWN_CLINIC["name"])).to_be_visible()
    main = page.get_by_role("main")
    expect(main.get_by_role("link", name="Back to the start")).to_be_visible()
    expect(main.get_by_role("link", name=SHOWN_CLINIC["phone"])).to_have_attribute(
        "href", "tel:+441223555010"
    )


def test_a_missing_page_and_an_unknown_booking_link_lead_on(page: Page, setup: Setup) -> None:
    page.set_viewport_size(PHONE)
    page.goto("/no/such/page")
    arrive(page, "**/no/such/page")
    expect_error_page(page, "We cannot find that page")

    page.goto("/b/BADTOKEN")
    arrive(page, "**/b/BADTOKEN", shot="error-unknown-link")
    expect_error_page(page, "We cannot find this booking")
    page.get_by_role("main").get_by_role("link", name="Book a session").click()
    arrive(page, "**/book")
    expect(page.get_by_role("heading", level=1)).to_have_text("Book a session")


def test_a_server_error_is_a_calm_page(
    page: Page, setup: Setup, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)

    def failing() -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("scheduler.booking.views.clinic_or_503", failing)
    page.set_viewport_size(PHONE)

    answer = page.goto("/book")

    assert answer is not None
    assert answer.status == 500
    # The tab's watch reports any 500; this one is the point of the test.
    visits: Visits = page.visits  # type: ignore[attr-defined]
    expected = f"document {answer.url}: 500"
    assert expected in visits.problems
    visits.problems.remove(expected)
    arrive(page, "**/book")
    expect_error_page(page, "Something went wrong")
    expect(page.get_by_role("main")).not_to_contain_text("a bug")


def fill_in_details(page: Page, setup: Setup) -> None:
    """Open the details form for Tuesday 10:00 with Mei Lin, on a phone, and give a name."""
    query = {
        "service": setup.follow_up.id,
        "practitioner": setup.mei.id,
        "start": london("2026-11-24", "10:00").isoformat(),
    }
    page.set_viewport_size(PHONE)
    page.goto("/book/confirm?" + urlencode(query))
    arrive(page, "**/book/confirm?*")
    page.get_by_label("Full name").fill("Ada Lovelace")
    page.get_by_label("Email").fill("ada@example.org")


def test_a_form_too_large_to_send_leads_back_to_it(page: Page, setup: Setup) -> None:
    fill_in_details(page, setup)
    # More than the 1 MB a request may carry, as a pasted file would be.
    page.get_by_label("Anything the practitioner should know?").evaluate(
        "(notes) => { notes.removeAttribute('maxlength'); notes.value = 'x'.repeat(1100000); }"
    )
    page.get_by_role("button", name=re.compile("^Book")).click()
    arrive(page, "**/book/confirm?*")
    expect_error_page(page, "That was too much to send")

    page.get_by_role("link", name="Go back to the form").click()
    arrive(page, "**/book/confirm?*")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your details")


@pytest.fixture
def limited_url(app: Flask, clock: Any) -> Iterator[str]:
    """The app with every rate limit at one request an hour, served beside the usual one."""
    limited = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "SECRET_KEY": "test-secret",
            "BASE_URL": app.config["BASE_URL"],
            "CLOCK": clock,
            "MAIL_FOLDER": app.config["MAIL_FOLDER"],
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://",
            **dict.fromkeys(config.RATE_LIMITS, "1 per hour"),
        }
    )
    server = make_server("127.0.0.1", 0, limited, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)
    with limited.app_context():
        db.engine.dispose()


def test_too_many_tries_says_when_to_try_again(
    page: Page, setup: Setup, limited_url: str, make_user: Callable[..., Any]
) -> None:
    page.set_viewport_size(PHONE)
    # Only refused logins count: the second wrong password in an hour is one too many.
    for attempt in range(2):
        page.goto(f"{limited_url}/staff/login")
        arrive(page, "**/staff/login")
        give_password(page, "someone@clinic.example", f"wrong {attempt}")
        arrive(page, "**/staff/login")

    expect(page.get_by_role("heading", level=1)).to_have_text("Please wait a little")
    expect(page.get_by_role("main")).to_contain_text(
        "Please try again in 60 minutes. That is after 09:00."
    )
    expect(page.get_by_role("main").get_by_role("link", name="Back to the start")).to_be_visible()


def test_a_form_that_has_expired_says_so_and_leads_back_to_it(
    page: Page, context: BrowserContext, setup: Setup
) -> None:
    """The browser forgot its cookies while the form was open (a private window closed and
    reopened, a phone's browser restarted): the form's token no longer matches."""
    fill_in_details(page, setup)
    context.clear_cookies()
    page.get_by_role("button", name=re.compile("^Book")).click()
    arrive(page, "**/book/confirm?*", shot="error-expired-form")
    expect_error_page(page, "This form has expired")
    expect(page.get_by_role("main")).to_contain_text("Please reload the page and send it again.")

    page.get_by_role("link", name="Go back to the form").click()
    arrive(page, "**/book/confirm?*")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your details")


def test_an_offer_that_has_expired_says_until_when_and_leads_to_the_free_times(
    page: Page, setup: Setup, session: Session, clock: Any, book: Callable[..., Any]
) -> None:
    tuesday = london("2026-11-24", "10:00")
    booking = book(tuesday, practitioner=setup.mei)
    join_waitlist(
        session,
        clinic=setup.clinic,
        treatment=setup.follow_up,
        practitioner=None,
        days=[date(2026, 11, 24)],
        patient=PatientDetails("Grace Hopper", "grace@example.org"),
        now=clock(),
    )
    cancel_booking(session, clinic=setup.clinic, booking=booking, now=clock())
    session.commit()
    offer = session.scalars(select(WaitlistOffer)).one()
    clock.now = offer.expires_at
    page.set_viewport_size(PHONE)

    answer = page.goto(f"/w/{offer.token}")

    assert answer is not None
    assert answer.status == 410
    arrive(page, f"**/w/{offer.token}", shot="error-expired-offer")
    expect(page.get_by_role("heading", level=1)).to_have_text("This offer has expired")
    expect(page.get_by_role("alert")).to_have_text(
        "The offer was open until Monday 23 November 2026, 11:00 GMT."
    )
    expect(page.get_by_role("link", name="See your place, or leave the waitlist")).to_be_visible()
    page.get_by_role("link", name="See the free times").click()
    arrive(page, "**/book?*")
    expect(page.get_by_role("heading", level=1)).to_have_text("Book a session")
