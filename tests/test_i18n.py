"""Languages: pages and mail in English or German, chosen from the browser or with the switch,
dates written the language's way, and a German catalogue with every message translated."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale

from scheduler.booking.models import Booking
from scheduler.i18n import COOKIE, TRANSLATIONS, format_local
from scheduler.staff.models import Role
from scheduler.web import safe_next
from tests.conftest import csrf_token, london
from tests.smtp_server import Inbox

ROOT = Path(__file__).resolve().parent.parent
GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.8"}
ENGLISH = {"Accept-Language": "en-GB,en;q=0.9"}
# Tuesday 24 November 2026, 10:00 in London: the day after the tests' clock.
TUESDAY_10 = london("2026-11-24", "10:00")
# Wednesday 25 November 2026, 10:00 in London.
WEDNESDAY_10 = london("2026-11-25", "10:00")


def squash(text: str) -> str:
    """The page's text as a browser shows it: tags dropped, runs of whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


def confirm_url(setup, start: datetime) -> str:
    return "/book/confirm?" + urlencode(
        {"service": setup.follow_up.id, "practitioner": setup.mei.id, "start": start.isoformat()}
    )


def dispatch(app: Flask) -> None:
    """Run ``notifications run --once`` as an operator would."""
    result = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert result.exit_code == 0, result.output


def plain_text(inbox: Inbox) -> str:
    [message] = inbox.messages()
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


# --- Pages in German ------------------------------------------------------------------------


def test_a_german_browser_gets_the_home_page_in_german(client: FlaskClient, setup):
    page = client.get("/", headers=GERMAN)

    assert page.status_code == 200
    assert '<html lang="de">' in page.text
    text = squash(page.text)
    assert "Termin buchen" in text
    assert "So bereiten Sie sich vor" in text
    assert "Book a session" not in text
    # Durations too: the follow-up takes an hour.
    assert "1 Std." in text


def test_the_booking_page_lists_days_and_times_in_german(client: FlaskClient, setup):
    page = client.get(f"/book?service={setup.follow_up.id}", headers=GERMAN)

    text = squash(page.text)
    assert "Freie Zeiten für Follow-up treatment" in text
    assert "Dienstag, 24. November" in text
    assert "Tuesday" not in text
    # A slot's accessible name is the whole date and time, the German way.
    assert 'aria-label="Dienstag, 24. November 2026, 10:00 GMT"' in page.text


def test_the_details_page_and_its_errors_are_in_german(client: FlaskClient, setup):
    url = confirm_url(setup, TUESDAY_10)
    page = client.get(url, headers=GERMAN)

    text = squash(page.text)
    assert "Ihre Angaben" in text
    assert "Dienstag, 24. November 2026, 10:00 bis 11:00 GMT (Europe/London)" in text
    assert "Vollständiger Name" in text

    refused = client.post(
        url, data={"csrf_token": csrf_token(page.text), "email": "nope"}, headers=GERMAN
    )

    assert refused.status_code == 422
    text = squash(refused.text)
    assert "Bitte geben Sie Ihren Namen ein." in text
    assert "Bitte geben Sie eine gültige E-Mail-Adresse ein, etwa name@example.com." in text


def test_a_booking_made_in_german_says_so_in_german(client: FlaskClient, setup, session):
    url = confirm_url(setup, TUESDAY_10)
    page = client.get(url, headers=GERMAN)

    done = client.post(
        url,
        data={"csrf_token": csrf_token(page.text), "full_name": "Ada", "email": "ada@example.org"},
        headers=GERMAN,
    )
    manage = client.get(done.location, headers=GERMAN)

    assert done.status_code == 303
    assert "Ihr Termin ist gebucht. Wir freuen uns auf Sie." in squash(manage.text)


def test_the_manage_page_is_in_german(client: FlaskClient, book: Callable[..., Booking]):
    booking = book(TUESDAY_10, name="Ada Lovelace")

    page = client.get(f"/b/{booking.manage_token}", headers=GERMAN)

    text = squash(page.text)
    assert "Ihr Termin" in text
    assert "Dienstag, 24. November 2026, 10:00 bis 11:00 GMT (Europe/London)" in text
    assert "Gebucht für Ada Lovelace" in text
    assert "Zeit ändern" in text
    assert "Your booking" not in text


