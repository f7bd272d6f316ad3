"""Real-browser fixtures: the app served on loopback, Debian's Chromium driven by Playwright,
and axe-core run on every page a test visits.

The app is the suite's own ``app`` fixture (same database, SQLite or PostgreSQL, and the same
fixed clock), served from a thread. One browser serves the whole session; each test gets a new
context, so no cookie or storage leaks between tests.

On a laptop without Chromium, Playwright or axe-core these tests skip and say what is missing;
with ``CI=true`` they fail instead, since CI installs all three (``.ci/run``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from scheduler.clinic.models import Clinic, Practitioner, Treatment
from scheduler.demo.seed import PRACTITIONERS

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Frame,
        Page,
        Playwright,
        Response,
        ViewportSize,
    )

HERE = Path(__file__).parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Quiet, headless, and nothing fetched from outside while the tests run.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
# Chromium takes the format of its date and time fields from its own language, not the page's:
# without this (and Debian's chromium-l10n, which .ci/run installs) they read 12/31/2026 and
# 02:30 PM in a British clinic's screenshots.
CHROMIUM_LANGUAGE = "en_GB"
SCREENSHOTS = HERE.parent.parent / "docs" / "screenshots"
# JPEG quality of the screenshots: text stays legible, a screenful stays near 30 KB.
SCREENSHOT_QUALITY = 60
PHONE: ViewportSize = {"width": 375, "height": 812}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
# axe impacts that fail a test; "minor" and "moderate" ones are reported by axe but not here.
BLOCKING = ("serious", "critical")
# The clinic the browser sees, and the README's screenshots show: the demo's (scheduler/demo),
# so that the pictures show what a clinic would put there rather than a test's placeholder.
SHOWN_CLINIC = {
    "name": "Willow Acupuncture Clinic",
    "address": "12 Mill Lane, Cambridge CB2 1RX",
    "phone": "+44 1223 555 010",
}


def in_ci() -> bool:
    """Whether this run is CI's, where nothing may be skipped."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing() -> str | None:
    """What the browser tests need and this machine lacks, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install -e '.[test]')"
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        return f"Chromium is not at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    if not AXE.is_file():
        return f"axe-core is not installed (run `npm ci` in {HERE})"
    return None


class QuietHandler(WSGIRequestHandler):
    """Serves as usual without a log line per request (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@pytest.fixture
def make_clinic(make_clinic: Callable[..., Clinic]) -> Callable[..., Clinic]:
    """The suite's clinic under the demo's name, address and phone (:data:`SHOWN_CLINIC`)."""

    def make(**params: Any) -> Clinic:
        return make_clinic(**{**SHOWN_CLINIC, **params})

    return make


# What the demo says of its treatments, for the suite's ones of the same name.
TREATMENT_DESCRIPTIONS = {
    "Initial consultation": "An in-depth consultation about your health, followed by your "
    "first acupuncture treatment.",
    "Follow-up treatment": "A treatment as part of a course, for returning patients.",
}


@pytest.fixture
def make_treatment(make_treatment: Callable[..., Treatment]) -> Callable[..., Treatment]:
    """The suite's treatments, described as the demo describes them."""

    def make(**params: Any) -> Treatment:
        described = TREATMENT_DESCRIPTIONS.get(params.get("name", "Follow-up treatment"), "")
        return make_treatment(**{"description": described, **params})

    return make


@pytest.fixture
def make_practitioner(
    make_practitioner: Callable[..., Practitioner],
) -> Callable[..., Practitioner]:
    """The suite's practitioners, with the demo's credentials and words about them where the
    demo has a practitioner of that name."""
    about = {data["name"].removeprefix("Dr "): data for data in PRACTITIONERS}

    def make(**params: Any) -> Practitioner:
        known = about.get(params.get("name", ""), {})
        shown = {key: known[key] for key in ("credentials", "licence", "bio") if key in known}
        return make_practitioner(**{**shown, **params})

    return make


@pytest.fixture(scope="session")
def live_url(app: Flask) -> Iterator[str]:
    """The app served over HTTP on a free loopback port, for the browser."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """Playwright, or a skip (a failure in CI) saying what is missing."""
    reason = missing()
    if reason is not None:
        if in_ci():
            pytest.fail(f"CI must run the browser tests, but {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium for the whole session."""
    launched = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        env={**os.environ, "LANGUAGE": CHROMIUM_LANGUAGE},
    )
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser, live_url: str) -> Iterator[BrowserContext]:
    """A fresh browser profile for one test, at desktop size, in the clinic's language.

    The app's Content-Security-Policy stays in force: axe-core is evaluated through the
    DevTools protocol, which the policy does not govern, so the pages are tested as served.
    """
    fresh = browser.new_context(
        base_url=live_url, viewport=DESKTOP, locale="en-GB", timezone_id="Europe/London"
    )
    fresh.set_default_timeout(10_000)
    yield fresh
    fresh.close()


