"""Error pages: a 404, 500, 429, 413, an expired form and a link from mail that leads nowhere
each get a calm page in the site's layout that says what happened, what to do and how to go
on, in the visitor's language; under /api/ the same errors stay JSON."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from scheduler import config, create_app
from scheduler.extensions import db
from scheduler.staff.models import Role
from tests.conftest import Setup, log_in

GERMAN = {"Accept-Language": "de-DE,de;q=0.9"}


class Main(HTMLParser):
    """The heading, text and links inside a page's ``<main>``."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.h1: list[str] = []
        self.text: list[str] = []
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._link_text: list[str] = []
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "main":
            self.depth += 1
        if not self.depth:
            return
        if tag == "h1":
            self._in_h1 = True
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "main":
            self.depth -= 1
        if tag == "h1":
            self._in_h1 = False
        if tag == "a" and self._href is not None:
            self.links.append((" ".join("".join(self._link_text).split()), self._href))
            self._href = None

    def handle_data(self, data: str) -> None:
        if not self.depth:
            return
        self.text.append(data)
        if self._in_h1:
            self.h1.append(data)
        if self._href is not None:
            self._link_text.append(data)


def main_of(response: TestResponse) -> Main:
    """Read the ``<main>`` of an HTML answer."""
    assert response.mimetype == "text/html", response.mimetype
    parsed = Main()
    parsed.feed(response.text)
    return parsed


def heading(response: TestResponse) -> str:
    return " ".join("".join(main_of(response).h1).split())


def text(response: TestResponse) -> str:
    return " ".join("".join(main_of(response).text).split())


def links(response: TestResponse) -> dict[str, str]:
    return dict(main_of(response).links)


def title(response: TestResponse) -> str:
    match = re.search(r"<title>(.*?)</title>", response.text, re.S)
    assert match
    return " ".join(match.group(1).split())


# --- 404 ------------------------------------------------------------------------------------------


def test_a_missing_page_says_so_calmly_with_ways_on(client: FlaskClient, setup: Setup):
    page = client.get("/no/such/page")

    assert page.status_code == 404
    assert heading(page) == "We cannot find that page"
    assert "The link may be mistyped or out of date." in text(page)
    assert title(page) == "We cannot find that page · Test Acupuncture"
    assert links(page)["Book a session"] == "/book"
    assert links(page)["Back to the start"] == "/"
    # Those who would rather call can: the clinic's number, as a phone link.
    assert links(page)["+44 1223 000000"] == "tel:+441223000000"
    # The site's layout: the clinic's name at the top, the language switch at the foot.
    assert '<a class="brand" href="/">Test Acupuncture</a>' in page.text
    assert 'hreflang="de"' in page.text


def test_a_missing_page_in_the_staff_area_leads_back_to_it(
    client: FlaskClient, setup: Setup, make_user: Callable[..., Any]
):
    user = make_user(Role.RECEPTION)
    log_in(client, user.email)

    page = client.get("/staff/no-such-page")

    assert page.status_code == 404
    assert links(page)["Back to the staff area"] == "/staff/"
    assert "Book a session" not in links(page)


def test_the_api_keeps_answering_json(client: FlaskClient, setup: Setup):
    for url in ("/api/v1/nothing-here", "/api/v1/bookings/no-such-token"):
        answer = client.get(url, headers=GERMAN)

        assert answer.status_code == 404, url
        assert answer.mimetype == "application/json", url
        assert set(answer.get_json()) == {"error", "fields"}
        assert "<html" not in answer.text


# --- A link from mail that leads nowhere ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/b/BADTOKEN",
        "/b/not%20a%20token",
        "/b/BADTOKEN/reschedule",
        "/b/BADTOKEN/cancel",
        "/b/BADTOKEN/intake",
        "/b/BADTOKEN.ics",
    ],
)
def test_an_unknown_booking_link_explains_itself_and_offers_booking_again(
    client: FlaskClient, setup: Setup, url: str
):
    page = client.get(url)

    assert page.status_code == 404
    assert heading(page) == "We cannot find this booking"
    assert "The latest mail from us about your booking has the right link" in text(page)
    # Booking again is the main way on.
    assert '<a class="button" href="/book">Book a session</a>' in page.text
    assert links(page)["Back to the start"] == "/"


@pytest.mark.parametrize("url", ["/waitlist/BADTOKEN", "/w/BADTOKEN"])
def test_an_unknown_waitlist_link_explains_itself(client: FlaskClient, setup: Setup, url: str):
    page = client.get(url)

    assert page.status_code == 404
    assert heading(page) == "We cannot find this waitlist link"
    assert links(page)["Book a session"] == "/book"


def test_an_unknown_booking_link_in_german(client: FlaskClient, setup: Setup):
    page = client.get("/b/BADTOKEN", headers=GERMAN)

    assert page.status_code == 404
    assert heading(page) == "Diesen Termin finden wir nicht"
    assert "Die neueste E-Mail von uns zu Ihrem Termin enthält den richtigen Link" in text(page)
    assert links(page)["Termin buchen"] == "/book"
    assert links(page)["Zurück zur Startseite"] == "/"
    assert "Wenn Sie lieber mit uns sprechen möchten" in text(page)


