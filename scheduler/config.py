"""Settings from the environment (or a ``.env`` file), with defaults for a laptop."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from limits import parse_many


def database_url(raw: str | None, instance_path: str) -> str:
    """Return the SQLAlchemy URL for ``DATABASE_URL``, defaulting to SQLite in ``instance/``.

    Plain ``postgres://`` and ``postgresql://`` URLs, as hosting providers hand them out, are
    pointed at the psycopg 3 driver the project installs.
    """
    if not raw:
        return "sqlite:///" + str(Path(instance_path) / "scheduler.db")
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def secret_key(instance_path: str) -> str:
    """Return ``SECRET_KEY``, or a random key kept in ``instance/secret_key`` for laptops."""
    configured = os.environ.get("SECRET_KEY")
    if configured:
        return configured
    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    path.write_text(key)
    path.chmod(0o600)
    return key


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in {"0", "false", "no", "off", ""}


def _number(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None
    if number <= 0:
        raise ValueError(f"{name} must be above zero, not {number}")
    return number


def _count(name: str) -> int:
    value = os.environ.get(name, "").strip() or "0"
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"{name} must be a whole number, 0 or more, not {value!r}")
    return int(value)


STAFF_ROLES = frozenset({"admin", "reception", "practitioner"})

# Rate limits: rates such as "10 per hour;20 per day", each counted per client address or per
# target (an email address given, a booking's token, a staff API token); see
# scheduler/ratelimit.py. A patient books with a few POSTs; the rest stop floods and guessing.
RATE_LIMITS = {
    "RATELIMIT_BOOKING_PER_ADDRESS": "20 per hour;50 per day",
    "RATELIMIT_BOOKING_PER_EMAIL": "10 per hour;20 per day",
    "RATELIMIT_CHANGES_PER_ADDRESS": "30 per hour;100 per day",
    "RATELIMIT_CHANGES_PER_TOKEN": "10 per hour;20 per day",
    "RATELIMIT_WAITLIST_PER_ADDRESS": "10 per hour;30 per day",
    "RATELIMIT_WAITLIST_PER_EMAIL": "5 per hour;10 per day",
    "RATELIMIT_LOGIN_PER_ADDRESS": "30 per 15 minutes",
    "RATELIMIT_LOGIN_PER_EMAIL": "10 per 15 minutes",
    "RATELIMIT_SLOTS_PER_ADDRESS": "120 per minute",
    "RATELIMIT_STAFF_API_PER_TOKEN": "60 per minute",
    "RATELIMIT_RESEND_PER_MESSAGE": "5 per hour",
}


def _rate(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip() or default
    try:
        parse_many(value)
    except ValueError:
        raise ValueError(
            f"{name} must be rates such as '10 per hour;20 per day', not {value!r}"
        ) from None
    return value


def _roles(name: str, default: str) -> frozenset[str]:
    value = os.environ.get(name)
    raw = default if value is None else value
    roles = {part.strip().lower() for part in raw.split(",") if part.strip()}
    unknown = roles - STAFF_ROLES
    if unknown:
        raise ValueError(
            f"{name} must list roles among {', '.join(sorted(STAFF_ROLES))}, "
            f"not {', '.join(sorted(unknown))}"
        )
    return frozenset(roles)


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


def from_environment(instance_path: str) -> dict[str, Any]:
    """Build the app's settings from the environment."""
    url = database_url(os.environ.get("DATABASE_URL"), instance_path)
    engine_options: dict[str, Any] = {}
    if url.startswith("postgresql"):
        engine_options = {"pool_pre_ping": True}
    base_url = os.environ.get("BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    https = base_url.startswith("https://")
    return {
        "SECRET_KEY": secret_key(instance_path),
        # Earlier keys, still accepted for session cookies and to open second-factor secrets
        # sealed under them, while SECRET_KEY is rotated (comma-separated, newest first).
        "SECRET_KEY_FALLBACKS": _list("SECRET_KEY_FALLBACKS"),
        # Staff passwords are keyed with this before scrypt (OWASP ASVS 2.4.5), so a copy of
        # the database alone cannot be used to guess them; it never changes once set.
        "PASSWORD_PEPPER": os.environ.get("PASSWORD_PEPPER", ""),
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
        # SQLite only: "normal" commits without waiting for fsync (WAL mode keeps the file
        # whole; a power cut may lose the last commits), "full" waits at every commit.
        "SQLITE_SYNCHRONOUS": _choice("SQLITE_SYNCHRONOUS", "normal", ("normal", "full")),
        "BASE_URL": base_url,
        "MAIL_FROM": os.environ.get("MAIL_FROM", "clinic@localhost"),
        "SMTP_URL": os.environ.get("SMTP_URL", ""),
        # Where mail goes without SMTP_URL (empty: instance/mail); see scheduler/mail.py.
        "MAIL_FOLDER": os.environ.get("MAIL_FOLDER", ""),
        "SMTP_TIMEOUT": _number("SMTP_TIMEOUT", 30),
        # How long a dispatcher's claim on due mail and webhooks lasts (renewed before each);
        # a killed dispatcher's work waits this long. Keep it well above SMTP_TIMEOUT.
        "DISPATCHER_LEASE_SECONDS": _number("DISPATCHER_LEASE_SECONDS", 300),
        "WEBHOOK_TIMEOUT": _number("WEBHOOK_TIMEOUT", 10),
        # /healthz reports "degraded" when due mail or webhooks have waited longer than this.
        "HEALTH_BACKLOG_SECONDS": _number("HEALTH_BACKLOG_SECONDS", 900),
        # Webhooks go to public addresses only unless this is set (scheduler/outbound.py).
        "WEBHOOK_ALLOW_PRIVATE": _flag("WEBHOOK_ALLOW_PRIVATE", False),
        # Subscribed calendars likewise, for a clinic's own CalDAV server on its network.
        "CALENDAR_ALLOW_PRIVATE": _flag("CALENDAR_ALLOW_PRIVATE", False),
        "RATELIMIT_ENABLED": _flag("RATELIMIT_ENABLED", True),
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        # Put before every key in that storage, so that several clinics can share one Redis.
        "RATELIMIT_KEY_PREFIX": os.environ.get("RATELIMIT_KEY_PREFIX", ""),
        # While the shared storage (Redis) is unreachable, each server counts in its own memory
        # rather than answering 500 or letting everything through; any other failure of the
        # limiter lets the request through (and is logged).
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_SWALLOW_ERRORS": True,
        **{name: _rate(name, default) for name, default in RATE_LIMITS.items()},
        # How many proxies in front of the app set X-Forwarded-For: the client's address (which
        # rate limits count by) is taken from there instead of the last proxy's.
        "PROXY_FIX_X_FOR": _count("PROXY_FIX_X_FOR"),
        # A patient may leave the details form open for a while: the CSRF token lasts as long
        # as the browser session instead of an hour.
        "WTF_CSRF_TIME_LIMIT": None,
        # Calendar uploads raise this for their own request, up to CALENDAR_IMPORT_MAX_BYTES.
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "CALENDAR_IMPORT_MAX_BYTES": _number("CALENDAR_IMPORT_MAX_BYTES", 10 * 1024 * 1024),
        "CALENDAR_IMPORT_MAX_EVENTS": _number("CALENDAR_IMPORT_MAX_EVENTS", 20_000),
        "CALENDAR_IMPORT_SECONDS": _number("CALENDAR_IMPORT_SECONDS", 60),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": https,
        # Over https the cookie's "__Host-" name makes browsers refuse it from any other host
        # of the clinic's domain (another subdomain cannot plant or overwrite a session).
        "SESSION_COOKIE_NAME": "__Host-session" if https else "session",
        # A staff login ends after this many minutes without a request, and after this many
        # hours however busy (OWASP ASVS 3.3.2); see scheduler/staff/auth.py.
        "STAFF_SESSION_IDLE_MINUTES": _number("STAFF_SESSION_IDLE_MINUTES", 30),
        "STAFF_SESSION_MAX_HOURS": _number("STAFF_SESSION_MAX_HOURS", 12),
        # Changing accounts, exporting or erasing a patient asks for the password again when
        # the login (or the last time it was given) is older than this (ASVS 3.7.1).
        "STAFF_CONFIRM_MINUTES": _number("STAFF_CONFIRM_MINUTES", 15),
        # Roles that must log in with a code from an authenticator app as well as the
        # password (OWASP ASVS 4.3.1); an empty value makes it everyone's own choice.
        "STAFF_TWO_FACTOR_ROLES": _roles("STAFF_TWO_FACTOR_ROLES", "admin"),
    }
