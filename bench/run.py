"""The driver: builds the data, serves the app, runs each scenario beside its baseline.

Every HTTP scenario is measured against the floor (``/bench/floor/<id>``, one row read by
primary key through the same app and server), floor and scenario taking turns ``rounds``
times; a row's ratio is the median of the per-round ratios. The other scenarios are measured
against the library they are built on (icalendar, smtplib), in turns as well.
"""

from __future__ import annotations

import json
import os
import platform
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from icalendar import Calendar, Event, vCalAddress

from bench.calendars import busy_calendar
from bench.load import Request, Run, drive, median, percentile, race
from bench.server import (
    BenchError,
    Gunicorn,
    SmtpSink,
    bench_json,
    environment,
    flask,
    rss_megabytes,
)
from bench.settings import Settings

ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 (a throwaway database's demo login)
FEED_PRACTITIONER = "sofia.rossi@example.com"  # gives cupping, the shortest treatment
IMPORT_PRACTITIONER = "james.okafor@example.com"


@dataclass
class Row:
    """One line of the table: a measure of a scenario against its baseline."""

    scenario: str
    measure: str
    unit: str
    median: float
    floor_median: float | None
    ratio: float | None
    target: str
    passed: bool
    detail: str = ""
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "measure": self.measure,
            "unit": self.unit,
            "median": self.median,
            "floor_median": self.floor_median,
            "ratio": self.ratio,
            "target": self.target,
            "pass": self.passed,
            "detail": self.detail,
            "rounds": self.rounds,
        }


