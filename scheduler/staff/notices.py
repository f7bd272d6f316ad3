"""Mail to a staff member when their password, two-step login or role changes, so that a
change they did not make does not go unseen (OWASP ASVS 2.2.3, 2.5.5).

The notice is queued in the outbox with the change, in its transaction, and sent by the
dispatcher like patient mail; it says what changed and when, never a password or a code.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from flask_babel import gettext as _
from sqlalchemy.orm import Session

from scheduler.clinic.models import Clinic
from scheduler.i18n import format_local, in_mail_language
from scheduler.notifications.envelope import write_mail
from scheduler.notifications.models import (
    AccountChange,
    Notification,
    NotificationKind,
    NotificationStatus,
)
from scheduler.staff.models import User


def queue_notice(session: Session, user: User, change: AccountChange, now: datetime) -> None:
    """Queue a notice to ``user`` that ``change`` happened to their account at ``now``."""
    session.add(
        Notification(
            user=user,
            kind=NotificationKind.ACCOUNT,
            variant=int(change),
            status=NotificationStatus.PENDING,
            due_at=now,
            next_attempt_at=now,
            created_at=now,
        )
    )


def _what(change: AccountChange) -> str:
    return {
        AccountChange.PASSWORD_CHANGED: _("The password of your staff account was changed."),
        AccountChange.PASSWORD_RESET: _(
            "An admin set a new password for your staff account; you choose your own when you "
            "next log in."
        ),
        AccountChange.TWO_FACTOR_ON: _("Two-step login was switched on for your staff account."),
        AccountChange.TWO_FACTOR_OFF: _("Two-step login was switched off for your staff account."),
        AccountChange.TWO_FACTOR_REMOVED: _(
            "Two-step login was removed from your staff account; you set it up again when you "
            "next log in."
        ),
        AccountChange.RECOVERY_CODES: _(
            "New recovery codes were made for your staff account; the old ones no longer work."
        ),
        AccountChange.ROLE_CHANGED: _(
            "An admin changed your staff account's role or whether it may log in."
        ),
        AccountChange.SECURITY_KEY_ADDED: _(
            "A security key was added to your staff account's two-step login."
        ),
        AccountChange.SECURITY_KEY_REMOVED: _(
            "A security key was removed from your staff account's two-step login."
        ),
    }[change]


def compose_notice(
    notification: Notification,
    clinic: Clinic,
    *,
    base_url: str,
    mail_from: str,
    now: datetime,
    message_id: str,
) -> EmailMessage:
    """Write the account notice ``notification`` stands for."""
    user = notification.user
    if user is None or notification.kind is not NotificationKind.ACCOUNT:
        raise ValueError("an account notice needs its account")
    change = AccountChange(notification.variant)
    with in_mail_language():
        context = {
            "clinic": clinic,
            "what": _what(change),
            "when": format_local(notification.created_at, clinic.tz),
            "email": user.email,
            "login_url": f"{base_url}/staff/login",
        }
        return write_mail(
            NotificationKind.ACCOUNT,
            clinic=clinic,
            to=("", user.email),
            subject=_("Your staff account at %(clinic)s changed", clinic=clinic.name),
            context=context,
            mail_from=mail_from,
            now=now,
            message_id=message_id,
        )
