"""The patient's pages, followed as a person would: read the links and forms, then use them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from scheduler.booking.models import Booking, BookingStatus
from scheduler.clinic.models import Practitioner, Treatment
from tests.conftest import Setup, london

TUESDAY_10 = london("2026-11-24", "10:00")
WEDNESDAY_11 = london("2026-11-25", "11:00")

VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}


def squash(text: str) -> str:
    """Collapse runs of whitespace, as a browser shows them."""
    return " ".join(text.split())


@dataclass
class Element:
    """One element of a page: its tag, attributes and the text inside it."""

    tag: str
    attrs: dict[str, str]
    text: str = ""


@dataclass
class Form:
    """A form and the fields inside it."""

    method: str
    action: str
    fields: list[Element] = field(default_factory=list)


class Page(HTMLParser):
    """What a person sees of a response: its text, links, labels and forms."""

    def __init__(self, response: TestResponse) -> None:
        super().__init__(convert_charrefs=True)
        self.response = response
        self.status = response.status_code
        self.url = response.request.full_path.rstrip("?")
        self.elements: list[Element] = []
        self.forms: list[Form] = []
        self._open: list[tuple[Element, list[str]]] = []
        self._form: Form | None = None
        self._chunks: list[str] = []
        self.feed(response.get_data(as_text=True))
        self.close()
        self.text = squash("".join(self._chunks))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.elements.append(element)
        if tag == "form":
            self._form = Form(
                element.attrs.get("method", "get").lower(), element.attrs.get("action", "")
            )
            self.forms.append(self._form)
        elif tag in ("input", "select", "textarea", "button") and self._form is not None:
            self._form.fields.append(element)
        elif tag == "option" and self._form and self._form.fields[-1].tag == "select":
            # A select sends its selected option, or else its first.
            select = self._form.fields[-1]
            if "selected" in element.attrs or "value" not in select.attrs:
                select.attrs["value"] = element.attrs.get("value", "")
        if tag not in VOID_TAGS:
            self._open.append((element, []))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        if not any(element.tag == tag for element, _ in self._open):
            return
        while self._open:
            element, chunks = self._open.pop()
            element.text = squash("".join(chunks))
            if element.tag == tag:
                break

    def handle_data(self, data: str) -> None:
        self._chunks.append(data)
        for _, chunks in self._open:
            chunks.append(data)

    @property
    def location(self) -> str:
        """Where a redirect points, as a path."""
        return urlsplit(self.response.headers["Location"]).path

    def links(self, path: str | None = None) -> list[Element]:
        """The links on the page, optionally only those to ``path``."""
        return [
            element
            for element in self.elements
            if element.tag == "a"
            and "href" in element.attrs
            and (path is None or urlsplit(element.attrs["href"]).path == path)
        ]

    def link(self, text: str) -> str:
        """The address of the one link whose text contains ``text``."""
        hrefs = [link.attrs["href"] for link in self.links() if text in link.text]
        assert len(hrefs) == 1, f"expected one link {text!r}, found {hrefs}"
        return hrefs[0]

    def by_id(self, element_id: str) -> Element:
        """The element with this id."""
        found = [element for element in self.elements if element.attrs.get("id") == element_id]
        assert len(found) == 1, f"expected one element #{element_id}, found {len(found)}"
        return found[0]

    def with_class(self, class_name: str) -> list[Element]:
        """The elements that carry this class."""
        return [
            element
            for element in self.elements
            if class_name in element.attrs.get("class", "").split()
        ]

    def texts(self, tag: str) -> list[str]:
        """The texts of every ``tag`` element, e.g. the headings."""
        return [element.text for element in self.elements if element.tag == tag]

    def post_form(self) -> Form:
        """The one form on the page that is sent with ``POST``."""
        forms = [form for form in self.forms if form.method == "post"]
        assert len(forms) == 1, f"expected one POST form, found {len(forms)}"
        return forms[0]

    def slots(self, path: str) -> dict[datetime, str]:
        """The free times offered as links to ``path``, by their start."""
        return {
            start_of(link.attrs["href"]): link.attrs["href"]
            for link in self.links(path)
            if "slot" in link.attrs.get("class", "").split()
        }


def start_of(href: str) -> datetime:
    """The ``start`` a slot link carries, which must be ISO 8601 with an offset."""
    [raw] = parse_qs(urlsplit(href).query)["start"]
    start = datetime.fromisoformat(raw)
    assert start.utcoffset() is not None, f"start {raw!r} has no offset"
    return start.astimezone(UTC)


def query_of(href: str) -> dict[str, str]:
    """The query arguments of a link (blank ones kept)."""
    return {
        name: values[0]
        for name, values in parse_qs(urlsplit(href).query, keep_blank_values=True).items()
    }


class Browser:
    """A patient's browser: opens addresses, follows links and fills in forms."""

    def __init__(self, client: FlaskClient, session: Session) -> None:
        self.client = client
        self.session = session

    def _new_unit_of_work(self) -> None:
        # End the test's own read transaction, so that what it reads after the request is what
        # the request committed (SQLite keeps a reader on its snapshot until it ends).
        self.session.rollback()

    def open(self, url: str) -> Page:
        """``GET`` a page."""
        self._new_unit_of_work()
        return Page(self.client.get(url))

    def submit(self, page: Page, **values: str | None) -> Page:
        """Fill in the page's ``POST`` form and send it; ``None`` leaves a field out."""
        form = page.post_form()
        data = {
            element.attrs["name"]: element.attrs.get("value", "")
            for element in form.fields
            if element.attrs.get("name")
            # As a browser does, a box or a radio button is sent only when it is checked.
            and (
                element.attrs.get("type") not in ("checkbox", "radio") or "checked" in element.attrs
            )
        }
        data.update(values)
        self._new_unit_of_work()
        sent = {name: value for name, value in data.items() if value is not None}
        return Page(self.client.post(form.action or page.url, data=sent))


