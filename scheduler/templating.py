"""Template filters: times in the clinic's zone, durations in words, moving by days."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from flask import Flask

from scheduler.clinic.models import Clinic
from scheduler.timeutil import format_local


def local_time(moment: datetime, clinic: Clinic, fmt: str = "full") -> str:
    """Format ``moment`` in the clinic's zone: ``full``, ``date``, ``time``, ``zone`` or
    ``iso_date`` (for links and date inputs)."""
    local = moment.astimezone(clinic.tz)
    if fmt == "iso_date":
        return local.date().isoformat()
    if fmt == "date":
        return f"{local:%A} {local.day} {local:%B %Y}"
    if fmt == "time":
        return f"{local:%H:%M}"
    if fmt == "zone":
        return f"{local.tzname()} ({clinic.timezone})"
    return format_local(moment, clinic.tz)


def minutes(value: int) -> str:
    """Say a number of minutes the way people do: ``90`` becomes ``1 h 30 min``."""
    hours, rest = divmod(value, 60)
    if hours and rest:
        return f"{hours} h {rest} min"
    if hours:
        return f"{hours} h"
    return f"{rest} min"


def shift_days(day: date, days: int) -> date:
    """Return the date ``days`` after ``day`` (before, when negative)."""
    return day + timedelta(days=days)


def init_app(app: Flask) -> None:
    """Register the filters on ``app``."""
    app.add_template_filter(local_time, "local")
    app.add_template_filter(minutes, "minutes")
    app.add_template_filter(shift_days, "shift_days")
