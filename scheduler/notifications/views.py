"""The staff's view of patient mail: the outbox with every attempt, resending, the mail folder."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.errors import MessageError
from email.message import EmailMessage
from pathlib import Path

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from scheduler import mail
from scheduler.booking.models import Booking
from scheduler.clinic.models import Clinic
from scheduler.extensions import db
from scheduler.notifications.dispatch import unwanted
from scheduler.notifications.messages import write_message
from scheduler.notifications.models import Notification, NotificationStatus
from scheduler.notifications.operations import resend as resend_notification
from scheduler.ratelimit import RESEND, rate_limited
from scheduler.security import email_document
from scheduler.staff.auth import staff_only
from scheduler.staff.models import Role
from scheduler.waitlist.models import WaitlistEntry, WaitlistOffer
from scheduler.web import clinic_or_503, now

blueprint = Blueprint("notifications", __name__, url_prefix="/staff")

PAGE_SIZE = 100


@blueprint.get("/notifications/")
@staff_only(Role.ADMIN, Role.RECEPTION)
def outbox() -> ResponseReturnValue:
    """List patient mail, newest first, optionally one status only."""
    clinic = clinic_or_503()
    status_filter = request.args.get("status", "")
    query = (
        select(Notification)
        .options(
            selectinload(Notification.booking).selectinload(Booking.patient),
            selectinload(Notification.waitlist_offer)
            .selectinload(WaitlistOffer.entry)
            .selectinload(WaitlistEntry.patient),
        )
        .where(Notification.user_id.is_(None))  # staff account notices are no patient's mail
        .order_by(Notification.next_attempt_at.desc(), Notification.id.desc())
    )
    if status_filter in NotificationStatus.__members__.values():
        query = query.where(Notification.status == NotificationStatus(status_filter))
    else:
        status_filter = ""
    before = request.args.get("before", "")
    if before.isascii() and before.isdigit() and len(before) < 10:
        query = query.where(Notification.id < int(before))
    rows = db.session.scalars(query.limit(PAGE_SIZE + 1)).all()
    return render_template(
        "staff/notifications.html",
        clinic=clinic,
        rows=rows[:PAGE_SIZE],
        more=len(rows) > PAGE_SIZE,
        statuses=list(NotificationStatus),
        status_filter=status_filter,
    )


def _notification_or_404(notification_id: int) -> Notification:
    notification = db.session.get(Notification, notification_id)
    if notification is None or notification.user_id is not None:
        abort(404)
    return notification


def _preview(notification: Notification, clinic: Clinic) -> tuple[EmailMessage | None, str | None]:
    """Write the message as it would go out now; or say why it would not."""
    reason = unwanted(notification, now())
    if reason is not None:
        return None, reason
    try:
        message = write_message(
            db.session(),
            notification,
            clinic,
            base_url=current_app.config["BASE_URL"],
            mail_from=current_app.config["MAIL_FROM"],
            now=now(),
            message_id=f"<preview-{notification.id}@localhost>",
        )
    except (ValueError, MessageError) as exc:
        return None, f"the message cannot be written ({exc})"
    return message, None


def _bodies(message: EmailMessage) -> tuple[str, str, str]:
    """Return the plain text, the HTML and the calendar file of ``message`` (each may be '')."""
    found = {"text/plain": "", "text/html": "", "text/calendar": ""}
    for part in message.walk():
        kind = part.get_content_type()
        if kind in found and not found[kind] and not part.get_filename():
            content = part.get_content()
            found[kind] = (
                content if isinstance(content, str) else content.decode("utf-8", "replace")
            )
    return found["text/plain"], found["text/html"], found["text/calendar"]


@blueprint.get("/notifications/<int:notification_id>")
@staff_only(Role.ADMIN, Role.RECEPTION)
def notification(notification_id: int) -> ResponseReturnValue:
    """Show one message: its attempts, and what it says if it went out now."""
    clinic = clinic_or_503()
    item = _notification_or_404(notification_id)
    preview, reason = _preview(item, clinic)
    text, html, invite = _bodies(preview) if preview is not None else ("", "", "")
    return render_template(
        "staff/notification.html",
        clinic=clinic,
        item=item,
        preview=preview,
        text=text,
        html=html,
        invite=invite,
        reason=reason,
    )


@blueprint.get("/notifications/<int:notification_id>/html")
@email_document
@staff_only(Role.ADMIN, Role.RECEPTION)
def notification_html(notification_id: int) -> ResponseReturnValue:
    """The HTML of a message as it would go out now, for the frame on its page."""
    preview, _ = _preview(_notification_or_404(notification_id), clinic_or_503())
    return _html_or_404(preview)


def _html_or_404(message: EmailMessage | None) -> str:
    html = _bodies(message)[1] if message is not None else ""
    if not html:
        abort(404)
    return html


@blueprint.post("/notifications/<int:notification_id>/resend")
@rate_limited(RESEND)
@staff_only(Role.ADMIN, Role.RECEPTION)
def resend(notification_id: int) -> ResponseReturnValue:
    """Queue a message to go (again) as soon as a dispatcher gets to it."""
    item = _notification_or_404(notification_id)
    reason = unwanted(item, now())
    if reason is not None:
        flash(gettext("Not sent again: %(reason)s.", reason=reason), "error")
    else:
        resend_notification(item, now())
        db.session.commit()
        flash(gettext("Queued to be sent again."), "success")
    return redirect(url_for("notifications.notification", notification_id=item.id), code=303)


@blueprint.get("/mail/")
@staff_only(Role.ADMIN, Role.RECEPTION)
def mail_folder() -> ResponseReturnValue:
    """List the messages written to the mail folder (when no SMTP server is set)."""
    clinic = clinic_or_503()
    folder = mail.mail_folder(current_app.config, current_app.instance_path)
    names = sorted(
        (path.name for path in folder.glob("*.eml") if mail.EML_NAME.fullmatch(path.name)),
        reverse=True,
    )[:PAGE_SIZE]
    messages = []
    for name in names:
        parsed = _read_eml(folder / name)
        if parsed is not None:
            messages.append((name, parsed))
    return render_template(
        "staff/mail.html",
        clinic=clinic,
        folder=folder,
        messages=messages,
        smtp=bool(current_app.config.get("SMTP_URL")),
    )


def _read_eml(path: Path) -> EmailMessage | None:
    try:
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
    except OSError:
        return None
    return parsed if isinstance(parsed, EmailMessage) else None


def _eml_or_404(name: str) -> EmailMessage:
    if not mail.EML_NAME.fullmatch(name):
        abort(404)
    message = _read_eml(mail.mail_folder(current_app.config, current_app.instance_path) / name)
    if message is None:
        abort(404)
    return message


@blueprint.get("/mail/<name>")
@staff_only(Role.ADMIN, Role.RECEPTION)
def mail_message(name: str) -> ResponseReturnValue:
    """Show one message from the mail folder."""
    clinic = clinic_or_503()
    message = _eml_or_404(name)
    text, html, invite = _bodies(message)
    return render_template(
        "staff/mail_message.html",
        clinic=clinic,
        name=name,
        message=message,
        text=text,
        html=html,
        invite=invite,
    )


@blueprint.get("/mail/<name>/html")
@email_document
@staff_only(Role.ADMIN, Role.RECEPTION)
def mail_message_html(name: str) -> ResponseReturnValue:
    """The HTML of a message in the mail folder, for the frame on its page."""
    return _html_or_404(_eml_or_404(name))