@pytest.fixture
def browser(client: FlaskClient, session: Session) -> Browser:
    """A browser on the app."""
    return Browser(client, session)


def confirm_url(
    treatment: Treatment, start: datetime | str, practitioner: Practitioner | None = None
) -> str:
    """The details page for a time, as the free-time links build it."""
    raw = start if isinstance(start, str) else start.isoformat()
    return "/book/confirm?" + urlencode(
        {
            "service": treatment.id,
            "practitioner": practitioner.id if practitioner else "",
            "start": raw,
        }
    )


def free_times_url(treatment: Treatment, practitioner: Practitioner | None = None) -> str:
    """The week of free times for a treatment."""
    query = {"service": treatment.id}
    if practitioner is not None:
        query["practitioner"] = practitioner.id
    return "/book?" + urlencode(query)


def count_bookings(session: Session) -> int:
    """How many bookings the database holds."""
    return session.scalar(select(func.count()).select_from(Booking)) or 0


def only_booking(session: Session) -> Booking:
    """The one booking in the database."""
    return session.scalars(select(Booking)).one()


def day_headings(page: Page) -> list[str]:
    """The days a week of free times shows, e.g. ``Monday 23 November``."""
    weekdays = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    return [heading for heading in page.texts("h3") if heading.startswith(weekdays)]


def details_page(browser: Browser, setup: Setup) -> Page:
    """Open the details form for a follow-up with Mei on Tuesday at 10:00, from the free times."""
    week = browser.open(free_times_url(setup.follow_up, setup.mei))
    page = browser.open(week.slots("/book/confirm")[TUESDAY_10])
    assert page.status == 200
    return page


# The front page


