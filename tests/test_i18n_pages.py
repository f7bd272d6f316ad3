"""Every page in German, found by following links, and every form's refusal of empty fields:
no text is left in English.

A German page and the same page in English are compared text by text (and the attributes a
screen reader reads out). A text that is the same in both is English the catalogue missed,
unless it is the clinic's own data (names, addresses, treatments), a word German shares, or
written in another language on purpose and marked so with ``lang`` (mail and checklist items,
which go out in the clinic's language). So a label, a button or a heading added later without
``_()`` fails here on whatever page it first appears.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from scheduler.audit import Actor, AuditEvent
from scheduler.booking.models import BookingStatus
from scheduler.booking.operations import set_status
from scheduler.staff.models import Role
from tests.conftest import Setup, log_in, london
from tests.test_i18n import ENGLISH, GERMAN, squash

READ_OUT = ("placeholder", "title", "aria-label", "alt")
# Words German writes as English does.
SHARED_WORDS = {"Status", "Name", "Browser", "Code", "Export", "Webhooks", "Token", "Tokens"}
# Not prose: addresses, versions, secrets in groups of four, times.
NOT_PROSE = re.compile(r"(/\S*|\S+@\S+|\S+/[\d.]+|[A-Z2-7]{4}( [A-Z2-7]{4})+|\+?[\d :.-]+)")
MOST_PAGES = 250


@dataclass
class _Texts(HTMLParser):
    """The text and read-out attributes of a page, outside scripts and other languages (and
    its title, which repeats its heading)."""

    texts: list[str] = field(default_factory=list)
    language: str = ""
    links: list[str] = field(default_factory=list)
    _skipping: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {key: value or "" for key, value in attrs}
        if tag == "html":
            self.language = named.get("lang", "")
            return
        in_another_language = named.get("lang", self.language) != self.language
        if tag in ("script", "style", "title") or in_another_language:
            self._skipping.append(tag)
        if self._skipping:
            return
        if tag == "a" and named.get("href"):
            self.links.append(named["href"])
        self.texts += [named[key] for key in READ_OUT if named.get(key)]
        if tag == "input" and named.get("type") in ("submit", "button"):
            self.texts.append(named.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and self._skipping[-1] == tag:
            self._skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self._skipping and data.strip():
            self.texts.append(" ".join(data.split()))


def read(html: str) -> _Texts:
    parsed = _Texts()
    parsed.feed(html)
    return parsed


# Fields a person types into; a form with none of them is a button (cancel, archive, remove).
TYPED = {"text", "email", "tel", "url", "password", "search", "number", "date", "time", "file"}


@dataclass
class Form:
    """A form that posts: where to, and what it sends with every typed field left empty."""

    action: str
    data: dict[str, str] = field(default_factory=dict)
    typed: bool = False


@dataclass
class _Forms(HTMLParser):
    forms: list[Form] = field(default_factory=list)
    _open: Form | None = None

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {key: value or "" for key, value in attrs}
        if tag == "form":
            posts = named.get("method", "get").lower() == "post"
            self._open = Form(named.get("action", "")) if posts else None
            return
        if self._open is None or not named.get("name"):
            return
        kind = named.get("type", "text") if tag == "input" else tag
        if kind == "hidden":
            self._open.data[named["name"]] = named.get("value", "")
        elif kind in TYPED or kind in ("textarea", "select"):
            self._open.data[named["name"]] = ""
            self._open.typed = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._open is not None:
            self.forms.append(self._open)
            self._open = None


def forms_of(html: str) -> list[Form]:
    """The page's forms that post and have a field to type into."""
    parsed = _Forms()
    parsed.feed(html)
    return [form for form in parsed.forms if form.typed]


def data_of(setup: Setup) -> list[str]:
    """The clinic's own words, longest first, as the pages show them."""
    clinic = setup.clinic
    words = [clinic.name, clinic.address, clinic.phone, clinic.email]
    words += [p.name for p in (setup.mei, setup.james)]
    words += [t.name for t in (setup.initial, setup.follow_up)]
    words += [room.name for room in setup.rooms]
    words += [p.credentials or "" for p in (setup.mei, setup.james)]
    words += [p.licence or "" for p in (setup.mei, setup.james)]
    words += ["Patient 1", "English", "Deutsch", "GMT"]
    return sorted((w for w in words if w), key=len, reverse=True)


