"""``flask --app scheduler calendar …``: import and export calendars, feeds, subscriptions."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.calendars.appointments import import_appointments
from scheduler.calendars.export import practitioner_feed
from scheduler.calendars.feeds import feed_bookings
from scheduler.calendars.imports import ImportReport, import_busy, read_series
from scheduler.calendars.models import CalendarSubscription
from scheduler.calendars.reading import CalendarFileError, limits_from, read_capped
from scheduler.calendars.subscriptions import (
    SubscriptionError,
    apply_refresh,
    check_url,
    label,
    refresh,
)
from scheduler.clinic.models import Clinic, Practitioner, new_feed_token
from scheduler.commandline import database_errors
from scheduler.db import begin_write
from scheduler.extensions import db
from scheduler.timeutil import day_bounds, format_local
from scheduler.web import now

# Below this many events a file imports too fast for a progress bar to help.
PROGRESS_FROM = 500


@click.group()
def calendar() -> None:
    """Calendar files and feeds."""


def _practitioner(session: Session, key: str) -> Practitioner:
    """Find a practitioner by email address or id, or fail with what was not found."""
    query = select(Practitioner)
    if key.isascii() and key.isdigit():
        query = query.where(Practitioner.id == int(key))
    else:
        query = query.where(Practitioner.email == key.strip().lower())
    practitioner = session.scalars(query).first()
    if practitioner is None:
        raise click.ClickException(f"no practitioner has the email address or id {key!r}")
    return practitioner


def _clinic(session: Session) -> Clinic:
    clinic = Clinic.get(session)
    if clinic is None:
        raise click.ClickException("the clinic is not set up; run `demo seed` or set it up first")
    return clinic


@calendar.command("export")
@click.option("--practitioner", "key", required=True, help="Email address or id.")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First day.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last day.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of to standard output.",
)
@with_appcontext
@database_errors
def export(key: str, start: datetime, end: datetime, output: Path | None) -> None:
    """Write an .ics of a practitioner's sessions between two dates, both inclusive."""
    if end < start:
        raise click.ClickException("--end is before --start")
    session = db.session()
    clinic = _clinic(session)
    practitioner = _practitioner(session, key)
    first, last = day_bounds(start.date(), end.date(), clinic.tz)
    bookings = feed_bookings(session, practitioner, first, last)
    body = practitioner_feed(
        clinic, practitioner, bookings, base_url=current_app.config["BASE_URL"]
    )
    if output is None:
        click.echo(body, nl=False)
        return
    try:
        output.write_bytes(body)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror}") from exc
    click.echo(f"Wrote {len(bookings)} sessions to {output}.", err=True)


@calendar.command("feed-url")
@click.option("--practitioner", "key", required=True, help="Email address or id.")
@click.option("--rotate", is_flag=True, help="Give the feed a new address; the old one stops.")
@with_appcontext
@database_errors
def feed_url(key: str, rotate: bool) -> None:
    """Print the address of a practitioner's subscription feed."""
    session = db.session()
    begin_write(session)
    practitioner = _practitioner(session, key)
    if rotate:
        practitioner.feed_token = new_feed_token()
    token = practitioner.feed_token
    session.commit()
    click.echo(f"{current_app.config['BASE_URL']}/feeds/{token}.ics")


