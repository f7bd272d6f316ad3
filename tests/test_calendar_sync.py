"""Subscribed outside calendars: `calendar sync` against a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from scheduler.calendars.models import BusyTime, CalendarSubscription
from scheduler.calendars.subscriptions import SubscriptionError, normalise_url
from tests.conftest import london


@dataclass
class Served:
    """What the test server answers for one path."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: bool = True


class CalendarServer:
    """A loopback HTTP server whose answers a test sets, recording the requests it gets."""

    def __init__(self) -> None:
        self.paths: dict[str, Served] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers.items())))
                served = server.paths.get(self.path)
                if served is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                tag = '"' + hashlib.sha256(served.body).hexdigest()[:16] + '"'
                if served.etag and self.headers.get("If-None-Match") == tag:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(served.status)
                for name, value in served.headers.items():
                    self.send_header(name, value)
                if served.etag:
                    self.send_header("ETag", tag)
                self.send_header("Content-Length", str(len(served.body)))
                self.end_headers()
                self.wfile.write(served.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[CalendarServer]:
    served = CalendarServer()
    served.thread.start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def feed(*events: str) -> bytes:
    """A Google-style feed holding ``events`` (VEVENT bodies, without BEGIN/END)."""
    body = "".join(f"BEGIN:VEVENT\r\n{event.strip()}\r\nEND:VEVENT\r\n" for event in events)
    return (
        "BEGIN:VCALENDAR\r\nPRODID:-//Google Inc//Google Calendar 70.9054//EN\r\nVERSION:2.0\r\n"
        "CALSCALE:GREGORIAN\r\nMETHOD:PUBLISH\r\nX-WR-CALNAME:Mei personal\r\n"
        "X-WR-TIMEZONE:Europe/London\r\n" + body + "END:VCALENDAR\r\n"
    ).encode()


DENTIST = """UID:dentist@google.com
DTSTAMP:20261120T120000Z
DTSTART:20261125T100000Z
DTEND:20261125T110000Z
SUMMARY:Dentist"""
SCHOOL_RUN = """UID:school@google.com
DTSTAMP:20261120T120000Z
DTSTART:20261124T150000Z
DTEND:20261124T160000Z
RRULE:FREQ=WEEKLY;BYDAY=TU;COUNT=3
SUMMARY:School run"""


def subscribe(app, setup, url, name="Personal"):
    return app.test_cli_runner().invoke(
        args=["calendar", "subscribe", url, "--practitioner", setup.mei.email, "--name", name]
    )


def sync(app):
    return app.test_cli_runner().invoke(args=["calendar", "sync"])


def busy(session, setup):
    session.rollback()  # end the test's read transaction, to see what the command committed
    rows = session.scalars(
        select(BusyTime)
        .where(BusyTime.practitioner_id == setup.mei.id, BusyTime.cancelled.is_(False))
        .order_by(BusyTime.start_at)
    )
    return [(row.summary, row.start_at, row.end_at) for row in rows]


def test_sync_brings_in_a_subscribed_calendar_as_busy_time(app, session, setup, server):
    server.paths["/mei.ics"] = Served(feed(DENTIST, SCHOOL_RUN))
    assert subscribe(app, setup, server.url("/mei.ics")).exit_code == 0

    result = sync(app)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "imported 2, updated 0, cancelled 0, skipped 0, errors 0"
    )
    assert busy(session, setup) == [
        ("School run", london("2026-11-24", "15:00"), london("2026-11-24", "16:00")),
        ("Dentist", london("2026-11-25", "10:00"), london("2026-11-25", "11:00")),
        ("School run", london("2026-12-01", "15:00"), london("2026-12-01", "16:00")),
        ("School run", london("2026-12-08", "15:00"), london("2026-12-08", "16:00")),
    ]


def test_an_unchanged_calendar_costs_one_conditional_request(app, session, setup, server):
    server.paths["/mei.ics"] = Served(feed(DENTIST))
    subscribe(app, setup, server.url("/mei.ics"))
    sync(app)

    result = sync(app)

    assert result.exit_code == 0
    assert result.output.splitlines()[-1].startswith("imported 0, updated 0, cancelled 0")
    assert server.requests[-1][1].get("If-None-Match"), "the second fetch sends the ETag back"
    session.rollback()
    subscription = session.scalars(select(CalendarSubscription)).one()
    assert subscription.etag
    assert subscription.last_synced_at is not None


def test_events_gone_from_the_calendar_stop_blocking(app, session, setup, server):
    server.paths["/mei.ics"] = Served(feed(DENTIST, SCHOOL_RUN))
    subscribe(app, setup, server.url("/mei.ics"))
    sync(app)
    server.paths["/mei.ics"] = Served(feed(SCHOOL_RUN))

    result = sync(app)

    assert result.output.splitlines()[-1] == (
        "imported 0, updated 0, cancelled 1, skipped 1, errors 0"
    )
    assert [summary for summary, *_ in busy(session, setup)] == ["School run"] * 3


def test_a_moved_event_moves_its_busy_time(app, session, setup, server):
    server.paths["/mei.ics"] = Served(feed(DENTIST))
    subscribe(app, setup, server.url("/mei.ics"))
    sync(app)
    moved = DENTIST.replace("T100000Z", "T140000Z").replace("T110000Z", "T150000Z")
    server.paths["/mei.ics"] = Served(feed(moved.replace("DTSTAMP:20261120", "DTSTAMP:20261121")))

    result = sync(app)

    assert result.output.splitlines()[-1].startswith("imported 0, updated 1")
    assert busy(session, setup) == [
        ("Dentist", london("2026-11-25", "14:00"), london("2026-11-25", "15:00"))
    ]


