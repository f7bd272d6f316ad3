"""The second factor in the staff area: the code asked for after the password, and each staff
member's page to switch it on (a QR code for the authenticator app), get new recovery codes
or switch it off.

After a good password an account with a second factor is not logged in yet: the session only
notes, for a few minutes, whose password it was (:data:`PENDING`), and the code page finishes
the login. Roles in ``STAFF_TWO_FACTOR_ROLES`` (admins, by default) must switch it on before
the staff area lets them do anything else (scheduler.staff.auth.staff_only).
"""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext

from scheduler.extensions import db
from scheduler.ratelimit import LOGIN, rate_limited
from scheduler.sealing import keys_of
from scheduler.staff.auth import (
    current_staff,
    note_confirmed,
    password_holds,
    renew_session,
    security_event,
    staff_only,
    start_session,
    two_factor_required,
)
from scheduler.staff.forms import CodeForm, ConfirmForm
from scheduler.staff.models import User
from scheduler.staff.totp import (
    TwoFactorError,
    grouped,
    new_recovery_codes,
    new_secret,
    provisioning_uri,
    qr_svg,
    recovery_codes_left,
    renew_recovery_codes,
    seal,
    second_factor_holds,
    switch_off,
    switch_on,
    unseal,
)
from scheduler.web import clinic_or_503, now, safe_next

blueprint = Blueprint("two_factor", __name__, url_prefix="/staff")

# Whose password was right, waiting for the code: {"user", "version", "at", "next"}.
PENDING = "staff_2fa_pending"
# The new secret shown on the set-up page, sealed, until a code proves the app has it.
ENROLLING = "staff_2fa_enrolling"
# How long a good password waits for its code.
PENDING_SECONDS = 300
NO_STORE = {"Cache-Control": "no-store"}


def _keys() -> tuple[str, ...]:
    return keys_of(current_app.config)


def _seconds() -> int:
    return int(current_app.config["SESSION_CLOCK"]())


def await_code(user: User, next_url: str | None) -> ResponseReturnValue:
    """After ``user``'s good password: clear the session, note whose it was, ask for the code."""
    session.clear()
    session[PENDING] = {
        "user": user.id,
        "version": user.session_version,
        "at": _seconds(),
        "next": next_url or "",
    }
    return redirect(url_for("two_factor.code"), code=303)


def _pending_user() -> User | None:
    """The account whose password was given on this session a few minutes ago, if any."""
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or not isinstance(pending.get("at"), int):
        return None
    if _seconds() - pending["at"] >= PENDING_SECONDS:
        session.pop(PENDING, None)
        return None
    user = db.session.get(User, pending.get("user"))
    if user is None or not user.active or user.session_version != pending.get("version"):
        return None
    return user


@blueprint.route("/login/code", methods=["GET", "POST"])
@rate_limited(LOGIN)
def code() -> ResponseReturnValue:
    """Finish a login with a code from the authenticator app, or a recovery code."""
    user = _pending_user()
    if user is None:
        flash(gettext("Please log in again: the code was not entered in time."), "info")
        return redirect(url_for("staff.login"), code=303)
    clinic = clinic_or_503()
    form = CodeForm()
    if form.validate_on_submit():
        used = second_factor_holds(
            db.session(), user, form.code.data or "", now=now(), keys=_keys()
        )
        if used is not None:
            next_url = session[PENDING].get("next")
            start_session(user)
            db.session.commit()
            security_event("staff.login", user=user.id, second_factor=used)
            if used == "recovery code":
                left = recovery_codes_left(db.session(), user)
                flash(
                    gettext(
                        "You used a recovery code; %(count)d are left. Make new ones on "
                        "the two-step login page if you have lost your phone.",
                        count=left,
                    ),
                    "info",
                )
            return redirect(safe_next(next_url, url_for("staff.index")), code=303)
        db.session.commit()  # the failure count and any lock
        security_event("staff.login_refused", user=user.id, reason="code")
        form.code.errors = [
            gettext(
                "That code is wrong or was used already, or there have been too many tries: "
                "wait a minute and enter the code your app shows now."
            )
        ]
        return render_template("staff/login_code.html", form=form, clinic=clinic), 401
    status = 400 if form.is_submitted() else 200
    return render_template("staff/login_code.html", form=form, clinic=clinic), status


@blueprint.route("/confirm", methods=["GET", "POST"])
@rate_limited(LOGIN)
@staff_only()
def confirm() -> ResponseReturnValue:
    """Ask for the password again (and a code, with two-step login) before a high-value
    change, then go back to it."""
    user = current_staff()
    form = ConfirmForm()
    status = 200
    if form.validate_on_submit():
        moment = now()
        holds = password_holds(user, form.password.data or "", moment)
        if holds and user.has_second_factor:
            holds = (
                second_factor_holds(
                    db.session(), user, form.code.data or "", now=moment, keys=_keys()
                )
                is not None
            )
        db.session.commit()  # the failure count, any lock, the code's step
        if holds:
            note_confirmed()
            security_event("staff.confirmed", user=user.id)
            return redirect(safe_next(request.args.get("next"), url_for("staff.index")), code=303)
        security_event("staff.login_refused", user=user.id, reason="confirm")
        form.form_errors.append(
            gettext(
                "That password or code is wrong, or there have been too many tries: wait a "
                "minute and try again."
            )
        )
        status = 401
    elif form.is_submitted():
        status = 422
    return (
        render_template("staff/confirm.html", clinic=clinic_or_503(), form=form, user=user),
        status,
        NO_STORE,
    )


