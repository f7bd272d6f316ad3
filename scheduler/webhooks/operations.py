"""Webhooks: setting them up, and queueing a delivery with every booking change.

Every booking change goes through :func:`scheduler.booking.operations.record_change`, which
calls :func:`note_booking_change`. The change is only noted on the session; when the unit of
work commits, a delivery per active webhook subscribed to the event is written in the same
transaction (a ``before_commit`` hook), with the payload frozen as the booking is then. So a
change that rolls back queues nothing, and the sessions of a course booked together each know
the whole course. The dispatcher (:mod:`scheduler.webhooks.dispatch`) sends them.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import gettext
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from scheduler import outbound
from scheduler.audit import AuditAction
from scheduler.booking.models import Booking
from scheduler.clinic.models import Clinic
from scheduler.i18n import N_
from scheduler.patients.models import Patient
from scheduler.unitofwork import OnCommit
from scheduler.webhooks.models import (
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)

# Which changes of the audit trail each event reports. An imported appointment is a new
# booking; approving a request changes what it is (``awaiting_approval`` turns false); a
# declined request is reported by its cancellation.
EVENT_OF_ACTION = {
    AuditAction.BOOKED: WebhookEvent.BOOKING_CREATED,
    AuditAction.IMPORTED: WebhookEvent.BOOKING_CREATED,
    AuditAction.RESCHEDULED: WebhookEvent.BOOKING_RESCHEDULED,
    AuditAction.CANCELLED: WebhookEvent.BOOKING_CANCELLED,
    AuditAction.STATUS_CHANGED: WebhookEvent.BOOKING_STATUS_CHANGED,
    AuditAction.APPROVED: WebhookEvent.BOOKING_STATUS_CHANGED,
}

MAX_URL_LENGTH = 2000
# What to tell an admin whose address is refused as private (scheduler/outbound.py).
HOW_TO_ALLOW = N_(
    "Webhooks go to public addresses only; if the receiver is on the clinic's own network, "
    "the operator can set WEBHOOK_ALLOW_PRIVATE=true."
)
# How long the previous secret still signs, beside the new one, after a rotation.
ROTATION_GRACE = timedelta(hours=24)
SECRET_PREFIX = "whsec_"  # noqa: S105  (a marker that says what the value is, not a secret)
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


class WebhookError(Exception):
    """A webhook request that cannot go ahead, with a message for the admin."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# --- Setting webhooks up ----------------------------------------------------------------------