def test_front_page_shows_the_clinic_its_treatments_and_practitioners(browser, setup):
    page = browser.open("/")

    assert page.status == 200
    assert "Test Acupuncture" in page.text
    assert "Initial consultation" in page.text
    assert "1 h 30 min" in page.text
    assert "Follow-up treatment" in page.text
    assert "1 h" in page.texts("p")
    assert "Mei Lin" in page.text
    assert "James Okafor" in page.text
    assert "BSc (Hons) Acupuncture" in page.text
    assert "MBAcC" in page.text


def test_front_page_says_how_to_prepare(browser, setup):
    text = browser.open("/").text.lower()

    assert "loose" in text
    assert "clothing" in text
    assert "light meal" in text
    assert "caffeine" in text
    assert "alcohol" in text
    assert "medications" in text


def test_front_page_book_button_leads_to_the_free_times_of_that_treatment(browser, setup):
    front = browser.open("/")

    week = browser.open(front.link("Book initial consultation"))

    assert week.status == 200
    assert "Free times for Initial consultation" in week.text
    assert week.slots("/book/confirm")


# Choosing a treatment and a time


def test_book_page_lists_treatments_and_anyone_available(browser, setup):
    page = browser.open("/book")

    assert page.status == 200
    offered = {
        element.attrs["value"]
        for element in page.elements
        if element.tag == "input" and element.attrs.get("name") == "service"
    }
    assert offered == {str(setup.initial.id), str(setup.follow_up.id)}
    options = {
        element.text: element.attrs["value"] for element in page.elements if element.tag == "option"
    }
    assert options["Anyone available"] == ""
    assert options["Mei Lin"] == str(setup.mei.id)


def test_choosing_a_treatment_shows_seven_days_of_free_times(browser, setup):
    page = browser.open(free_times_url(setup.follow_up))

    assert page.status == 200
    assert day_headings(page) == [
        "Monday 23 November",
        "Tuesday 24 November",
        "Wednesday 25 November",
        "Thursday 26 November",
        "Friday 27 November",
        "Saturday 28 November",
        "Sunday 29 November",
    ]
    starts = sorted(page.slots("/book/confirm"))
    # Twelve hours' notice from Monday 08:00 leaves nothing on Monday; nobody works on Sunday.
    assert starts[0] == london("2026-11-24", "09:00")
    assert starts[-1] < london("2026-11-29", "00:00")


def test_free_times_link_to_the_details_page_with_service_practitioner_and_start(browser, setup):
    page = browser.open(free_times_url(setup.follow_up, setup.mei))

    href = page.slots("/book/confirm")[TUESDAY_10]

    [raw_start] = parse_qs(urlsplit(href).query)["start"]
    assert datetime.fromisoformat(raw_start).utcoffset() is not None
    assert query_of(href)["service"] == str(setup.follow_up.id)
    assert query_of(href)["practitioner"] == str(setup.mei.id)


def test_free_times_are_shown_in_the_clinic_time_zone(browser, setup, clock):
    # In June London is on BST, an hour ahead of UTC, so the zone shows in the times.
    clock.now = datetime(2026, 6, 15, 7, 0, tzinfo=UTC)

    page = browser.open(free_times_url(setup.follow_up, setup.mei))

    assert "Europe/London" in page.text
    first = min(page.slots("/book/confirm"))
    assert first == datetime(2026, 6, 16, 8, 0, tzinfo=UTC)
    [link] = [link for link in page.links("/book/confirm") if start_of(link.attrs["href"]) == first]
    assert link.text == "09:00"


def test_no_time_is_offered_over_lunch(browser, setup):
    page = browser.open(free_times_url(setup.follow_up, setup.mei))

    tuesday = [
        start.astimezone(setup.clinic.tz).strftime("%H:%M")
        for start in page.slots("/book/confirm")
        if start.astimezone(setup.clinic.tz).date().isoformat() == "2026-11-24"
    ]
    assert "09:00" in tuesday
    assert "14:00" in tuesday
    assert not [hhmm for hhmm in tuesday if "12:00" < hhmm < "14:00"]


