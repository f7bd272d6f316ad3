"""docs/deploy.md, followed: three app servers and two dispatchers on one database.

The deployment reads its steps from the document: the SQL that creates the role and the
database, the settings file (``/srv/scheduler/.env``), the commands, and the systemd units,
whose ``ExecStart``, ``WorkingDirectory``, ``Environment`` and ``RuntimeDirectory`` it runs as
systemd would, in a clean environment. What it changes, and only that:

* paths: ``/srv/scheduler`` is a scratch folder holding the ``.env`` and links to this
  checkout's ``wsgi.py`` and ``.venv``; ``/run`` is a scratch folder;
* the values of the settings: the suite's database server, a real SMTP server in this process,
  the local Redis with a key prefix of its own, and a low ``RATELIMIT_SLOTS_PER_ADDRESS``;
* ports (free ones) and ``WEB_CONCURRENCY=1`` (the suite shares two cores).

It runs on the suite's database: on PostgreSQL it creates a role and a ``…_deploy`` database
owned by it (as the document says), and backs up with ``pg_dump``/``pg_restore``; on SQLite
it uses a scratch file and ``db backup``. Those steps are parametrized by ``database``, so the
test names say which ran. Requests go straight to each app server with the headers the
document's nginx adds, so that each step can pick its server.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import psycopg
import pyotp
import pytest
import redis
from dotenv import dotenv_values
from flask import Flask
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from scheduler import config, create_app
from scheduler.extensions import db
from tests.conftest import csrf_token
from tests.smtp_server import Inbox, free_port, smtp_server

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "deploy.md").read_text()
SUITE_DATABASE = (
    "postgresql" if os.environ.get("TEST_DATABASE_URL", "").startswith("postgres") else "sqlite"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PUBLIC_HOST = "book.clinic.test"
BASE_URL = f"https://{PUBLIC_HOST}"
SLOT_LIMIT = 3  # RATELIMIT_SLOTS_PER_ADDRESS, per minute
STARTUP_SECONDS = 90
MAIL_SECONDS = 30


# --- The document ---------------------------------------------------------------------------


def code_blocks() -> list[str]:
    """The fenced code blocks of docs/deploy.md."""
    return re.findall(r"^```[a-z]*\n(.*?)^```$", DOC, flags=re.MULTILINE | re.DOTALL)


def block(path: str) -> str:
    """The code block that begins with a comment naming the file ``path``."""
    found = [text for text in code_blocks() if text.startswith(f"# {path}")]
    assert len(found) == 1, f"docs/deploy.md should hold one block for {path}"
    return found[0]


def unit(name: str) -> dict[str, list[str]]:
    """The settings of the systemd unit ``name`` in the document, each key's values in order."""
    settings: dict[str, list[str]] = {}
    for line in block(f"/etc/systemd/system/{name}").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def documented(command: str) -> list[str]:
    """``command`` split as the shell would, once checked to be in the document word for word."""
    assert command in DOC, f"docs/deploy.md should say {command!r}"
    return shlex.split(command)


def documented_settings() -> dict[str, str | None]:
    """The settings file of the document, read as the app reads it (python-dotenv)."""
    return dotenv_values(stream=io.StringIO(block("/srv/scheduler/.env")))


def documented_sql(name: str, restored: str, password: str) -> list[str]:
    """The document's SQL for the role and the databases, for ``name`` and ``restored``."""
    statements = re.findall(r'psql -c "(CREATE [^"]+)"', DOC)
    assert len(statements) == 3, "docs/deploy.md should create a role and two databases"
    return [
        re.sub(r"\bscheduler\b", name, re.sub(r"\bscheduler_restored\b", restored, sql)).replace(
            "CHANGE-ME", password
        )
        for sql in statements
    ]


# --- Processes ------------------------------------------------------------------------------


@dataclass
class Process:
    """A process the test started, its output (stdout and stderr) in a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The ``scheduler.events`` lines it logged, as dicts."""
        found = []
        for line in self.output().splitlines():
            start = line.find('{"event"')
            if start >= 0:
                found.append(json.loads(line[start:]))
        return found

    def wait(self, timeout: float) -> int:
        """Wait for it to end by itself (killed, and the test failed, if it does not)."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"{self.name} did not finish:\n{self.output()}")

    def signal_stop(self) -> None:
        """SIGTERM, as systemd stops a unit."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 45) -> int:
        """SIGTERM, and its exit status once it has stopped (-9: killed, as it did not)."""
        self.signal_stop()
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()


