"""Three independent readers for the calendar files (.ics) the app produces.

Every kind of calendar output is checked by:

1. :func:`check_with_icalendar` -- the library that wrote it reads it back, writes it again and
   reads that, and both readings must agree (a real round trip, not just "it parsed").
2. :func:`check_with_vobject` -- a second, unrelated parser, with its validation switched on.
3. the :func:`caldav` fixture -- a real CalDAV server (Radicale) on loopback, which must accept
   the file in an HTTP PUT as a calendar object resource.

:func:`check_all` runs all three. To use the ``caldav`` fixture a test module declares
``pytest_plugins = ["tests.calendar_readers"]`` (or the top-level ``tests/conftest.py`` does, once,
for the whole suite); importing the fixture by name would trip ruff's F811.

PYTEST_DONT_REWRITE: that marker (anywhere in this docstring) turns off pytest's assertion
rewriting for this module. Without it, a test module that imports these helpers and then names
this module in ``pytest_plugins`` gets "Module already imported so cannot be rewritten", which
the suite's ``filterwarnings = error`` makes a collection error. The asserts here carry their
own messages instead.

What each reader refuses (pinned by tests/test_calendar_readers.py, with Radicale 3.9,
vobject 0.9.9 and icalendar 7.3):

- a VEVENT without UID: vobject and Radicale refuse it; icalendar reads it without complaint;
- DTEND before DTSTART: nobody refuses it, so a test about times must check them itself;
- bytes that are not iCalendar: all three refuse them.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import icalendar
import pytest
import vobject

# Checked under ``python -X dev -W error``: importing vobject 0.9.9 and reading, validating and
# expanding a calendar with VTIMEZONE and RRULE emits no warning on Python 3.11, so nothing here
# filters warnings. If a later vobject does warn, filter that one warning in the function that
# triggers it, with ``warnings.catch_warnings()``, not in the pytest configuration.


# --- 1. icalendar round trip ---------------------------------------------------------------------

Property = tuple[str, tuple[tuple[str, str], ...], bytes]
Shape = list[tuple[str | None, list[Property]]]


def _property(name: str, value: Any) -> Property:
    params = getattr(value, "params", {})
    return name, tuple(sorted((key, str(val)) for key, val in params.items())), value.to_ical()


def _shape(calendar: icalendar.Calendar) -> Shape:
    """Every component in document order, each with its properties in order: name, parameters
    and value as content-line bytes -- what must survive a round trip."""
    return [
        (
            component.name,
            [
                _property(name, value)
                for name, value in component.property_items(recursive=False, sorted=False)
                if name not in ("BEGIN", "END")
            ],
        )
        for component in calendar.walk()
    ]


def _parse_errors(calendar: icalendar.Calendar) -> list[tuple[str | None, Any]]:
    """The property errors icalendar swallowed while parsing (it keeps going and lists them)."""
    return [(c.name, e) for c in calendar.walk() for e in c.errors]


def check_with_icalendar(data: bytes) -> icalendar.Calendar:
    """Parse ``data``, write it out again, parse that, and assert nothing changed on the way.

    Also asserts that icalendar swallowed no broken property on either parse (it records those in
    ``component.errors`` instead of raising) and that writing is stable: the second parse writes
    the same bytes as the first. Returns the first parse.
    """
    first = icalendar.Calendar.from_ical(data)
    assert isinstance(first, icalendar.Calendar), f"not a VCALENDAR but {first.name}"
    assert not _parse_errors(first), f"icalendar skipped broken properties: {_parse_errors(first)}"
    written = first.to_ical()
    second = icalendar.Calendar.from_ical(written)
    assert not _parse_errors(second), f"broken after a round trip: {_parse_errors(second)}"
    assert _shape(second) == _shape(first), "the round trip changed components or properties"
    assert second.to_ical() == written, "writing the calendar again gives different bytes"
    return first


# --- 2. vobject ----------------------------------------------------------------------------------


def check_with_vobject(data: bytes) -> None:
    """Parse ``data`` with vobject and validate it, raising on anything vobject refuses.

    vobject's ``validate()`` returns False rather than raising unless given
    ``raiseException=True``, and a component's validation already recurses into its children
    (vobject/behavior.py ``Behavior.validate``), so one call on the VCALENDAR covers every VEVENT,
    VTIMEZONE, VALARM and property. It checks the counts RFC 5545 sets (exactly one UID and DTSTAMP
    per VEVENT, one PRODID per VCALENDAR, no DTEND together with DURATION, ...), not the values.
    """
    component = vobject.readOne(data.decode("utf-8"))
    assert component.name == "VCALENDAR", f"not a VCALENDAR but {component.name}"
    component.validate(raiseException=True)


# --- 3. Radicale, a real CalDAV server ----------------------------------------------------------

CALENDAR_PATH = "/acuscheduler/calendar/"
STARTUP_SECONDS = 15.0
MKCALENDAR_BODY = b"""<?xml version="1.0" encoding="utf-8"?>
<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:set><D:prop><D:displayname>acuscheduler tests</D:displayname></D:prop></D:set>
</C:mkcalendar>
"""


@dataclass
class CalDAV:
    """A calendar collection on a running Radicale, spoken to with http.client only."""

    host: str
    port: int
    log_path: Path
    collection: str = CALENDAR_PATH

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def _href(self, name: str) -> str:
        if not name or "/" in name:
            raise ValueError(f"bad resource name {name!r}")
        return self.collection + quote(name) + ".ics"

    def put(self, name: str, data: bytes) -> int:
        """PUT ``data`` as ``<collection>/<name>.ics``; 201 when created, 204 when replaced."""
        status, _ = self.request(
            "PUT", self._href(name), data, {"Content-Type": "text/calendar; charset=utf-8"}
        )
        return status

    def get(self, name: str) -> bytes:
        """The stored resource, as Radicale serves it back (re-serialised by vobject)."""
        status, body = self.request("GET", self._href(name))
        assert status == 200, f"GET {name}: HTTP {status}\n{self.log_tail()}"
        return body

    def log_tail(self, lines: int = 20) -> str:
        """The end of Radicale's log: it says why it refused a request (at WARNING level)."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_config(directory: Path, port: int) -> Path:
    config = directory / "config"
    config.write_text(
        f"""\
[server]
hosts = 127.0.0.1:{port}

[auth]
# Any request is let in, as the anonymous user.
type = none

[rights]
# With no authentication, "authenticated" lets everybody read and write everything.
type = authenticated

[storage]
filesystem_folder = {directory / "collections"}

[web]
type = none

[logging]
# Warnings only: that is the level at which Radicale says why it refused a PUT.
level = warning
""",
        encoding="utf-8",
    )
    return config


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, which Radicale handles by closing its sockets and exiting; kill if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start(directory: Path) -> tuple[subprocess.Popen[bytes], CalDAV]:
    """Start Radicale on a free loopback port and wait until it answers HTTP."""
    port = _free_port()
    config = _write_config(directory, port)
    log_path = directory / "radicale.log"
    # Radicale also reads /etc/radicale/config and ~/.config/radicale/config (before ours, which
    # wins for every option it sets); point HOME at the temporary directory so a developer's own
    # configuration cannot leak in, and drop RADICALE_CONFIG for the same reason.
    env = {k: v for k, v in os.environ.items() if k != "RADICALE_CONFIG"}
    env["HOME"] = str(directory)
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 -- fixed arguments, our own interpreter
            [sys.executable, "-m", "radicale", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = CalDAV("127.0.0.1", port, log_path)
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"Radicale exited with {process.returncode}:\n{server.log_tail()}")
        try:
            server.request("OPTIONS", "/")
        except OSError:
            if time.monotonic() > deadline:
                _stop(process)
                raise RuntimeError(
                    f"Radicale did not answer in {STARTUP_SECONDS}s:\n{server.log_tail()}"
                ) from None
            time.sleep(0.05)
        else:
            return process, server