def _enrolling_secret() -> str:
    """The secret being set up on this session, made now if there is none."""
    sealed = session.get(ENROLLING)
    secret = unseal(sealed, _keys()) if isinstance(sealed, str) else None
    if secret is None:
        secret = new_secret()
        session[ENROLLING] = seal(secret, _keys())
    return secret


def _page(form: CodeForm, status: int = 200) -> ResponseReturnValue:
    user = current_staff()
    clinic = clinic_or_503()
    context: dict[str, object] = {
        "clinic": clinic,
        "form": form,
        "user": user,
        "required": two_factor_required(user),
    }
    if user.has_second_factor:
        context["codes_left"] = recovery_codes_left(db.session(), user)
    else:
        secret = _enrolling_secret()
        context["secret"] = grouped(secret)
    return render_template("staff/two_factor.html", **context), status, NO_STORE


@blueprint.get("/two-factor")
@staff_only()
def index() -> ResponseReturnValue:
    """Whether the second factor is on, and the steps to switch it on or manage it."""
    return _page(CodeForm(formdata=None))


@blueprint.get("/two-factor/qr.svg")
@staff_only()
def qr() -> ResponseReturnValue:
    """The QR code of the secret being set up, for the authenticator app to scan."""
    user = current_staff()
    uri = provisioning_uri(_enrolling_secret(), email=user.email, issuer=clinic_or_503().name)
    return qr_svg(uri), 200, {"Content-Type": "image/svg+xml", **NO_STORE}


def _codes_page(codes: list[str], status: int) -> ResponseReturnValue:
    return (
        render_template("staff/recovery_codes.html", clinic=clinic_or_503(), codes=codes),
        status,
        NO_STORE,
    )


@blueprint.post("/two-factor")
@staff_only()
def switch_on_view() -> ResponseReturnValue:
    """Switch the second factor on once a code shows the app has the secret."""
    user = current_staff()
    form = CodeForm()
    if user.has_second_factor:
        return redirect(url_for("two_factor.index"), code=303)
    if not form.validate_on_submit():
        return _page(form, 422)
    try:
        switch_on(
            db.session(),
            user,
            secret=_enrolling_secret(),
            code=form.code.data or "",
            now=now(),
            keys=_keys(),
        )
    except TwoFactorError as exc:
        db.session.rollback()
        form.code.errors = [gettext(exc.message)]
        return _page(form, 422)
    codes = new_recovery_codes(db.session(), user, now())
    renew_session(user)  # the others end; this one goes on
    db.session.commit()
    session.pop(ENROLLING, None)
    security_event("staff.second_factor_on", user=user.id)
    return _codes_page(codes, 201)


def _code_holds(form: CodeForm) -> bool:
    """Check the code a form on the page asks for; note a wrong one beside the field."""
    user = current_staff()
    if form.validate_on_submit() and second_factor_holds(
        db.session(), user, form.code.data or "", now=now(), keys=_keys()
    ):
        return True
    db.session.commit()  # the failure count and any lock
    if not form.code.errors:
        form.code.errors = [gettext("That code is wrong or was used already.")]
    return False


@blueprint.post("/two-factor/recovery-codes")
@staff_only()
def recovery_codes() -> ResponseReturnValue:
    """Replace the recovery codes (the old ones stop working), given a current code."""
    user = current_staff()
    form = CodeForm()
    if not user.has_second_factor:
        return redirect(url_for("two_factor.index"), code=303)
    if not _code_holds(form):
        return _page(form, 422)
    codes = renew_recovery_codes(db.session(), user, now())
    db.session.commit()
    security_event("staff.recovery_codes_renewed", user=user.id)
    return _codes_page(codes, 201)


@blueprint.post("/two-factor/off")
@staff_only()
def off() -> ResponseReturnValue:
    """Switch the second factor off, given a current code (not for roles that need it)."""
    user = current_staff()
    form = CodeForm()
    if not user.has_second_factor:
        return redirect(url_for("two_factor.index"), code=303)
    if two_factor_required(user):
        form.form_errors.append(gettext("Your role needs two-step login: it stays on."))
        return _page(form, 422)
    if not _code_holds(form):
        return _page(form, 422)
    switch_off(db.session(), user, now())
    renew_session(user)
    db.session.commit()
    security_event("staff.second_factor_off", user=user.id)
    flash(gettext("Two-step login is off. Your other sessions are logged out."), "info")
    return redirect(url_for("two_factor.index"), code=303)
