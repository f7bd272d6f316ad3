"""Staff accounts, for the admin: who may log in, in which role, and a new password when
someone forgets theirs."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from scheduler.clinic.models import Practitioner
from scheduler.extensions import db
from scheduler.notifications.models import AccountChange
from scheduler.staff.auth import (
    current_staff,
    needs_confirmation,
    pepper_of,
    security_event,
    staff_only,
)
from scheduler.staff.forms import (
    AccountForm,
    NewAccountForm,
    PasswordResetForm,
    ResetTwoFactorForm,
)
from scheduler.staff.models import Role, User
from scheduler.staff.operations import AccountError, create_user, set_new_password, update_user
from scheduler.staff.totp import switch_off
from scheduler.web import clinic_or_503, now

blueprint = Blueprint("users", __name__, url_prefix="/staff/users")


def _offer_practitioners(form: AccountForm) -> dict[int, Practitioner]:
    practitioners = {
        p.id: p for p in db.session.scalars(select(Practitioner).order_by(Practitioner.name))
    }
    form.practitioner.choices = [SelectChoice("", gettext("None"))] + [
        SelectChoice(str(p.id), p.name if p.active else gettext("%(name)s (archived)", name=p.name))
        for p in practitioners.values()
    ]
    return practitioners


def _user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _account_form(account: User, *, posted: bool = True) -> AccountForm:
    """The account's form, filled from the account; what was posted wins when it is this
    form that was posted (``posted``), and is ignored when another form on the page was."""
    values = {
        "role": account.role.value,
        "practitioner": account.practitioner_id,
        "active": account.active,
    }
    return AccountForm(data=values) if posted else AccountForm(formdata=None, data=values)


def _edit_page(
    account: User, form: AccountForm, password_form: PasswordResetForm, status: int
) -> ResponseReturnValue:
    return render_template(
        "staff/users/edit.html",
        clinic=clinic_or_503(),
        form=form,
        account=account,
        password_form=password_form,
        reset_form=ResetTwoFactorForm(formdata=None),
    ), status


def _show_error(form: AccountForm, error: AccountError) -> None:
    db.session.rollback()
    target = getattr(form, error.field or "", None)
    if target is not None:
        target.errors = [*target.errors, error.message]
    else:
        form.form_errors.append(error.message)


@blueprint.get("/")
@staff_only(Role.ADMIN)
def index() -> ResponseReturnValue:
    """Every staff account."""
    accounts = db.session.scalars(select(User).order_by(User.active.desc(), User.email)).all()
    return render_template(
        "staff/users/index.html", clinic=clinic_or_503(), accounts=accounts, now=now()
    )


@blueprint.route("/new", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
@needs_confirmation
def new() -> ResponseReturnValue:
    """Add an account."""
    form = NewAccountForm()
    practitioners = _offer_practitioners(form)
    status = 200
    if form.validate_on_submit():
        try:
            user = create_user(
                db.session(),
                email=form.email.data or "",
                role=Role(form.role.data),
                password=form.password.data or "",
                practitioner=practitioners.get(form.practitioner.data or 0),
                temporary=True,
                pepper=pepper_of(),
            )
        except AccountError as exc:
            _show_error(form, exc)
            status = 422
        else:
            db.session.commit()
            flash(
                gettext(
                    "%(email)s can log in now, and will choose their own password first.",
                    email=user.email,
                ),
                "success",
            )
            return redirect(url_for("users.index"), 303)
    elif form.is_submitted():
        status = 422
    return render_template(
        "staff/users/edit.html", clinic=clinic_or_503(), form=form, account=None
    ), status


@blueprint.route("/<int:user_id>", methods=["GET", "POST"])
@staff_only(Role.ADMIN)
@needs_confirmation
def edit(user_id: int) -> ResponseReturnValue:
    """Change an account's role or practitioner, or switch it off."""
    account = _user_or_404(user_id)
    form = _account_form(account)
    practitioners = _offer_practitioners(form)
    status = 200
    if form.validate_on_submit():
        try:
            update_user(
                db.session(),
                user=account,
                role=Role(form.role.data),
                practitioner=practitioners.get(form.practitioner.data or 0),
                active=bool(form.active.data),
                acting=current_staff(),
                now=now(),
            )
        except AccountError as exc:
            _show_error(form, exc)
            status = 422
        else:
            db.session.commit()
            flash(gettext("%(email)s is saved.", email=account.email), "success")
            return redirect(url_for("users.index"), 303)
    elif form.is_submitted():
        status = 422
    return _edit_page(account, form, PasswordResetForm(formdata=None), status)


@blueprint.post("/<int:user_id>/password")
@staff_only(Role.ADMIN)
@needs_confirmation
def reset_password(user_id: int) -> ResponseReturnValue:
    """Set a new password for someone who forgot theirs; it also unlocks the account."""
    account = _user_or_404(user_id)
    password_form = PasswordResetForm()
    if not password_form.validate_on_submit():
        form = _account_form(account, posted=False)
        _offer_practitioners(form)
        return _edit_page(account, form, password_form, 422)
    try:
        set_new_password(
            db.session(), account, password_form.password.data or "", now(), pepper=pepper_of()
        )
    except AccountError as exc:
        db.session.rollback()
        password_form.password.errors = [exc.message]
        form = _account_form(account, posted=False)
        _offer_practitioners(form)
        return _edit_page(account, form, password_form, 422)
    db.session.commit()
    security_event("staff.password_reset", user=account.id, by=current_staff().id)
    flash(
        gettext(
            "%(email)s has a new password, is logged out everywhere, and will choose their "
            "own password when they next log in.",
            email=account.email,
        ),
        "success",
    )
    return redirect(url_for("users.index"), 303)


@blueprint.post("/<int:user_id>/two-factor/reset")
@staff_only(Role.ADMIN)
@needs_confirmation
def reset_two_factor(user_id: int) -> ResponseReturnValue:
    """Remove the second factor of someone who lost their phone and their recovery codes;
    they log in with their password and set it up again."""
    account = _user_or_404(user_id)
    if not ResetTwoFactorForm().validate_on_submit():
        abort(400)
    if account.id == current_staff().id:
        abort(400)  # one's own is switched off on the two-step login page, with a code
    switch_off(db.session(), account, now(), AccountChange.TWO_FACTOR_REMOVED)
    db.session.commit()
    security_event("staff.second_factor_reset", user=account.id, by=current_staff().id)
    flash(
        gettext(
            "Two-step login is removed from %(email)s, who is logged out everywhere and sets "
            "it up again when they next log in.",
            email=account.email,
        ),
        "success",
    )
    return redirect(url_for("users.edit", user_id=account.id), 303)
