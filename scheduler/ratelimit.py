"""Rate limits on what books, changes a booking, joins the waitlist, logs in or sends mail.

A limited view names its rules with :func:`rate_limited`. Each rule counts by one thing: the
client's address, or a target (the email address a form or JSON body gives, the token in the
URL, a staff API token), so that one address cannot spray many patients and many addresses
cannot flood one. The rates are settings (``RATELIMIT_…`` in :mod:`scheduler.config`).

Each app gets its own Flask-Limiter, whose check is a ``before_request`` hook registered with
the extensions, so a refused request is answered (429 with ``Retry-After``) before the write
lock is taken and before any view runs. Counts live in ``RATELIMIT_STORAGE_URI``: in memory, or
Redis when several app servers share them. While Redis is unreachable each server counts in its
own memory (``RATELIMIT_IN_MEMORY_FALLBACK_ENABLED``) and goes back to Redis when it answers.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from flask import Flask, Response, current_app, request, session
from flask.typing import ResponseReturnValue
from flask_babel import gettext, ngettext
from flask_limiter import Limit, Limiter, RateLimitExceeded
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from scheduler.errors import error_response
from scheduler.i18n import format_clock

View = TypeVar("View", bound=Callable[..., Any])
POST = frozenset({"POST"})
# Counting stops a request before it runs; the Redis client must not hang it meanwhile.
REDIS_TIMEOUTS: dict[str, str | int] = {"socket_connect_timeout": 1, "socket_timeout": 1}


def _digest(value: str) -> str:
    """A keyed digest of a target, so that the storage holds no email address or token."""
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:32]


def client_address() -> str:
    """The client's address (the real one behind ``PROXY_FIX_X_FOR`` trusted proxies)."""
    return request.remote_addr or "unknown"


def given_email() -> str | None:
    """The email address a form (``email``) or JSON body (``patient.email``) gives, if any."""
    try:
        if request.is_json:
            body = request.get_json(silent=True)
            patient = body.get("patient") if isinstance(body, dict) else None
            email = patient.get("email") if isinstance(patient, dict) else None
        else:
            email = request.form.get("email")
    except (HTTPException, ValueError, RecursionError):
        return None  # too large or unreadable: the view refuses it, counted by address
    if not isinstance(email, str) or not email.strip():
        return None
    return _digest(email.strip().lower())


def url_target() -> str | None:
    """What the URL names: a booking's or a waitlist place's token, a message's id."""
    values = sorted((request.view_args or {}).items())
    return _digest("|".join(f"{name}={value}" for name, value in values)) if values else None


def staff_url_target() -> str | None:
    """What the URL names, when a staff member is logged in (others are turned away unseen).

    The signed session cookie says who is logged in: loading the user would read the database
    before the request takes its write lock.
    """
    return url_target() if session.get("_user_id") else None


def api_token() -> str:
    """The staff API token the call carries, or the client's address when it carries none."""
    scheme, _, presented = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and presented.strip():
        return "token:" + _digest(presented.strip())
    return "address:" + client_address()


def succeeded(response: Response) -> bool:
    """Whether the request did what it asked (and so sent its mail)."""
    return response.status_code < 400


def login_refused(response: Response) -> bool:
    """Whether a login was refused for a wrong email or password."""
    return response.status_code == 401


@dataclass(frozen=True)
class Rule:
    """One limit: the setting that holds its rate, and what it counts requests by.

    ``key`` reads only the request, never the database (the check runs before the request
    takes its write lock), and gives ``None`` when there is nothing to count by: the rule then
    lets the request through, and the others still count it.
    """

    setting: str
    key: Callable[[], str | None]
    methods: frozenset[str] = POST
    # Only the answers this accepts count; without it every request does.
    counts: Callable[[Response], bool] | None = None

    @property
    def scope(self) -> str:
        """The name its counts are kept under, the same for every view it limits."""
        return self.setting.removeprefix("RATELIMIT_").lower()


# Booking a time (a details form, an offered time, the API): every try counts per address,
# each booking made (and mailed) per email address.
BOOKING = (
    Rule("RATELIMIT_BOOKING_PER_ADDRESS", client_address),
    Rule("RATELIMIT_BOOKING_PER_EMAIL", given_email, counts=succeeded),
)
# Rescheduling, cancelling, correcting the intake, leaving the waitlist: per address, and each
# change made (and mailed) per booking or waitlist place.
CHANGES = (
    Rule("RATELIMIT_CHANGES_PER_ADDRESS", client_address),
    Rule("RATELIMIT_CHANGES_PER_TOKEN", url_target, counts=succeeded),
)
WAITLIST = (
    Rule("RATELIMIT_WAITLIST_PER_ADDRESS", client_address),
    Rule("RATELIMIT_WAITLIST_PER_EMAIL", given_email, counts=succeeded),
)
# Only refused logins count, so that a clinic's front desk behind one address never waits.
LOGIN = (
    Rule("RATELIMIT_LOGIN_PER_ADDRESS", client_address, counts=login_refused),
    Rule("RATELIMIT_LOGIN_PER_EMAIL", given_email, counts=login_refused),
)
SLOTS = (Rule("RATELIMIT_SLOTS_PER_ADDRESS", client_address, methods=frozenset({"GET"})),)
STAFF_API = (Rule("RATELIMIT_STAFF_API_PER_TOKEN", api_token),)
RESEND = (Rule("RATELIMIT_RESEND_PER_MESSAGE", staff_url_target, counts=succeeded),)
RULES = (*BOOKING, *CHANGES, *WAITLIST, *LOGIN, *SLOTS, *STAFF_API, *RESEND)


