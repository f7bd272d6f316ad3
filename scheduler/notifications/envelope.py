"""The envelope and body every message shares, whatever it is about and whoever it is for."""

from __future__ import annotations

import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from flask import render_template

from scheduler.calendars.export import clean_text
from scheduler.clinic.models import Clinic
from scheduler.notifications.models import NotificationKind

# The characters that make a display name need quotes. Python's email package can drop those
# quotes when it folds a long header (3.11.7 does), and "Eve, evil@example.com <eve@…>" then
# reads as two addresses in the patient's mail program; names go without them instead, and
# without "=?", which would start an encoded word that mail programs decode into anything.
_NEEDS_QUOTES = re.compile(r'[",:;<>@()\[\]\\]|=\?')


def display_name(name: str) -> str:
    """Return ``name`` as one clean line that needs no quotes in an address header."""
    return " ".join(_NEEDS_QUOTES.sub(" ", clean_text(name)).split())


def write_mail(
    kind: NotificationKind,
    *,
    clinic: Clinic,
    to: tuple[str, str],
    subject: str,
    context: dict[str, Any],
    mail_from: str,
    now: datetime,
    message_id: str,
) -> EmailMessage:
    """Write a ``kind`` message from the clinic to ``to`` (a name, which may be empty, and an
    address): plain text and HTML from
    ``templates/mail/KIND.txt`` and ``.html``. Names and the subject are reduced to one clean
    line (names also lose the characters that would need quotes); the message's policy refuses
    line breaks in a header."""
    message = EmailMessage()
    message["Subject"] = clean_text(subject)
    message["From"] = Address(display_name(clinic.name), addr_spec=mail_from)
    name, address = to
    message["To"] = Address(display_name(name), addr_spec=address)
    if clinic.email:
        message["Reply-To"] = Address(display_name(clinic.name), addr_spec=clinic.email)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    template = f"mail/{kind.value}"
    message.set_content(render_template(f"{template}.txt", **context))
    message.add_alternative(render_template(f"{template}.html", **context), subtype="html")
    return message
