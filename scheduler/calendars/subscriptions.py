"""Outside calendars a practitioner subscribes to (a Google secret address, say), kept in sync.

Fetching treats the other server as untrusted: http and https only (``webcal://`` is read as
https, as Apple means it), a timeout, a size cap while reading, and conditional requests
(ETag, Last-Modified) so that an unchanged calendar costs one 304.

The request comes from the server, so the address must not lead into the clinic's own network
(see :mod:`scheduler.outbound`): a private host is refused when the subscription is saved, and
before every fetch the host is resolved, checked and connected to at the address checked. A
redirect is followed (at most :data:`MAX_REDIRECTS` of them) only after its target has been
checked the same way. ``CALENDAR_ALLOW_PRIVATE=true`` lifts the rule for a calendar server on
the clinic's own network. What a failing server sent back is never quoted: its content could be
something only the server was meant to see.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from http.client import HTTPException
from urllib.parse import SplitResult, urljoin, urlsplit
from zoneinfo import ZoneInfo

from flask_babel import gettext
from sqlalchemy.orm import Session

from scheduler import outbound
from scheduler.calendars.expansion import Expansion
from scheduler.calendars.imports import ImportReport, import_busy, read_series
from scheduler.calendars.models import CalendarSubscription
from scheduler.calendars.reading import CalendarFileError, Limits, read_capped
from scheduler.i18n import N_

TIMEOUT_SECONDS = 20.0
USER_AGENT = "acupuncture-scheduler calendar sync"
# How many redirects one fetch follows, each checked like the address itself.
MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
# What to tell staff whose address is refused as private.
HOW_TO_ALLOW = N_(
    "Calendars are fetched from public addresses only; if this calendar is on the clinic's own "
    "network, the operator can set CALENDAR_ALLOW_PRIVATE=true."
)


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
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise SubscriptionError(gettext("the address cannot contain spaces or line breaks"))
    try:
        parts = urlsplit(url)
    except ValueError:  # a [ without its ], say
        raise SubscriptionError(gettext("the address is not one a browser could open")) from None
    if parts.scheme.lower() not in {"http", "https"}:
        raise SubscriptionError(
            gettext("the address must start with https:// (or http://, webcal://)")
        )
    if not parts.hostname:
        raise SubscriptionError(gettext("the address has no host name"))
    if len(url) > 2000:
        raise SubscriptionError(gettext("the address is longer than 2000 characters"))
    try:
        _port(parts)
    except ValueError:
        raise SubscriptionError(gettext("the address has an invalid port number")) from None
    return url


def check_url(url: str, *, allow_private: bool) -> str:
    """Return the address to subscribe to, or raise :class:`SubscriptionError` saying what to fix.

    Beyond :func:`normalise_url`, unless ``allow_private``, a host inside a private network is
    refused; a name that cannot be resolved now is let through, as every fetch checks again.
    """
    url = normalise_url(url)
    if not allow_private:
        parts = urlsplit(url)
        reason = outbound.saved_refusal(parts.hostname or "", _port(parts), gettext(HOW_TO_ALLOW))
        if reason:
            raise SubscriptionError(gettext("the address is refused: %(reason)s", reason=reason))
    return url


def _port(parts: SplitResult) -> int:
    """The port to connect to; raise ``ValueError`` for one that is not 0 to 65535."""
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


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


def fetch(
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    max_bytes: int,
    timeout: float = TIMEOUT_SECONDS,
    allow_private: bool = False,
) -> Fetched:
    """Fetch a calendar, conditionally, from public addresses only unless ``allow_private``.

    Raise :class:`SubscriptionError` if it cannot be fetched, :class:`CalendarFileError` if it
    is larger than ``max_bytes``.
    """
    url = normalise_url(url)
    for _ in range(MAX_REDIRECTS + 1):
        answer = _get(
            url,
            etag=etag,
            last_modified=last_modified,
            max_bytes=max_bytes,
            timeout=timeout,
            allow_private=allow_private,
        )
        if isinstance(answer, Fetched):
            return answer
        url = answer
    raise SubscriptionError(
        gettext("the server redirected more than %(most)d times", most=MAX_REDIRECTS)
    )


def _get(
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    max_bytes: int,
    timeout: float,
    allow_private: bool,
) -> Fetched | str:
    """Make one request to a checked address; return the calendar, or where it redirects."""
    parts = urlsplit(url)
    try:
        addresses = outbound.vetted(
            parts.hostname or "",
            _port(parts),
            allow_private=allow_private,
            advice=gettext(HOW_TO_ALLOW),
        )
    except outbound.Unreachable as exc:
        raise SubscriptionError(str(exc)) from None
    # Only http and https get here (normalise_url, _redirect_target), and the opener has no
    # other handlers.
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})  # noqa: S310
    if etag:
        request.add_header("If-None-Match", etag)
    if last_modified:
        request.add_header("If-Modified-Since", last_modified)
    try:
        with outbound.opener(outbound.pinned(addresses)).open(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            body = read_capped(response, max_bytes, declared=declared)
            return Fetched(
                body, response.headers.get("ETag"), response.headers.get("Last-Modified")
            )
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code == 304:
                return Fetched(None, etag, last_modified)
            if exc.code in _REDIRECTS:
                return _redirect_target(url, exc.code, exc.headers.get("Location"))
            # The status alone: the server's own reason phrase and body are not repeated.
            raise SubscriptionError(
                gettext("the server answered %(status)s", status=_status(exc.code))
            ) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise SubscriptionError(_too_slow(timeout)) from None
        raise SubscriptionError(
            gettext("the server could not be reached (%(reason)s)", reason=reason)
        ) from None
    except TimeoutError:
        raise SubscriptionError(_too_slow(timeout)) from None
    except (HTTPException, OSError, ValueError) as exc:
        # The kind of failure only: http.client's messages can quote what the server sent.
        raise SubscriptionError(
            gettext("the download failed (%(kind)s)", kind=type(exc).__name__)
        ) from None


def _redirect_target(url: str, status: int, location: str | None) -> str:
    """Return the address a redirect leads to, if it is one that may be fetched."""
    if not location:
        raise SubscriptionError(
            gettext("the server answered %(status)s without a new address", status=_status(status))
        )
    try:
        target = urljoin(url, location.strip())
        parts = urlsplit(target)
    except ValueError:
        raise SubscriptionError(
            gettext("the server redirected to an address that is not valid")
        ) from None
    if any(ch.isspace() or not ch.isprintable() for ch in target):
        raise SubscriptionError(gettext("the server redirected to an address that is not valid"))
    if parts.scheme.lower() not in {"http", "https"}:
        raise SubscriptionError(
            gettext(
                "the server redirected to a %(scheme)s:// address; "
                "only http and https are followed",
                scheme=parts.scheme.lower()[:20],
            )
        )
    if not parts.hostname:
        raise SubscriptionError(gettext("the server redirected to an address without a host name"))
    try:
        _port(parts)
    except ValueError:
        raise SubscriptionError(
            gettext("the server redirected to an invalid port number")
        ) from None
    return target


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _too_slow(timeout: float) -> str:
    return gettext("the server did not answer within %(seconds)s seconds", seconds=f"{timeout:g}")


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
    allow_private: bool = False,
) -> Refreshed:
    """Fetch and read a subscribed calendar, touching no database (and so holding no lock)."""
    try:
        fetched = fetch(
            url,
            etag=etag,
            last_modified=last_modified,
            max_bytes=limits.max_bytes,
            timeout=timeout,
            allow_private=allow_private,
        )
        expansion = None
        if fetched.body is not None:
            expansion = _read(fetched.body, url=url, tz=tz, now=now, limits=limits)
    except (SubscriptionError, CalendarFileError) as exc:
        return Refreshed(None, etag, last_modified, exc.message)
    return Refreshed(expansion, fetched.etag, fetched.last_modified)


def _read(body: bytes, *, url: str, tz: ZoneInfo, now: datetime, limits: Limits) -> Expansion:
    """Read a fetched calendar; an answer that is no calendar at all is refused unquoted."""
    try:
        return read_series(body, name=url, tz=tz, now=now, limits=limits)
    except CalendarFileError as exc:
        if _looks_like_a_calendar(body):
            raise  # its lines are the calendar's own, what the import shows anyway
        raise SubscriptionError(
            gettext(
                "the server's answer is not a calendar (it does not start with BEGIN:VCALENDAR); "
                "check that the address is the calendar's own .ics address"
            )
        ) from exc


def _looks_like_a_calendar(body: bytes) -> bool:
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].upper() == b"BEGIN:VCALENDAR"


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