def test_later_days_shows_the_following_week(browser, setup):
    first_week = browser.open(free_times_url(setup.follow_up))

    second_week = browser.open(first_week.link("Later days"))

    assert second_week.status == 200
    days = day_headings(second_week)
    assert days[0] == "Monday 30 November"
    assert days[-1] == "Sunday 6 December"
    starts = second_week.slots("/book/confirm")
    assert starts
    assert min(starts) >= london("2026-11-30", "00:00")
    assert "Earlier days" in second_week.text


@pytest.mark.parametrize(
    "service",
    ["999", "abc", "-1", "1.5", "99999999999999999999", "\N{SUPERSCRIPT TWO}"],
    ids=["unknown", "letters", "negative", "decimal", "huge", "superscript-digit"],
)
def test_an_unknown_treatment_gives_a_clear_400_page(browser, setup, service):
    page = browser.open("/book?" + urlencode({"service": service}))

    assert page.status == 400
    assert page.response.mimetype == "text/html"
    assert "That treatment is not offered; please choose one from the list." in page.text


@pytest.mark.parametrize("practitioner", ["999", "mei", "0", "\N{SUPERSCRIPT TWO}"])
def test_an_unknown_practitioner_gives_a_clear_400_page(browser, setup, practitioner):
    url = "/book?" + urlencode({"service": setup.follow_up.id, "practitioner": practitioner})

    page = browser.open(url)

    assert page.status == 400
    assert "That practitioner is not available; please choose another." in page.text


def test_a_practitioner_who_does_not_give_the_treatment_gives_a_400_page(
    browser, setup, make_practitioner
):
    ana = make_practitioner(name="Ana Ruiz", treatments=[setup.initial])

    page = browser.open(free_times_url(setup.follow_up, ana))

    assert page.status == 400
    assert "Ana Ruiz does not give Follow-up treatment." in page.text


# The details form


def test_details_page_shows_the_time_in_london_with_the_zone(browser, setup):
    # The same instant written with a +01:00 offset is shown as London's 10:00.
    page = browser.open(confirm_url(setup.follow_up, "2026-11-24T11:00:00+01:00", setup.mei))

    assert page.status == 200
    assert "Tuesday 24 November 2026, 10:00" in page.text
    assert "GMT (Europe/London)" in page.text


def test_every_field_of_the_details_form_has_a_label(browser, setup):
    page = details_page(browser, setup)

    labelled = {element.attrs["for"] for element in page.elements if element.tag == "label"}
    fields = [
        element
        for element in page.post_form().fields
        if element.tag != "button" and element.attrs.get("type") != "hidden"
    ]
    assert {element.attrs["name"] for element in fields} >= {"full_name", "email", "phone", "notes"}
    for element in fields:
        assert element.attrs.get("id") in labelled, f"{element.attrs['name']} has no label"


def test_booking_with_valid_details_redirects_to_the_manage_page(browser, setup, session):
    page = details_page(browser, setup)

    done = browser.submit(
        page, full_name="Ada Lovelace", email="ada@example.org", phone="+44 7700 900123"
    )

    assert done.status == 303
    booking = only_booking(session)
    assert done.location == f"/b/{booking.manage_token}"
    assert booking.start_at == TUESDAY_10
    assert booking.treatment_id == setup.follow_up.id
    assert booking.practitioner_id == setup.mei.id
    assert booking.status == BookingStatus.CONFIRMED
    assert booking.patient.name == "Ada Lovelace"
    assert booking.patient.email == "ada@example.org"


def test_booking_for_anyone_available_gives_the_time_to_a_practitioner(browser, setup, session):
    week = browser.open(free_times_url(setup.follow_up))
    page = browser.open(week.slots("/book/confirm")[TUESDAY_10])

    done = browser.submit(page, full_name="Ada Lovelace", email="ada@example.org")

    assert done.status == 303
    booking = only_booking(session)
    assert booking.start_at == TUESDAY_10
    assert booking.practitioner_id in {setup.mei.id, setup.james.id}


