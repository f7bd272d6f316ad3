"""Delivering webhooks: signed POSTs, claimed and retried like patient mail.

The dispatcher of :mod:`scheduler.notifications.dispatch` runs this beside the mail, with the
same discipline: a claim marks a batch as this dispatcher's until a lease runs out
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the write lock on SQLite), the claim is renewed
before each delivery, and each outcome is recorded in its own transaction right after the
receiver answers, so several dispatchers never deliver one at the same time and a killed one's
batch is taken over once its lease runs out. No database lock is held while waiting for a
receiver.

Each request is a POST of the frozen payload with::

    Content-Type: application/json
    Webhook-Id: <the event's id, the same on every try and replay>
    Webhook-Event: booking.created
    Webhook-Timestamp: <unix seconds when this try was signed>
    Webhook-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

During the grace after a secret is rotated the signature header carries one ``v1=`` value per
secret, separated by a space. A 2xx answer is delivered; anything else, or no answer within
the timeout, is tried again after 1, 2, 4 … minutes (at most an hour apart), and after
:data:`MAX_ATTEMPTS` tries the delivery is failed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.client import HTTPException, HTTPResponse
from urllib.parse import urlsplit

from flask_babel import gettext
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from scheduler import eventlog, leases
from scheduler.leases import claim_due, still_held
from scheduler.notifications.dispatch import Settings, retry_delay
from scheduler.outbound import Unreachable, opener, pinned, vetted
from scheduler.webhooks.models import (
    AttemptResult,
    DeliveryStatus,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from scheduler.webhooks.operations import HOW_TO_ALLOW, signing_secrets

MAX_ATTEMPTS = 10
TIMEOUT_SECONDS = 10.0
# How much of a receiver's answer is kept, in characters.
RESPONSE_KEPT = 2000
USER_AGENT = "acupuncture-scheduler webhooks"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` under ``secret``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secrets: list[str], timestamp: int, body: bytes) -> str:
    """Return the ``Webhook-Signature`` value: ``v1=<hex>`` per secret, space-separated."""
    return " ".join(f"v1={sign(secret, timestamp, body)}" for secret in secrets)


@dataclass(frozen=True)
class Request:
    """One delivery as it goes out."""

    url: str
    body: bytes
    headers: dict[str, str]
    # Whether the receiver may be inside a private network (``WEBHOOK_ALLOW_PRIVATE``).
    allow_private: bool = False


@dataclass(frozen=True)
class Answer:
    """What came back: the receiver's status and the start of its body, or what failed."""

    status: int | None
    body: str = ""
    error: str = ""
    duration_ms: int = 0

    @property
    def delivered(self) -> bool:
        """Whether the receiver took it (a 2xx)."""
        return self.status is not None and 200 <= self.status < 300


def _read_some(response: HTTPResponse | urllib.error.HTTPError, deadline: float) -> str:
    """Read the start of an answer's body, giving up at ``deadline`` (a slow drip included)."""
    kept = b""
    try:
        while len(kept) < RESPONSE_KEPT * 4 and time.monotonic() < deadline:
            chunk = response.read1(1024) if hasattr(response, "read1") else response.read(1024)
            if not chunk:
                break
            kept += chunk
    except (OSError, HTTPException, ValueError):
        pass  # the status is what counts; the body is only kept for the log
    return kept.decode("utf-8", "replace")[:RESPONSE_KEPT]


