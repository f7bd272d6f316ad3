"""Time zone helpers: everything is stored in UTC and shown in the clinic's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


def zone(name: str) -> ZoneInfo:
    """Return the IANA zone called ``name`` or raise ``ValueError``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def is_known_zone(name: str) -> bool:
    """Tell whether ``name`` is an IANA time zone this machine knows."""
    return name in available_timezones()


def local_to_utc(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """Return the instant at wall-clock ``wall`` on ``day`` in ``tz``, in UTC.

    An ambiguous wall time (the repeated hour in autumn) means its first occurrence; a wall time
    that does not exist (the skipped hour in spring) lands as far after the gap as it lay in it.
    """
    return datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)


def wall_time_exists(day: date, wall: time, tz: ZoneInfo) -> bool:
    """Tell whether clocks in ``tz`` ever show ``wall`` on ``day`` (false inside a DST gap)."""
    local = datetime.combine(day, wall, tzinfo=tz)
    back = local.astimezone(UTC).astimezone(tz)
    return (back.date(), back.time()) == (day, wall)


def day_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Return the UTC instants at which local ``first`` begins and local ``last`` ends."""
    return (
        local_to_utc(first, time(0), tz),
        local_to_utc(last + timedelta(days=1), time(0), tz),
    )


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def checked_instant(value: datetime) -> datetime:
    """Return an aware ``value`` in UTC; raise ``ValueError`` if naive or absurdly far out.

    The bounds keep date arithmetic (adding a session's length, a horizon) from overflowing.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("the time needs an offset, for example 2026-11-24T10:00:00+00:00")
    try:
        value = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the time is out of range") from exc
    if not EARLIEST <= value < LATEST:
        raise ValueError("the time is out of range")
    return value


def parse_iso_datetime(text: str) -> datetime:
    """Parse an ISO 8601 date-time that carries an offset (``Z`` allowed); raise ``ValueError``."""
    return checked_instant(datetime.fromisoformat(text.strip()))


def format_local(moment: datetime, tz: ZoneInfo, *, with_zone: bool = True) -> str:
    """Format ``moment`` in ``tz`` for people, e.g. ``Tuesday 24 November 2026, 10:00 GMT``."""
    local = moment.astimezone(tz)
    text = f"{local:%A} {local.day} {local:%B %Y, %H:%M}"
    if with_zone:
        text += f" {local.tzname()}"
    return text