def log(message: str) -> None:
    """Say what the bench is doing (on standard error, with the time)."""
    import sys

    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class Bench:
    """One run of the bench: its settings, its folder, the data and the rows measured."""

    def __init__(self, settings: Settings, work: Path) -> None:
        self.settings = settings
        self.work = work
        self.backend = "postgresql" if settings.database_url else "sqlite"
        url = settings.database_url or f"sqlite:///{work / 'bench.db'}"
        self.env = environment(url, work)
        self.url = url
        self.info: dict[str, Any] = {}
        self.rows: list[Row] = []
        self.timings: dict[str, float] = {}

    # --- data ---------------------------------------------------------------------------

    def build(self) -> None:
        """Migrate an empty database, seed it, add practitioners, import busy time."""
        s = self.settings
        started = time.perf_counter()
        reset_database(self.url)
        flask(self.env, self.work, "db", "upgrade")
        log(f"seeding {s.bookings} bookings")
        flask(
            self.env,
            self.work,
            "demo",
            "seed",
            "--bookings",
            str(s.bookings),
            "--admin-password",
            ADMIN_PASSWORD,
        )
        log(f"adding practitioners, standing bookings and {s.busy_events} busy events")
        self.info = bench_json(
            self.env,
            self.work,
            "prepare",
            "--feed-practitioner",
            FEED_PRACTITIONER,
            "--feed-events",
            str(s.feed_events),
            "--busy-events",
            str(s.busy_events),
            "--folder",
            str(self.work),
        )
        self.timings["build_seconds"] = time.perf_counter() - started

    def service(self, *, room_kind: bool = False) -> dict[str, Any]:
        """The follow-up treatment: not a first visit, any room."""
        for service in self.info["services"]:
            if not service["first_visit"] and bool(service["room_kind"]) == room_kind:
                return dict(service)
        raise BenchError("the demo clinic has no follow-up treatment")

    def floor_requests(self) -> Callable[[int], Request]:
        ids = self.info["booking_ids"]
        return lambda number: Request("GET", f"/bench/floor/{ids[number % len(ids)]}")

    # --- helpers ------------------------------------------------------------------------

    def interleave(
        self,
        server: Gunicorn,
        scenario: Callable[[int], Run],
        *,
        check: Callable[[Run], None],
    ) -> list[tuple[Run, Run]]:
        """Run the floor and then ``scenario(round)``, ``rounds`` times; return the pairs."""
        s = self.settings
        pairs = []
        for number in range(s.rounds):
            floor = drive(server.port, self.floor_requests(), clients=s.clients, seconds=s.seconds)
            expect(floor, {200}, "the floor")
            run = scenario(number)
            check(run)
            pairs.append((floor, run))
        return pairs

    def free_times(self, server: Gunicorn, service: dict[str, Any]) -> list[dict[str, Any]]:
        """Free times of ``service`` within the horizon, no two overlapping at all, so that
        booking every one of them at once needs no room twice."""
        today = date.fromisoformat(self.info["today"])
        last = today + timedelta(days=min(self.info["horizon_days"], 62))
        found: list[dict[str, Any]] = []
        for practitioner in self.info["practitioners"]:
            if service["id"] not in practitioner["services"]:
                continue
            answer = drive(
                server.port,
                iter(
                    [
                        Request(
                            "GET",
                            f"/api/v1/slots?service={service['id']}&start={today}&end={last}"
                            f"&practitioner={practitioner['id']}",
                        )
                    ]
                ),
                clients=1,
            ).answers[0]
            if answer.status != 200:
                raise BenchError(f"slots answered {answer.status}: {answer.body[:300]!r}")
            found += json.loads(answer.body)["slots"]
        chosen: list[dict[str, Any]] = []
        # The end of one slot plus a whole hour: room for any treatment's buffer.
        free_from = datetime.min.replace(tzinfo=UTC)
        for slot in sorted(found, key=lambda item: item["start"]):
            start = datetime.fromisoformat(slot["start"])
            if start >= free_from:
                chosen.append(slot)
                free_from = datetime.fromisoformat(slot["end"]) + timedelta(hours=1)
        return chosen

    def cancel(self, server: Gunicorn, tokens: list[str]) -> None:
        """Cancel bookings through the API (not timed), so their times are free again."""
        run = drive(
            server.port,
            iter([Request("POST", f"/api/v1/bookings/{token}/cancel", b"{}") for token in tokens]),
            clients=self.settings.clients,
        )
        expect(run, {200}, "cancelling")

    # --- scenarios ----------------------------------------------------------------------

    def slots(self, server: Gunicorn) -> None:
        """Four weeks of free times for one treatment, anyone."""
        service = self.service()
        today = date.fromisoformat(self.info["today"])

        def scenario(_: int) -> Run:
            def request(number: int) -> Request:
                first = today + timedelta(days=number % 7)
                last = first + timedelta(days=27)
                return Request(
                    "GET", f"/api/v1/slots?service={service['id']}&start={first}&end={last}"
                )

            return drive(
                server.port, request, clients=self.settings.clients, seconds=self.settings.seconds
            )

        pairs = self.interleave(server, scenario, check=lambda run: expect(run, {200}, "slots"))
        rounds = [round_json(floor, run) for floor, run in pairs]
        sizes = Counter(
            len(json.loads(a.body)["slots"]) for _, run in pairs for a in run.answers[:20]
        )
        detail = f"{max(sizes, default=0)} free times in four weeks"
        self.add_throughput("slots, four weeks, one treatment, anyone", pairs, 0.5, detail, rounds)
        ratios = [run.percentile(0.95) / floor.percentile(0.95) for floor, run in pairs]
        ratio = median(ratios)
        self.rows.append(
            Row(
                "slots, four weeks, one treatment, anyone",
                "p95 latency",
                "ms",
                median([run.percentile(0.95) * 1000 for _, run in pairs]),
                median([floor.percentile(0.95) * 1000 for floor, _ in pairs]),
                ratio,
                "≤ 4 × floor",
                ratio <= 4,
                detail,
                rounds,
            )
        )

    def add_throughput(
        self,
        scenario: str,
        pairs: list[tuple[Run, Run]],
        target: float,
        detail: str,
        rounds: list[dict[str, Any]],
    ) -> None:
        ratio = median([run.throughput / floor.throughput for floor, run in pairs])
        self.rows.append(
            Row(
                scenario,
                "throughput",
                "req/s",
                median([run.throughput for _, run in pairs]),
                median([floor.throughput for floor, _ in pairs]),
                ratio,
                f"≥ {target} × floor",
                ratio >= target,
                detail,
                rounds,
            )
        )

    def booking(self, server: Gunicorn) -> None:
        """Bookings through the API on free times; each round's are cancelled afterwards."""
        service = self.service()
        times = self.free_times(server, service)
        if not times:
            raise BenchError("no free times to book")

        def scenario(number: int) -> Run:
            requests = iter(
                [
                    booking_request(service, slot, f"book.{number}.{index}")
                    for index, slot in enumerate(times)
                ]
            )
            run = drive(
                server.port, requests, clients=self.settings.clients, seconds=self.settings.seconds
            )
            tokens = [json.loads(a.body)["token"] for a in run.answers if a.status == 201]
            self.cancel(server, tokens)
            return run

        pairs = self.interleave(
            server, scenario, check=lambda run: expect(run, {201}, "booking free times")
        )
        rounds = [round_json(floor, run) for floor, run in pairs]
        booked = median([run.count for _, run in pairs])
        detail = f"{booked:.0f} bookings a round (of {len(times)} free times), then cancelled"
        self.add_throughput("booking through the API on free times", pairs, 0.4, detail, rounds)

    def race(self, server: Gunicorn) -> None:
        """``racers`` clients ask for the same time at once: one wins, the rest hear 409."""
        s = self.settings
        service = self.service()
        times = self.free_times(server, service)
        if len(times) < s.rounds:
            raise BenchError(f"only {len(times)} free times for {s.rounds} races")
        rounds: list[dict[str, Any]] = []
        latencies: list[float] = []
        fair = True
        for number, slot in enumerate(times[: s.rounds]):
            requests = [
                booking_request(service, slot, f"race.{number}.{index}")
                for index in range(s.racers)
            ]
            run = race(server.port, requests)
            statuses = run.statuses
            won = [json.loads(a.body)["token"] for a in run.answers if a.status == 201]
            self.cancel(server, won)
            fair = fair and statuses == Counter({201: 1, 409: s.racers - 1})
            latencies += [a.seconds for a in run.answers]
            rounds.append(
                {
                    "statuses": dict(statuses),
                    "p99_ms": run.percentile(0.99) * 1000,
                    "max_ms": max(a.seconds for a in run.answers) * 1000,
                }
            )
        p99 = percentile(latencies, 0.99)
        self.rows.append(
            Row(
                f"{s.racers} clients racing for one time",
                "p99 latency",
                "ms",
                p99 * 1000,
                None,
                None,
                f"one 201, {s.racers - 1} × 409, no 5xx, p99 < 1 s",
                fair and p99 < 1.0,
                "; ".join(
                    " ".join(f"{code}×{n}" for code, n in sorted(r["statuses"].items()))
                    for r in rounds
                ),
                rounds,
            )
        )

    def feed(self, server: Gunicorn) -> None:
        """A practitioner's feed against icalendar serialising the same events; then 304s."""
        s = self.settings
        owner = max(self.info["practitioners"], key=lambda p: p["feed_events"])
        path = f"/feeds/{owner['feed_token']}.ics"
        first = fetch(server, Request("GET", path))
        if first.status != 200:
            raise BenchError(f"the feed answered {first.status}")
        inputs = feed_inputs(first.body)
        baseline_body = serialise_feed(inputs)
        rounds: list[dict[str, Any]] = []
        for _ in range(s.rounds):
            served = []
            for _ in range(3):
                answer = fetch(server, Request("GET", path))
                if answer.status != 200 or len(answer.body) != len(first.body):
                    raise BenchError(f"the feed changed or failed ({answer.status})")
                served.append(answer.seconds)
            built = []
            for _ in range(3):
                started = time.perf_counter()
                serialise_feed(inputs)
                built.append(time.perf_counter() - started)
            rounds.append({"feed_seconds": median(served), "icalendar_seconds": median(built)})
        ratio = median([r["feed_seconds"] / r["icalendar_seconds"] for r in rounds])
        events = len(inputs["events"])
        scenario = f"a practitioner's feed, 12 months ({events} events)"
        self.rows.append(
            Row(
                scenario,
                "time",
                "ms",
                median([r["feed_seconds"] * 1000 for r in rounds]),
                median([r["icalendar_seconds"] * 1000 for r in rounds]),
                ratio,
                "≤ 1.3 × icalendar's serialisation",
                ratio <= 1.3,
                f"{len(first.body)} bytes served, {len(baseline_body)} by icalendar alone",
                rounds,
            )
        )
        etag = first.headers.get("ETag", "")
        conditional = Request("GET", path, headers=(("If-None-Match", etag),))
        pairs = self.interleave(
            server,
            lambda _: drive(
                server.port, lambda _: conditional, clients=s.clients, seconds=s.seconds
            ),
            check=lambda run: expect(run, {304}, "the feed with its ETag"),
        )
        self.add_throughput(
            "a practitioner's feed, repeated with its ETag (304)",
            pairs,
            0.9,
            "",
            [round_json(floor, run) for floor, run in pairs],
        )

    def import_file(self) -> None:
        """`calendar import` of a large file against icalendar's parse of it."""
        s = self.settings
        today = date.fromisoformat(self.info["today"])
        path = busy_calendar(
            self.work / "import.ics",
            name="Imported diary",
            uid_prefix="bench-import-",
            count=s.import_events,
            first=today - timedelta(days=30),
            days=730,
            seed=99,
        )
        result = bench_json(
            self.env,
            self.work,
            "time-import",
            str(path),
            "--practitioner",
            IMPORT_PRACTITIONER,
            "--rounds",
            str(s.batch_rounds),
        )
        rounds = result["rounds"]
        ratio = median([r["import_seconds"] / r["parse_seconds"] for r in rounds])
        scenario = f"import of a {s.import_events:,}-event file"
        size = f"{path.stat().st_size / 1e6:.1f} MB file"
        self.rows.append(
            Row(
                scenario,
                "time",
                "s",
                median([r["import_seconds"] for r in rounds]),
                median([r["parse_seconds"] for r in rounds]),
                ratio,
                "≤ 1.5 × icalendar's parse",
                ratio <= 1.5,
                size,
                rounds,
            )
        )
        peak_ratio = result["import_peak"] / result["parse_peak"]
        self.rows.append(
            Row(
                scenario,
                "peak memory",
                "MB",
                result["import_peak"] / 1e6,
                result["parse_peak"] / 1e6,
                peak_ratio,
                "≤ 2 × the parse alone",
                peak_ratio <= 2,
                "Python allocations (tracemalloc), file read included in both",
            )
        )

    def dispatch(self) -> None:
        """`notifications run --once` on due messages against smtplib over one connection."""
        s = self.settings
        dump = self.work / "mail-dump.jsonl"
        dump.unlink(missing_ok=True)
        with SmtpSink(self.env, self.work, dump) as sink:
            env = {**self.env, "SMTP_URL": f"smtp://127.0.0.1:{sink.port}"}
            result = bench_json(
                env,
                self.work,
                "time-dispatch",
                "--count",
                str(s.notifications),
                "--rounds",
                str(s.batch_rounds),
                "--port",
                str(sink.port),
                "--dump",
                str(dump),
            )
        rounds = result["rounds"]
        sent = rounds[0]["messages"]
        ratio = median([r["dispatch_seconds"] / r["smtplib_seconds"] for r in rounds])
        self.rows.append(
            Row(
                f"dispatching {sent:,} due notifications",
                "time",
                "s",
                median([r["dispatch_seconds"] for r in rounds]),
                median([r["smtplib_seconds"] for r in rounds]),
                ratio,
                "≤ 1.5 × smtplib, one connection",
                ratio <= 1.5 and sent == s.notifications,
                f"{sent} sent a round (asked for {s.notifications})",
                rounds,
            )
        )

    def rss(self) -> None:
        """One fresh worker serves ``mixed_requests`` mixed requests; its RSS is read as it goes."""
        s = self.settings
        with Gunicorn(self.env, self.work, workers=1) as server:
            (pid,) = server.worker_pids()
            mixed = self.mixed(server)
            samples = [{"requests": 0, "rss_mb": rss_megabytes(pid)}]
            statuses: Counter[int] = Counter()
            unexpected = 0
            chunk = max(1, s.mixed_requests // 10)
            done = 0
            while done < s.mixed_requests:
                size = min(chunk, s.mixed_requests - done)
                offset = done
                run = drive(
                    server.port,
                    lambda number: mixed(offset + number),  # noqa: B023 (drive returns first)
                    clients=s.clients,
                    total=size,
                )
                statuses.update(run.statuses)
                unexpected += sum(1 for a in run.answers if a.unexpected)
                done += size
                samples.append({"requests": done, "rss_mb": rss_megabytes(pid)})
                log(f"  {done} requests: worker RSS {samples[-1]['rss_mb']:.1f} MB")
            errors = server.errors()
        final = samples[-1]["rss_mb"]
        half = min(samples, key=lambda item: abs(item["requests"] - s.mixed_requests / 2))
        growth = final - half["rss_mb"]
        allowed = max(2.0, 0.02 * final)
        self.rows.append(
            Row(
                f"a worker after {s.mixed_requests:,} mixed requests",
                "RSS",
                "MB",
                final,
                None,
                growth,
                f"≤ 150 MB; second half grows ≤ {allowed:.1f} MB",
                final <= 150 and growth <= allowed and not unexpected and not errors,
                f"{samples[0]['rss_mb']:.0f} MB at start, {half['rss_mb']:.1f} MB at"
                f" {half['requests']}; {unexpected} unexpected answers; statuses "
                + " ".join(f"{code}×{n}" for code, n in sorted(statuses.items())),
                samples,
            )
        )

    def mixed(self, server: Gunicorn) -> Callable[[int], Request]:
        """The mix a worker serves, by share of requests: free times 30 %, the floor 10 %,
        services and practitioners 8 % each, a booking as JSON 10 % and its page 8 %, the
        front page 8 %, the booking page 4 %, a feed poll answered 304 9 % and in full 0.2 %,
        and bookings 4.8 % (on free times of practitioners other than the feed's, so the feed
        stays unchanged; once taken, a time is answered 409 with alternatives)."""
        today = date.fromisoformat(self.info["today"])
        services = [svc for svc in self.info["services"] if not svc["first_visit"]]
        practitioners = self.info["practitioners"]
        tokens = self.info["tokens"]
        owner = max(practitioners, key=lambda p: p["feed_events"])
        feed = f"/feeds/{owner['feed_token']}.ics"
        etag = fetch(server, Request("GET", feed)).headers.get("ETag", "")
        follow_up = self.service()
        times = [
            slot
            for slot in self.free_times(server, follow_up)
            if slot["practitioner"] != owner["id"]
        ]
        floor = self.floor_requests()
        ok = frozenset({200})

        def request(number: int) -> Request:
            rng = random.Random(number)
            roll = rng.random()
            if roll < 0.30:
                service = rng.choice(services)
                first = today + timedelta(days=rng.randrange(14))
                last = first + timedelta(days=rng.randrange(6, 28))
                who = rng.choice([None, *[p["id"] for p in practitioners]])
                extra = f"&practitioner={who}" if who else ""
                path = f"/api/v1/slots?service={service['id']}&start={first}&end={last}{extra}"
                return Request("GET", path, expect=ok)
            if roll < 0.40:
                return replace(floor(number), expect=ok)
            if roll < 0.48:
                return Request("GET", "/api/v1/services", expect=ok)
            if roll < 0.56:
                return Request("GET", "/api/v1/practitioners", expect=ok)
            if roll < 0.66:
                return Request("GET", f"/api/v1/bookings/{rng.choice(tokens)}", expect=ok)
            if roll < 0.74:
                return Request("GET", f"/b/{rng.choice(tokens)}", expect=ok)
            if roll < 0.82:
                return Request("GET", "/", expect=ok)
            if roll < 0.86:
                return Request("GET", f"/book?service={follow_up['id']}", expect=ok)
            if roll < 0.95:
                conditional = (("If-None-Match", etag),)
                return Request("GET", feed, headers=conditional, expect=frozenset({304}))
            if roll < 0.952:  # a whole feed is the biggest answer, and the slowest by far
                return Request("GET", feed, expect=ok)
            if not times:
                return replace(floor(number), expect=ok)
            slot = times[number % len(times)]
            booking = booking_request(follow_up, slot, f"mixed.{number}")
            return replace(booking, expect=frozenset({201, 409}))

        return request


def booking_request(service: dict[str, Any], slot: dict[str, Any], who: str) -> Request:
    """``POST /api/v1/bookings`` for ``slot`` with its practitioner, as a new patient."""
    body = {
        "service": service["id"],
        "practitioner": slot["practitioner"],
        "start": slot["start"],
        "patient": {
            "name": f"Bench Patient {who}",
            "email": f"bench.{who}@example.net",
            "phone": "07700 900123",
        },
        "notes": "",
    }
    return Request("POST", "/api/v1/bookings", json.dumps(body).encode())


def fetch(server: Gunicorn, request: Request) -> Any:
    """Send one request and return its answer."""
    return drive(server.port, iter([request]), clients=1).answers[0]


def expect(run: Run, statuses: set[int], what: str) -> None:
    """Fail unless every answer of ``run`` has one of ``statuses``."""
    wrong = [a for a in run.answers if a.status not in statuses]
    if wrong or not run.answers:
        sample = wrong[0].body[:300] if wrong else b"no answers"
        raise BenchError(
            f"{what}: {len(wrong)} of {run.count} answers not {sorted(statuses)}:"
            f" {dict(run.statuses)}; first: {sample!r}"
        )


def round_json(floor: Run, run: Run) -> dict[str, Any]:
    """One round's numbers, for results.json."""
    return {
        "floor_rps": floor.throughput,
        "rps": run.throughput,
        "floor_p95_ms": floor.percentile(0.95) * 1000,
        "p95_ms": run.percentile(0.95) * 1000,
        "floor_requests": floor.count,
        "requests": run.count,
    }


def feed_inputs(body: bytes) -> dict[str, Any]:
    """The values of a served feed, as an app would hold them before serialising them."""
    calendar = Calendar.from_ical(body)
    events = []
    for event in calendar.walk("VEVENT"):
        organizer = event["ORGANIZER"]
        events.append(
            {
                "uid": str(event["UID"]),
                "sequence": int(str(event["SEQUENCE"])),
                "dtstamp": event.decoded("DTSTAMP"),
                "dtstart": event.decoded("DTSTART"),
                "dtend": event.decoded("DTEND"),
                "summary": str(event["SUMMARY"]),
                "location": str(event["LOCATION"]),
                "description": str(event["DESCRIPTION"]),
                "url": str(event["URL"]),
                "last-modified": event.decoded("LAST-MODIFIED"),
                "organizer": (str(organizer), dict(organizer.params)),
                "status": str(event["STATUS"]),
                "transp": str(event["TRANSP"]),
            }
        )
    return {
        "calendar": {
            key: str(calendar[key])
            for key in ("PRODID", "VERSION", "CALSCALE", "METHOD", "X-WR-CALNAME", "X-WR-TIMEZONE")
        },
        "timezone": calendar.walk("VTIMEZONE")[0],
        "events": events,
    }


def serialise_feed(inputs: dict[str, Any]) -> bytes:
    """icalendar alone: build the same calendar from plain values and serialise it."""
    calendar = Calendar()
    for key, value in inputs["calendar"].items():
        calendar.add(key, value)
    calendar.add_component(inputs["timezone"])
    for values in inputs["events"]:
        event = Event()
        for key, value in values.items():
            if key == "organizer":
                address = vCalAddress(value[0])
                address.params.update(value[1])
                event.add("organizer", address)
            else:
                event.add(key, value)
        calendar.add_component(event)
    return calendar.to_ical()


def reset_database(url: str) -> None:
    """Start from nothing: a new SQLite file, or an emptied PostgreSQL schema."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
        return
    from sqlalchemy import create_engine, text

    from scheduler.config import database_url

    engine = create_engine(database_url(url, ""))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@contextmanager
def work_folder(settings: Settings) -> Iterator[Path]:
    """The folder for the database, files and logs: the one given, or a temporary one."""
    if settings.work is not None:
        settings.work.mkdir(parents=True, exist_ok=True)
        yield settings.work
        return
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        yield Path(folder)


def format_number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "req/s":
        return f"{value:.0f}/s"
    return f"{value:.2f}"


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table: scenario, median, floor median, ratio, target, pass."""
    header = ("scenario", "median", "floor median", "ratio", "target", "pass")
    lines = [
        (
            f"{row.scenario}: {row.measure}",
            format_number(row.median, row.unit),
            format_number(row.floor_median, row.unit),
            format_number(row.ratio, "MB" if row.measure == "RSS" else ""),
            row.target,
            "pass" if row.passed else "FAIL",
        )
        for row in rows
    ]
    widths = [max(len(str(cells[i])) for cells in [header, *lines]) for i in range(6)]

    def show(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([show(header), rule, *(show(cells) for cells in lines)])


def results_of(
    bench: Bench,
    started: datetime,
    load_before: tuple[float, float, float],
    failures: dict[str, str],
) -> dict[str, Any]:
    """What results.json holds: settings, machine, data, every row, what failed."""
    practitioners = bench.info.get("practitioners", [])
    return {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "backend": bench.backend,
        "settings": bench.settings.public(),
        "machine": {
            "cpus": os.cpu_count(),
            "load_before": list(load_before),
            "load_now": list(os.getloadavg()),
            "python": platform.python_version(),
        },
        "data": {
            key: bench.info.get(key)
            for key in ("bookings", "future_live", "external_events", "today")
        }
        | {
            "practitioners": len(practitioners),
            "feed_events": {p["email"]: p["feed_events"] for p in practitioners},
        },
        "timings": bench.timings,
        "rows": [row.as_json() for row in bench.rows],
        "failures": failures,
        "passed": bool(bench.rows) and not failures and all(r.passed for r in bench.rows),
    }


def run_bench(settings: Settings) -> dict[str, Any]:
    """Run every chosen scenario; print the table; write and return the results.

    The results file is rewritten after each scenario, so a long run that is stopped still
    leaves what it measured.
    """
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    failures: dict[str, str] = {}
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    with work_folder(settings) as work:
        bench = Bench(settings, work)

        def attempt(name: str, step: Callable[[], None]) -> None:
            log(f"scenario: {name}")
            before = len(bench.rows)
            try:
                step()
            except BenchError as exc:
                failures[name] = str(exc)
                log(f"{name} did not finish: {exc}")
            for row in bench.rows[before:]:
                log(
                    f"  {row.scenario}: {row.measure} {format_number(row.median, row.unit)}"
                    f" against {format_number(row.floor_median, row.unit)}, ratio"
                    f" {format_number(row.ratio)}, {'pass' if row.passed else 'FAIL'}"
                )
            results = results_of(bench, started, load_before, failures)
            settings.output.write_text(json.dumps(results, indent=2) + "\n")

        log(f"building the {bench.backend} database in {work}")
        bench.build()
        chosen = settings.scenarios
        http = [name for name in ("slots", "booking", "race", "feed") if name in chosen]
        if http:
            log(f"serving the app with {settings.workers} workers")
            with Gunicorn(bench.env, work, settings.workers) as server:
                for scenario in http:
                    attempt(scenario, partial(getattr(bench, scenario), server))
                errors = server.errors()
                if errors:
                    failures["server"] = "\n".join(errors[:20])
        for later, step in (
            ("import", bench.import_file),
            ("dispatch", bench.dispatch),
            ("rss", bench.rss),
        ):
            if later in chosen:
                attempt(later, step)
        results = results_of(bench, started, load_before, failures)
    settings.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(bench.rows))
    for name, message in failures.items():
        print(f"\n{name}: did not finish: {message}")
    print(f"\n{bench.backend}; results in {settings.output}")
    return results
