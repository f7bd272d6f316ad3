"""The bench's knobs: full size by default, each one an environment variable or an option."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = ("slots", "booking", "race", "feed", "import", "dispatch", "rss")


@dataclass
class Settings:
    """What to build and how hard to measure (see ``python -m bench --help``)."""

    bookings: int = 20_000  # demo seed --bookings
    busy_events: int = 2_000  # imported busy events, over two years, for five practitioners
    feed_events: int = 2_500  # events wanted in one practitioner's feed (12 months)
    import_events: int = 10_000  # events in the imported file
    notifications: int = 2_000  # due messages dispatched
    mixed_requests: int = 10_000  # requests before a worker's memory is read
    racers: int = 64  # clients racing for one time
    rounds: int = 5  # floor and scenario, interleaved, this many times
    batch_rounds: int = 3  # rounds of the import and the dispatch, which take minutes each
    seconds: float = 3.0  # length of each timed HTTP run
    workers: int = 4  # gunicorn sync workers (two per core, as docs/deploy.md says)
    clients: int = 4  # concurrent clients of the load generator
    database_url: str = ""  # empty: SQLite in the work folder; BENCH_DATABASE_URL otherwise
    output: Path = field(default_factory=lambda: ROOT / "bench" / "results.json")
    scenarios: tuple[str, ...] = SCENARIOS
    work: Path | None = None  # where the database, files and logs go (default: a temp folder)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read ``BENCH_<NAME>`` for each setting, keeping the default when it is unset."""
        environ = dict(os.environ if environ is None else environ)
        settings = cls()
        for item in fields(cls):
            raw = environ.get(f"BENCH_{item.name.upper()}", "").strip()
            if raw:
                settings.set(item.name, raw)
        return settings

    def set(self, name: str, raw: str) -> None:
        """Set ``name`` from text, checking it; raise ValueError saying what is wrong."""
        current = getattr(self, name)
        value: Any
        if name == "scenarios":
            value = tuple(part.strip() for part in raw.split(",") if part.strip())
            unknown = sorted(set(value) - set(SCENARIOS))
            if unknown or not value:
                raise ValueError(
                    f"BENCH_SCENARIOS: unknown {', '.join(unknown) or 'nothing'};"
                    f" choose from {', '.join(SCENARIOS)}"
                )
        elif name in ("output", "work"):
            value = Path(raw)
        elif name == "database_url":
            value = raw
        elif isinstance(current, float):
            value = float(raw)
            if value <= 0:
                raise ValueError(f"BENCH_{name.upper()} must be above zero, not {raw!r}")
        else:
            try:
                value = int(raw.replace("_", "").replace(",", ""))
            except ValueError:
                raise ValueError(
                    f"BENCH_{name.upper()} must be a whole number, not {raw!r}"
                ) from None
            if value < 1:
                raise ValueError(f"BENCH_{name.upper()} must be 1 or more, not {raw!r}")
        setattr(self, name, value)

    def public(self) -> dict[str, Any]:
        """The settings as JSON can hold them, without the database's password."""
        values = asdict(self)
        values["output"] = str(self.output)
        values["work"] = str(self.work) if self.work else None
        values["scenarios"] = list(self.scenarios)
        values["database_url"] = "postgresql" if self.database_url else "sqlite"
        return values