def test_the_manage_page_greets_the_patient_after_booking(browser, setup):
    done = browser.submit(details_page(browser, setup), full_name="Ada", email="ada@example.org")

    manage = browser.open(done.location)

    assert manage.status == 200
    assert "Your session is booked" in manage.text
    assert "Booked for Ada" in manage.text


def test_details_without_the_csrf_token_are_refused(browser, setup, session):
    page = details_page(browser, setup)

    refused = browser.submit(page, csrf_token=None, full_name="Ada", email="ada@example.org")

    assert refused.status == 400
    assert "Please reload the page and send it again." in refused.text
    assert count_bookings(session) == 0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("full_name", "A" * 10_000, "Please shorten the name to 200 characters or fewer."),
        ("full_name", "Ada\nLovelace", "Please keep this to one line of ordinary text."),
        ("full_name", "Ada\x07Lovelace", "Please keep this to one line of ordinary text."),
        ("full_name", "", "Please enter your name."),
        ("email", "ada.example.org", "Please enter a valid email address"),
        ("email", "ada@", "Please enter a valid email address"),
        ("phone", "call me", "Please enter a phone number using digits, spaces and +."),
        ("notes", "bad\x00note", "Please remove the invisible control characters."),
    ],
    ids=[
        "long-name",
        "newline-in-name",
        "control-in-name",
        "no-name",
        "email-without-at",
        "email-without-domain",
        "phone-in-words",
        "nul-in-notes",
    ],
)
def test_invalid_details_are_explained_next_to_the_field(
    browser, setup, session, name, value, message
):
    page = details_page(browser, setup)
    details = {"full_name": "Ada Lovelace", "email": "ada@example.org", name: value}

    refused = browser.submit(page, **details)

    assert refused.status == 422
    assert message in refused.by_id(f"{name}-error").text
    assert f"{name}-error" in refused.by_id(name).attrs["aria-describedby"].split()
    assert count_bookings(session) == 0


def test_a_time_taken_meanwhile_answers_409_with_other_times(browser, setup, session, book):
    page = details_page(browser, setup)
    book(TUESDAY_10, practitioner=setup.mei)

    refused = browser.submit(page, full_name="Ada", email="ada@example.org")

    assert refused.status == 409
    assert "is not free" in refused.text or "just taken" in refused.text
    alternatives = refused.slots("/book/confirm")
    assert alternatives
    assert TUESDAY_10 not in alternatives
    for href in alternatives.values():
        assert query_of(href)["practitioner"] == str(setup.mei.id)
    assert count_bookings(session) == 1


def test_another_time_offered_after_a_409_can_be_booked(browser, setup, session, book):
    page = details_page(browser, setup)
    book(TUESDAY_10, practitioner=setup.mei)
    refused = browser.submit(page, full_name="Ada", email="ada@example.org")
    nearest = min(refused.slots("/book/confirm"), key=lambda start: abs(start - TUESDAY_10))

    retry = browser.open(refused.slots("/book/confirm")[nearest])
    done = browser.submit(retry, full_name="Ada", email="ada@example.org")

    assert done.status == 303
    assert count_bookings(session) == 2


@pytest.mark.parametrize(
    ("start", "status", "message"),
    [
        (london("2026-11-23", "07:00"), 422, "That time has already passed"),
        (london("2026-11-23", "15:00"), 422, "Bookings need at least 12 hours' notice"),
        (london("2027-01-26", "10:00"), 422, "Bookings open 60 days ahead"),
        (london("2026-11-24", "10:07"), 409, "is not free"),
    ],
    ids=["past", "inside-minimum-notice", "beyond-horizon", "not-on-a-slot"],
)
def test_a_time_against_the_rules_is_refused_with_the_reason(
    browser, setup, session, start, status, message
):
    page = browser.open(confirm_url(setup.follow_up, start, setup.mei))

    refused = browser.submit(page, full_name="Ada", email="ada@example.org")

    assert refused.status == status
    assert message in refused.text
    assert count_bookings(session) == 0


