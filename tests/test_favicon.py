"""The clinic's icon: every page names it (an SVG, a PNG beside it, and one for phones' home
screens), each is served from this site, and ``/favicon.ico`` answers with it for the browsers
and feed readers that ask there without reading the page."""

from __future__ import annotations

import struct
from html.parser import HTMLParser
from xml.etree import ElementTree

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tests.conftest import Setup
from tests.test_attack_xss import PUBLIC_PAGES, STAFF_PAGES, World, build_world

SVG = "{http://www.w3.org/2000/svg}svg"


def is_mail(path: str) -> bool:
    """Whether ``path`` is a preview of mail (framed on staff pages, not a page of the site)."""
    return path.split("?")[0].endswith("/html") or "/mail/" in path


class Icons(HTMLParser):
    """The icons a page's ``<head>`` names: ``{rel: [(href, type, sizes)]}``."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, list[tuple[str, str, str]]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "link" and values.get("rel") in ("icon", "apple-touch-icon"):
            entry = (values.get("href", ""), values.get("type", ""), values.get("sizes", ""))
            self.found.setdefault(values["rel"], []).append(entry)


def icons_of(html: str) -> dict[str, list[tuple[str, str, str]]]:
    parser = Icons()
    parser.feed(html)
    return parser.found


EXPECTED = {
    "icon": [
        ("/static/favicon.svg", "image/svg+xml", ""),
        ("/static/favicon-32.png", "image/png", "32x32"),
    ],
    "apple-touch-icon": [("/static/apple-touch-icon.png", "", "")],
}


def fetch(client: FlaskClient, path: str) -> tuple[int, str, bytes]:
    """GET a static file: its status, type and body (the file closed again)."""
    with client.get(path) as answer:
        return answer.status_code, answer.mimetype, answer.get_data()


def png_size(body: bytes) -> tuple[int, int]:
    """The width and height a PNG's header gives."""
    assert body.startswith(b"\x89PNG\r\n\x1a\n"), body[:8]
    width, height = struct.unpack(">II", body[16:24])
    return width, height


@pytest.fixture
def world(app: Flask, session: Session) -> World:
    """A clinic with every kind of record, and an admin logged in on ``world.staff``."""
    return build_world(app, session)


def test_every_public_and_staff_page_names_the_icons(app: Flask, world: World):
    pages = {path: app.test_client() for path in PUBLIC_PAGES}
    for group in STAFF_PAGES.values():
        pages.update((path, world.staff) for path in group if not is_mail(path))
    pages.update({"/staff/login": app.test_client(), "/no/such/page": app.test_client()})
    assert len(pages) > 50

    missing = []
    for template, client in pages.items():
        answer = client.get(template.format(w=world))
        assert answer.mimetype == "text/html", template
        if icons_of(answer.text) != EXPECTED:
            missing.append(f"{template}: {icons_of(answer.text)}")

    assert missing == []


def test_the_svg_icon_is_served_from_this_site(client: FlaskClient, setup: Setup):
    status, mimetype, body = fetch(client, "/static/favicon.svg")

    assert status == 200
    assert mimetype == "image/svg+xml"
    root = ElementTree.fromstring(body)  # noqa: S314  (our own file, read in a test)
    assert root.tag == SVG
    assert root.get("viewBox") == "0 0 64 64"
    # Drawn by itself: nothing fetched from elsewhere, no script.
    assert b"http" not in body.replace(b'xmlns="http://www.w3.org/2000/svg"', b"")
    assert b"<script" not in body


@pytest.mark.parametrize(
    ("path", "size"),
    [("/static/favicon-32.png", (32, 32)), ("/static/apple-touch-icon.png", (180, 180))],
)
def test_the_png_icons_are_served_at_their_sizes(
    client: FlaskClient, setup: Setup, path: str, size: tuple[int, int]
):
    status, mimetype, body = fetch(client, path)

    assert status == 200
    assert mimetype == "image/png"
    assert png_size(body) == size


def test_favicon_ico_is_the_icon(client: FlaskClient):
    status, mimetype, body = fetch(client, "/favicon.ico")
    _, _, png = fetch(client, "/static/favicon-32.png")

    assert status == 200
    assert mimetype == "image/png"
    assert body == png