def rate_limited(rules: tuple[Rule, ...]) -> Callable[[View], View]:
    """Limit a view by ``rules`` (for example :data:`BOOKING`); the view is unchanged."""

    def mark(view: View) -> View:
        view.rate_limits = rules  # type: ignore[attr-defined]
        return view

    return mark


def limited_methods(view: Callable[..., Any]) -> frozenset[str]:
    """The HTTP methods of ``view`` that rate limits apply to."""
    rules: tuple[Rule, ...] = getattr(view, "rate_limits", ())
    return frozenset().union(*(rule.methods for rule in rules))


def _applies(rule: Rule) -> bool:
    if request.method not in rule.methods:
        return False
    view = current_app.view_functions.get(request.endpoint or "")
    return rule in getattr(view, "rate_limits", ()) and rule.key() is not None


def _key(rule: Rule) -> str:
    return rule.key() or ""


def _limit(app: Flask, rule: Rule) -> Limit:
    return Limit(
        app.config[rule.setting],
        key_function=partial(_key, rule),
        scope=rule.scope,
        shared=True,
        exempt_when=lambda: not _applies(rule),
        deduct_when=rule.counts,
    )


def init_app(app: Flask) -> None:
    """Give ``app`` its limiter (unless ``RATELIMIT_ENABLED`` is off) and its 429 answer."""
    uri = str(app.config.get("RATELIMIT_STORAGE_URI") or "memory://")
    limiter = Limiter(
        client_address,
        default_limits=[_limit(app, rule) for rule in RULES],
        # Exact windows: a burst at the turn of a fixed window cannot double a login limit.
        strategy="moving-window",
        storage_options=REDIS_TIMEOUTS if uri.startswith(("redis://", "rediss://")) else {},
    )
    limiter.init_app(app)
    app.extensions["rate_limiter"] = limiter
    app.register_error_handler(RateLimitExceeded, too_many_requests)


def too_many_requests(error: RateLimitExceeded) -> ResponseReturnValue:
    """Say when to try again: in the body (on a page, also at what time on the clinic's
    clock), and in ``Retry-After`` as seconds."""
    wait = seconds_to_wait(error)
    message = gettext(
        "There have been too many attempts in a short time, so this is paused for now. "
        "Please try again %(when)s.",
        when=_in_words(wait),
    )
    if not request.path.startswith("/api/"):
        at = _clock_after(wait)
        if at is not None:
            message += " " + gettext("That is after %(time)s.", time=at)
    return error_response(429, message, [("Retry-After", str(wait))])


def seconds_to_wait(error: RateLimitExceeded) -> int:
    """Seconds until the limit that refused this request lets one through again."""
    limiter: Limiter = current_app.extensions["rate_limiter"]
    breached = limiter.current_limit
    try:
        if breached is not None:
            reset_at, _remaining = breached.window
            return max(1, math.ceil(reset_at - time.time()))
    except Exception:  # the storage went away meanwhile: the whole window is a safe answer
        current_app.logger.warning("rate limit storage unreachable", exc_info=True)
    return max(1, int(error.limit.limit.get_expiry()))


def _in_words(seconds: int) -> str:
    """``in a minute``, ``in 5 minutes``, ``in 3 hours``: rounded up, never too soon."""
    minutes = math.ceil(seconds / 60)
    if minutes <= 1:
        return gettext("in a minute")
    if minutes < 120:
        return ngettext("in %(num)d minute", "in %(num)d minutes", minutes)
    hours = math.ceil(minutes / 60)
    return ngettext("in %(num)d hour", "in %(num)d hours", hours)


def _clock_after(seconds: int) -> str | None:
    """The time on the clinic's clock ``seconds`` from now (rounded up to the minute), or None
    when the clinic cannot be read."""
    from scheduler.clinic.models import Clinic
    from scheduler.extensions import db

    try:
        clinic = Clinic.get(db.session())
    except SQLAlchemyError:
        db.session.rollback()
        return None
    if clinic is None:
        return None
    moment = current_app.config["CLOCK"]() + timedelta(seconds=seconds)
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return format_clock(moment.astimezone(clinic.tz))
