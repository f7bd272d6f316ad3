"""Real processes for the tests: the app under gunicorn, dispatchers and CLI commands.

Each runs on a scratch database of its own (a SQLite file, or a PostgreSQL database created
beside the suite's), listens on a port the system picks, and writes its output to files that
:meth:`Processes.report` puts into assertion messages. :func:`processes` stops every process
it started however the test ends; :func:`scratch_sqlite` and :func:`scratch_postgres` drop
their databases the same way.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from scheduler.db import configure_engine

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the virtualenv's bin/, with flask and gunicorn
SECRET_KEY = "processes-test-secret"
BASE_URL = "https://clinic.test"
# Slow machines (two cores shared by several test runs) take seconds to import the app.
START_SECONDS = 120.0
STOP_SECONDS = 20.0
# The prefixes of the app's settings (scheduler/config.py) and Flask's own.
SETTINGS = (
    "FLASK_",
    "DATABASE_URL",
    "SECRET_KEY",
    "BASE_URL",
    "MAIL_",
    "SMTP_",
    "WEBHOOK_",
    "HEALTH_",
    "RATELIMIT_",
    "PROXY_FIX_",
    "CALENDAR_",
    "DISPATCHER_",
)
# What a dispatcher says once it is in its loop, with the name it claims messages under.
RUNNING = r"Dispatcher (\S+) running"

# Read by gunicorn through -c: it says when each worker has loaded the app and can serve, uses
# no control socket (its default path is shared by every gunicorn of the user) and stops fast.
GUNICORN_CONFIG = """\
control_socket_disable = True
graceful_timeout = 5


def post_worker_init(worker):
    worker.log.info("Worker ready (pid: %s)", worker.pid)
"""


@dataclass(frozen=True)
class Database:
    """A scratch database: ``backend`` is ``"sqlite"`` or ``"postgresql"``."""

    backend: str
    url: str  # a SQLAlchemy URL, as DATABASE_URL takes it

    @contextmanager
    def engine(self) -> Iterator[Engine]:
        """An engine on this database for the test's own queries, disposed of afterwards."""
        engine = create_engine(self.url)
        configure_engine(engine)  # on SQLite: a busy timeout, and BEGIN IMMEDIATE for writes
        try:
            yield engine
        finally:
            engine.dispose()


@contextmanager
def scratch_sqlite(path: Path, template: Database | None = None) -> Iterator[Database]:
    """A SQLite database at ``path``: empty, or a copy of ``template``; deleted afterwards."""
    _remove_sqlite(path)
    if template is not None:
        source_path = make_url(template.url).database
        assert source_path, template.url
        with (
            closing(sqlite3.connect(source_path)) as source,
            closing(sqlite3.connect(path)) as target,
        ):
            source.backup(target)
    try:
        yield Database("sqlite", f"sqlite:///{path}")
    finally:
        _remove_sqlite(path)


def _remove_sqlite(path: Path) -> None:
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)


@contextmanager
def scratch_postgres(
    suite_url: str, name: str, template: Database | None = None
) -> Iterator[Database]:
    """A PostgreSQL database ``name`` on the suite's server: empty, or a copy of
    ``template``; dropped afterwards, with anything still connected to it."""
    url = make_url(suite_url)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        source = make_url(template.url).database
        assert source, template.url
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(source)
        )
    with psycopg.connect(admin, autocommit=True) as connection:
        _drop_postgres(connection, name)
        connection.execute(create)
    try:
        yield Database("postgresql", url.set(database=name).render_as_string(hide_password=False))
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            _drop_postgres(connection, name)


def _drop_postgres(connection: psycopg.Connection[Any], name: str) -> None:
    # A process killed with SIGKILL may leave its session behind for a moment.
    connection.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )
    connection.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


class Process:
    """One started process; its output goes to files in the test's folder."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        folder: Path,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.args = args
        self.stop_signal = stop_signal
        self.stdout_path = folder / f"{name}.out"
        self.stderr_path = folder / f"{name}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            # Its own session, so that a Ctrl+C on pytest does not reach it, and so that
            # stop() can reach gunicorn's workers through the process group.
            self.popen = subprocess.Popen(  # noqa: S603 (fixed commands this module builds)
                args,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stderr(self) -> str:
        """Everything the process wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def output(self, limit: int = 6000) -> str:
        """The end of its stdout and stderr, for an assertion message."""
        code = self.popen.poll()
        state = "running" if code is None else f"exited with {code}"
        parts = [f"--- {self.name} (pid {self.pid}, {state}): {' '.join(self.args[-6:])}"]
        for path in (self.stdout_path, self.stderr_path):
            text = path.read_text(errors="replace")
            if text.strip():
                clipped = text if len(text) <= limit else "…" + text[-limit:]
                parts.append(f"[{path.name}]\n{clipped.rstrip()}")
        return "\n".join(parts)

    def wait_for(self, pattern: str, *, count: int = 1, timeout: float = START_SECONDS) -> str:
        """Wait until stderr matches ``pattern`` ``count`` times; return the first match."""
        deadline = time.monotonic() + timeout
        while True:
            matches = re.findall(pattern, self.stderr())
            if len(matches) >= count:
                return str(matches[0])
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited before {pattern!r}\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {pattern!r} in {timeout} s\n{self.output()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL it, as the kernel's OOM killer or a pulled plug would, and reap it."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=STOP_SECONDS)

    def stop(self) -> int:
        """Ask it to stop; SIGKILL what is left after a while. Return its exit code."""
        return stop_together(self)[0]

    def wait_stopped(self) -> int:
        """Wait for it to exit, SIGKILL it if it takes too long, and return its code."""
        if self.popen.poll() is None:
            try:
                self.popen.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                # Its whole group (gunicorn's workers too): not yet reaped, the leader keeps
                # the group's id ours.
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=STOP_SECONDS)
        return self.popen.returncode