@pytest.fixture(scope="session")
def caldav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalDAV]:
    """A Radicale server for the whole session, with one empty calendar collection.

    Radicale runs as a subprocess (``python -m radicale``) of the interpreter running the tests,
    on 127.0.0.1 and a free port, storing into a temporary directory and logging there; it is
    stopped with SIGTERM after the last test. Another process could take the port between our
    probe and Radicale's bind, so a start that fails is tried twice more on fresh ports.
    """
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            process, server = _start(tmp_path_factory.mktemp("radicale"))
            break
        except RuntimeError:
            if attempt == attempts:
                raise
    try:
        # Radicale only creates a collection inside an existing one: a plain parent, then the
        # calendar itself (MKCALENDAR with a body, as CalDAV clients send it).
        status, body = server.request("MKCOL", "/acuscheduler/")
        assert status == 201, f"MKCOL: HTTP {status} {body!r}\n{server.log_tail()}"
        status, body = server.request(
            "MKCALENDAR",
            server.collection,
            MKCALENDAR_BODY,
            {"Content-Type": "application/xml; charset=utf-8"},
        )
        assert status == 201, f"MKCALENDAR: HTTP {status} {body!r}\n{server.log_tail()}"
        yield server
    finally:
        _stop(process)


# --- all three -----------------------------------------------------------------------------------