@pytest.mark.parametrize(
    "start",
    ["tomorrow", "2026-11-24T10:00", "2026-13-45T10:00:00+00:00", ""],
    ids=["words", "no-offset", "no-such-date", "empty"],
)
def test_a_garbage_start_gives_a_400_page(browser, setup, start):
    page = browser.open(confirm_url(setup.follow_up, start))

    assert page.status == 400
    assert "Please choose a time from the list of free times." in page.text
    assert page.link("See the free times") == "/book"


def test_a_start_whose_plus_sign_arrived_as_a_space_is_understood(browser, setup):
    # Someone copying the link by hand may leave "+00:00" unencoded; it arrives as a space.
    url = f"/book/confirm?service={setup.follow_up.id}&start=2026-11-24T10:00:00+00:00"

    page = browser.open(url)

    assert page.status == 200
    assert "Tuesday 24 November 2026, 10:00" in page.text


# The manage page and the calendar file


def test_manage_page_shows_the_booking_and_how_to_prepare(browser, setup, book):
    booking = book(TUESDAY_10, practitioner=setup.mei)

    page = browser.open(f"/b/{booking.manage_token}")

    assert page.status == 200
    assert "Follow-up treatment with Mei Lin" in page.text
    assert "Tuesday 24 November 2026, 10:00 to 11:00 GMT (Europe/London)" in page.text
    assert page.with_class("status")[0].text == "Confirmed"
    text = page.text.lower()
    assert "loose" in text
    assert "light meal" in text
    assert "caffeine and alcohol" in text
    assert "medications" in text


def test_manage_page_links_to_change_cancel_and_the_calendar_file(browser, setup, book):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    token = booking.manage_token

    page = browser.open(f"/b/{token}")

    assert page.link("Change the time") == f"/b/{token}/reschedule"
    assert page.link("Cancel") == f"/b/{token}/cancel"
    assert page.link("Add to calendar") == f"/b/{token}.ics"


def test_the_consultation_note_is_shown_only_for_a_first_visit(browser, setup, book):
    first_visit = book(TUESDAY_10, practitioner=setup.mei, treatment=setup.initial)
    follow_up = book(TUESDAY_10, practitioner=setup.james)

    first_page = browser.open(f"/b/{first_visit.manage_token}")
    follow_up_page = browser.open(f"/b/{follow_up.manage_token}")

    assert "in-depth consultation" in first_page.text
    assert "in-depth consultation" not in follow_up_page.text


def test_an_unknown_token_gives_a_friendly_404_page(browser, setup):
    page = browser.open("/b/no-such-booking")

    assert page.status == 404
    assert page.response.mimetype == "text/html"
    assert "We cannot find this booking" in page.text
    assert "The latest mail from us about your booking has the right link" in page.text
    assert page.link("Back to the start") == "/"


def test_calendar_file_holds_the_booking(browser, setup, book):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    manage = browser.open(f"/b/{booking.manage_token}")

    calendar = browser.open(manage.link("Add to calendar")).response

    assert calendar.status_code == 200
    assert calendar.mimetype == "text/calendar"
    lines = calendar.get_data(as_text=True).replace("\r\n ", "").splitlines()
    assert f"UID:{booking.calendar_uid}" in lines
    assert "DTSTART;TZID=Europe/London:20261124T100000" in lines


# Changing the time


def reschedule_page(browser: Browser, token: str, start: datetime = WEDNESDAY_11) -> Page:
    """From the manage page, pick ``start`` among the free times and open its confirmation."""
    manage = browser.open(f"/b/{token}")
    picker = browser.open(manage.link("Change the time"))
    return browser.open(picker.slots(f"/b/{token}/reschedule")[start])