def english_left(text: str, data: list[str]) -> bool:
    """Whether ``text``, the same in both languages, still has words of English in it."""
    for word in data:
        text = text.replace(word, " ")
    text = NOT_PROSE.sub(" ", text)
    words = re.findall(r"[^\W\d_]{2,}", text)
    return any(word not in SHARED_WORDS for word in words)


def _leaves(path: str) -> bool:
    """Whether following ``path`` would end the walk's session or change its language."""
    return "logout" in path or path.startswith("/language/")


def walk(client: FlaskClient, starts: list[str], prefix: str) -> Iterator[tuple[str, str, str]]:
    """Each page under ``prefix`` reachable from ``starts``: its address, German, English.

    An address is followed at most twice with different queries (a day, a week), so the
    walk covers every kind of page rather than every date.
    """
    queue, seen = list(starts), set()
    while queue and len(seen) < MOST_PAGES:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        german = client.get(url, headers=GERMAN)
        if german.status_code != 200 or german.mimetype != "text/html":
            continue
        yield url, german.text, client.get(url, headers=ENGLISH).text
        for link in read(german.text).links:
            parts = urlsplit(link)
            if parts.netloc or not parts.path.startswith(prefix) or _leaves(parts.path):
                continue
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            variants = sum(1 for known in seen | set(queue) if known.split("?")[0] == parts.path)
            if target not in seen and variants < 2:
                queue.append(target)


def left_in_english(client: FlaskClient, setup: Setup, starts: list[str], prefix: str) -> dict:
    data = data_of(setup)
    found: dict[str, set[str]] = {}
    pages = 0
    for url, german, english in walk(client, starts, prefix):
        pages += 1
        _compare(found, url.split("?")[0], german, english, data)
    assert pages >= 5, "the walk found too few pages to prove anything"
    return found


def _compare(found: dict, where: str, german: str, english: str, data: list[str]) -> None:
    same = set(read(german).texts) & set(read(english).texts)
    for text in same:
        if english_left(text, data):
            found.setdefault(where, set()).add(text)


def refusals_left_in_english(
    client: FlaskClient, setup: Setup, starts: list[str], prefix: str
) -> tuple[dict, int]:
    """Every form on the walk's pages sent with its typed fields empty, in German and then in
    English: the refusals (the form again with its errors) compared as pages are.

    Returns what is left in English by form address, and how many refusals were compared. A
    form the empty fields satisfy does what it does (its English copy then meets the changed
    state); nothing is compared for it.
    """
    data = data_of(setup)
    forms: dict[str, Form] = {}
    for url, german, _ in walk(client, starts, prefix):
        for form in forms_of(german):
            form.action = form.action or url  # no action: the page's own address
            path = urlsplit(form.action).path
            if not _leaves(path):
                forms.setdefault(path.rstrip("0123456789/") or path, form)
    found: dict[str, set[str]] = {}
    compared = 0
    for form in forms.values():
        german = client.post(form.action, data=form.data, headers=GERMAN)
        if german.status_code in (302, 303) or german.mimetype != "text/html":
            continue
        english = client.post(form.action, data=form.data, headers=ENGLISH)
        compared += 1
        _compare(found, "POST " + urlsplit(form.action).path, german.text, english.text, data)
    return found, compared


@pytest.fixture
def visited(app, session, setup, book, make_user):
    """A booking with its trail, and its confirmation sent (to the mail folder)."""
    booking = book(london("2026-11-24", "10:00"), practitioner=setup.mei)
    make_user(Role.ADMIN)
    sent = app.test_cli_runner().invoke(args=["notifications", "run", "--once"])
    assert sent.exit_code == 0, sent.output
    return booking


