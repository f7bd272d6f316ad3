"""Outside calendars a practitioner subscribes to (a Google secret address, say), kept in sync.

Fetching treats the other server as untrusted: http and https only (``webcal://`` is read as
https, as Apple means it), a timeout, a size cap while reading, and conditional requests
(ETag, Last-Modified) so that an unchanged calendar costs one 304.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from http.client import HTTPException
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from scheduler.calendars.expansion import Expansion
from scheduler.calendars.imports import ImportReport, import_busy, read_series
from scheduler.calendars.models import CalendarSubscription
from scheduler.calendars.reading import CalendarFileError, Limits, read_capped

TIMEOUT_SECONDS = 20.0
USER_AGENT = "acupuncture-scheduler calendar sync"


class SubscriptionError(Exception):
    """A calendar address that cannot be fetched, with what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def normalise_url(url: str) -> str:
    """Return the address to fetch, or raise :class:`SubscriptionError` saying what is wrong."""
    url = url.strip()
    if url.lower().startswith("webcal://"):
        url = "https://" + url[len("webcal://") :]
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"}:
        raise SubscriptionError("the address must start with https:// (or http://, webcal://)")
    if not parts.hostname:
        raise SubscriptionError("the address has no host name")
    if len(url) > 2000:
        raise SubscriptionError("the address is longer than 2000 characters")
    return url


def label(subscription: CalendarSubscription) -> str:
    """Name a subscription without its address, which is often a secret (Google's is)."""
    host = urlsplit(subscription.url).hostname or "?"
    return f"{subscription.name} ({host})" if subscription.name else host


@dataclass(frozen=True)
class Fetched:
    """A calendar as a server sent it; ``body`` is ``None`` when it answered 304."""

    body: bytes | None
    etag: str | None
    last_modified: str | None


def _opener() -> urllib.request.OpenerDirector:
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        # Redirects go to http, https or ftp only, and the opener has no ftp handler.
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def fetch(
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    max_bytes: int,
    timeout: float = TIMEOUT_SECONDS,
) -> Fetched:
    """Fetch a calendar, conditionally.

    Raise :class:`SubscriptionError` if it cannot be fetched, :class:`CalendarFileError` if it
    is larger than ``max_bytes``.
    """
    # normalise_url lets only http and https through, and the opener has no other handlers.
    request = urllib.request.Request(normalise_url(url), headers={"User-Agent": USER_AGENT})  # noqa: S310
    if etag:
        request.add_header("If-None-Match", etag)
    if last_modified:
        request.add_header("If-Modified-Since", last_modified)
    try:
        with _opener().open(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            body = read_capped(response, max_bytes, declared=declared)
            return Fetched(
                body, response.headers.get("ETag"), response.headers.get("Last-Modified")
            )
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return Fetched(None, etag, last_modified)
        raise SubscriptionError(f"the server answered {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise SubscriptionError(f"the server could not be reached ({exc.reason})") from exc
    except TimeoutError as exc:
        raise SubscriptionError(f"the server did not answer within {timeout:g} seconds") from exc
    except (HTTPException, OSError, ValueError) as exc:
        raise SubscriptionError(f"the download failed ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class Refreshed:
    """What fetching a subscription found: its series, nothing new (a 304), or a failure."""

    expansion: Expansion | None
    etag: str | None
    last_modified: str | None
    error: str = ""


def refresh(
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    tz: ZoneInfo,
    now: datetime,
    limits: Limits,
    timeout: float = TIMEOUT_SECONDS,
) -> Refreshed:
    """Fetch and read a subscribed calendar, touching no database (and so holding no lock)."""
    try:
        fetched = fetch(
            url, etag=etag, last_modified=last_modified, max_bytes=limits.max_bytes, timeout=timeout
        )
        expansion = None
        if fetched.body is not None:
            expansion = read_series(fetched.body, name=url, tz=tz, now=now, limits=limits)
    except (SubscriptionError, CalendarFileError) as exc:
        return Refreshed(None, etag, last_modified, exc.message)
    return Refreshed(expansion, fetched.etag, fetched.last_modified)


def apply_refresh(
    session: Session, subscription: CalendarSubscription, refreshed: Refreshed, now: datetime
) -> ImportReport:
    """Apply what :func:`refresh` found: new and changed events, and those now gone.

    A failure is recorded on the subscription (for the staff area) and counted as an error;
    the busy time already imported stays as it was.
    """
    if refreshed.error:
        subscription.last_error = refreshed.error
        subscription.last_error_at = now
        return ImportReport(errors=1, problems=[f"{label(subscription)}: {refreshed.error}"])
    report = ImportReport()
    if refreshed.expansion is not None:
        report = import_busy(
            session,
            practitioner=subscription.practitioner,
            expansion=refreshed.expansion,
            subscription=subscription,
        )
    subscription.etag, subscription.last_modified = refreshed.etag, refreshed.last_modified
    subscription.last_synced_at = now
    subscription.last_error = ""
    subscription.last_error_at = None
    return report