@dataclass
class Server:
    """The app served by gunicorn on loopback."""

    process: Process
    port: int

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send one request on a connection of its own; return the status and the JSON."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            payload = None if body is None else json.dumps(body)
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = raw.decode(errors="replace")
        return response.status, answer


class Processes:
    """Starts the project's processes on one database and keeps track of them."""

    def __init__(self, folder: Path, database: Database) -> None:
        self.folder = folder
        self.database = database
        self.started: list[Process] = []
        folder.mkdir(parents=True, exist_ok=True)

    def environment(self, **settings: str) -> dict[str, str]:
        """The environment of a process: this database, no SMTP, no rate limits, no .env,
        and none of the app's settings the test run itself may have."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(SETTINGS)}
        env.update(
            DATABASE_URL=self.database.url,
            SECRET_KEY=SECRET_KEY,
            BASE_URL=BASE_URL,
            # Set, even when empty, so that no .env file can fill them in.
            SMTP_URL="",
            MAIL_FROM="clinic@clinic.test",
            MAIL_FOLDER=str(self.folder / "mail"),
            RATELIMIT_ENABLED="false",
            FLASK_SKIP_DOTENV="1",
            PYTHONUNBUFFERED="1",
        )
        env.update(settings)
        return env

    def start(
        self, name: str, args: list[str], stop_signal: int = signal.SIGTERM, **settings: str
    ) -> Process:
        """Start ``args`` in the project's folder; ``stop_signal`` is how to stop it."""
        unique = name
        taken = {process.name for process in self.started}
        number = 1
        while unique in taken:
            number += 1
            unique = f"{name}-{number}"
        process = Process(unique, args, self.environment(**settings), self.folder, stop_signal)
        self.started.append(process)
        return process

    def flask(self, name: str, *args: str, **settings: str) -> Process:
        """Start ``flask --app scheduler ARGS``."""
        return self.start(name, [str(BIN / "flask"), "--app", "scheduler", *args], **settings)

    def command(self, *args: str, timeout: float = START_SECONDS) -> str:
        """Run ``flask --app scheduler ARGS`` to its end; return its stdout, or fail."""
        process = self.flask(args[0], *args)
        try:
            code = process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.stop()
            raise AssertionError(
                f"flask {' '.join(args)} took too long\n{process.output()}"
            ) from None
        assert code == 0, f"flask {' '.join(args)} failed\n{process.output()}"
        return process.stdout_path.read_text()

    def gunicorn(self, workers: int = 4) -> Server:
        """Serve ``wsgi:app`` with ``workers`` workers; return once every one can serve."""
        config = self.folder / "gunicorn.conf.py"
        config.write_text(GUNICORN_CONFIG)
        process = self.start(
            "gunicorn",
            [
                str(BIN / "gunicorn"),
                "-c",
                str(config),
                "-w",
                str(workers),
                "-b",
                "127.0.0.1:0",  # the system picks a free port, and gunicorn says which
                "wsgi:app",
            ],
            stop_signal=signal.SIGINT,  # its quick shutdown: nothing is left to finish
        )
        port = int(process.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)"))
        process.wait_for(r"Worker ready", count=workers)
        return Server(process, port)

    def dispatcher(self, name: str, *options: str, **settings: str) -> Process:
        """Start ``notifications run OPTIONS``; ``process.wait_for(RUNNING)`` waits until it
        is in its loop and returns the name it claims messages under."""
        return self.flask(name, "notifications", "run", *options, **settings)

    def report(self) -> str:
        """The output of every process started, for an assertion message."""
        return "\n".join(process.output() for process in self.started)

    def stop_all(self) -> None:
        """Stop every process still running (SIGKILL for those that do not listen)."""
        stop_together(*self.started)


def stop_together(*started: Process) -> list[int]:
    """Ask every one to stop at once, then wait for each; return their exit codes."""
    for process in started:
        if process.popen.poll() is None:
            process.popen.send_signal(process.stop_signal)
    return [process.wait_stopped() for process in started]


@contextmanager
def processes(folder: Path, database: Database) -> Iterator[Processes]:
    """Start processes on ``database``; every one is stopped when the block ends."""
    started = Processes(folder, database)
    try:
        yield started
    finally:
        started.stop_all()


def wait_until(
    condition: Callable[[], bool], *, timeout: float, what: str, report: Callable[[], str]
) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` and ``report()`` if it does not."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s\n{report()}")
        time.sleep(0.05)