def test_names_inside_translated_sentences_are_escaped(
    client: FlaskClient, book: Callable[..., Booking]
):
    booking = book(TUESDAY_10, name="<b>Ada</b>")

    page = client.get(f"/b/{booking.manage_token}", headers=GERMAN)

    assert "Gebucht für &lt;b&gt;Ada&lt;/b&gt;" in page.text
    assert "<b>Ada</b>" not in page.text


def test_the_staff_login_is_in_german(client: FlaskClient, setup):
    page = client.get("/staff/login", headers=GERMAN)

    text = squash(page.text)
    assert "Anmeldung für das Team" in text
    assert "Passwort" in text
    assert "Staff login" not in text


def test_the_staff_area_is_in_german(client: FlaskClient, setup, make_user):
    make_user(Role.ADMIN)
    page = client.get("/staff/login", headers=GERMAN)
    client.post(
        "/staff/login",
        data={
            "email": "admin@clinic.example",
            "password": "correct horse battery",
            "csrf_token": csrf_token(page.text),
        },
        headers=GERMAN,
    )

    day = client.get("/staff/day?date=2026-11-24", headers=GERMAN)

    text = squash(day.text)
    assert "Dienstag, 24. November 2026" in text
    assert "Patientinnen und Patienten" in text
    assert "admin@clinic.example abmelden" in text


@pytest.mark.parametrize(
    ("start", "status", "german"),
    [
        (london("2026-11-23", "07:00"), 422, "Diese Zeit ist schon vorbei"),
        (london("2026-11-23", "15:00"), 422, "Termine brauchen mindestens 12 Stunden Vorlauf"),
        (london("2026-11-24", "10:07"), 409, "Dienstag, 24. November 2026, 10:07 GMT ist für"),
    ],
    ids=["past", "inside-minimum-notice", "not-on-a-slot"],
)
def test_a_refused_time_says_why_in_german(
    client: FlaskClient, setup, start: datetime, status: int, german: str
):
    url = confirm_url(setup, start)
    page = client.get(url, headers=GERMAN)

    refused = client.post(
        url,
        data={"csrf_token": csrf_token(page.text), "full_name": "Ada", "email": "ada@example.org"},
        headers=GERMAN,
    )

    assert refused.status_code == status
    assert german in squash(refused.text)


def test_the_api_gives_the_same_refusal_in_english(client: FlaskClient, setup):
    body = {
        "service": setup.follow_up.id,
        "practitioner": setup.mei.id,
        "start": london("2026-11-23", "07:00").isoformat(),
        "patient": {"name": "Ada", "email": "ada@example.org"},
    }

    answer = client.post("/api/v1/bookings", json=body, headers=GERMAN)

    assert answer.status_code == 422
    assert "That time has already passed; please pick a later one." in str(answer.get_json())


def test_staff_messages_after_an_action_are_in_german(
    client: FlaskClient, setup, make_user, book: Callable[..., Booking]
):
    booking = book(TUESDAY_10, name="Ada Lovelace")
    make_user(Role.RECEPTION)
    page = client.get("/staff/login", headers=GERMAN)
    client.post(
        "/staff/login",
        data={
            "email": "reception@clinic.example",
            "password": "correct horse battery",
            "csrf_token": csrf_token(page.text),
        },
        headers=GERMAN,
    )
    detail = client.get(f"/staff/bookings/{booking.id}", headers=GERMAN)
    assert "Keine Gesundheitsangaben vorhanden." in squash(detail.text)

    saved = client.post(
        f"/staff/bookings/{booking.id}/notes",
        data={"csrf_token": csrf_token(detail.text), "staff_notes": "Prefers the garden room"},
        headers=GERMAN,
        follow_redirects=True,
    )

    assert "Notizen gespeichert." in squash(saved.text)
    assert "Notes saved." not in saved.text


def test_an_error_page_is_in_german(client: FlaskClient, setup):
    page = client.get("/no/such/page", headers=GERMAN)

    assert page.status_code == 404
    text = squash(page.text)
    assert "Hier gibt es nichts. Der Link ist vielleicht falsch geschrieben oder veraltet." in text
    assert "Zurück zur Startseite" in text


