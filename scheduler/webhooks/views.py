"""Webhooks in the staff area, for admins: register addresses, see and replay deliveries."""

from __future__ import annotations

import json

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy import func, select

from scheduler.extensions import db
from scheduler.staff.auth import staff_only
from scheduler.staff.models import Role
from scheduler.web import clinic_or_503, now
from scheduler.webhooks.forms import WebhookForm
from scheduler.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery
from scheduler.webhooks.operations import (
    WebhookError,
    create_webhook,
    delete_webhook,
    replay,
    rotate_secret,
    signing_secrets,
    update_webhook,
)

blueprint = Blueprint("webhooks", __name__, url_prefix="/staff/webhooks")

PAGE_SIZE = 50


def _webhook_or_404(webhook_id: int) -> Webhook:
    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None:
        abort(404)
    return webhook


def _delivery_or_404(webhook: Webhook, delivery_id: int) -> WebhookDelivery:
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.webhook_id != webhook.id:
        abort(404)
    return delivery


def _show_error(form: WebhookForm, error: WebhookError) -> None:
    db.session.rollback()
    target = getattr(form, error.field or "", None)
    if target is not None:
        target.errors = [*target.errors, error.message]
    else:
        form.form_errors.append(error.message)


@blueprint.get("/")
@staff_only(Role.ADMIN)
def index() -> ResponseReturnValue:
    """Every webhook, with how its deliveries stand."""
    webhooks = db.session.scalars(select(Webhook).order_by(Webhook.created_at, Webhook.id)).all()
    counts: dict[int, dict[DeliveryStatus, int]] = {w.id: {} for w in webhooks}
    for webhook_id, status, count in db.session.execute(
        select(WebhookDelivery.webhook_id, WebhookDelivery.status, func.count()).group_by(
            WebhookDelivery.webhook_id, WebhookDelivery.status
        )
    ):
        counts.setdefault(webhook_id, {})[status] = count
    return render_template(
        "staff/webhooks/index.html",
        clinic=clinic_or_503(),
        webhooks=webhooks,
        counts=counts,
        statuses=list(DeliveryStatus),
    )


@blueprint.route("/new", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
def new() -> ResponseReturnValue:
    """Register an address for some events; it gets a new secret."""
    form = WebhookForm()
    status = 200
    if form.validate_on_submit():
        try:
            webhook = create_webhook(
                db.session(),
                url=form.url.data or "",
                events=form.chosen_events(),
                now=now(),
                allow_private=_allow_private(),
            )
        except WebhookError as exc:
            _show_error(form, exc)
            status = 422
        else:
            db.session.commit()
            flash(gettext("The webhook is registered. Copy its secret to the receiver."), "success")
            return redirect(url_for("webhooks.detail", webhook_id=webhook.id), 303)
    elif form.is_submitted():
        status = 422
    return render_template("staff/webhooks/new.html", clinic=clinic_or_503(), form=form), status


def _allow_private() -> bool:
    return bool(current_app.config["WEBHOOK_ALLOW_PRIVATE"])


def _edit_form(webhook: Webhook) -> WebhookForm:
    """The webhook's form, filled from the webhook unless it is the one posted."""
    values = {
        "url": webhook.url,
        "events": [event.value for event in webhook.events],
        "active": webhook.active,
    }
    if request.method == "POST":
        return WebhookForm(data=values)
    return WebhookForm(formdata=None, data=values)


@blueprint.route("/<int:webhook_id>", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
def detail(webhook_id: int) -> ResponseReturnValue:
    """Show a webhook (its secret, its deliveries) and change its address, events or state."""
    webhook = _webhook_or_404(webhook_id)
    form = _edit_form(webhook)
    status = 200
    if form.validate_on_submit():
        try:
            update_webhook(
                db.session(),
                webhook=webhook,
                url=form.url.data or "",
                events=form.chosen_events(),
                active=bool(form.active.data),
                allow_private=_allow_private(),
            )
        except WebhookError as exc:
            _show_error(form, exc)
            webhook = _webhook_or_404(webhook_id)
            status = 422
        else:
            db.session.commit()
            flash(
                gettext("The webhook is saved.")
                if webhook.active
                else gettext("The webhook is off."),
                "success",
            )
            return redirect(url_for("webhooks.detail", webhook_id=webhook.id), 303)
    elif form.is_submitted():
        status = 422
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook.id)
        .order_by(WebhookDelivery.id.desc())
    )
    before = request.args.get("before", "")
    if before.isascii() and before.isdigit() and len(before) < 10:
        query = query.where(WebhookDelivery.id < int(before))
    rows = db.session.scalars(query.limit(PAGE_SIZE + 1)).all()
    return render_template(
        "staff/webhooks/detail.html",
        clinic=clinic_or_503(),
        webhook=webhook,
        form=form,
        deliveries=rows[:PAGE_SIZE],
        more=len(rows) > PAGE_SIZE,
        previous_signs=len(signing_secrets(webhook, now())) > 1,
    ), status


@blueprint.post("/<int:webhook_id>/rotate")
@staff_only(Role.ADMIN)
def rotate(webhook_id: int) -> ResponseReturnValue:
    """Give the webhook a new secret; the old one also signs for the next 24 hours."""
    webhook = _webhook_or_404(webhook_id)
    rotate_secret(webhook, now())
    db.session.commit()
    flash(
        gettext(
            "A new secret is made. For the next 24 hours deliveries carry a signature with the "
            "old secret too; copy the new one to the receiver."
        ),
        "success",
    )
    return redirect(url_for("webhooks.detail", webhook_id=webhook.id), 303)


@blueprint.post("/<int:webhook_id>/delete")
@staff_only(Role.ADMIN)
def delete(webhook_id: int) -> ResponseReturnValue:
    """Remove the webhook and its deliveries."""
    webhook = _webhook_or_404(webhook_id)
    url = webhook.url
    delete_webhook(db.session(), webhook)
    db.session.commit()
    flash(gettext("The webhook for %(url)s is deleted.", url=url), "success")
    return redirect(url_for("webhooks.index"), 303)


@blueprint.get("/<int:webhook_id>/deliveries/<int:delivery_id>")
@staff_only(Role.ADMIN)
def delivery(webhook_id: int, delivery_id: int) -> ResponseReturnValue:
    """Show one delivery: its payload and every try with the receiver's answer."""
    webhook = _webhook_or_404(webhook_id)
    item = _delivery_or_404(webhook, delivery_id)
    try:
        pretty = json.dumps(json.loads(item.payload), indent=2, ensure_ascii=False)
    except ValueError:  # pragma: no cover - the payload is always written as JSON
        pretty = item.payload
    return render_template(
        "staff/webhooks/delivery.html",
        clinic=clinic_or_503(),
        webhook=webhook,
        item=item,
        payload=pretty,
    )


@blueprint.post("/<int:webhook_id>/deliveries/<int:delivery_id>/replay")
@staff_only(Role.ADMIN)
def replay_delivery(webhook_id: int, delivery_id: int) -> ResponseReturnValue:
    """Queue a delivery to go again at once, with the same payload."""
    webhook = _webhook_or_404(webhook_id)
    item = _delivery_or_404(webhook, delivery_id)
    try:
        replay(item, now())
    except WebhookError as exc:
        db.session.rollback()
        flash(gettext("Not queued again: %(reason)s", reason=exc.message), "error")
    else:
        db.session.commit()
        flash(gettext("Queued to be delivered again."), "success")
    return redirect(
        url_for("webhooks.delivery", webhook_id=webhook_id, delivery_id=delivery_id), 303
    )