# --- 500 ------------------------------------------------------------------------------------------


@pytest.fixture
def broken_booking_page(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the booking page and the booking API call fail as a bug would."""
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)

    def failing() -> Any:
        raise RuntimeError("internal detail")

    monkeypatch.setattr("scheduler.booking.views.clinic_or_503", failing)
    monkeypatch.setattr("scheduler.api.views.clinic_or_503", failing)


def test_a_server_error_is_a_calm_page_and_json_under_the_api(
    client: FlaskClient, setup: Setup, broken_booking_page: None
):
    page = client.get("/book")
    api = client.get("/api/v1/bookings/some-token")

    assert page.status_code == api.status_code == 500
    assert heading(page) == "Something went wrong"
    assert "nothing was changed. Please try again." in text(page)
    assert links(page)["Back to the start"] == "/"
    assert "internal detail" not in page.text
    assert api.mimetype == "application/json"
    assert api.get_json()["error"].startswith("Something went wrong on our side")


def test_a_server_error_page_in_german(
    client: FlaskClient, setup: Setup, broken_booking_page: None
):
    page = client.get("/book", headers=GERMAN)

    assert page.status_code == 500
    assert heading(page) == "Etwas ist schiefgelaufen"


# --- 413 and an expired form ---------------------------------------------------------------------


def test_a_body_too_large_leads_back_to_the_form_it_came_from(client: FlaskClient, setup: Setup):
    form = "http://localhost/book/confirm?service=1"
    big = {"notes": "x" * (1024 * 1024 + 1)}

    page = client.post("/book/confirm", data=big, headers={"Referer": form})

    assert page.status_code == 413
    assert heading(page) == "That was too much to send"
    assert "Please shorten it" in text(page)
    assert links(page)["Go back to the form"] == "/book/confirm?service=1"


def test_only_this_sites_pages_are_offered_to_go_back_to(client: FlaskClient, setup: Setup):
    big = {"notes": "x" * (1024 * 1024 + 1)}
    for referrer in ("https://evil.example/book", "javascript:alert(1)", ""):
        page = client.post("/book/confirm", data=big, headers={"Referer": referrer})

        assert page.status_code == 413
        assert "Go back to the form" not in links(page), referrer


def test_the_api_says_how_large_a_body_may_be(client: FlaskClient, setup: Setup):
    answer = client.post(
        "/api/v1/bookings", data="x" * (1024 * 1024 + 1), content_type="application/json"
    )

    assert answer.status_code == 413
    assert answer.get_json()["error"] == "The body is too large: send at most 1,048,576 bytes."


def test_an_expired_form_says_to_reload_it(client: FlaskClient, setup: Setup):
    page = client.post(
        "/book/confirm", data={"full_name": "Ada"}, headers={"Referer": "http://localhost/book"}
    )

    assert page.status_code == 400
    assert heading(page) == "This form has expired"
    assert "Please reload the page and send it again." in text(page)
    assert links(page)["Go back to the form"] == "/book"


# --- 429 ------------------------------------------------------------------------------------------


@pytest.fixture
def limited_client(app: Flask, clock: Any) -> Iterator[FlaskClient]:
    """A client of an app whose every rate limit lets one request an hour through."""
    limited = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "SECRET_KEY": "test-secret",
            "BASE_URL": app.config["BASE_URL"],
            "CLOCK": clock,
            "MAIL_FOLDER": app.config["MAIL_FOLDER"],
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://",
            **dict.fromkeys(config.RATE_LIMITS, "1 per hour"),
        }
    )
    yield limited.test_client()
    with limited.app_context():
        db.engine.dispose()


def test_a_rate_limited_page_says_when_to_try_again(limited_client: FlaskClient, setup: Setup):
    limited_client.post("/book/confirm", data={})

    page = limited_client.post("/book/confirm", data={})

    assert page.status_code == 429
    wait = int(page.headers["Retry-After"])
    assert 3590 <= wait <= 3600
    assert heading(page) == "Please wait a little"
    # An hour from the tests' clock (08:00 in London), rounded up to the minute.
    assert "Please try again in 60 minutes. That is after 09:00." in text(page)
    assert links(page)["Back to the start"] == "/"


def test_a_rate_limited_page_in_german(limited_client: FlaskClient, setup: Setup):
    limited_client.post("/book/confirm", data={}, headers=GERMAN)

    page = limited_client.post("/book/confirm", data={}, headers=GERMAN)

    assert page.status_code == 429
    assert heading(page) == "Bitte warten Sie einen Moment"
    assert "Bitte versuchen Sie es in 60 Minuten noch einmal. Also nach 09:00 Uhr." in text(page)


def test_a_rate_limited_api_call_stays_json_in_english(limited_client: FlaskClient, setup: Setup):
    limited_client.post("/api/v1/bookings", json={})

    answer = limited_client.post("/api/v1/bookings", json={}, headers=GERMAN)

    assert answer.status_code == 429
    assert answer.mimetype == "application/json"
    assert answer.get_json()["error"] == (
        "There have been too many attempts in a short time, so this is paused for now. "
        "Please try again in 60 minutes."
    )