def test_the_staff_area_has_no_english_left_in_german(client: FlaskClient, setup, visited):
    log_in(client, "admin@clinic.example")

    found = left_in_english(
        client, setup, ["/staff/day?date=2026-11-24", "/staff/week", "/staff/"], "/staff/"
    )

    assert found == {}


def test_the_patients_pages_have_no_english_left_in_german(client: FlaskClient, setup, visited):
    found = left_in_english(client, setup, ["/", "/book", f"/b/{visited.manage_token}"], "/")

    assert found == {}


def test_the_staff_areas_refusals_have_no_english_left_in_german(client, setup, visited):
    log_in(client, "admin@clinic.example")

    found, compared = refusals_left_in_english(
        client, setup, ["/staff/day?date=2026-11-24", "/staff/week", "/staff/"], "/staff/"
    )

    assert compared >= 10, "too few forms refused empty fields to prove anything"
    assert found == {}


def test_the_patients_refusals_have_no_english_left_in_german(client, setup, visited):
    found, compared = refusals_left_in_english(
        client, setup, ["/", "/book", f"/b/{visited.manage_token}"], "/"
    )

    assert compared >= 2, "too few forms refused empty fields to prove anything"
    assert found == {}


def test_the_walk_finds_an_english_label(client: FlaskClient, setup, visited, monkeypatch):
    """The check itself: a label left untranslated is caught on its page."""
    from scheduler.clinic import forms

    monkeypatch.setattr(forms.RoomForm.kind, "args", ("Kind of room, in English",))
    log_in(client, "admin@clinic.example")

    found = left_in_english(client, setup, ["/staff/setup/rooms"], "/staff/setup/")

    assert "/staff/setup/rooms" in found
    assert all(texts == {"Kind of room, in English"} for texts in found.values())


def test_the_walk_finds_an_english_refusal(client: FlaskClient, setup, visited, monkeypatch):
    """The check itself: an error message left untranslated is caught on its form."""
    from scheduler.clinic import forms

    required = forms.RoomForm.name.kwargs["validators"][0]
    monkeypatch.setattr(required, "message", "Please name the room, in English.")
    log_in(client, "admin@clinic.example")

    found, _ = refusals_left_in_english(client, setup, ["/staff/setup/rooms"], "/staff/setup/")

    assert found == {"POST /staff/setup/rooms": {"Please name the room, in English."}}


def test_the_trail_says_each_change_in_the_readers_language(client, session, setup, visited):
    """Entries are kept as their message and values: a German page writes the statuses and
    the time in German, an English one as before, and the stored text stays English."""
    set_status(
        session,
        clinic=setup.clinic,
        booking=visited,
        status=BookingStatus.NO_SHOW,
        now=london("2026-11-24", "11:30"),
        actor=Actor("admin@clinic.example", user_id=None),
    )
    session.commit()
    log_in(client, "admin@clinic.example")

    german = squash(client.get(f"/staff/bookings/{visited.id}", headers=GERMAN).text)
    english = squash(client.get(f"/staff/bookings/{visited.id}", headers=ENGLISH).text)

    assert "von bestätigt auf nicht erschienen" in german
    assert "Follow-up treatment bei Mei Lin, Dienstag, 24. November 2026, 10:00 GMT" in german
    assert "from confirmed to no-show" in english
    assert "Follow-up treatment with Mei Lin, Tuesday 24 November 2026, 10:00 GMT" in english
    stored = session.scalars(select(AuditEvent.detail).order_by(AuditEvent.id)).all()
    assert stored == [
        "Follow-up treatment with Mei Lin, Tuesday 24 November 2026, 10:00 GMT",
        "from confirmed to no-show",
    ]


def test_an_entry_from_before_its_message_was_kept_shows_its_text(client, session, visited):
    """Entries written before revision 0021 have only their English text, shown as it is."""
    session.execute(update(AuditEvent).values(detail_data=None, detail="written long ago"))
    session.commit()
    log_in(client, "admin@clinic.example")

    page = client.get(f"/staff/bookings/{visited.id}", headers=GERMAN)

    assert "written long ago" in page.text