def test_the_api_answers_in_english_whatever_the_browser_prefers(client: FlaskClient, setup):
    # Integrators match the API's messages; only pages follow the browser.
    answer = client.get("/api/v1/slots?service=999999", headers=GERMAN)

    english = client.get("/api/v1/slots?service=999999")

    assert answer.status_code == english.status_code
    assert answer.get_json() == english.get_json()
    assert answer.get_json()["error"]


# --- The switch -------------------------------------------------------------------------------


def test_every_page_has_the_switch_back_to_itself(client: FlaskClient, setup):
    page = client.get(f"/book?service={setup.follow_up.id}", headers=ENGLISH)

    [href] = re.findall(r'<a href="(/language/de\?[^"]+)"', page.text)
    query = parse_qs(urlsplit(html.unescape(href)).query)
    assert query == {"next": [f"/book?service={setup.follow_up.id}"]}
    assert re.search(r'<a href="/language/en\?[^"]*"[^>]*aria-current="true"', page.text)
    assert 'lang="de"' in page.text
    assert ">Deutsch</a>" in page.text


def test_the_switch_overrides_the_browser_and_is_remembered(client: FlaskClient, setup):
    switched = client.get("/language/de?next=/book", headers=ENGLISH)

    assert switched.status_code == 303
    assert switched.location == "/book"
    cookie = switched.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=de;")
    assert "Max-Age=31536000" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    # Later visits, with the browser still asking for English, stay German.
    assert "Termin buchen" in client.get("/", headers=ENGLISH).text
    assert "Termin buchen" in client.get("/book", headers=ENGLISH).text

    client.get("/language/en?next=/", headers=GERMAN)

    assert "Book a session" in client.get("/", headers=GERMAN).text


def test_the_switch_only_goes_back_to_this_site(client: FlaskClient, setup):
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"):
        answer = client.get("/language/de?" + urlencode({"next": target}))
        assert answer.location == "/", target
    assert safe_next("/b/abc?x=1", "/") == "/b/abc?x=1"
    assert safe_next(None, "/") == "/"