def test_a_failing_server_is_recorded_and_keeps_the_busy_time(app, session, setup, server):
    server.paths["/mei.ics"] = Served(feed(DENTIST))
    subscribe(app, setup, server.url("/mei.ics"))
    sync(app)
    del server.paths["/mei.ics"]

    result = sync(app)

    assert result.exit_code == 1
    assert "answered 404" in result.output
    assert "127.0.0.1" in result.output
    assert "/mei.ics" not in result.output, "the address may be a secret: only the host shows"
    assert len(busy(session, setup)) == 1
    session.rollback()
    subscription = session.scalars(select(CalendarSubscription)).one()
    assert "404" in subscription.last_error
    assert subscription.last_error_at is not None


def test_a_page_that_is_not_a_calendar_is_an_error_not_an_empty_calendar(
    app, session, setup, server
):
    server.paths["/mei.ics"] = Served(feed(DENTIST))
    subscribe(app, setup, server.url("/mei.ics"))
    sync(app)
    server.paths["/mei.ics"] = Served(b"<html><body>Sign in</body></html>")

    result = sync(app)

    assert result.exit_code == 1
    assert "not a calendar line" in result.output
    assert len(busy(session, setup)) == 1, "a login page must not wipe the calendar"


def test_a_calendar_over_the_size_cap_is_refused_while_downloading(
    app, session, setup, server, monkeypatch
):
    monkeypatch.setitem(app.config, "CALENDAR_IMPORT_MAX_BYTES", 2_000)
    big = feed(*[DENTIST.replace("dentist@", f"d{n}@") for n in range(40)])
    server.paths["/mei.ics"] = Served(big)
    subscribe(app, setup, server.url("/mei.ics"))

    result = sync(app)

    assert result.exit_code == 1
    assert "larger than 2000 bytes" in result.output
    assert busy(session, setup) == []


def test_a_redirect_to_a_local_file_is_refused(app, session, setup, server):
    server.paths["/mei.ics"] = Served(
        b"", status=302, headers={"Location": "file:///etc/passwd"}, etag=False
    )
    subscribe(app, setup, server.url("/mei.ics"))

    result = sync(app)

    assert result.exit_code == 1
    assert "Redirection to url 'file:///etc/passwd' is not allowed" in result.output


def test_a_redirect_to_another_web_address_is_followed(app, session, setup, server):
    server.paths["/old.ics"] = Served(
        b"", status=301, headers={"Location": server.url("/new.ics")}, etag=False
    )
    server.paths["/new.ics"] = Served(feed(DENTIST))
    subscribe(app, setup, server.url("/old.ics"))

    assert sync(app).exit_code == 0
    assert len(busy(session, setup)) == 1


def test_an_unreachable_server_is_reported(app, session, setup):
    subscribe(app, setup, "http://127.0.0.1:9/closed.ics")

    result = sync(app)

    assert result.exit_code == 1
    assert "could not be reached" in result.output


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("webcal://p123-caldav.icloud.com/published/2/abc", "https://p123-caldav.icloud.com/"),
        ("  https://calendar.google.com/calendar/ical/x/basic.ics ", "https://calendar.google"),
    ],
)
def test_subscription_addresses_are_normalised(url, expected):
    assert normalise_url(url).startswith(expected)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/cal.ics", "javascript:alert(1)", "https://"]
)
def test_subscription_addresses_other_than_web_ones_are_refused(url):
    with pytest.raises(SubscriptionError):
        normalise_url(url)


def test_subscribe_refuses_a_bad_address_with_one_line(app, setup):
    result = subscribe(app, setup, "file:///etc/passwd")

    assert result.exit_code == 1
    assert result.output.startswith("Error: the address must start with https://")


def test_subscribe_refuses_the_same_address_twice(app, setup, server):
    url = server.url("/mei.ics")
    assert subscribe(app, setup, url).exit_code == 0

    result = subscribe(app, setup, url)

    assert result.exit_code == 1
    assert "already subscribed" in result.output


def test_staff_sync_a_subscription_now_from_the_calendars_page(app, session, setup, server):
    from scheduler.staff.models import Role, User
    from tests.test_staff import PASSWORD, log_in, token_of

    user = User(email="desk@clinic.example", role=Role.RECEPTION)
    user.set_password(PASSWORD)
    session.add(user)
    session.commit()
    server.paths["/mei.ics"] = Served(feed(DENTIST))
    subscribe(app, setup, server.url("/mei.ics"))
    session.rollback()
    subscription = session.scalars(select(CalendarSubscription)).one()
    client = app.test_client()
    log_in(client, user.email)

    answer = client.post(
        f"/staff/calendars/subscriptions/{subscription.id}/sync",
        data={"csrf_token": token_of(client)},
    )

    assert answer.status_code == 200
    assert "imported 1, updated 0, cancelled 0, skipped 0, errors 0" in answer.text
    assert busy(session, setup) == [
        ("Dentist", london("2026-11-25", "10:00"), london("2026-11-25", "11:00"))
    ]
    session.rollback()
    assert session.get(CalendarSubscription, subscription.id).last_synced_at is not None