def test_change_the_time_shows_the_free_times(browser, setup, book):
    token = book(TUESDAY_10, practitioner=setup.mei).manage_token
    manage = browser.open(f"/b/{token}")

    picker = browser.open(manage.link("Change the time"))

    assert picker.status == 200
    assert "Europe/London" in picker.text
    assert WEDNESDAY_11 in picker.slots(f"/b/{token}/reschedule")


def test_choosing_a_new_time_asks_to_confirm_with_a_form(browser, setup, book):
    token = book(TUESDAY_10, practitioner=setup.mei).manage_token

    confirmation = reschedule_page(browser, token)

    assert confirmation.status == 200
    assert "Move it to Wednesday 25 November 2026, 11:00 GMT?" in confirmation.text
    sent = {element.attrs.get("name"): element for element in confirmation.post_form().fields}
    assert sent["csrf_token"].attrs["value"]
    assert datetime.fromisoformat(sent["start"].attrs["value"]) == WEDNESDAY_11


def test_opening_a_new_time_does_not_move_the_booking(browser, setup, session, book):
    booking = book(TUESDAY_10, practitioner=setup.mei)

    reschedule_page(browser, booking.manage_token)

    session.refresh(booking)
    assert booking.start_at == TUESDAY_10
    assert booking.sequence == 0


def test_confirming_a_new_time_moves_the_booking(browser, setup, session, book):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    token = booking.manage_token
    confirmation = reschedule_page(browser, token)

    moved = browser.submit(confirmation)

    assert moved.status == 303
    assert moved.location == f"/b/{token}"
    session.refresh(booking)
    assert booking.manage_token == token
    assert booking.start_at == WEDNESDAY_11
    assert booking.sequence == 1
    manage = browser.open(moved.location)
    assert "Your booking has been moved." in manage.text
    assert "Wednesday 25 November 2026, 11:00" in manage.text


def test_the_old_time_is_free_again_after_moving(browser, setup, book):
    token = book(TUESDAY_10, practitioner=setup.mei).manage_token
    before = browser.open(free_times_url(setup.follow_up, setup.mei))
    assert TUESDAY_10 not in before.slots("/book/confirm")

    browser.submit(reschedule_page(browser, token))

    after = browser.open(free_times_url(setup.follow_up, setup.mei))
    assert TUESDAY_10 in after.slots("/book/confirm")
    assert WEDNESDAY_11 not in after.slots("/book/confirm")


def test_moving_to_a_time_taken_meanwhile_answers_409_with_alternatives(
    browser, setup, session, book
):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    token = booking.manage_token
    confirmation = reschedule_page(browser, token)
    book(WEDNESDAY_11, practitioner=setup.mei)

    refused = browser.submit(confirmation)

    assert refused.status == 409
    assert "is not free" in refused.text or "just taken" in refused.text
    alternatives = refused.slots(f"/b/{token}/reschedule")
    assert alternatives
    assert WEDNESDAY_11 not in alternatives
    session.refresh(booking)
    assert booking.start_at == TUESDAY_10
    assert booking.sequence == 0


@pytest.mark.parametrize(
    "start",
    ["garbage", "", "2026-11-25T11:07:00+00:00", "0001-01-01T00:00:00+01:00"],
    ids=["words", "empty", "not-on-a-slot", "before-year-one-in-utc"],
)
def test_a_bad_new_time_is_refused_without_moving(browser, setup, session, book, start):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    confirmation = reschedule_page(browser, booking.manage_token)

    refused = browser.submit(confirmation, start=start)

    assert 400 <= refused.status < 500
    session.refresh(booking)
    assert booking.start_at == TUESDAY_10
    assert booking.sequence == 0


# Cancelling


