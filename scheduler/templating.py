"""Template filters: times in the clinic's zone, durations in words, moving by days."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from flask import Flask

from scheduler.clinic.models import Clinic
from scheduler.i18n import format_clock, format_day, format_local, format_minutes


def local_time(moment: datetime, clinic: Clinic, fmt: str = "full") -> str:
    """Format ``moment`` in the clinic's zone: ``full``, ``date``, ``time``, ``zone`` or
    ``iso_date`` (for links and date inputs), in the language of the page or message."""
    local = moment.astimezone(clinic.tz)
    if fmt == "iso_date":
        return local.date().isoformat()
    if fmt == "date":
        return format_day(local)
    if fmt == "time":
        return format_clock(local)
    if fmt == "zone":
        return f"{local.tzname()} ({clinic.timezone})"
    return format_local(moment, clinic.tz)


def minutes(value: int) -> str:
    """Say a number of minutes the way people do: ``90`` becomes ``1 h 30 min``."""
    return format_minutes(value)


def day_name(day: date, style: str = "day_no_year") -> str:
    """Write a local date: ``Tuesday 24 November`` (``day_no_year``), with the year (``day``),
    or short (``short_day``), in the language of the page."""
    return format_day(day, style)


def shift_days(day: date, days: int) -> date:
    """Return the date ``days`` after ``day`` (before, when negative)."""
    return day + timedelta(days=days)


def init_app(app: Flask) -> None:
    """Register the filters on ``app``."""
    app.add_template_filter(local_time, "local")
    app.add_template_filter(minutes, "minutes")
    app.add_template_filter(day_name, "day")
    app.add_template_filter(shift_days, "shift_days")
