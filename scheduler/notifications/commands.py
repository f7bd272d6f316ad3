"""``flask --app scheduler notifications …``: the dispatcher."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from datetime import timedelta
from types import FrameType

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from scheduler.commandline import database_errors
from scheduler.extensions import db
from scheduler.mail import Mailer, mailer_from
from scheduler.notifications.dispatch import Settings, run_batch, send_due, summary
from scheduler.notifications.models import AttemptOutcome
from scheduler.web import uid_host
from scheduler.webhooks import dispatch as webhooks
from scheduler.webhooks.models import AttemptResult


@click.group()
def notifications() -> None:
    """Mail to patients, and webhooks."""


def _settings(batch_size: int) -> Settings:
    config = current_app.config
    return Settings(
        base_url=config["BASE_URL"],
        mail_from=config["MAIL_FROM"],
        message_host=uid_host(),
        batch_size=batch_size,
        lease=timedelta(seconds=config["DISPATCHER_LEASE_SECONDS"]),
    )


def _mailer_factory() -> Mailer:
    return mailer_from(current_app.config, current_app.instance_path)


@notifications.command("run")
@click.option("--once", is_flag=True, help="Send what is due now and exit.")
@click.option(
    "--poll",
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    show_default=True,
    help="Seconds to wait when nothing is due.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="How many messages to claim at a time.",
)
@with_appcontext
@database_errors
def run(once: bool, poll: float, batch_size: int) -> None:
    """Send due messages: by SMTP when SMTP_URL is set, else to the folder instance/mail;
    and deliver due webhooks."""
    try:
        _mailer_factory()  # a bad SMTP_URL is an error now, not at the first message
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    settings = _settings(batch_size)
    clock = current_app.config["CLOCK"]
    timeout = float(current_app.config["WEBHOOK_TIMEOUT"])
    allow_private = bool(current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    session = db.session()
    if once:
        click.echo(
            summary(
                send_due(session, mailer_factory=_mailer_factory, settings=settings, clock=clock)
            )
        )
        webhook_tally = webhooks.deliver_due_webhooks(
            session, settings=settings, clock=clock, timeout=timeout, allow_private=allow_private
        )
        if webhook_tally:
            click.echo(webhooks.summary(webhook_tally))
        return

    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"Dispatcher {settings.name} running; Ctrl+C stops it.", err=True)
    total: Counter[AttemptOutcome] = Counter()
    delivered: Counter[AttemptResult] = Counter()
    while not stop.is_set():
        try:
            batch = run_batch(
                session,
                mailer_factory=_mailer_factory,
                settings=settings,
                clock=clock,
                stopping=stop.is_set,
            )
            hooks = webhooks.run_batch(
                session,
                settings=settings,
                clock=clock,
                timeout=timeout,
                stopping=stop.is_set,
                allow_private=allow_private,
            )
        except SQLAlchemyError as exc:
            # The database restarting must not stop the dispatcher; claims are safe to redo.
            session.rollback()
            click.echo(f"database unavailable ({type(exc).__name__}); trying again", err=True)
            stop.wait(poll)
            continue
        if batch is None and hooks is None:
            stop.wait(poll)
        if batch is not None:
            total.update(batch)
            click.echo(summary(batch), err=True)
        if hooks is not None:
            delivered.update(hooks)
            click.echo(webhooks.summary(hooks), err=True)
    click.echo(f"Dispatcher stopped: {summary(total)}; {webhooks.summary(delivered)}", err=True)
