"""Personal API tokens in the staff area: each member of staff creates and revokes their own;
admins see and revoke everyone's."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext

from scheduler.extensions import db
from scheduler.staff.auth import current_staff, staff_only
from scheduler.staff.forms import RevokeTokenForm, TokenForm
from scheduler.staff.models import ApiToken, Role
from scheduler.staff.tokens import (
    LIFETIMES,
    TokenError,
    issue_token,
    may_revoke,
    revoke_token,
    tokens_visible_to,
)
from scheduler.web import clinic_or_503, external_url, now

blueprint = Blueprint("tokens", __name__, url_prefix="/staff/tokens")


def _page(
    form: TokenForm, *, new_token: ApiToken | None = None, secret: str = "", status: int = 200
) -> ResponseReturnValue:
    user = current_staff()
    return (
        render_template(
            "staff/tokens.html",
            clinic=clinic_or_503(),
            form=form,
            revoke_form=RevokeTokenForm(formdata=None),
            tokens=tokens_visible_to(db.session(), user),
            now=now(),
            everyone=user.role is Role.ADMIN,
            new_token=new_token,
            secret=secret,
            api_url=external_url("api.staff_bookings"),
        ),
        status,
        # The page may show a token that must not linger in a cache.
        {"Cache-Control": "no-store"},
    )


@blueprint.get("/")
@staff_only()
def index() -> ResponseReturnValue:
    """The staff member's tokens (everyone's for an admin) and a form for a new one."""
    return _page(TokenForm(formdata=None))


@blueprint.post("/")
@staff_only()
def create() -> ResponseReturnValue:
    """Create a token and show it, this once."""
    form = TokenForm()
    if not form.validate_on_submit():
        return _page(form, status=422)
    try:
        token, secret = issue_token(
            db.session(),
            user=current_staff(),
            name=form.name.data or "",
            now=now(),
            days=form.days.data or LIFETIMES[0],
        )
    except TokenError as exc:
        db.session.rollback()
        field = {"name": form.name, "days": form.days}.get(exc.field or "")
        if field is not None:
            field.errors = [*field.errors, exc.message]
        else:
            form.form_errors.append(exc.message)
        return _page(form, status=422)
    db.session.commit()
    return _page(TokenForm(formdata=None), new_token=token, secret=secret, status=201)


@blueprint.post("/<int:token_id>/revoke")
@staff_only()
def revoke(token_id: int) -> ResponseReturnValue:
    """Revoke a token: anything using it is refused from now on."""
    token = db.session.get(ApiToken, token_id)
    # Someone else's token is as good as missing, so ids cannot be probed.
    if token is None or not may_revoke(current_staff(), token):
        abort(404)
    if not RevokeTokenForm().validate_on_submit():
        abort(400)
    revoke_token(db.session(), token=token, now=now())
    db.session.commit()
    flash(
        gettext(
            "The token “%(name)s” is revoked; anything still using it is refused.", name=token.name
        ),
        "success",
    )
    return redirect(url_for("tokens.index"), 303)
