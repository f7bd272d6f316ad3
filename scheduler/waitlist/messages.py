"""The waitlist's mail: a freed time offered to a waiting patient, and word that it has gone.

Written when sent, from the offer as it is then, through the templates
``templates/mail/waitlist_offer.*`` and ``waitlist_gone.*`` in the layout of all patient mail.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from flask_babel import gettext as _

from scheduler.calendars.export import clean_text
from scheduler.clinic.models import Clinic
from scheduler.i18n import format_local, greeting, in_mail_language
from scheduler.notifications.envelope import write_mail
from scheduler.notifications.models import NotificationKind
from scheduler.waitlist.models import EntryStatus, WaitlistEntry, WaitlistOffer
from scheduler.waitlist.operations import (
    OFFER_LIFETIME,
    bookable_days,
    describe_day,
)


def offer_url(base_url: str, offer: WaitlistOffer) -> str:
    """The offer's private page, where the patient books the time."""
    return f"{base_url}/w/{offer.token}"


def entry_url(base_url: str, entry: WaitlistEntry) -> str:
    """The patient's private page about their place on the waitlist, where they can leave it."""
    return f"{base_url}/waitlist/{entry.token}"


def _subject(kind: NotificationKind, offer: WaitlistOffer, clinic: Clinic) -> str:
    when = format_local(offer.start_at, clinic.tz)
    treatment = offer.entry.treatment.name
    if kind is NotificationKind.WAITLIST_OFFER:
        return clean_text(
            _("A time has come free: %(treatment)s on %(when)s", treatment=treatment, when=when)
        )
    return clean_text(
        _("Already booked: %(treatment)s on %(when)s", treatment=treatment, when=when)
    )


def compose_waitlist_mail(
    kind: NotificationKind,
    offer: WaitlistOffer,
    clinic: Clinic,
    *,
    base_url: str,
    mail_from: str,
    now: datetime,
    message_id: str,
) -> EmailMessage:
    """Write the ``kind`` message (an offer, or that it has gone) about ``offer``, in the
    language of patient mail."""
    with in_mail_language():
        return _compose(
            kind,
            offer,
            clinic,
            base_url=base_url,
            mail_from=mail_from,
            now=now,
            message_id=message_id,
        )


def _compose(
    kind: NotificationKind,
    offer: WaitlistOffer,
    clinic: Clinic,
    *,
    base_url: str,
    mail_from: str,
    now: datetime,
    message_id: str,
) -> EmailMessage:
    if kind not in (NotificationKind.WAITLIST_OFFER, NotificationKind.WAITLIST_GONE):
        raise ValueError(f"a waitlist offer has no {kind.value} message")
    entry = offer.entry
    patient = entry.patient
    first, _ = bookable_days(clinic, now)
    days_left = [describe_day(day) for day in entry.dates if day >= first]
    context = {
        "clinic": clinic,
        "offer": offer,
        "treatment": entry.treatment,
        "practitioner": offer.practitioner,
        "patient_name": clean_text(patient.name) or "there",
        "greeting": greeting(clean_text(patient.name)),
        "offer_url": offer_url(base_url, offer),
        "entry_url": entry_url(base_url, entry),
        "book_url": f"{base_url}/book?service={entry.treatment_id}",
        "still_waiting": entry.status is EntryStatus.WAITING and bool(days_left),
        "days_left": days_left,
        "lifetime_hours": int(OFFER_LIFETIME.total_seconds() // 3600),
    }
    return write_mail(
        kind,
        clinic=clinic,
        to=(patient.name, patient.email),
        subject=_subject(kind, offer, clinic),
        context=context,
        mail_from=mail_from,
        now=now,
        message_id=message_id,
    )