def check_all(data: bytes, caldav: CalDAV, name: str) -> icalendar.Calendar:
    """Check ``data`` with all three readers; return icalendar's parse.

    ``name`` names the resource on the server: give each file its own, and remember that a
    CalDAV collection holds each UID in only one resource -- putting a second resource whose
    events have a UID already stored under another name is refused with 409 Conflict
    (``no-uid-conflict``, RFC 4791 §5.3.2.1). Putting again under the same name replaces (204).

    Other rules the server applies that a calendar *file* need not follow (RFC 4791 §4.1):
    one resource holds the components of one UID only (one event, or a recurring event with
    its overridden instances), all of one type (VEVENT, VTODO, ...), plus the VTIMEZONEs they
    use. A feed of several appointments is therefore a valid .ics file that no CalDAV server
    stores as one resource: for such a feed, call :func:`check_with_icalendar` and
    :func:`check_with_vobject` on the whole file and :func:`check_all` on each part that
    :func:`split_by_uid` gives.

    METHOD (REQUEST, CANCEL, ... in iTIP invitations sent by e-mail): RFC 4791 §4.1 says that a
    calendar object resource MUST NOT specify the METHOD property, but Radicale 3.9 does not
    enforce it: it accepts the PUT and stores METHOD as it came. So a METHOD:REQUEST or
    METHOD:CANCEL file can be passed to check_all unchanged and the PUT does test something (that
    the rest of the file is a storable object); just do not read the 201 as "valid as stored
    CalDAV data". What a real client stores is the file without its METHOD line, which
    :func:`without_method` gives, if a test wants to check that form too.
    """
    calendar = check_with_icalendar(data)
    check_with_vobject(data)
    status = caldav.put(name, data)
    assert status in (201, 204), f"Radicale refused {name}.ics: HTTP {status}\n{caldav.log_tail()}"
    return calendar


def without_method(data: bytes) -> bytes:
    """``data`` without the VCALENDAR's METHOD property: an iTIP message as it would be stored."""
    calendar = icalendar.Calendar.from_ical(data)
    calendar.pop("METHOD", None)
    stripped: bytes = calendar.to_ical()
    return stripped


def split_by_uid(data: bytes) -> dict[str, bytes]:
    """A calendar of several UIDs (a feed) cut into one calendar per UID, as a CalDAV server
    would store them: each keeps the VCALENDAR's properties and all its VTIMEZONEs."""
    calendar = icalendar.Calendar.from_ical(data)
    parts: dict[str, icalendar.Calendar] = {}
    for component in calendar.subcomponents:
        if component.name == "VTIMEZONE":
            continue
        uid = str(component["UID"])
        if uid not in parts:
            part = icalendar.Calendar()
            for name, value in calendar.property_items(recursive=False, sorted=False):
                if name not in ("BEGIN", "END"):
                    part.add(name, value)
            for timezone in calendar.walk("VTIMEZONE"):
                part.add_component(timezone)
            parts[uid] = part
        parts[uid].add_component(component)
    return {uid: part.to_ical() for uid, part in parts.items()}


__all__ = [
    "CalDAV",
    "caldav",
    "check_all",
    "check_with_icalendar",
    "check_with_vobject",
    "split_by_uid",
    "without_method",
]
