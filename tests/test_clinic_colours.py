"""The clinic's brand colour: an admin sets it on the clinic form, a colour the pages could not
use legibly is refused with what to change, and the pages and mail take it from /clinic.css
and the mail templates, never from a style attribute."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from scheduler.booking.models import Booking
from scheduler.clinic.colours import (
    BUTTON_TEXT,
    DEFAULT_BRAND_COLOUR,
    SURFACES,
    brand_colour_problem,
    contrast,
)
from scheduler.clinic.models import Clinic
from scheduler.staff.models import Role
from tests.conftest import log_in, london, token_of
from tests.smtp_server import Inbox
from tests.test_setup import CLINIC_FORM, error_next_to, fresh, send

STYLESHEET = Path(__file__).resolve().parent.parent / "static" / "style.css"
PLUM = "#6b2d5c"


@pytest.fixture
def admin(client: FlaskClient, make_user) -> FlaskClient:
    """The test client, logged in as an admin."""
    log_in(client, make_user(Role.ADMIN).email)
    return client


def set_colour(session: Session, clinic: Clinic, colour: str) -> None:
    clinic.brand_colour = colour
    session.commit()


# --- The rule --------------------------------------------------------------------------------


def test_contrast_is_wcags_ratio():
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    assert contrast("#ffffff", "#ffffff") == pytest.approx(1)
    # WCAG's own example pair: #767676 on white is the lightest grey that reaches 4.5:1.
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)


def test_the_default_is_the_stylesheets_own_green_and_passes():
    assert f"--accent: {DEFAULT_BRAND_COLOUR};" in STYLESHEET.read_text()
    assert brand_colour_problem(DEFAULT_BRAND_COLOUR) is None


def test_the_surfaces_checked_are_the_stylesheets():
    # If the stylesheet's backgrounds change, the contrast check must learn them.
    css = STYLESHEET.read_text().lower()
    assert f"--accent-ink: {BUTTON_TEXT[:4]}" in css or f"--accent-ink: {BUTTON_TEXT}" in css
    for surface in SURFACES:
        assert surface in css or surface == "#ffffff", surface


def test_a_colour_nearly_as_light_as_the_buttons_text_fails_on_buttons():
    problem = brand_colour_problem("#5fa090")

    assert problem is not None
    assert "White text on #5fa090" in problem
    assert "Pick a darker colour." in problem


def test_a_colour_white_text_reads_on_but_links_do_not_fails_on_the_pages():
    # 5.1:1 under white text, but 4.49:1 as a link on the palest surface (status messages).
    assert contrast("#2f7a69", BUTTON_TEXT) > 5

    problem = brand_colour_problem("#2f7a69")

    assert problem is not None
    assert "Links in #2f7a69 on the pages' light backgrounds have a contrast of only 4.4:1" in (
        problem
    )
    assert "Pick a darker colour." in problem


# --- The form ----------------------------------------------------------------------------------


def test_the_clinic_form_offers_a_picker_and_a_text_box(admin, setup):
    page = admin.get("/staff/setup/clinic").text

    assert re.search(r'<input type="color" id="brand_colour-picker" value="#2f6f5e"', page)
    assert re.search(r'<input[^>]*id="brand_colour"[^>]*value="#2f6f5e"', page)
    assert "colour.js" in page


def test_an_admin_changes_the_colour(admin, session, setup):
    answer = send(admin, "/staff/setup/clinic", **{**CLINIC_FORM, "brand_colour": "6B2D5C"})

    assert answer.status_code == 303
    assert fresh(session).get(Clinic, setup.clinic.id).brand_colour == PLUM


def test_an_empty_colour_goes_back_to_the_first_one(admin, session, setup):
    set_colour(session, setup.clinic, PLUM)

    send(admin, "/staff/setup/clinic", **{**CLINIC_FORM, "brand_colour": ""})

    assert fresh(session).get(Clinic, setup.clinic.id).brand_colour == DEFAULT_BRAND_COLOUR


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("green", "'green' is not a colour we can use; write # and six hex digits, like #2f6f5e."),
        ("#12345", "'#12345' is not a colour we can use"),
        ("#12345g", "'#12345g' is not a colour we can use"),
        ("#ffd700", "White text on #ffd700, as on the buttons, has a contrast of only 1.4:1"),
        ("#ffffff", "Pick a darker colour."),
    ],
    ids=["a-word", "five-digits", "not-hex", "gold", "white"],
)
def test_a_colour_the_pages_cannot_use_is_refused_next_to_the_field(
    admin, session, setup, value, message
):
    answer = send(admin, "/staff/setup/clinic", **{**CLINIC_FORM, "brand_colour": value})

    assert answer.status_code == 422
    assert message in error_next_to(answer.text, "brand_colour")
    assert 'aria-invalid="true"' in answer.text
    assert fresh(session).get(Clinic, setup.clinic.id).brand_colour == DEFAULT_BRAND_COLOUR


def test_the_refusal_is_in_german(admin, setup):
    answer = admin.post(
        "/staff/setup/clinic",
        data={
            **CLINIC_FORM,
            "brand_colour": "#ffd700",
            "csrf_token": token_of(admin, "/staff/setup/"),
        },
        headers={"Accept-Language": "de-DE,de;q=0.9"},
    )

    assert answer.status_code == 422
    refusal = error_next_to(answer.text, "brand_colour")
    assert (
        "Weiße Schrift auf #ffd700, wie auf den Schaltflächen, hat nur einen Kontrast von 1,4:1"
        in refusal
    )
    assert "Wählen Sie eine dunklere Farbe." in refusal


# --- The stylesheet --------------------------------------------------------------------------


def test_every_page_links_the_clinics_colours_by_their_version(client, session, setup):
    set_colour(session, setup.clinic, PLUM)

    page = client.get("/").text

    assert '<link rel="stylesheet" href="/clinic.css?v=6b2d5c">' in page
    assert '<meta name="theme-color" content="#6b2d5c">' in page
    assert "style=" not in page


def test_the_colours_stylesheet_sets_the_accent(client, session, setup):
    set_colour(session, setup.clinic, PLUM)

    answer = client.get("/clinic.css?v=6b2d5c")

    assert answer.status_code == 200
    assert answer.mimetype == "text/css"
    assert ":root { --accent: #6b2d5c; }" in answer.text
    assert answer.headers["ETag"]
    assert "max-age=86400" in answer.headers["Cache-Control"]


def test_the_colours_stylesheet_answers_not_modified_to_its_etag(client, setup):
    first = client.get("/clinic.css?v=2f6f5e")

    again = client.get("/clinic.css?v=2f6f5e", headers={"If-None-Match": first.headers["ETag"]})

    assert again.status_code == 304
    assert again.data == b""


def test_a_stale_address_gets_the_new_colour_and_is_asked_for_each_time(client, session, setup):
    old = client.get("/clinic.css?v=2f6f5e")
    set_colour(session, setup.clinic, PLUM)

    answer = client.get("/clinic.css?v=2f6f5e", headers={"If-None-Match": old.headers["ETag"]})

    assert answer.status_code == 200
    assert "#6b2d5c" in answer.text
    assert "no-cache" in answer.headers["Cache-Control"]


def test_a_colour_written_around_the_form_never_reaches_the_stylesheet(client, session, setup):
    set_colour(session, setup.clinic, "#}*{x:y")

    answer = client.get("/clinic.css")

    assert f"--accent: {DEFAULT_BRAND_COLOUR};" in answer.text
    assert "}*{" not in answer.text


# --- Mail --------------------------------------------------------------------------------------


def test_mail_takes_the_clinics_colour_for_its_header_and_button(
    app: Flask, session, setup, book: Callable[..., Booking], smtp: Inbox
):
    set_colour(session, setup.clinic, PLUM)
    book(london("2026-11-25", "10:00"), name="Ada Lovelace", email="ada@example.org")

    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])

    assert result.exit_code == 0, result.output
    [message] = smtp.messages()
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    body = part.get_content()
    assert "color:#6b2d5c" in body
    assert "background:#6b2d5c" in body
    assert "#4d6b57" not in body