def check_url(url: str, *, allow_private: bool = False) -> str:
    """Return the address to deliver to, or raise :class:`WebhookError` saying what to fix.

    Unless ``allow_private``, a host inside a private network is refused (see
    :mod:`scheduler.outbound`); a name that cannot be resolved now is let through,
    as the dispatcher checks again before every delivery.
    """
    url = url.strip()
    if not url:
        raise WebhookError(gettext("Please enter the address to send the events to."), field="url")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookError(
            gettext("The address is longer than %(most)d characters.", most=MAX_URL_LENGTH),
            field="url",
        )
    if _SPACE_OR_CONTROL.search(url):
        raise WebhookError(
            gettext("The address cannot contain spaces or line breaks."), field="url"
        )
    if not url.isascii():
        raise WebhookError(
            gettext(
                "Write the address in plain ASCII: percent-encode other characters (é as %C3%A9) "
                "and give the host name in its xn-- form."
            ),
            field="url",
        )
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"}:
        raise WebhookError(
            gettext(
                "The address must start with https:// (or http://), like https://example.org/webhooks."
            ),
            field="url",
        )
    if "@" in parts.netloc:
        raise WebhookError(
            gettext(
                "Take the user name and password out of the address: receivers check the "
                "signature to know a delivery comes from the clinic."
            ),
            field="url",
        )
    if not parts.hostname:
        raise WebhookError(
            gettext("The address has no host name, like https://example.org/webhooks."), field="url"
        )
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number from 0 to 65535)
    except ValueError:
        raise WebhookError(
            gettext("The address has an invalid port number."), field="url"
        ) from None
    if parts.fragment or url.endswith("#"):
        raise WebhookError(
            gettext("Remove the #… part of the address; it is never sent to the server."),
            field="url",
        )
    if not allow_private:
        _check_public(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    return url


def _check_public(host: str, port: int) -> None:
    reason = outbound.saved_refusal(host, port, gettext(HOW_TO_ALLOW))
    if reason:
        raise WebhookError(
            gettext("The address is refused: %(reason)s", reason=reason), field="url"
        )


def _check_events(events: Collection[WebhookEvent]) -> set[WebhookEvent]:
    if not events:
        raise WebhookError(gettext("Choose at least one event to send."), field="events")
    return set(events)


def _check_unique(session: Session, url: str, webhook: Webhook | None = None) -> None:
    query = select(Webhook.id).where(Webhook.url == url)
    if webhook is not None:
        query = query.where(Webhook.id != webhook.id)
    if session.scalars(query).first() is not None:
        raise WebhookError(
            gettext("A webhook with that address is already registered."), field="url"
        )


def new_secret() -> str:
    """Return a fresh signing secret: ``whsec_`` and 43 random URL-safe characters."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _subscribe(webhook: Webhook, events: set[WebhookEvent]) -> None:
    webhook.subscriptions = [
        next((s for s in webhook.subscriptions if s.event is event), None)
        or WebhookSubscription(event=event)
        for event in WebhookEvent
        if event in events
    ]


def create_webhook(
    session: Session,
    *,
    url: str,
    events: Collection[WebhookEvent],
    now: datetime,
    allow_private: bool = False,
) -> Webhook:
    """Register ``url`` for ``events``, switched on, with a new secret."""
    url = check_url(url, allow_private=allow_private)
    chosen = _check_events(events)
    _check_unique(session, url)
    webhook = Webhook(url=url, secret=new_secret(), active=True, created_at=now)
    _subscribe(webhook, chosen)
    session.add(webhook)
    session.flush()
    return webhook


def update_webhook(
    session: Session,
    *,
    webhook: Webhook,
    url: str,
    events: Collection[WebhookEvent],
    active: bool,
    allow_private: bool = False,
) -> Webhook:
    """Change a webhook's address or events, or switch it off (or on again).

    A switched-off webhook is sent nothing new; what it still had to receive waits until it
    is switched on again.
    """
    url = check_url(url, allow_private=allow_private)
    chosen = _check_events(events)
    _check_unique(session, url, webhook)
    webhook.url = url
    webhook.active = active
    _subscribe(webhook, chosen)
    session.flush()
    return webhook


def rotate_secret(webhook: Webhook, now: datetime) -> str:
    """Give ``webhook`` a new secret and return it; the old one also signs for a while."""
    webhook.previous_secret = webhook.secret
    webhook.previous_secret_until = now + ROTATION_GRACE
    webhook.secret = new_secret()
    return webhook.secret


def signing_secrets(webhook: Webhook, now: datetime) -> list[str]:
    """Return the secrets that sign a delivery now: the current one, and the previous one
    during the grace after a rotation."""
    found = [webhook.secret]
    until = webhook.previous_secret_until
    if webhook.previous_secret and until is not None and until > now:
        found.append(webhook.previous_secret)
    return found


def delete_webhook(session: Session, webhook: Webhook) -> None:
    """Remove a webhook with its deliveries and their history."""
    session.delete(webhook)
    session.flush()


def replay(delivery: WebhookDelivery, now: datetime) -> WebhookDelivery:
    """Queue ``delivery`` to go again at once, with the same payload and id.

    Its tries are counted afresh; the history keeps the earlier ones.
    """
    if not delivery.webhook.active:
        raise WebhookError(gettext("The webhook is switched off; switch it on to deliver again."))
    if (
        delivery.status is DeliveryStatus.SENDING
        and delivery.claimed_until is not None
        and delivery.claimed_until > now
    ):
        raise WebhookError(gettext("It is being delivered right now."))
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.claimed_by = delivery.claimed_until = None
    return delivery


# --- The payload ------------------------------------------------------------------------------


def _time(clinic: Clinic, moment: datetime) -> str:
    return moment.astimezone(clinic.tz).isoformat()


def booking_data(clinic: Clinic, booking: Booking, base_url: str) -> dict[str, Any]:
    """Return ``booking`` as the API shows it (``GET /api/v1/bookings/TOKEN``), with the
    links under ``base_url``; it needs no request, so a command's changes have it too."""
    from scheduler.booking.courses import progress  # courses books through booking.operations

    place = progress(booking)
    return {
        "token": booking.manage_token,
        "status": booking.status.value,
        "start": _time(clinic, booking.start_at),
        "end": _time(clinic, booking.end_at),
        "timezone": clinic.timezone,
        "service": booking.treatment_id,
        "service_name": booking.treatment.name,
        "practitioner": booking.practitioner_id,
        "practitioner_name": booking.practitioner.name,
        "room": booking.room.name,
        "patient": {
            "name": booking.patient.name,
            "email": booking.patient.email,
            "phone": booking.patient.phone,
        },
        "notes": booking.notes,
        "late_cancellation": booking.late_cancellation,
        "awaiting_approval": booking.awaiting_approval,
        "course": None
        if place is None
        else {"session": place.position, "of": place.total, "attended": place.done},
        "manage_url": f"{base_url}/b/{booking.manage_token}",
        "ics_url": f"{base_url}/b/{booking.manage_token}.ics",
    }


def payload(
    clinic: Clinic,
    booking: Booking,
    *,
    event: WebhookEvent,
    event_id: str,
    at: datetime,
    base_url: str,
) -> str:
    """Return the body of a delivery: ``{"id", "event", "created_at", "data": booking}``."""
    return json.dumps(
        {
            "id": event_id,
            "event": event.value,
            "created_at": _time(clinic, at),
            "data": booking_data(clinic, booking, base_url),
        }
    )


# --- Queueing with the booking change ---------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    booking: Booking
    event: WebhookEvent
    at: datetime


def note_booking_change(
    session: Session, booking: Booking, action: AuditAction, now: datetime
) -> None:
    """Note a booking change for the webhooks; its deliveries are written at commit."""
    event = EVENT_OF_ACTION.get(action)
    if event is not None:
        _PENDING.note(session, _Change(booking, event, now))


def _base_url() -> str:
    """Return the public address for the payload's links.

    Every booking change happens in the app, in a request or a command, so the app's
    settings are there.
    """
    base_url: str = current_app.config["BASE_URL"]
    return base_url


def write_deliveries(session: Session, changes: list[_Change]) -> int:
    """Write a delivery for each of ``changes`` and each active webhook subscribed to its
    event; return how many. Called as the unit of work commits."""
    webhooks = session.scalars(
        select(Webhook)
        .where(Webhook.active.is_(True))
        .options(selectinload(Webhook.subscriptions))
        .order_by(Webhook.id)
    ).all()
    wanted = [(change, [w.id for w in webhooks if change.event in w.events]) for change in changes]
    if not any(targets for _, targets in wanted):
        return 0
    # Read the bookings as the transaction leaves them (a course's sessions were added one
    # by one, so a collection loaded on the way may miss the later ones).
    session.flush()
    session.expire_all()
    clinic = Clinic.get(session)
    if clinic is None:  # pragma: no cover - a booking implies a clinic
        return 0
    base_url = _base_url()
    written = 0
    for change, targets in wanted:
        if not targets:
            continue
        event_id = str(uuid.uuid4())
        body = payload(
            clinic,
            change.booking,
            event=change.event,
            event_id=event_id,
            at=change.at,
            base_url=base_url,
        )
        for webhook_id in targets:
            session.add(
                WebhookDelivery(
                    webhook_id=webhook_id,
                    booking_id=change.booking.id,
                    event=change.event,
                    event_id=event_id,
                    payload=body,
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    next_attempt_at=change.at,
                    created_at=change.at,
                )
            )
            written += 1
    return written


_PENDING: OnCommit[_Change] = OnCommit("webhook_changes", before=write_deliveries)


# --- Erasure ----------------------------------------------------------------------------------


def forget_patient(session: Session, patient: Patient) -> int:
    """Blank an erased patient's details in the deliveries about their bookings, and the
    receivers' answers (which may quote them); return how many deliveries were changed.

    Call it once the patient and their bookings are anonymised.
    """
    bookings = {
        booking.id: booking
        for booking in session.scalars(select(Booking).where(Booking.patient_id == patient.id))
    }
    if not bookings:
        return 0
    deliveries = session.scalars(
        select(WebhookDelivery)
        .options(selectinload(WebhookDelivery.history))
        .where(WebhookDelivery.booking_id.in_(list(bookings)))
    ).all()
    for delivery in deliveries:
        booking = bookings[delivery.booking_id or 0]
        body = json.loads(delivery.payload)
        data = body.get("data", {})
        data["patient"] = {"name": patient.name, "email": patient.email, "phone": patient.phone}
        data["notes"] = booking.notes
        delivery.payload = json.dumps(body)
        delivery.last_response = delivery.last_error = ""
        for attempt in delivery.history:
            attempt.response = attempt.detail = ""
    return len(deliveries)