def post(request: Request, timeout: float) -> Answer:
    """POST ``request`` and return the answer; never raises for a network failure."""
    started = time.monotonic()
    deadline = started + timeout

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    parts = urlsplit(request.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = vetted(
            host, port, allow_private=request.allow_private, advice=gettext(HOW_TO_ALLOW)
        )
    except Unreachable as exc:
        return Answer(None, error=str(exc), duration_ms=took())
    outgoing = urllib.request.Request(  # noqa: S310  (the URL was checked: http or https only)
        request.url, data=request.body, headers=request.headers, method="POST"
    )
    try:
        with opener(pinned(addresses)).open(outgoing, timeout=timeout) as response:
            return Answer(response.status, _read_some(response, deadline), duration_ms=took())
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, _read_some(exc, deadline), duration_ms=took())
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return Answer(None, error=f"no answer within {timeout:g} seconds", duration_ms=took())
        return Answer(None, error=f"could not connect ({reason})", duration_ms=took())
    except TimeoutError:
        return Answer(None, error=f"no answer within {timeout:g} seconds", duration_ms=took())
    except (HTTPException, OSError, ValueError) as exc:
        return Answer(None, error=f"{type(exc).__name__}: {exc}", duration_ms=took())


Poster = Callable[[Request, float], Answer]


def _of_active_webhooks() -> list[ColumnElement[bool]]:
    # A switched-off webhook's deliveries wait, on purpose, until it is switched on.
    return [WebhookDelivery.webhook_id.in_(select(Webhook.id).where(Webhook.active.is_(True)))]


def claim(session: Session, *, settings: Settings, now: datetime) -> list[int]:
    """Claim up to a batch of due deliveries of active webhooks and return their ids."""
    return claim_due(
        session,
        WebhookDelivery,
        pending=DeliveryStatus.PENDING,
        sending=DeliveryStatus.SENDING,
        claimant=settings,
        now=now,
        only=_of_active_webhooks(),
    )


def waiting_since(session: Session, now: datetime) -> datetime | None:
    """Since when the longest-waiting due delivery has waited (``None``: nothing is due)."""
    return leases.waiting_since(
        session,
        WebhookDelivery,
        pending=DeliveryStatus.PENDING,
        sending=DeliveryStatus.SENDING,
        now=now,
        only=_of_active_webhooks(),
    )


def _mine(session: Session, delivery_id: int, settings: Settings) -> WebhookDelivery | None:
    """Lock and return the delivery if this dispatcher still holds its claim."""
    return still_held(
        session, WebhookDelivery, delivery_id, sending=DeliveryStatus.SENDING, claimant=settings
    )


def _prepare(
    session: Session, delivery_id: int, *, settings: Settings, now: datetime, allow_private: bool
) -> Request | None:
    """Renew the claim and sign the request (``None``: the delivery is no longer ours)."""
    delivery = _mine(session, delivery_id, settings)
    if delivery is None:
        return None
    delivery.claimed_until = now + settings.lease
    webhook = delivery.webhook
    body = delivery.payload.encode("utf-8")
    timestamp = int(now.timestamp())
    request = Request(
        url=webhook.url,
        body=body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Webhook-Id": delivery.event_id,
            "Webhook-Event": delivery.event.value,
            "Webhook-Timestamp": str(timestamp),
            "Webhook-Signature": signature_header(signing_secrets(webhook, now), timestamp, body),
        },
        allow_private=allow_private,
    )
    session.commit()
    return request


def _describe(answer: Answer) -> str:
    if answer.status is None:
        return answer.error
    return f"the receiver answered {answer.status}"