class _Progress:
    """A progress bar on standard error, shown only for files with many events."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_FROM:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def __enter__(self) -> _Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.__exit__(kind, error, trace)


def _show(report: ImportReport, clinic: Clinic) -> None:
    """Print what a person should look at: skipped events, notes, clashing bookings."""
    for problem in report.problems:
        click.echo(f"Skipped {problem}", err=True)
    for note in report.notes:
        click.echo(f"Note: {note}", err=True)
    for clash in report.clashes:
        booking = clash.booking
        click.echo(
            f"Clash: {format_local(booking.start_at, clinic.tz)} {booking.treatment.name} with "
            f"{booking.patient.name} overlaps {clash.summary or 'busy time'!r} "
            f"({format_local(clash.start, clinic.tz)}); the booking was kept",
            err=True,
        )


@calendar.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--practitioner", "key", required=True, help="Email address or id.")
@click.option(
    "--as",
    "kind",
    type=click.Choice(["busy", "appointments"]),
    default="busy",
    show_default=True,
    help="Busy time that blocks bookings, or another scheduler's export as bookings.",
)
@with_appcontext
@database_errors
@click.pass_context
def import_files(ctx: click.Context, files: tuple[Path, ...], key: str, kind: str) -> None:
    """Import .ics files or .eml invites into a practitioner's calendar.

    Each file is applied whole or not at all; a file that is refused is reported and the
    others go on. Ends with one line: imported N, updated N, cancelled N, skipped N, errors N.
    """
    session = db.session()
    tz = _clinic(session).tz
    _practitioner(session, key)  # fail on a wrong address before reading any file
    session.rollback()
    limits = limits_from(current_app.config)
    total = ImportReport()
    refused = 0
    for path in files:
        try:
            with _Progress(f"Reading {path.name}") as progress:
                expansion = read_series(
                    _read(path, limits.max_bytes),
                    name=path.name,
                    tz=tz,
                    now=now(),
                    limits=limits,
                    progress=progress,
                )
        except CalendarFileError as exc:
            refused += 1
            total.errors += 1
            click.echo(f"Error: {path}: {exc.message}; nothing from it was imported", err=True)
            continue
        begin_write(session)  # reading took no lock; applying the file takes it
        clinic = _clinic(session)
        practitioner = _practitioner(session, key)
        if kind == "appointments":
            report = import_appointments(
                session, clinic=clinic, practitioner=practitioner, expansion=expansion, now=now()
            )
        else:
            report = import_busy(session, practitioner=practitioner, expansion=expansion)
        _show(report, clinic)
        session.commit()
        total.add(report)
    click.echo(total.summary())
    if refused:
        ctx.exit(1)


def _read(path: Path, max_bytes: int) -> bytes:
    """Read a file, refusing one over the size cap before reading it all."""
    try:
        with path.open("rb") as handle:
            return read_capped(handle, max_bytes)
    except OSError as exc:
        raise CalendarFileError(f"cannot read it ({exc.strerror})") from exc


@calendar.command("subscribe")
@click.argument("url")
@click.option("--practitioner", "key", required=True, help="Email address or id.")
@click.option("--name", default="", help="What to call it in the staff area.")
@with_appcontext
@database_errors
def subscribe(url: str, key: str, name: str) -> None:
    """Subscribe a practitioner to an outside calendar's address; `calendar sync` fetches it."""
    try:
        url = check_url(url, allow_private=bool(current_app.config["CALENDAR_ALLOW_PRIVATE"]))
    except SubscriptionError as exc:
        raise click.ClickException(exc.message) from exc
    session = db.session()
    begin_write(session)
    practitioner = _practitioner(session, key)
    exists = session.scalars(
        select(CalendarSubscription).where(
            CalendarSubscription.practitioner_id == practitioner.id,
            CalendarSubscription.url == url,
        )
    ).first()
    if exists is not None:
        raise click.ClickException(f"{practitioner.name} is already subscribed to that address")
    session.add(
        CalendarSubscription(practitioner_id=practitioner.id, url=url, name=name.strip()[:200])
    )
    session.commit()
    click.echo(f"Subscribed {practitioner.name}; run `calendar sync` to fetch it.")


@calendar.command("sync")
@with_appcontext
@database_errors
@click.pass_context
def sync(ctx: click.Context) -> None:
    """Fetch every subscribed outside calendar and apply what changed."""
    session = db.session()
    tz = _clinic(session).tz
    limits = limits_from(current_app.config)
    allow_private = bool(current_app.config["CALENDAR_ALLOW_PRIVATE"])
    targets = session.execute(
        select(
            CalendarSubscription.id,
            CalendarSubscription.url,
            CalendarSubscription.etag,
            CalendarSubscription.last_modified,
        ).order_by(CalendarSubscription.id)
    ).all()
    session.rollback()
    total = ImportReport()
    failed = 0
    for target in targets:
        # Fetching and reading take no lock: another server may be slow, bookings go on.
        refreshed = refresh(
            target.url,
            etag=target.etag,
            last_modified=target.last_modified,
            tz=tz,
            now=now(),
            limits=limits,
            allow_private=allow_private,
        )
        begin_write(session)
        subscription = session.get(CalendarSubscription, target.id)
        if subscription is None:  # removed meanwhile
            session.rollback()
            continue
        report = apply_refresh(session, subscription, refreshed, now())
        name = label(subscription)
        session.commit()
        if report.errors and not report.imported + report.updated + report.cancelled:
            failed += 1
        for problem in report.problems:
            click.echo(f"Error: {problem}" if report.errors else problem, err=True)
        click.echo(f"{name}: {report.summary()}", err=True)
        total.add(report)
    click.echo(total.summary())
    if failed:
        ctx.exit(1)
