"""Subscribed outside calendars: `calendar sync` against a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from scheduler import outbound
from scheduler.calendars.models import BusyTime, CalendarSubscription
from scheduler.calendars.subscriptions import SubscriptionError, fetch, normalise_url
from scheduler.staff.models import Role
from tests.conftest import log_in, london, token_of
from tests.test_webhooks import answers_once


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
    assert "the server's answer is not a calendar" in result.output
    assert "Sign in" not in result.output, "what a server sent is never quoted"
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
    assert "redirected to a file:// address; only http and https are followed" in result.output


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
    ("url", "message"),
    [
        ("file:///etc/passwd", "must start with https://"),
        ("ftp://example.com/cal.ics", "must start with https://"),
        ("javascript:alert(1)", "must start with https://"),
        ("https://", "has no host name"),
        ("https://example.org:99999/cal.ics", "invalid port number"),
        ("http://[::1/cal.ics", "not one a browser could open"),
        ("https://exa\x00mple.org/cal.ics", "cannot contain spaces"),
        ("https://example.org/my cal.ics", "cannot contain spaces"),
    ],
)
def test_subscription_addresses_other_than_web_ones_are_refused(url, message):
    with pytest.raises(SubscriptionError, match=message):
        normalise_url(url)


@pytest.mark.parametrize("url", ["https://example.org:99999/cal.ics", "http://[::1/cal.ics"])
def test_subscribe_refuses_a_broken_address_with_one_line(app, session, setup, url):
    result = subscribe(app, setup, url)

    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith("Error: the address ")
    assert subscriptions(session) == []


@pytest.mark.parametrize(
    "location", ["http://[::1/x.ics", "http://example.org:99999/x.ics", "gopher://example.org/"]
)
def test_a_redirect_to_a_broken_address_is_reported_in_one_line(
    app, session, setup, server, location
):
    server.paths["/mei.ics"] = Served(b"", status=302, headers={"Location": location}, etag=False)
    subscribe(app, setup, server.url("/mei.ics"))

    result = sync(app)

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "Error: Personal (127.0.0.1): the server redirected to " in result.output


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


def test_redirects_are_followed_a_few_times_only(app, session, setup, server):
    server.paths["/loop.ics"] = Served(
        b"", status=302, headers={"Location": "/loop.ics"}, etag=False
    )
    subscribe(app, setup, server.url("/loop.ics"))

    result = sync(app)

    assert result.exit_code == 1
    assert "the server redirected more than 5 times" in result.output
    assert len(server.requests) == 6


# --- Where calendars may be fetched from ------------------------------------------------------

PRIVATE = "is inside a private network, not on the public internet"
HOW_TO_ALLOW = "the operator can set CALENDAR_ALLOW_PRIVATE=true"


@pytest.fixture
def public_only(app, monkeypatch):
    """The rule as a clinic runs it: calendars from public addresses only."""
    monkeypatch.setitem(app.config, "CALENDAR_ALLOW_PRIVATE", False)


# Each reaches the test server, or would: loopback written three ways, and the metadata service.
INSIDE = ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "169.254.169.254"]


def inside(server, host, path="/mei.ics"):
    return f"http://{host}:{server.httpd.server_address[1]}{path}"


def subscriptions(session):
    session.rollback()
    return session.scalars(select(CalendarSubscription)).all()


@pytest.mark.parametrize("host", INSIDE)
def test_subscribing_to_the_servers_own_network_is_refused_with_what_to_fix(
    public_only, app, session, setup, server, host
):
    result = subscribe(app, setup, inside(server, host))

    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith("Error: the address is refused: ")
    assert PRIVATE in line
    assert HOW_TO_ALLOW in line
    assert subscriptions(session) == []


@pytest.mark.parametrize("host", INSIDE)
def test_the_staff_area_refuses_a_subscription_inside_the_network_and_saves_nothing(
    public_only, app, session, setup, server, make_user, host
):
    client = app.test_client()
    log_in(client, make_user(Role.ADMIN).email)

    answer = client.post(
        "/staff/calendars/subscriptions",
        data={
            "csrf_token": token_of(client),
            "practitioner": str(setup.mei.id),
            "url": inside(server, host),
        },
    )

    assert answer.status_code == 422
    assert PRIVATE in answer.text
    assert HOW_TO_ALLOW in answer.text
    assert subscriptions(session) == []


@pytest.mark.parametrize("host", INSIDE)
def test_a_subscription_inside_the_network_is_refused_at_sync_and_nothing_fetched(
    app, session, setup, server, monkeypatch, host
):
    # Saved while the rule was lifted (or before there was one); refused once it holds.
    server.paths["/mei.ics"] = Served(feed(DENTIST))
    assert subscribe(app, setup, inside(server, host)).exit_code == 0
    monkeypatch.setitem(app.config, "CALENDAR_ALLOW_PRIVATE", False)

    result = sync(app)

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    problem, counts, total = result.output.splitlines()
    assert problem.startswith(f"Error: Personal ({host.strip('[]')}): refused: ")
    assert counts == f"Personal ({host.strip('[]')}): {total}"
    assert PRIVATE in problem
    assert HOW_TO_ALLOW in problem
    assert total == "imported 0, updated 0, cancelled 0, skipped 0, errors 1"
    assert server.requests == []
    assert busy(session, setup) == []
    (subscription,) = subscriptions(session)
    assert PRIVATE in subscription.last_error
    assert subscription.last_synced_at is None


def test_the_sync_button_refuses_a_subscription_inside_the_network(
    app, session, setup, server, make_user, monkeypatch
):
    server.paths["/mei.ics"] = Served(feed(DENTIST))
    subscribe(app, setup, server.url("/mei.ics"))
    (subscription,) = subscriptions(session)
    monkeypatch.setitem(app.config, "CALENDAR_ALLOW_PRIVATE", False)
    client = app.test_client()
    log_in(client, make_user(Role.RECEPTION).email)

    answer = client.post(
        f"/staff/calendars/subscriptions/{subscription.id}/sync",
        data={"csrf_token": token_of(client)},
    )

    assert answer.status_code == 200
    assert "refused: 127.0.0.1 " + PRIVATE in answer.text
    assert server.requests == []
    assert busy(session, setup) == []


PUBLIC_NAME = "calendar.partner.example"


@pytest.fixture
def partner(monkeypatch):
    """Let ``PUBLIC_NAME`` pass the check as a public server while it answers from the test
    server; every other host is checked by the real rule."""
    real = outbound.vetted

    def vetted(host: str, port: int, *, allow_private: bool, advice: str) -> list[str]:
        if host == PUBLIC_NAME:
            return ["127.0.0.1"]
        return real(host, port, allow_private=allow_private, advice=advice)

    monkeypatch.setattr(outbound, "vetted", vetted)


@pytest.mark.parametrize(
    ("target", "refused"),
    [
        ("http://127.0.0.1:{port}/secret", "127.0.0.1"),
        ("http://localhost:{port}/secret", "localhost (127.0.0.1)"),
        ("http://[::ffff:127.0.0.1]:{port}/secret", "::ffff:127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ],
)
def test_a_public_address_that_redirects_into_the_network_is_refused(
    public_only, partner, app, session, setup, server, target, refused
):
    port = server.httpd.server_address[1]
    server.paths["/cal.ics"] = Served(
        b"", status=302, headers={"Location": target.format(port=port)}, etag=False
    )
    server.paths["/secret"] = Served(feed(DENTIST))
    assert subscribe(app, setup, f"http://{PUBLIC_NAME}:{port}/cal.ics").exit_code == 0

    result = sync(app)

    assert result.exit_code == 1
    assert f"refused: {refused} {PRIVATE}" in result.output
    assert [path for path, _ in server.requests] == ["/cal.ics"], "the redirect is not followed"
    assert busy(session, setup) == []


def test_a_fetch_connects_to_the_address_that_was_checked(server, monkeypatch):
    server.paths["/mei.ics"] = Served(feed(DENTIST))
    name = "calendar.clinic.example"
    asked = answers_once(monkeypatch, name, first="127.0.0.1", then="192.0.2.1")
    port = server.httpd.server_address[1]

    fetched = fetch(
        f"http://{name}:{port}/mei.ics",
        etag=None,
        last_modified=None,
        max_bytes=100_000,
        timeout=5,
        allow_private=True,
    )

    assert fetched.body == feed(DENTIST)
    assert asked == ["127.0.0.1"], "the name is resolved once, and that address is used"
    assert server.requests[0][1]["Host"] == f"{name}:{port}", "the server sees its own name"


def test_a_name_that_turns_private_after_the_check_gets_nothing(server, monkeypatch):
    # A public answer for the check, then the clinic's own machine for the connection: the
    # connection goes to the public address checked, so the server on 127.0.0.1 gets nothing.
    server.paths["/mei.ics"] = Served(feed(DENTIST))
    name = "rebinding.attacker.example"
    asked = answers_once(monkeypatch, name, first="192.0.2.1", then="127.0.0.1")
    checked: list[str] = []

    def vetted_as_public(host: str, port: int, *, allow_private: bool, advice: str) -> list[str]:
        # 192.0.2.1 (TEST-NET-1) never routes anywhere, but it is not public either: this
        # stands in for a public address, checked by the real rule in the other tests.
        assert not allow_private
        checked.append(host)
        return outbound.resolve(host, port)

    monkeypatch.setattr(outbound, "vetted", vetted_as_public)

    with pytest.raises(SubscriptionError):
        fetch(
            f"http://{name}:{server.httpd.server_address[1]}/mei.ics",
            etag=None,
            last_modified=None,
            max_bytes=100_000,
            timeout=1,
        )

    assert checked == [name]
    assert asked == ["192.0.2.1"], "the name is resolved once, for the check"
    assert server.requests == []


def test_a_name_that_cannot_be_found_is_reported_in_one_line(public_only, app, session, setup):
    assert subscribe(app, setup, "https://calendar.invalid/mei.ics").exit_code == 0

    result = sync(app)

    assert result.exit_code == 1
    assert "Error: Personal (calendar.invalid): could not find the host calendar.invalid" in (
        result.output
    )