def _settle(
    session: Session,
    delivery_id: int,
    answer: Answer,
    *,
    settings: Settings,
    now: datetime,
) -> AttemptResult | None:
    """Record ``answer`` if the claim is still ours; return the result recorded."""
    delivery = _mine(session, delivery_id, settings)
    if delivery is None:
        return None  # deleted, or replayed, while it was being sent
    delivery.claimed_by = delivery.claimed_until = None
    delivery.attempts += 1
    delivery.last_status_code = answer.status
    delivery.last_response = answer.body
    detail = _describe(answer)
    if answer.delivered:
        result = AttemptResult.DELIVERED
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.last_error = ""
    elif delivery.attempts >= MAX_ATTEMPTS:
        result = AttemptResult.FAILED
        delivery.status = DeliveryStatus.FAILED
        delivery.last_error = f"{detail}; gave up after {delivery.attempts} tries"
        detail = delivery.last_error
    else:
        result = AttemptResult.RETRYING
        wait = retry_delay(delivery.attempts)
        delivery.status = DeliveryStatus.PENDING
        delivery.next_attempt_at = now + wait
        delivery.last_error = detail
        detail = f"{detail}; next try in {int(wait.total_seconds() // 60)} min"
    delivery.history.append(
        WebhookAttempt(
            at=now,
            result=result,
            status_code=answer.status,
            response=answer.body,
            detail=detail,
            duration_ms=answer.duration_ms,
            dispatcher=settings.name,
        )
    )
    logged = {
        "delivery": delivery_id,
        "webhook": delivery.webhook_id,
        "webhook_event": delivery.event.value,
        "event_id": delivery.event_id,
        "booking": delivery.booking_id,
        "status_code": answer.status,
        "duration_ms": answer.duration_ms,
        "attempts": delivery.attempts,
        "dispatcher": settings.name,
        "detail": detail,
    }
    session.commit()
    eventlog.emit(f"webhook.{result.value}", now, **logged)
    return result


def deliver(
    session: Session,
    delivery_id: int,
    *,
    settings: Settings,
    clock: Callable[[], datetime],
    timeout: float = TIMEOUT_SECONDS,
    poster: Poster = post,
    allow_private: bool = False,
) -> AttemptResult | None:
    """Send one claimed delivery and record the answer (``None``: no longer ours)."""
    request = _prepare(
        session, delivery_id, settings=settings, now=clock(), allow_private=allow_private
    )
    if request is None:
        return None
    answer = poster(request, timeout)
    return _settle(session, delivery_id, answer, settings=settings, now=clock())


def release(session: Session, ids: list[int], *, settings: Settings) -> None:
    """Give back claimed deliveries this dispatcher will not send, for others to take at once."""
    leases.release(
        session,
        WebhookDelivery,
        ids,
        pending=DeliveryStatus.PENDING,
        sending=DeliveryStatus.SENDING,
        claimant=settings,
    )


def run_batch(
    session: Session,
    *,
    settings: Settings,
    clock: Callable[[], datetime],
    timeout: float = TIMEOUT_SECONDS,
    stopping: Callable[[], bool] = lambda: False,
    poster: Poster = post,
    allow_private: bool = False,
) -> Counter[AttemptResult] | None:
    """Claim and deliver one batch; return the results, or ``None`` when nothing was due.

    When ``stopping()`` turns true the rest of the batch is given back unsent.
    """
    ids = claim(session, settings=settings, now=clock())
    if not ids:
        return None
    tally: Counter[AttemptResult] = Counter()
    for position, delivery_id in enumerate(ids):
        if stopping():
            release(session, ids[position:], settings=settings)
            break
        result = deliver(
            session,
            delivery_id,
            settings=settings,
            clock=clock,
            timeout=timeout,
            poster=poster,
            allow_private=allow_private,
        )
        if result is not None:
            tally[result] += 1
    return tally


def deliver_due_webhooks(
    session: Session,
    *,
    settings: Settings,
    clock: Callable[[], datetime],
    timeout: float = TIMEOUT_SECONDS,
    stopping: Callable[[], bool] = lambda: False,
    allow_private: bool = False,
) -> Counter[AttemptResult]:
    """Deliver everything due now, batch after batch, and return the results."""
    total: Counter[AttemptResult] = Counter()
    while (
        not stopping()
        and (
            tally := run_batch(
                session,
                settings=settings,
                clock=clock,
                timeout=timeout,
                stopping=stopping,
                allow_private=allow_private,
            )
        )
        is not None
    ):
        total.update(tally)
    return total


def summary(tally: Counter[AttemptResult]) -> str:
    """One line for the operator: ``webhooks: delivered 2, retrying 1, failed 0``."""
    return "webhooks: " + ", ".join(f"{result.value} {tally[result]}" for result in AttemptResult)
