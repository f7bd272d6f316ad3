"""``python -m bench``: run the benchmarks (``make bench``); ``--help`` lists the knobs."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from bench.run import run_bench
from bench.settings import SCENARIOS, Settings

HELP = {
    "bookings": "bookings the demo seed adds",
    "busy_events": "busy events imported over two years, shared by the practitioners",
    "feed_events": "events wanted in one practitioner's 12-month feed",
    "import_events": "events in the imported file",
    "notifications": "due messages dispatched",
    "mixed_requests": "requests one worker serves before its memory is read",
    "racers": "clients racing for one time",
    "rounds": "times the floor and each scenario take turns",
    "batch_rounds": "rounds of the import and of the dispatch, each against its library",
    "seconds": "length of each timed HTTP run",
    "workers": "gunicorn sync workers",
    "clients": "concurrent clients of the load generator",
    "database_url": "a PostgreSQL database to empty and use (default: SQLite in a temp folder)",
    "output": "where to write the results",
    "scenarios": f"comma-separated, from {','.join(SCENARIOS)}",
    "work": "keep the database, files and logs in this folder",
}


def main(argv: list[str] | None = None) -> int:
    """Read the knobs (environment, then options), run, and exit 0 when every row passes."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of the scheduler as ratios to a floor taken in the same run. "
        "Every option can also be set as BENCH_<NAME> in the environment.",
    )
    for item in fields(Settings):
        parser.add_argument(f"--{item.name.replace('_', '-')}", help=HELP[item.name])
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 unless every row passes (default: 0)"
    )
    arguments = parser.parse_args(argv)
    try:
        settings = Settings.from_environment()
        for item in fields(Settings):
            raw = getattr(arguments, item.name)
            if raw is not None:
                settings.set(item.name, raw)
    except ValueError as exc:
        parser.error(str(exc))
    results = run_bench(settings)
    if results["failures"]:
        return 2
    return 1 if arguments.strict and not results["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
