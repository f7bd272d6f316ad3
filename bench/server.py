"""Processes the bench starts: the app under gunicorn, the SMTP sink, ``flask`` commands."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START_SECONDS = 180.0

# Read by gunicorn through -c: say when each worker has loaded the app, use no control socket
# (its default path is shared by every gunicorn of the user) and stop fast.
GUNICORN_CONFIG = """\
control_socket_disable = True
graceful_timeout = 5


def post_worker_init(worker):
    worker.log.info("Worker ready (pid: %s)", worker.pid)
"""


class BenchError(RuntimeError):
    """Something the bench needs went wrong; the message says what."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def flask(
    env: dict[str, str], work: Path, *args: str, app: str = "scheduler", check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``flask --app APP ARGS`` and return it; fail with its output when it fails."""
    command = [str(BIN / "flask"), "--app", app, *args]
    done = subprocess.run(  # noqa: S603 (our own executable, no shell)
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    with (work / "commands.log").open("a") as log:
        log.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
    if check and done.returncode != 0:
        raise BenchError(
            f"`flask --app {app} {' '.join(args)}` failed ({done.returncode}):\n"
            f"{done.stdout}{done.stderr}"
        )
    return done


def bench_json(env: dict[str, str], work: Path, *args: str) -> Any:
    """Run a ``flask --app bench.app bench …`` command and return the JSON of its last line."""
    done = flask(env, work, "bench", *args, app="bench.app")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if not lines:
        raise BenchError(f"`bench {' '.join(args)}` printed nothing:\n{done.stderr}")
    return json.loads(lines[-1])


class Gunicorn:
    """The bench app under gunicorn on loopback, with a fixed number of sync workers."""

    def __init__(self, env: dict[str, str], work: Path, workers: int) -> None:
        self.env = env
        self.work = work
        self.workers = workers
        self.port = free_port()
        self.log = work / f"gunicorn-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gunicorn:
        config = self.work / "gunicorn.conf.py"
        config.write_text(GUNICORN_CONFIG)
        command = [
            str(BIN / "gunicorn"),
            "-c",
            str(config),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--timeout",
            "90",
            "--log-level",
            "info",
            "--error-logfile",
            str(self.log),
            "bench.app:create_app()",
        ]
        self.process = subprocess.Popen(  # noqa: S603 (our own executable, no shell)
            command, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn stopped at start:\n{_tail(self.log)}")
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            if text.count("Worker ready") >= self.workers:
                return self
            time.sleep(0.2)
        self.stop()
        raise BenchError(f"gunicorn's workers were not ready in {START_SECONDS:.0f} s")

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop gunicorn (and so its workers), killing it if it does not stop in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def worker_pids(self) -> list[int]:
        """The pids of the workers, from the master's children."""
        assert self.process is not None
        master = self.process.pid
        children = Path(f"/proc/{master}/task/{master}/children")
        return [int(pid) for pid in children.read_text().split()]

    def errors(self) -> list[str]:
        """Tracebacks and errors gunicorn logged (none is expected)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [
            line
            for line in text.splitlines()
            if "Traceback" in line or "[ERROR]" in line or "WORKER TIMEOUT" in line
        ]


def rss_megabytes(pid: int) -> float:
    """The resident set size of process ``pid`` in MB (from ``/proc``; Linux only)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


class SmtpSink:
    """An SMTP server (aiosmtpd) in a process of its own that accepts mail (bench/smtp_sink.py).

    Its own process, so that neither the dispatcher nor smtplib shares an interpreter with it.
    """

    def __init__(self, env: dict[str, str], work: Path, dump: Path) -> None:
        self.env = env
        self.port = free_port()
        self.dump = dump
        self.log = work / "smtp-sink.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SmtpSink:
        command = [
            sys.executable,
            "-m",
            "bench.smtp_sink",
            str(self.port),
            str(self.dump),
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own interpreter, no shell)
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the SMTP sink stopped at start:\n{_tail(self.log)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise BenchError("the SMTP sink did not start")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def environment(database_url: str, work: Path) -> dict[str, str]:
    """The environment of every process the bench starts: its database, no rate limits."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLASK_", "DATABASE_URL", "SMTP_", "MAIL_", "RATELIMIT_"))
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "bench-secret-key",
            "BASE_URL": "http://127.0.0.1:5000",
            "MAIL_FOLDER": str(work / "mail"),
            "RATELIMIT_ENABLED": "false",
            "PYTHONPATH": str(ROOT),
            # The app's own settings only: a .env in the checkout must not point it elsewhere.
            "FLASK_SKIP_DOTENV": "1",
        }
    )
    return env