class Visits:
    """Every page one tab shows: each must be checked with :func:`arrive` before the test ends,
    and none may log an error (a refused script or style, a failed load, an uncaught
    exception)."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.checked = 0
        self.problems: list[str] = []

    def on_navigated(self, frame: Frame) -> None:
        if frame.parent_frame is None:  # the page itself, not a frame inside it
            self.shown.append(frame.url)

    def on_console(self, message: ConsoleMessage) -> None:
        # Failed loads are judged by on_response: a page answering 409 or 422 is by design.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(f"console error on {message.location.get('url')}: {message.text}")

    def on_response(self, response: Response) -> None:
        request = response.request
        # A page may answer 409 or 422 by design, but never 500; what it loads must load,
        # its icons too.
        broken = response.status >= 500 or (
            response.status >= 400 and request.resource_type != "document"
        )
        if broken:
            self.problems.append(f"{request.resource_type} {request.url}: {response.status}")

    def on_page_error(self, error: Exception) -> None:
        self.problems.append(f"uncaught error: {error}")


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Note a test's failure, so its tab's checks at teardown do not repeat it."""
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A tab; at the end, every page it showed must have been checked and logged no error."""
    tab = context.new_page()
    visits = Visits()
    tab.on("framenavigated", visits.on_navigated)
    tab.on("console", visits.on_console)
    tab.on("pageerror", visits.on_page_error)
    tab.on("response", visits.on_response)
    tab.visits = visits  # type: ignore[attr-defined]
    yield tab
    if request.node.stash.get(FAILED, False):
        return
    unchecked = visits.shown[visits.checked :]
    assert not unchecked, f"pages shown but never checked with arrive(): {unchecked}"
    assert not visits.problems, "\n".join(visits.problems)


def arrive(page: Page, url: str | re.Pattern[str], *, shot: str | None = None) -> None:
    """Wait until the tab shows ``url`` (a glob such as ``"**/book?*"``), then check the page
    with axe-core, and save screenshots named ``shot`` when ``SCREENSHOTS=1``."""
    visits: Visits = page.visits  # type: ignore[attr-defined]
    # Wait for the page the last click or goto opened, not the one it was clicked on.
    deadline = time.monotonic() + 10
    while len(visits.shown) == visits.checked:
        assert time.monotonic() < deadline, f"no new page opened (still on {page.url})"
        page.wait_for_timeout(25)
    page.wait_for_url(url)
    page.wait_for_load_state("load")
    skipped = visits.shown[visits.checked : -1]
    assert not skipped, f"pages shown but never checked with arrive(): {skipped}"
    assert not visits.problems, "\n".join(visits.problems)
    assert_accessible(page)
    visits.checked = len(visits.shown)
    if shot and os.environ.get("SCREENSHOTS") == "1":
        screenshot(page, shot)


def assert_accessible(page: Page) -> None:
    """Run axe-core on the page; fail listing each serious or critical violation."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    # The mail previews are sandboxed frames that run no script, so axe cannot enter them;
    # tests open those documents on their own to check them.
    results: dict[str, Any] = page.evaluate(
        """() => axe.run(document, {iframes: false, resultTypes: ['violations']})"""
    )
    found = [v for v in results["violations"] if v.get("impact") in BLOCKING]
    if found:
        pytest.fail(f"axe-core found on {page.url}:\n{describe(found)}", pytrace=False)


def describe(violations: list[dict[str, Any]]) -> str:
    """Each violation as its rule, impact and help, then the nodes at fault."""
    lines = []
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"][:10]:
            target = " ".join(json.dumps(part) for part in node["target"])
            summary = " ".join(node.get("failureSummary", "").split())
            lines.append(f"    {target}: {node['html'][:160]}\n      {summary[:400]}")
        if len(violation["nodes"]) > 10:
            lines.append(f"    … and {len(violation['nodes']) - 10} more")
    return "\n".join(lines)


def expect(target: Any) -> Any:
    """Playwright's ``expect``, imported on first use so that these modules import without it
    (the ``playwright`` fixture then skips, or fails in CI, saying what is missing)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def screenshot(page: Page, name: str) -> None:
    """Save ``docs/screenshots/NAME-phone.jpg`` and ``NAME-desktop.jpg`` of the page as it is:
    the first screenful at each size, as JPEG, so the README's pictures stay small."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    was = page.viewport_size or DESKTOP
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        path = SCREENSHOTS / f"{name}-{label}.jpg"
        page.screenshot(path=str(path), type="jpeg", quality=SCREENSHOT_QUALITY)
    page.set_viewport_size(was)