def test_cancel_page_asks_first_and_changes_nothing(browser, setup, session, book):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    manage = browser.open(f"/b/{booking.manage_token}")

    page = browser.open(manage.link("Cancel"))

    assert page.status == 200
    assert "Cancel your booking?" in page.text
    assert page.post_form()
    assert "late cancellation" not in page.text
    session.refresh(booking)
    assert booking.status == BookingStatus.CONFIRMED


def test_cancelling_marks_the_booking_cancelled(browser, setup, session, book):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    token = booking.manage_token
    page = browser.open(f"/b/{token}/cancel")

    done = browser.submit(page, reason="Feeling better")

    assert done.status == 303
    assert done.location == f"/b/{token}"
    session.refresh(booking)
    assert booking.status == BookingStatus.CANCELLED
    assert booking.cancellation_reason == "Feeling better"
    assert booking.late_cancellation is False
    manage = browser.open(done.location)
    assert manage.with_class("status")[0].text == "Cancelled"


def test_cancelling_within_24_hours_is_warned_about_beforehand(browser, setup, clock, book):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    clock.now = TUESDAY_10 - timedelta(hours=10)

    page = browser.open(f"/b/{booking.manage_token}/cancel")

    assert page.status == 200
    assert "less than 24 hours away" in page.text
    assert "late cancellation" in page.text


def test_cancelling_within_24_hours_is_recorded_as_late(browser, setup, session, clock, book):
    booking = book(TUESDAY_10, practitioner=setup.mei)
    token = booking.manage_token
    clock.now = TUESDAY_10 - timedelta(hours=10)
    page = browser.open(f"/b/{token}/cancel")

    done = browser.submit(page)

    assert done.status == 303
    assert "Cancelled (late cancellation)" in browser.open(done.location).text
    session.refresh(booking)
    assert booking.status == BookingStatus.CANCELLED
    assert booking.late_cancellation is True


def test_cancelling_an_already_cancelled_booking_says_it_is_cancelled(browser, setup, book):
    token = book(TUESDAY_10, practitioner=setup.mei).manage_token
    page = browser.open(f"/b/{token}/cancel")
    cancelled = browser.submit(page)
    browser.open(cancelled.location)

    # Sending the same form again, as the Back button and a second click do.
    again = browser.submit(page)

    assert 400 <= again.status < 500
    assert "This booking is cancelled." in again.text


def test_a_cancelled_time_can_be_booked_again(browser, setup, session, book):
    token = book(TUESDAY_10, practitioner=setup.mei).manage_token
    browser.submit(browser.open(f"/b/{token}/cancel"))

    done = browser.submit(details_page(browser, setup), full_name="Ada", email="ada@example.org")

    assert done.status == 303
    statuses = session.scalars(
        select(Booking.status).where(Booking.start_at == TUESDAY_10).order_by(Booking.id)
    ).all()
    assert statuses == [BookingStatus.CANCELLED, BookingStatus.CONFIRMED]


# No bad input answers 500


@pytest.mark.parametrize(
    "url",
    [
        "/book?service=abc",
        "/book?service={service}&from=not-a-date",
        "/book?service={service}&from=9999-12-31",
        "/book/confirm",
        "/book/confirm?service={service}&start=not-a-time",
        "/book/confirm?service={service}&start=9999-12-31T23:30:00%2B00:00",
        "/book/confirm?service={service}&start=0001-01-01T00:00:00%2B01:00",
        "/b/{token}/reschedule?start=not-a-time",
        "/b/{token}/reschedule?start=0001-01-01T00:00:00%2B01:00",
        "/b/{token}/reschedule?from=not-a-date",
        "/b/no-such-token.ics",
        "/b/no-such-token/cancel",
        "/b/no-such-token/reschedule",
        "/b/" + "x" * 5000,
    ],
)
def test_bad_input_never_answers_500(browser, setup, book, url):
    token = book(TUESDAY_10, practitioner=setup.mei).manage_token

    page = browser.open(url.format(service=setup.follow_up.id, token=token))

    assert page.status < 500
