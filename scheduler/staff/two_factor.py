"""The second factor in the staff area: the code (or security key) asked for after the
password, and each staff member's page to switch it on (a QR code for the authenticator app),
add security keys, get new recovery codes or switch it off.

After a good password an account with a second factor is not logged in yet: the session only
notes, for a few minutes, whose password it was (:data:`PENDING`), and the code page finishes
the login. Roles in ``STAFF_TWO_FACTOR_ROLES`` (admins, by default) must switch it on before
the staff area lets them do anything else (scheduler.staff.auth.staff_only).
"""

from __future__ import annotations

from datetime import datetime

from flask import (
    Blueprint,
    abort,
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
from scheduler.i18n import N_
from scheduler.ratelimit import LOGIN, rate_limited
from scheduler.sealing import keys_of
from scheduler.staff.auth import (
    confirmed_recently,
    current_staff,
    needs_confirmation,
    note_confirmed,
    password_holds,
    renew_session,
    security_event,
    staff_only,
    start_session,
    two_factor_required,
)
from scheduler.staff.forms import (
    AddKeyForm,
    CodeForm,
    ConfirmForm,
    KeyLoginForm,
    RemoveKeyForm,
)
from scheduler.staff.models import SecurityKey, User
from scheduler.staff.security_keys import (
    SecurityKeyError,
    Site,
    add_key,
    key_holds,
    login_options,
    registration_options,
    remove_key,
    site_of,
    user_handle,
)
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
# The challenge a security key is to sign, until its answer comes: {"challenge", "at", "for"}.
KEY_CHALLENGE = "staff_key_challenge"
# How long a good password waits for its code, and a challenge for the key's answer.
PENDING_SECONDS = 300
NO_STORE = {"Cache-Control": "no-store"}


def _keys() -> tuple[str, ...]:
    return keys_of(current_app.config)


def _seconds() -> int:
    return int(current_app.config["SESSION_CLOCK"]())


def _site() -> Site | None:
    """Who security keys answer to here (from ``BASE_URL``), or ``None`` if keys cannot work
    at this address."""
    return site_of(current_app.config["BASE_URL"])


def _new_challenge(purpose: str, challenge: bytes) -> None:
    from webauthn.helpers import bytes_to_base64url  # as security_keys says, only when used

    session[KEY_CHALLENGE] = {
        "challenge": bytes_to_base64url(challenge),
        "at": _seconds(),
        "for": purpose,
    }


def _take_challenge(purpose: str) -> bytes | None:
    """The challenge this session's page for ``purpose`` asked a key to sign, once; ``None``
    if there is none, it was for another page, or it is too old."""
    kept = session.pop(KEY_CHALLENGE, None)
    if not isinstance(kept, dict) or kept.get("for") != purpose:
        return None
    if not isinstance(kept.get("at"), int) or _seconds() - kept["at"] >= PENDING_SECONDS:
        return None
    from webauthn.helpers import base64url_to_bytes

    try:
        return base64url_to_bytes(str(kept.get("challenge")))
    except ValueError:
        return None


def _key_options(user: User, purpose: str) -> str | None:
    """The options for a page's "Use your security key" button, if ``user`` has a key that
    can work here; their challenge is kept for the answer."""
    site = _site()
    options = None if site is None else login_options(user, site)
    if options is None:
        return None
    _new_challenge(purpose, options[1])
    return options[0]


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


def _finish_login(user: User, used: str) -> ResponseReturnValue:
    """Log ``user`` in, their second step made with ``used``; go where they were going."""
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


def _code_page(
    user: User, form: CodeForm, key_form: KeyLoginForm, status: int
) -> ResponseReturnValue:
    return (
        render_template(
            "staff/login_code.html",
            form=form,
            key_form=key_form,
            key_options=_key_options(user, "login"),
            clinic=clinic_or_503(),
        ),
        status,
        NO_STORE,
    )


def _login_expired() -> ResponseReturnValue:
    flash(gettext("Please log in again: the code was not entered in time."), "info")
    return redirect(url_for("staff.login"), code=303)


@blueprint.route("/login/code", methods=["GET", "POST"])
@rate_limited(LOGIN)
def code() -> ResponseReturnValue:
    """Finish a login with a code from the authenticator app, or a recovery code."""
    user = _pending_user()
    if user is None:
        return _login_expired()
    form = CodeForm()
    key_form = KeyLoginForm(formdata=None)
    if form.validate_on_submit():
        used = second_factor_holds(
            db.session(), user, form.code.data or "", now=now(), keys=_keys()
        )
        if used is not None:
            return _finish_login(user, used)
        db.session.commit()  # the failure count and any lock
        security_event("staff.login_refused", user=user.id, reason="code")
        form.code.errors = [
            gettext(
                "That code is wrong or was used already, or there have been too many tries: "
                "wait a minute and enter the code your app shows now."
            )
        ]
        return _code_page(user, form, key_form, 401)
    return _code_page(user, form, key_form, 400 if form.is_submitted() else 200)


@blueprint.post("/login/key")
@rate_limited(LOGIN)
def key_login() -> ResponseReturnValue:
    """Finish a login with a security key's answer to the code page's challenge."""
    user = _pending_user()
    if user is None:
        return _login_expired()
    key_form = KeyLoginForm()
    site = _site()
    if not key_form.validate_on_submit() or site is None:
        return _code_page(user, CodeForm(formdata=None), key_form, 400)
    key = key_holds(
        db.session(),
        user,
        key_form.credential.data or "",
        challenge=_take_challenge("login"),
        site=site,
        now=now(),
    )
    if key is not None:
        return _finish_login(user, "security key")
    db.session.commit()  # the failure count and any lock
    security_event("staff.login_refused", user=user.id, reason="security key")
    key_form.credential.errors = [
        gettext(
            "That key is not one of this account's, or its answer came too late, or there "
            "have been too many tries: wait a minute and try again, or enter a code."
        )
    ]
    return _code_page(user, CodeForm(formdata=None), key_form, 401)


def _second_step_holds(user: User, form: ConfirmForm, moment: datetime) -> bool:
    """Check the confirmation's second step: the security key's answer if the page sent
    one (and keys work here), else the code."""
    site = _site()
    if form.credential.data and site is not None:
        answer = form.credential.data
        challenge = _take_challenge("confirm")
        key = key_holds(db.session(), user, answer, challenge=challenge, site=site, now=moment)
        return key is not None
    code = form.code.data or ""
    return second_factor_holds(db.session(), user, code, now=moment, keys=_keys()) is not None


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
            holds = _second_step_holds(user, form, moment)
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
        render_template(
            "staff/confirm.html",
            clinic=clinic_or_503(),
            form=form,
            user=user,
            key_options=_key_options(user, "confirm") if user.has_second_factor else None,
        ),
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


def _page(
    form: CodeForm, status: int = 200, key_form: AddKeyForm | None = None
) -> ResponseReturnValue:
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
        context.update(_keys_context(user, clinic.name, key_form))
    else:
        secret = _enrolling_secret()
        context["secret"] = grouped(secret)
    return render_template("staff/two_factor.html", **context), status, NO_STORE


def _keys_context(user: User, clinic_name: str, key_form: AddKeyForm | None) -> dict[str, object]:
    """What the page's security-key section shows: the keys, and the form to add one, with
    the options for the browser, while the login is recent enough to make the change."""
    site = _site()
    may_add = confirmed_recently()
    context: dict[str, object] = {
        "keys": user.security_keys,
        "keys_work_here": site is not None,
        "remove_form": RemoveKeyForm(formdata=None),
        "may_add": may_add,
    }
    if site is not None and may_add:
        try:
            options, challenge = registration_options(
                user,
                site,
                handle=user_handle(user, current_app.config["SECRET_KEY"]),
                clinic_name=clinic_name,
            )
        except SecurityKeyError as exc:
            context["key_limit"] = gettext(exc.message)
        else:
            _new_challenge("add", challenge)
            context["add_options"] = options
    context["key_form"] = key_form or AddKeyForm(formdata=None)
    return context


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


@blueprint.post("/two-factor/keys")
@staff_only()
@needs_confirmation
def add_key_view() -> ResponseReturnValue:
    """Add a security key, given its answer to the page's challenge and a name."""
    user = current_staff()
    form = AddKeyForm()
    site = _site()
    if not user.has_second_factor or site is None:
        return redirect(url_for("two_factor.index"), code=303)
    if not form.validate_on_submit():
        return _page(CodeForm(formdata=None), 422, key_form=form)
    challenge = _take_challenge("add")
    try:
        if challenge is None:
            raise SecurityKeyError(
                N_("The key's answer came too late or from another page. Please try again.")
            )
        key = add_key(
            db.session(),
            user,
            name=form.name.data or "",
            credential=form.credential.data or "",
            challenge=challenge,
            site=site,
            now=now(),
        )
    except SecurityKeyError as exc:
        db.session.rollback()
        form.credential.errors = [gettext(exc.message)]
        return _page(CodeForm(formdata=None), 422, key_form=form)
    db.session.commit()
    security_event("staff.security_key_added", user=user.id, key=key.id)
    flash(
        gettext("The key “%(name)s” is added: use it when you next log in.", name=key.name),
        "info",
    )
    return redirect(url_for("two_factor.index"), code=303)


@blueprint.post("/two-factor/keys/<int:key_id>/remove")
@staff_only()
@needs_confirmation
def remove_key_view(key_id: int) -> ResponseReturnValue:
    """Remove one of the staff member's own security keys."""
    user = current_staff()
    key = db.session.get(SecurityKey, key_id)
    if key is None or key.user_id != user.id:
        abort(404)
    if not RemoveKeyForm().validate_on_submit():
        abort(400)
    name = key.name
    remove_key(db.session(), user, key, now())
    db.session.commit()
    security_event("staff.security_key_removed", user=user.id, key=key_id)
    flash(gettext("The key “%(name)s” is removed.", name=name), "info")
    return redirect(url_for("two_factor.index"), code=303)