def test_an_unknown_language_falls_back_to_english(client: FlaskClient, setup):
    page = client.get("/", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert '<html lang="en">' in page.text
    assert "Book a session" in page.text

    refused = client.get("/language/xx?next=/")

    assert refused.status_code == 303
    assert "Set-Cookie" not in refused.headers
    client.set_cookie(COOKIE, "xx")
    assert "Book a session" in client.get("/").text


def test_english_is_the_language_without_any_preference(client: FlaskClient, setup):
    page = client.get("/")

    assert '<html lang="en">' in page.text
    assert "Book a session" in page.text


# --- Mail ---------------------------------------------------------------------------------------


def test_mail_goes_in_the_clinic_language_in_german_dates(
    app: Flask, book: Callable[..., Booking], smtp: Inbox, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(app.config, "BABEL_DEFAULT_LOCALE", "de")
    book(WEDNESDAY_10, name="Ada Lovelace", email="ada@example.org")

    dispatch(app)

    [message] = smtp.messages()
    assert str(message["Subject"]).strip() == (
        "Gebucht: Follow-up treatment am Mittwoch, 25. November 2026, 10:00 GMT"
    )
    text = plain_text(smtp)
    assert text.startswith("Guten Tag Ada Lovelace,")
    assert "Ihr Termin ist gebucht:" in text
    assert "Follow-up treatment bei Mei Lin" in text
    assert "Mittwoch, 25. November 2026, 10:00 bis 11:00 GMT (Europe/London)" in text
    assert "So bereiten Sie sich vor:" in text
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert '<html lang="de">' in html.get_content()


def test_mail_sent_later_uses_the_clinic_language_not_the_browsers(
    app: Flask, client: FlaskClient, setup, smtp: Inbox
):
    # Which language a patient booked in is not stored yet, so the dispatcher writes in the
    # clinic's language (English by default) even after a booking made in German.
    url = confirm_url(setup, WEDNESDAY_10)
    page = client.get(url, headers=GERMAN)
    client.post(
        url,
        data={"csrf_token": csrf_token(page.text), "full_name": "Ada", "email": "ada@example.org"},
        headers=GERMAN,
    )

    dispatch(app)

    [message] = smtp.messages()
    assert str(message["Subject"]).strip().startswith("Booked: Follow-up treatment on Wednesday")
    assert plain_text(smtp).startswith("Hello Ada,")


# --- Dates -------------------------------------------------------------------------------------


def test_dates_keep_their_english_form_and_take_the_german_one(app: Flask):
    london_zone = ZoneInfo("Europe/London")
    summer = datetime(2026, 6, 24, 9, 5, tzinfo=UTC)

    assert format_local(summer, london_zone) == "Wednesday 24 June 2026, 10:05 BST"
    with app.app_context():
        assert format_local(summer, london_zone) == "Wednesday 24 June 2026, 10:05 BST"
        with force_locale("de"):
            assert format_local(summer, london_zone) == "Mittwoch, 24. Juni 2026, 10:05 BST"


# --- The catalogue ------------------------------------------------------------------------------


def extracted() -> Catalog:
    """Every message in the code and templates, extracted as ``make translations`` does."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    keywords = {**DEFAULT_KEYWORDS, "_l": None}
    catalogue = Catalog()
    for filename, lineno, message, comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        catalogue.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalogue


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"%\(\w+\)[sd]", text))


def test_the_german_catalogue_translates_every_message():
    with (TRANSLATIONS / "de" / "LC_MESSAGES" / "messages.po").open("rb") as source:
        german = read_po(source, locale="de")
    messages = [m for m in extracted() if m.id]

    problems = []
    for message in messages:
        where = f"{message.locations[0][0]}:{message.locations[0][1]}"
        translated = german.get(message.id, context=message.context)
        if translated is None:
            problems.append(f"{where} {message.id!r} is not in the .po (run make translations)")
            continue
        strings = (
            translated.string if isinstance(translated.string, tuple) else (translated.string,)
        )
        if translated.fuzzy or not all(strings):
            problems.append(f"{where} {message.id!r} has no German translation")
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        wanted = set().union(*(placeholders(i) for i in ids)) - {"%(num)d"}
        for string in strings:
            if placeholders(string) - {"%(num)d"} != wanted:
                problems.append(f"{where} {message.id!r}: placeholders differ in {string!r}")

    assert len(messages) > 600
    assert not problems, "\n".join(problems)


# --- What staff read in German ---------------------------------------------------------------


def german_staff(client: FlaskClient, make_user, role: Role = Role.ADMIN) -> None:
    user = make_user(role)
    page = client.get("/staff/login", headers=GERMAN)
    client.post(
        "/staff/login",
        data={
            "email": user.email,
            "password": "correct horse battery",
            "csrf_token": csrf_token(page.text),
        },
        headers=GERMAN,
    )


def test_a_bookings_history_names_its_actions_and_actors_in_german(
    client: FlaskClient, make_user, book: Callable[..., Booking]
):
    booking = book(TUESDAY_10, name="Ada Lovelace")
    german_staff(client, make_user, Role.RECEPTION)

    text = squash(client.get(f"/staff/bookings/{booking.id}", headers=GERMAN).text)

    history = text[text.index("Verlauf") :]
    assert re.search(r"Patient/in Gebucht", history), history[:300]
    assert "Booked" not in text


def test_the_week_view_names_its_days_in_german(client: FlaskClient, setup, make_user):
    german_staff(client, make_user)

    text = squash(
        client.get(f"/staff/week?date=2026-11-23&practitioner={setup.mei.id}", headers=GERMAN).text
    )

    assert "Di., 24. Nov." in text
    assert "Tue 24 Nov" not in text


def test_set_up_warnings_write_their_dates_in_german(
    client: FlaskClient, setup, make_user, book: Callable[..., Booking]
):
    book(TUESDAY_10, practitioner=setup.mei, name="Ada Lovelace")
    german_staff(client, make_user)
    page = client.get(f"/staff/setup/practitioners/{setup.mei.id}/hours", headers=GERMAN)

    saved = client.post(
        f"/staff/setup/practitioners/{setup.mei.id}/hours",
        data={"csrf_token": csrf_token(page.text), "monday": "09:00-13:00"},
        headers=GERMAN,
        follow_redirects=True,
    )

    text = squash(saved.text)
    assert "Di., 24. Nov. 10:00 Ada Lovelace" in text
    assert "Tue" not in text
