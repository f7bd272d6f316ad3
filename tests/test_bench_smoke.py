"""A smoke run of the benchmarks (``make bench``) on tiny data, so that the harness cannot rot.

It checks that every scenario ran and reported, in the table and in the results file, and
never whether a target was met: timings are not assertions in this suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from bench.settings import SCENARIOS
from tests.processes import ROOT, scratch_postgres

TINY = {
    "BENCH_BOOKINGS": "300",
    "BENCH_BUSY_EVENTS": "50",
    "BENCH_FEED_EVENTS": "60",
    "BENCH_IMPORT_EVENTS": "100",
    "BENCH_NOTIFICATIONS": "20",
    "BENCH_MIXED_REQUESTS": "60",
    "BENCH_RACERS": "6",
    "BENCH_ROUNDS": "2",
    "BENCH_BATCH_ROUNDS": "2",
    "BENCH_SECONDS": "0.2",
    "BENCH_WORKERS": "2",
    "BENCH_CLIENTS": "2",
}
HEADER = ["scenario", "median", "floor median", "ratio", "target", "pass"]
# One row per measure: slots (throughput, p95), booking, race, feed (time, 304), import
# (time, memory), dispatch, worker memory.
MEASURES = [
    ("slots", "throughput"),
    ("slots", "p95 latency"),
    ("booking", "throughput"),
    ("racing", "p99 latency"),
    ("feed, 12 months", "time"),
    ("ETag (304)", "throughput"),
    ("import", "time"),
    ("import", "peak memory"),
    ("dispatching", "time"),
    ("mixed requests", "RSS"),
]


def run_bench(
    tmp_path: Path, database_url: str | None
) -> tuple[subprocess.CompletedProcess[str], Path]:
    output = tmp_path / "results.json"
    env = {key: value for key, value in os.environ.items() if not key.startswith("BENCH_")}
    env.update(TINY)
    env.update({"BENCH_WORK": str(tmp_path / "work"), "BENCH_OUTPUT": str(output)})
    if database_url:
        env["BENCH_DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-m", "bench"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return done, output


def test_make_bench_runs_every_scenario_on_tiny_data(tmp_path: Path) -> None:
    suite_url = os.environ.get("TEST_DATABASE_URL")
    if suite_url:
        name = f"{make_url(suite_url).database}_bench_smoke"
        with scratch_postgres(suite_url, name) as database:
            done, output = run_bench(tmp_path, database.url)
    else:
        done, output = run_bench(tmp_path, None)
    report = f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
    assert done.returncode == 0, report

    lines = [line for line in done.stdout.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert cells[0] == HEADER, report
    rows = cells[2:]
    assert len(rows) == len(MEASURES), report
    for row, (scenario, measure) in zip(rows, MEASURES, strict=True):
        assert scenario in row[0], report
        assert row[0].endswith(measure), report
        assert row[5] in ("pass", "FAIL"), report

    results = json.loads(output.read_text())
    expected_backend = "postgresql" if suite_url else "sqlite"
    assert results["backend"] == expected_backend
    assert results["failures"] == {}
    assert results["settings"]["rounds"] == 2
    assert results["settings"]["scenarios"] == list(SCENARIOS)
    assert isinstance(results["passed"], bool)
    assert results["data"]["bookings"] >= 300
    assert results["data"]["practitioners"] == 5
    assert results["data"]["external_events"] == 50
    assert len(results["rows"]) == len(MEASURES)
    for row in results["rows"]:
        assert set(row) >= {"scenario", "measure", "unit", "median", "floor_median", "ratio"}
        assert set(row) >= {"target", "pass", "detail", "rounds"}
        assert isinstance(row["median"], int | float)
        assert row["median"] > 0
        assert isinstance(row["pass"], bool)
    by_measure = {(row["scenario"], row["measure"]): row for row in results["rows"]}
    race = next(row for (name, _), row in by_measure.items() if "racing" in name)
    assert [r["statuses"] for r in race["rounds"]] == [{"201": 1, "409": 5}] * 2
    dispatch = next(row for (name, _), row in by_measure.items() if "dispatching" in name)
    assert all(r["messages"] == 20 for r in dispatch["rounds"])