def wait_for(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    """Poll ``condition`` until it gives something true; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


# --- Requests through the proxy ----------------------------------------------------------------


@dataclass
class Answer:
    """One HTTP answer, and the port of the app server that gave it."""

    status: int
    headers: Message
    body: bytes
    server: int

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Visitor:
    """Someone at ``address`` reaching the app servers through the document's nginx: with the
    headers it sets, and the session cookie a browser keeps."""

    address: str
    cookie: str | None = None

    def get(self, port: int, path: str, *, claimed: str | None = None) -> Answer:
        return self.request(port, "GET", path, claimed=claimed)

    def post(
        self, port: int, path: str, *, json_body: Any = None, form: dict[str, str] | None = None
    ) -> Answer:
        if form is not None:
            return self.request(
                port, "POST", path, urlencode(form).encode(), "application/x-www-form-urlencoded"
            )
        return self.request(port, "POST", path, json.dumps(json_body or {}).encode())

    def request(
        self,
        port: int,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        *,
        claimed: str | None = None,
    ) -> Answer:
        # nginx: Host, the client's own X-Forwarded-For with its address appended, the scheme.
        forwarded = f"{claimed}, {self.address}" if claimed else self.address
        headers = {"Host": PUBLIC_HOST, "X-Forwarded-For": forwarded, "X-Forwarded-Proto": "https"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        if body is not None:
            headers["Content-Type"] = content_type
            headers["Referer"] = BASE_URL + path  # as a browser sends it on the same site
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read(), port)
        finally:
            connection.close()
        for cookie in answer.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            if name in ("session", "__Host-session"):  # "__Host-" over https
                value = rest.split(";")[0]
                self.cookie = f"{name}={value}" if value else None
        return answer


def healthz(port: int) -> Answer | None:
    """The server's ``/healthz``, or ``None`` while it does not take connections yet."""
    try:
        return Visitor("192.0.2.1").get(port, "/healthz")
    except OSError:
        return None


# --- The deployment -------------------------------------------------------------------------


@dataclass
class Deployment:
    """Three app servers and two dispatchers, started from the document's units."""

    database_url: str
    site: Path
    runtime: Path
    environment: dict[str, str]
    settings: dict[str, str]
    inbox: Inbox
    admin_password: str
    engine: Engine
    scratch: Path
    restored_url: str = ""
    admin_url: str = ""
    # The admin's two-step login, once a test has set it up, and the last step a code was
    # taken for (a code works once).
    admin_totp: str = ""
    admin_step: int = 0
    servers: dict[int, Process] = field(default_factory=dict)
    dispatchers: dict[int, Process] = field(default_factory=dict)

    @property
    def ports(self) -> list[int]:
        return list(self.servers)

    def systemd(self, value: str, instance: str = "") -> str:
        """A unit's value with its specifier and the document's paths made the test's."""
        return (
            value.replace("%i", instance)
            .replace("/srv/scheduler", str(self.site))
            .replace("/run/", f"{self.runtime}/")
        )

    def spawn(self, name: str, service: dict[str, list[str]], instance: str = "") -> Process:
        """Start a unit's ``ExecStart`` as systemd would: its directory and environment."""
        environment = dict(self.environment)
        for assignment in service.get("Environment", []):
            key, _, value = self.systemd(assignment, instance).partition("=")
            environment[key] = value
        for directory in service.get("RuntimeDirectory", []):
            (self.runtime / self.systemd(directory, instance)).mkdir(parents=True, exist_ok=True)
        log = self.scratch / f"{name}.log"
        with log.open("ab") as output:
            popen = subprocess.Popen(  # noqa: S603 - the document's command, no shell
                shlex.split(self.systemd(service["ExecStart"][0], instance)),
                cwd=self.systemd(service["WorkingDirectory"][0], instance),
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        return Process(name, popen, log)

    def start_server(self, port: int) -> Process:
        """``systemctl start scheduler-web@PORT``."""
        service = unit("scheduler-web@.service")
        # The one change to the unit besides paths: one worker, as the suite shares two cores.
        service["Environment"] = [*service.get("Environment", []), "WEB_CONCURRENCY=1"]
        self.servers[port] = self.spawn(f"web-{port}", service, str(port))
        return self.servers[port]

    def start_dispatcher(self, number: int) -> Process:
        """``systemctl start scheduler-dispatcher@N``."""
        process = self.spawn(
            f"dispatcher-{number}", unit("scheduler-dispatcher@.service"), str(number)
        )
        self.dispatchers[number] = process
        return process

    def wait_until_serving(self, port: int) -> None:
        """Wait for ``/healthz`` to answer 200, as the document's upgrade loop does."""
        process = self.servers[port]

        def up() -> bool:
            if process.popen.poll() is not None:
                pytest.fail(f"{process.name} exited:\n{process.output()}")
            answer = healthz(port)
            return answer is not None and answer.status == 200

        wait_for(up, STARTUP_SECONDS, f"{process.name} to answer /healthz")

    def wait_until_dispatching(self, number: int) -> None:
        process = self.dispatchers[number]

        def running() -> bool:
            if process.popen.poll() is not None:
                pytest.fail(f"{process.name} exited:\n{process.output()}")
            return "running" in process.output()

        wait_for(running, STARTUP_SECONDS, f"{process.name} to start")

    def run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a documented command in /srv/scheduler, as the operator does."""
        return subprocess.run(  # noqa: S603 - the document's command, no shell
            args,
            cwd=self.site,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(text(sql), params))

    def mail_to(self, address: str) -> list[Message]:
        return [message for message in self.inbox.messages() if address in str(message["To"])]


@pytest.fixture(scope="module", params=[SUITE_DATABASE])
def database(request: pytest.FixtureRequest, test_database_url: str) -> str:
    """The suite's database, which decides the PostgreSQL-only steps."""
    assert test_database_url.startswith(request.param)
    return str(request.param)


def create_postgresql(stack: ExitStack, suite_url: str) -> tuple[str, str, str]:
    """The document's role and database (``<suite>_deploy``), dropped when ``stack`` closes;
    the URLs of the database, of the one to restore into, and of the suite's (a superuser's)."""
    suite = make_url(suite_url).set(drivername="postgresql")
    name, restored = f"{suite.database}_deploy", f"{suite.database}_deploy_restored"
    password = secrets.token_hex(12)
    admin = suite.render_as_string(hide_password=False)

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as connection:
            for database in (restored, name):
                connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            connection.execute(f'DROP ROLE IF EXISTS "{name}"')

    drop()  # what an interrupted run left
    stack.callback(drop)
    create_role, create_database, _restored = documented_sql(name, restored, password)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(create_role)
        connection.execute(create_database)
    server = f"postgresql://{name}:{password}@{suite.host}:{suite.port or 5432}"
    return f"{server}/{name}", f"{server}/{restored}", admin


@pytest.fixture(scope="module")
def deployment(
    database: str, test_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Everything docs/deploy.md sets up, stopped and dropped afterwards even on failure."""
    scratch = tmp_path_factory.mktemp("deploy")
    with ExitStack() as stack:
        if database == "postgresql":
            database_url, restored_url, admin_url = create_postgresql(stack, test_database_url)
        else:
            database_url, restored_url, admin_url = f"sqlite:///{scratch / 'scheduler.db'}", "", ""

        inbox, smtp_port = stack.enter_context(smtp_server())

        limits = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        stack.callback(limits.close)
        try:
            limits.ping()
        except redis.RedisError as exc:
            pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
        prefix = f"deploy-{uuid.uuid4().hex}"

        def forget_counts() -> None:
            keys = list(limits.scan_iter(match=f"*{prefix}*"))
            if keys:
                limits.delete(*keys)

        stack.callback(forget_counts)

        # /srv/scheduler: the checkout (its wsgi.py and .venv) and the settings file.
        site = scratch / "srv" / "scheduler"
        site.mkdir(parents=True)
        (site / "wsgi.py").symlink_to(ROOT / "wsgi.py")
        (site / ".venv").symlink_to(ROOT / ".venv")
        settings = {
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_hex(32),
            "BASE_URL": BASE_URL,
            "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "MAIL_FROM": "booking@example.com",
            "RATELIMIT_STORAGE_URI": REDIS_URL,
            "RATELIMIT_KEY_PREFIX": prefix,
            "PROXY_FIX_X_FOR": "1",
            "WEBHOOK_ALLOW_PRIVATE": "false",
            "HEALTH_BACKLOG_SECONDS": "900",
            "RATELIMIT_SLOTS_PER_ADDRESS": f"{SLOT_LIMIT} per minute",
        }
        assert set(documented_settings()) <= set(settings), "a documented setting is left out"
        for name in settings:
            assert re.search(rf"\b{name}\b", DOC), f"docs/deploy.md does not explain {name}"
        (site / ".env").write_text("".join(f'{key}="{value}"\n' for key, value in settings.items()))

        home = scratch / "home"
        home.mkdir()
        # systemd starts units with a clean environment: the settings come from the .env only.
        environment = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}
        engine = create_engine(config.database_url(database_url, ""), poolclass=NullPool)
        stack.callback(engine.dispose)
        deployment = Deployment(
            database_url=database_url,
            site=site,
            runtime=scratch / "run",
            environment=environment,
            settings=settings,
            inbox=inbox,
            admin_password="",
            engine=engine,
            scratch=scratch,
            restored_url=restored_url,
            admin_url=admin_url,
        )

        def stop_everything() -> None:
            running = [*deployment.servers.values(), *deployment.dispatchers.values()]
            for process in running:  # all at once, as `systemctl stop 'scheduler-*'` would
                process.signal_stop()
            for process in running:
                process.stop()

        stack.callback(stop_everything)

        migrated = deployment.run(documented(".venv/bin/flask --app scheduler db upgrade"))
        assert migrated.returncode == 0, migrated.stderr
        seeded = deployment.run(documented(".venv/bin/flask --app scheduler demo seed"))
        assert seeded.returncode == 0, seeded.stderr
        shown = re.search(r"admin@example\.com, password (\S+) \(shown only now\)", seeded.stdout)
        assert shown, seeded.stdout
        deployment.admin_password = shown.group(1)

        ports = [free_port() for _ in range(3)]
        for port in ports:
            deployment.start_server(port)
        for number in (1, 2):
            deployment.start_dispatcher(number)
        for port in ports:
            deployment.wait_until_serving(port)
        for number in (1, 2):
            deployment.wait_until_dispatching(number)
        yield deployment


# --- Helpers for the steps ------------------------------------------------------------------


def london_today() -> date:
    return datetime.now(ZoneInfo("Europe/London")).date()


def free_times(visitor: Visitor, port: int) -> tuple[int, list[dict[str, Any]]]:
    """The follow-up treatment's id and its free times from three to nine days ahead."""
    services = visitor.get(port, "/api/v1/services").json()
    follow_up = next(s["id"] for s in services if s["name"] == "Follow-up treatment")
    first, last = london_today() + timedelta(days=3), london_today() + timedelta(days=9)
    answer = visitor.get(port, f"/api/v1/slots?service={follow_up}&start={first}&end={last}")
    assert answer.status == 200, answer.text
    slots = answer.json()["slots"]
    assert len(slots) > 10
    return follow_up, slots


def book(visitor: Visitor, port: int, email: str) -> dict[str, Any]:
    """Book the first free follow-up through the API of the server on ``port``."""
    service, slots = free_times(visitor, port)
    answer = visitor.post(
        port,
        "/api/v1/bookings",
        json_body={
            "service": service,
            "practitioner": slots[0]["practitioner"],
            "start": slots[0]["start"],
            "patient": {"name": "Ada Deploy", "email": email, "phone": "+44 7700 900123"},
            "notes": "",
        },
    )
    assert answer.status == 201, answer.text
    return {**answer.json(), "slots": slots}


def subjects(deployment: Deployment, email: str) -> list[str]:
    """The first word of each subject mailed to ``email``: Booked, Moved, Cancelled …"""
    return [str(message["Subject"]).split()[0].rstrip(":") for message in deployment.mail_to(email)]


def booking_id(deployment: Deployment, token: str) -> int:
    (row,) = deployment.rows("SELECT id FROM bookings WHERE manage_token = :t", t=token)
    return int(row.id)


# --- Serving --------------------------------------------------------------------------------


def test_every_app_server_answers_healthz_ok(deployment):
    for port in deployment.ports:
        answer = healthz(port)

        assert answer is not None
        assert answer.status == 200, answer.text
        report = answer.json()
        assert report["status"] == "ok"
        assert report["database"] == {"status": "ok"}
        assert report["migrations"]["status"] == "ok"
        assert report["migrations"]["current"] == report["migrations"]["expected"]


@pytest.fixture(scope="module")
def visit(deployment: Deployment) -> dict[str, Any]:
    """A visit booked on server 1, moved on server 2 and cancelled on server 3, each step
    once its mail has arrived."""
    one, two, three = deployment.ports
    email = f"visit-{uuid.uuid4().hex[:8]}@example.org"
    patient = Visitor("203.0.113.10")

    booked = book(patient, one, email)
    token = booked["token"]
    wait_for(lambda: subjects(deployment, email), MAIL_SECONDS, "the confirmation")
    pages = {port: patient.get(port, f"/b/{token}").status for port in deployment.ports}

    first = booked["slots"][0]
    later = next(
        slot
        for slot in booked["slots"]
        if slot["practitioner"] == first["practitioner"]
        and slot["start"][:10] != first["start"][:10]
    )
    moved = patient.post(
        two, f"/api/v1/bookings/{token}/reschedule", json_body={"start": later["start"]}
    )
    assert moved.status == 200, moved.text
    wait_for(lambda: len(subjects(deployment, email)) >= 2, MAIL_SECONDS, "the update")

    cancelled = patient.post(three, f"/api/v1/bookings/{token}/cancel")
    assert cancelled.status == 200, cancelled.text
    wait_for(lambda: len(subjects(deployment, email)) >= 3, MAIL_SECONDS, "the cancellation")

    number = booking_id(deployment, token)

    def settled() -> bool:
        sent = [e for d in deployment.dispatchers.values() for e in d.events()]
        claimed = deployment.rows(
            "SELECT id FROM notifications WHERE booking_id = :b AND status = 'sending'", b=number
        )
        return not claimed and sum(e.get("booking") == number for e in sent) >= 3

    wait_for(settled, MAIL_SECONDS, "the dispatchers to record what they sent")
    return {
        "email": email,
        "token": token,
        "id": number,
        "pages": pages,
        "moved": moved.json(),
        "cancelled": cancelled.json(),
        "later": later,
    }


def test_a_booking_made_on_one_server_is_moved_and_cancelled_on_the_others(deployment, visit):
    assert visit["pages"] == dict.fromkeys(deployment.ports, 200), "the token works everywhere"
    assert visit["moved"]["start"] == visit["later"]["start"]
    assert visit["cancelled"]["status"] == "cancelled"
    assert healthz(deployment.ports[0]).json()["backlog"]["mail_seconds"] is None


def test_the_two_dispatchers_send_each_message_once(deployment, visit):
    assert subjects(deployment, visit["email"]) == ["Booked", "Moved", "Cancelled"]
    message_ids = [message["Message-ID"] for message in deployment.mail_to(visit["email"])]
    assert len(set(message_ids)) == 3
    sent = [
        event
        for dispatcher in deployment.dispatchers.values()
        for event in dispatcher.events()
        if event["event"] == "mail.sent" and event["booking"] == visit["id"]
    ]
    assert sorted(event["kind"] for event in sent) == ["cancellation", "confirmation", "update"]
    statuses = deployment.rows(
        "SELECT kind, status, sent_count FROM notifications WHERE booking_id = :b "
        "AND status = 'sent'",
        b=visit["id"],
    )
    assert sorted((row.kind, row.sent_count) for row in statuses) == [
        ("cancellation", 1),
        ("confirmation", 1),
        ("update", 1),
    ]


def test_each_server_logs_the_change_it_made_as_json_without_personal_details(deployment, visit):
    one, two, three = (deployment.servers[port] for port in deployment.ports)

    def changes(server: Process) -> list[str]:
        return [e["event"] for e in server.events() if e.get("booking") == visit["id"]]

    assert changes(one) == ["booking.booked"]
    assert changes(two) == ["booking.rescheduled"]
    assert changes(three) == ["booking.cancelled"]
    for process in [*deployment.servers.values(), *deployment.dispatchers.values()]:
        assert visit["email"] not in process.output()
        assert "Ada Deploy" not in process.output()


def log_in_admin(deployment: Deployment, staff: Visitor, form_port: int, port: int) -> None:
    """Log in as the demo admin on ``port`` with the form from ``form_port``, as a person
    does: the password, then two-step login, set up with the app the first time (admins must
    use it) or a code from the app after that."""
    form = staff.get(form_port, "/staff/login")
    answer = staff.post(
        port,
        "/staff/login",
        form={
            "email": "admin@example.com",
            "password": deployment.admin_password,
            "csrf_token": csrf_token(form.text),
        },
    )
    assert answer.status == 303, answer.text
    if not answer.headers["Location"].endswith("/staff/login/code"):
        # Logged in with the password alone: the staff area asks for the set-up first.
        assert staff.get(port, "/staff/day").headers["Location"].endswith("/staff/two-factor")
        page = staff.get(port, "/staff/two-factor")
        shown = re.search(r'<code class="secret">([A-Z2-7 ]+)</code>', page.text)
        assert shown, page.text
        deployment.admin_totp = shown.group(1).replace(" ", "")
        path, token = "/staff/two-factor", csrf_token(page.text)
    else:
        path = "/staff/login/code"
        token = csrf_token(staff.get(port, path).text)
    totp = pyotp.TOTP(deployment.admin_totp)
    # The next step no code was taken for, within the one either side of now.
    while (step := max(deployment.admin_step + 1, totp.timecode(datetime.now(UTC)) - 1)) > (
        totp.timecode(datetime.now(UTC)) + 1
    ):
        time.sleep(1)
    done = staff.post(port, path, form={"code": totp.generate_otp(step), "csrf_token": token})
    assert done.status in (201, 303), done.text
    deployment.admin_step = step


def test_a_staff_login_made_on_one_server_holds_on_the_others(deployment):
    one, two, three = deployment.ports
    staff = Visitor("203.0.113.20")
    # The form, and its token, from another server than the one logged in to.
    log_in_admin(deployment, staff, three, one)

    assert [staff.get(port, "/staff/day").status for port in (two, three)] == [200, 200]
    assert Visitor("203.0.113.21").get(two, "/staff/day").status == 302  # no login, no diary


def test_rate_limits_are_counted_across_the_app_servers_by_the_forwarded_address(deployment):
    one, two, three = deployment.ports
    path = "/api/v1/services"
    client = Visitor("203.0.113.30")
    service = next(s["id"] for s in client.get(one, path).json() if not s["first_visit"])
    day = london_today() + timedelta(days=3)
    slots = f"/api/v1/slots?service={service}&start={day}&end={day}"

    allowed = [client.get(one, slots).status for _ in range(SLOT_LIMIT)]
    refused = client.get(two, slots)
    forged = client.get(three, slots, claimed="198.51.100.7")  # nginx appends the real one
    neighbour = Visitor("203.0.113.31").get(three, slots)

    assert allowed == [200] * SLOT_LIMIT
    assert (refused.status, refused.server) == (429, two)
    assert int(refused.headers["Retry-After"]) > 0
    assert forged.status == 429
    assert neighbour.status == 200
    counts = redis.Redis.from_url(REDIS_URL)
    try:
        prefix = deployment.settings["RATELIMIT_KEY_PREFIX"]
        assert list(counts.scan_iter(match=f"*{prefix}*slots_per_address*"))
    finally:
        counts.close()


# --- Restarts -------------------------------------------------------------------------------


def test_an_app_server_restarts_while_the_others_serve_and_logins_survive(deployment):
    one, two, three = deployment.ports
    staff = Visitor("203.0.113.40")
    log_in_admin(deployment, staff, one, one)

    status = deployment.servers[two].stop()
    assert status == 0, deployment.servers[two].output()
    assert healthz(two) is None
    assert [healthz(port).status for port in (one, three)] == [200, 200]
    deployment.start_server(two)
    deployment.wait_until_serving(two)

    assert staff.get(two, "/staff/day").status == 200


def test_a_dispatcher_stops_cleanly_on_sigterm_and_the_other_sends_meanwhile(deployment):
    first = deployment.dispatchers[1]

    assert first.stop() == 0, first.output()
    assert "Dispatcher stopped" in first.output()
    email = f"meanwhile-{uuid.uuid4().hex[:8]}@example.org"
    book(Visitor("203.0.113.45"), deployment.ports[2], email)
    wait_for(lambda: subjects(deployment, email), MAIL_SECONDS, "the confirmation")

    assert subjects(deployment, email) == ["Booked"]


# --- Timers and backups ---------------------------------------------------------------------


def test_the_calendar_sync_unit_runs(deployment):
    service = unit("scheduler-calendar-sync.service")
    timer = unit("scheduler-calendar-sync.timer")
    assert service["Type"] == ["oneshot"]
    assert timer["OnCalendar"]

    finished = deployment.spawn("calendar-sync", service)
    status = finished.wait(120)

    assert status == 0, finished.output()
    assert finished.output().strip().splitlines()[-1] == (
        "imported 0, updated 0, cancelled 0, skipped 0, errors 0"
    )


def back_up_postgresql(deployment: Deployment, token: str) -> list[Any]:
    """pg_dump the database, restore it into another, and read the booking from there."""
    dump = deployment.scratch / "scheduler.dump"
    pg_dump, pg_restore = shutil.which("pg_dump"), shutil.which("pg_restore")
    assert pg_dump, "pg_dump is needed on PostgreSQL"
    assert pg_restore, "pg_restore is needed on PostgreSQL"
    _, *dump_options, _ = documented("pg_dump --format=custom --file=")
    dumped = deployment.run([pg_dump, *dump_options, f"--file={dump}", deployment.database_url])
    assert dumped.returncode == 0, dumped.stderr

    name = make_url(deployment.database_url).database or ""
    restored = make_url(deployment.restored_url).database or ""
    create_restored = documented_sql(name, restored, "")[2]
    with psycopg.connect(deployment.admin_url, autocommit=True) as connection:
        connection.execute(create_restored)
    _, *restore_options, _ = documented("pg_restore --no-owner --exit-on-error --dbname=")
    loaded = deployment.run(
        [pg_restore, *restore_options, f"--dbname={deployment.restored_url}", str(dump)]
    )
    assert loaded.returncode == 0, loaded.stderr
    copy = create_engine(config.database_url(deployment.restored_url, ""), poolclass=NullPool)
    try:
        with copy.connect() as connection:
            return list(
                connection.execute(
                    text(
                        "SELECT manage_token, (SELECT version_num FROM alembic_version) AS head "
                        "FROM bookings WHERE manage_token = :t"
                    ),
                    {"t": token},
                )
            )
    finally:
        copy.dispose()


def back_up_sqlite(deployment: Deployment, token: str) -> list[Any]:
    """``db backup`` the live database and read the booking from the copy."""
    copy = deployment.scratch / "scheduler-backup.db"
    command = documented(".venv/bin/flask --app scheduler db backup")
    made = deployment.run([*command, str(copy)])
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("Backed up ")
    assert copy.stat().st_mode & 0o777 == 0o600
    with closing(sqlite3.connect(copy)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return connection.execute(
            "SELECT manage_token, (SELECT version_num FROM alembic_version) AS head "
            "FROM bookings WHERE manage_token = ?",
            (token,),
        ).fetchall()


BACKUPS = {"postgresql": back_up_postgresql, "sqlite": back_up_sqlite}


def test_a_backup_restores_the_bookings(deployment, database):
    token = book(Visitor("203.0.113.50"), deployment.ports[1], "backup@example.org")["token"]
    (head,) = deployment.rows("SELECT version_num FROM alembic_version")

    rows = BACKUPS[database](deployment, token)

    assert [tuple(row) for row in rows] == [(token, head.version_num)]


# --- db backup, in the process --------------------------------------------------------------


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[tuple[Flask, Path]]:
    """An app on a SQLite file in WAL mode, as the app keeps it, holding three bookings."""
    path = tmp_path / "live.db"
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE bookings (id INTEGER PRIMARY KEY, manage_token TEXT)")
        connection.executemany(
            "INSERT INTO bookings (manage_token) VALUES (?)", [("a",), ("b",), ("c",)]
        )
        connection.commit()
    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SECRET_KEY": "x"}
    )
    yield app, path
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize(("setting", "pragma"), [(None, 1), ("full", 2), ("NORMAL", 1)])
def test_sqlite_commits_wait_for_the_disk_only_when_told(tmp_path, monkeypatch, setting, pragma):
    if setting is None:
        monkeypatch.delenv("SQLITE_SYNCHRONOUS", raising=False)
    else:
        monkeypatch.setenv("SQLITE_SYNCHRONOUS", setting)
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}"})
    with app.app_context():
        with db.engine.connect() as connection:
            (found,) = connection.exec_driver_sql("PRAGMA synchronous").one()
        db.engine.dispose()
    assert found == pragma  # 1 is NORMAL, 2 is FULL


def test_an_unknown_sqlite_synchronous_stops_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("SQLITE_SYNCHRONOUS", "off")
    with pytest.raises(ValueError, match="SQLITE_SYNCHRONOUS must be one of normal, full"):
        config.from_environment(str(tmp_path))


def test_db_backup_copies_a_sqlite_database_while_it_is_written(sqlite_app, tmp_path):
    app, path = sqlite_app
    target = tmp_path / "copy.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO bookings (manage_token) VALUES ('uncommitted')")

        result = app.test_cli_runner().invoke(args=["db", "backup", str(target)])

        writer.execute("COMMIT")  # the writer was never in the way, nor stopped
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Backed up {path} to {target} (")
    with closing(sqlite3.connect(target)) as copy:
        tokens = [token for (token,) in copy.execute("SELECT manage_token FROM bookings")]
        journal = copy.execute("PRAGMA journal_mode").fetchone()
    assert tokens == ["a", "b", "c"]
    assert journal == ("delete",), "a single file, whatever the live database's journal"
    assert target.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".copy.db.*")), "no partial file is left"


def test_db_backup_never_overwrites_a_file(sqlite_app, tmp_path):
    app, path = sqlite_app
    target = tmp_path / "yesterday.db"
    target.write_bytes(b"yesterday's backup")

    result = app.test_cli_runner().invoke(args=["db", "backup", str(target)])

    assert result.exit_code == 1
    assert result.output == f"Error: {target} already exists; give the backup a new file name\n"
    assert target.read_bytes() == b"yesterday's backup"
    refused = app.test_cli_runner().invoke(args=["db", "backup", str(path)])
    assert refused.exit_code == 1, "least of all over the database itself"


def test_db_backup_on_postgresql_says_to_use_pg_dump(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "SECRET_KEY": "x",
        }
    )
    try:
        result = app.test_cli_runner().invoke(args=["db", "backup", str(tmp_path / "copy.db")])
    finally:
        with app.app_context():
            db.engine.dispose()

    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("Error: db backup copies a SQLite database")
    assert "use pg_dump" in result.output
    assert not (tmp_path / "copy.db").exists()


def test_the_migration_commands_are_still_in_the_db_group(sqlite_app):
    app, _ = sqlite_app

    result = app.test_cli_runner().invoke(args=["db", "--help"])

    assert result.exit_code == 0
    for command in ("upgrade", "downgrade", "current", "stamp", "backup"):
        assert re.search(rf"^  {command}\b", result.output, flags=re.MULTILINE), command


# --- The document itself --------------------------------------------------------------------


def test_the_document_explains_every_setting_the_app_reads():
    source = (ROOT / "scheduler" / "config.py").read_text()
    read = set(re.findall(r'(?:environ\.get|_number|_flag|_count|_choice)\(\s*"([A-Z_]+)"', source))
    assert {"DATABASE_URL", "SECRET_KEY", "SMTP_URL"} <= read
    readme = (ROOT / "README.md").read_text()

    for name in read:
        assert re.search(rf"`{name}`", DOC), f"docs/deploy.md does not explain {name}"
    for name in config.RATE_LIMITS:
        assert f"`{name}`" in readme, f"the README's rate limits do not explain {name}"
    assert "RATELIMIT_…_PER_…" in DOC


def test_the_readme_points_operators_here():
    readme = (ROOT / "README.md").read_text()
    deploy_section = readme.split("## Deploy it", 1)[1].split("\n## ", 1)[0]

    assert "(docs/deploy.md)" in deploy_section
