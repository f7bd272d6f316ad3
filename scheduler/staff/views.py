"""The staff area: logging in and out, the password, the day and the week, and the
practitioners' calendars."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any, TypeVar

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from flask_login import logout_user
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from scheduler.audit import detail_text
from scheduler.booking.models import LIVE_STATUSES, Booking
from scheduler.calendars.appointments import import_appointments
from scheduler.calendars.expansion import Expansion
from scheduler.calendars.imports import ImportReport, import_busy, read_series
from scheduler.calendars.models import BusyTime, CalendarSubscription
from scheduler.calendars.reading import CalendarFileError, limits_from, read_capped
from scheduler.calendars.subscriptions import (
    SubscriptionError,
    apply_refresh,
    check_url,
    refresh,
)
from scheduler.clinic.models import Clinic, Practitioner, new_feed_token
from scheduler.db import begin_write
from scheduler.extensions import db
from scheduler.i18n import lazy_gettext as _l
from scheduler.ratelimit import LOGIN, rate_limited
from scheduler.staff.auth import (
    authenticate,
    current_staff,
    live_sessions,
    may_see_health,
    password_holds,
    pepper_of,
    practitioners_visible_to,
    renew_session,
    security_event,
    staff_actor,
    staff_only,
    start_session,
    this_session,
)
from scheduler.staff.diary import day_grid, day_sheet, week_grid
from scheduler.staff.forms import (
    EndSessionForm,
    ImportForm,
    LoginForm,
    PasswordChangeForm,
    SubscriptionForm,
)
from scheduler.staff.models import Role, StaffSession
from scheduler.staff.operations import (
    LEAST_SCORE,
    AccountError,
    change_own_password,
    check_password,
    password_strength,
)
from scheduler.staff.two_factor import PENDING, await_code
from scheduler.web import accepts_bodies_up_to, clinic_or_503, external_url, now, safe_next

blueprint = Blueprint("staff", __name__, url_prefix="/staff")
blueprint.add_app_template_global(may_see_health)
blueprint.add_app_template_global(detail_text, "audit_detail")
F = TypeVar("F", bound=Callable[..., Any])
GENERIC_LOGIN_ERROR = (
    "That email and password do not match an account, "
    "or the account is locked for a while after too many attempts."
)


def takes_write_lock_itself(view: F) -> F:
    """Mark a view that reads files or the network before taking the database's write lock."""
    view.takes_write_lock_itself = True  # type: ignore[attr-defined]
    return view


_user = current_staff


@blueprint.route("/login", methods=["GET", "POST"])
@rate_limited(LOGIN)
def login() -> ResponseReturnValue:
    """Log a staff member in; every failure gets the same message."""
    clinic = Clinic.get(db.session())
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(db.session(), form.email.data or "", form.password.data or "", now())
        if user is not None and user.has_second_factor:
            db.session.commit()
            return await_code(user, request.args.get("next"))
        if user is not None:
            start_session(user)
            db.session.commit()
            return redirect(safe_next(request.args.get("next"), url_for("staff.index")), code=303)
        db.session.commit()  # the failure count and any lock
        session.pop(PENDING, None)  # a good password given before on this session counts no more
        form.form_errors.append(GENERIC_LOGIN_ERROR)
        return render_template("staff/login.html", form=form, clinic=clinic), 401
    status = 400 if form.is_submitted() else 200
    return render_template("staff/login.html", form=form, clinic=clinic), status


@blueprint.post("/logout")
@staff_only()
def logout() -> ResponseReturnValue:
    """Log out (a POST with the CSRF token, so that no link or image can do it): this
    session's row ends, so a copy of its cookie is worthless too. Other devices stay logged
    in; the sessions page ends them."""
    user = _user()
    row = this_session()
    if row is not None:
        row.ended_at = now()
    db.session.commit()
    security_event("staff.logout", user=user.id)
    logout_user()
    session.clear()
    flash(gettext("You are logged out."), "info")
    response = redirect(url_for("staff.login"), code=303)
    # What the browser kept of the staff area (pages in its cache) goes too.
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response


@blueprint.get("/")
@staff_only()
def index() -> ResponseReturnValue:
    """The staff home page."""
    return render_template("staff/index.html", clinic=clinic_or_503(), user=_user())


@blueprint.route("/password", methods=["GET", "POST"])
@staff_only()
def password() -> ResponseReturnValue:
    """Change one's own password; other sessions of the account are logged out."""
    form = PasswordChangeForm()
    user = _user()
    if form.validate_on_submit():
        new = form.new.data or ""
        if not password_holds(user, form.current.data or "", now()):
            db.session.commit()  # a wrong one counts towards the lock, as at the login
            form.current.errors = [
                "That is not your current password, or there have been too many tries: "
                "wait a minute and try again."
            ]
        else:
            try:
                change_own_password(db.session(), user, new, now(), pepper=pepper_of())
            except AccountError as exc:
                db.session.rollback()
                form.new.errors = [exc.message]
            else:
                renew_session(user)  # the others end; this one goes on
                db.session.commit()
                security_event("staff.password_changed", user=user.id)
                flash(gettext("Your password is changed."), "info")
                return redirect(url_for("staff.index"), code=303)
    status = 422 if form.is_submitted() else 200
    return render_template("staff/password.html", form=form, clinic=clinic_or_503()), status


@blueprint.get("/sessions")
@staff_only()
def sessions() -> ResponseReturnValue:
    """The staff member's sessions that still work, this one marked, each with a button to
    end it."""
    moment = now()
    return (
        render_template(
            "staff/sessions.html",
            clinic=clinic_or_503(),
            rows=live_sessions(_user(), moment),
            current=this_session(),
            form=EndSessionForm(),
        ),
        200,
        {"Cache-Control": "no-store"},
    )


@blueprint.post("/sessions/<int:session_id>/end")
@staff_only()
def end_session(session_id: int) -> ResponseReturnValue:
    """End one of one's own sessions: that device is logged out at its next request."""
    row = db.session.get(StaffSession, session_id)
    if row is None or row.user_id != _user().id:
        abort(404)
    if not EndSessionForm().validate_on_submit():
        abort(400)
    current = this_session()
    if current is not None and current.id == row.id:
        flash(gettext("That is this session: use Log out at the top to end it."), "info")
        return redirect(url_for("staff.sessions"), code=303)
    row.ended_at = now()
    db.session.commit()
    security_event("staff.session_ended", user=row.user_id)
    flash(gettext("That session is logged out."), "info")
    return redirect(url_for("staff.sessions"), code=303)


@blueprint.post("/sessions/others/end")
@staff_only()
def end_other_sessions() -> ResponseReturnValue:
    """Log out every other session of one's account (a lost phone, a shared computer)."""
    user = _user()
    if not EndSessionForm().validate_on_submit():
        abort(400)
    user.session_version += 1
    renew_session(user)
    db.session.commit()
    security_event("staff.sessions_ended", user=user.id)
    flash(gettext("Your other sessions are logged out."), "info")
    return redirect(url_for("staff.sessions"), code=303)


# What the strength meter says for each of zxcvbn's scores.
STRENGTH_LABELS = (
    _l("Very easy to guess"),
    _l("Easy to guess"),
    _l("Still guessable"),
    _l("Hard to guess"),
    _l("Very hard to guess"),
)


@blueprint.post("/password/strength")
@staff_only()
@takes_write_lock_itself  # it reads and writes nothing
def password_strength_view() -> ResponseReturnValue:
    """How guessable a password being typed is, for the meter beside a new password field:
    the same estimate the server makes when the password is saved. JSON in and out."""
    body = request.get_json(silent=True)
    typed = body.get("password") if isinstance(body, dict) else None
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(typed, str) or len(typed) > 500:
        return jsonify(error='Send {"password": "…"}, 500 characters at most.'), 422
    if not isinstance(email, str) or len(email) > 254:
        email = _user().email
    strength = password_strength(typed, email=email)
    score = strength.score
    try:
        check_password(typed, email=email, strength=strength)
    except AccountError:
        # Refused when saved (too short, or a pattern the local rules know): never shown as
        # hard to guess.
        score, enough = min(score, LEAST_SCORE - 1), False
    else:
        enough = True
    return jsonify(score=score, label=str(STRENGTH_LABELS[score]), enough=enough)


def _practitioner_or_404(practitioner_id: int) -> Practitioner:
    """Return a practitioner the current user may manage, or 404 (not 403: no probing)."""
    for practitioner in practitioners_visible_to(db.session(), _user()):
        if practitioner.id == practitioner_id:
            return practitioner
    abort(404)


def _with_choices(*forms: ImportForm | SubscriptionForm) -> list[Practitioner]:
    """Offer the practitioners the current user may manage; return them."""
    visible = practitioners_visible_to(db.session(), _user())
    choices = [SelectChoice(str(p.id), p.name) for p in visible]
    for form in forms:
        form.practitioner.choices = choices
    return visible


def _calendars_page(
    import_form: ImportForm | None = None,
    subscription_form: SubscriptionForm | None = None,
    report: ImportReport | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    clinic = clinic_or_503()
    import_form = import_form or ImportForm()
    subscription_form = subscription_form or SubscriptionForm()
    visible = _with_choices(import_form, subscription_form)
    ids = [p.id for p in visible]
    subscriptions = db.session.scalars(
        select(CalendarSubscription)
        .where(CalendarSubscription.practitioner_id.in_(ids))
        .order_by(CalendarSubscription.id)
    ).all()
    start = now() - timedelta(days=1)
    busy = db.session.scalars(
        select(BusyTime)
        .where(
            BusyTime.practitioner_id.in_(ids),
            BusyTime.cancelled.is_(False),
            BusyTime.end_at > start,
            BusyTime.start_at < start + timedelta(days=15),
        )
        .order_by(BusyTime.start_at)
        .limit(200)
    ).all()
    names = {p.id: p.name for p in visible}
    feeds = [(p, external_url("calendars.feed", token=p.feed_token)) for p in visible]
    return render_template(
        "staff/calendars.html",
        clinic=clinic,
        import_form=import_form,
        subscription_form=subscription_form,
        subscriptions=subscriptions,
        busy=busy,
        names=names,
        feeds=feeds,
        report=report,
        clashes=clashing_bookings(ids),
        may_import_appointments=_user().role is not Role.PRACTITIONER,
    ), status


@blueprint.get("/calendars")
@staff_only()
def calendars() -> ResponseReturnValue:
    """Import files, manage subscriptions and feed addresses; see the coming busy time."""
    return _calendars_page()


def upload_limit(config: Mapping[str, Any]) -> int:
    """The largest calendar upload: a few files of ``CALENDAR_IMPORT_MAX_BYTES`` each."""
    return limits_from(config).max_bytes * 4 + 64 * 1024


@blueprint.post("/calendars/import")
@staff_only()
@takes_write_lock_itself
@accepts_bodies_up_to(upload_limit)
def import_files() -> ResponseReturnValue:
    """Import uploaded .ics files or .eml invites; each file whole or not at all."""
    limits = limits_from(current_app.config)
    form = ImportForm()
    _with_choices(form)  # so a practitioner the user may not manage does not validate
    if not form.validate_on_submit():
        return _calendars_page(import_form=form, status=422)
    practitioner_id = form.practitioner.data
    kind = form.kind.data
    if kind == "appointments" and _user().role is Role.PRACTITIONER:
        abort(403)
    clinic = clinic_or_503()
    total = ImportReport()
    read: list[Expansion] = []
    for upload in form.files.data:
        name = upload.filename or "calendar.ics"
        try:
            data = read_capped(upload.stream, limits.max_bytes)
            read.append(read_series(data, name=name, tz=clinic.tz, now=now(), limits=limits))
        except CalendarFileError as exc:
            total.errors += 1
            total.problems.append(f"{name} was not imported: {exc.message}")
    db.session.rollback()  # reading took no lock; applying each file does
    for expansion in read:
        begin_write(db.session())
        practitioner = db.session.get_one(Practitioner, practitioner_id)
        if kind == "appointments":
            report = import_appointments(
                db.session(),
                clinic=clinic_or_503(),
                practitioner=practitioner,
                expansion=expansion,
                now=now(),
                actor=staff_actor(),
            )
        else:
            report = import_busy(db.session(), practitioner=practitioner, expansion=expansion)
        db.session.commit()
        total.add(report)
    status = 200 if total.errors == 0 else 422
    return _calendars_page(report=total, status=status)


@blueprint.post("/calendars/subscriptions")
@staff_only()
def subscribe() -> ResponseReturnValue:
    """Subscribe a practitioner to an outside calendar's address."""
    form = SubscriptionForm()
    visible = _with_choices(form)
    if not form.validate_on_submit():
        return _calendars_page(subscription_form=form, status=422)
    practitioner = next(p for p in visible if p.id == form.practitioner.data)
    try:
        url = check_url(form.url.data or "", allow_private=_calendars_allow_private())
    except SubscriptionError as exc:
        form.url.errors = [exc.message]
        return _calendars_page(subscription_form=form, status=422)
    taken = db.session.scalars(
        select(CalendarSubscription).where(
            CalendarSubscription.practitioner_id == practitioner.id,
            CalendarSubscription.url == url,
        )
    ).first()
    if taken is not None:
        form.url.errors = [f"{practitioner.name} is already subscribed to that address."]
        return _calendars_page(subscription_form=form, status=422)
    db.session.add(
        CalendarSubscription(
            practitioner_id=practitioner.id, url=url, name=(form.name.data or "").strip()
        )
    )
    db.session.commit()
    flash(gettext("Subscribed. Sync it now, or wait for the next `calendar sync`."), "info")
    return redirect(url_for("staff.calendars"), code=303)


def _calendars_allow_private() -> bool:
    return bool(current_app.config["CALENDAR_ALLOW_PRIVATE"])


def _subscription_or_404(subscription_id: int) -> CalendarSubscription:
    subscription = db.session.get(CalendarSubscription, subscription_id)
    if subscription is None:
        abort(404)
    _practitioner_or_404(subscription.practitioner_id)
    return subscription


@blueprint.post("/calendars/subscriptions/<int:subscription_id>/sync")
@staff_only()
@takes_write_lock_itself
def sync(subscription_id: int) -> ResponseReturnValue:
    """Fetch one subscription now; the download holds no database lock."""
    subscription = _subscription_or_404(subscription_id)
    url, etag, last_modified = subscription.url, subscription.etag, subscription.last_modified
    tz = clinic_or_503().tz
    db.session.rollback()
    refreshed = refresh(
        url,
        etag=etag,
        last_modified=last_modified,
        tz=tz,
        now=now(),
        limits=limits_from(current_app.config),
        allow_private=_calendars_allow_private(),
    )
    begin_write(db.session())
    subscription = _subscription_or_404(subscription_id)  # it may have gone meanwhile
    report = apply_refresh(db.session(), subscription, refreshed, now())
    db.session.commit()
    return _calendars_page(report=report, status=200)


@blueprint.post("/calendars/subscriptions/<int:subscription_id>/delete")
@staff_only()
def unsubscribe(subscription_id: int) -> ResponseReturnValue:
    """Remove a subscription and the busy time it brought in."""
    db.session.delete(_subscription_or_404(subscription_id))
    db.session.commit()
    flash(gettext("The subscription and its busy time are removed."), "info")
    return redirect(url_for("staff.calendars"), code=303)


@blueprint.post("/calendars/feeds/<int:practitioner_id>/rotate")
@staff_only()
def rotate_feed(practitioner_id: int) -> ResponseReturnValue:
    """Give a practitioner's feed a new address; calendars subscribed to the old one stop."""
    practitioner = _practitioner_or_404(practitioner_id)
    practitioner.feed_token = new_feed_token()
    db.session.commit()
    flash(
        gettext(
            "%(name)s's feed has a new address; subscribe to it again.", name=practitioner.name
        ),
        "info",
    )
    return redirect(url_for("staff.calendars"), code=303)


def clashing_bookings(practitioner_ids: list[int]) -> list[Booking]:
    """Return live bookings that overlap imported busy time (for the staff's attention)."""
    start = now()
    query = (
        select(Booking)
        .join(
            BusyTime,
            (BusyTime.practitioner_id == Booking.practitioner_id)
            & (BusyTime.start_at < Booking.end_at)
            & (BusyTime.end_at > Booking.start_at)
            & BusyTime.cancelled.is_(False),
        )
        .where(
            Booking.practitioner_id.in_(practitioner_ids),
            Booking.status.in_(LIVE_STATUSES),
            Booking.start_at >= start,
        )
        .order_by(Booking.start_at)
        .distinct()
        .limit(100)
    )
    return list(db.session.scalars(query))


# --- The day and the week ---------------------------------------------------------------------

EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2100, 12, 31)


def _requested_day(clinic: Clinic) -> tuple[date, str | None]:
    """Return the day asked for in ``?date=`` (today by default), and what was wrong with it."""
    today = now().astimezone(clinic.tz).date()
    raw = request.args.get("date", "").strip()
    if not raw:
        return today, None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        return today, gettext(
            "That date is not valid; use the date picker or YYYY-MM-DD. Showing today."
        )
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        return today, gettext("Pick a date between 2000 and 2100. Showing today.")
    return day, None


@blueprint.get("/day")
@staff_only()
def day() -> ResponseReturnValue:
    """One day, a column per practitioner (or per room), with the clinic's hours shaded."""
    clinic = clinic_or_503()
    shown, problem = _requested_day(clinic)
    practitioners = practitioners_visible_to(db.session(), _user())
    by_room = request.args.get("by") == "room" and _user().role is not Role.PRACTITIONER
    grid = day_grid(db.session(), clinic, shown, practitioners, by_room=by_room)
    return render_template(
        "staff/day.html",
        clinic=clinic,
        day=shown,
        today=now().astimezone(clinic.tz).date(),
        grid=grid,
        by_room=by_room,
        problem=problem,
        may_see_rooms=_user().role is not Role.PRACTITIONER,
    )


@blueprint.get("/week")
@staff_only()
def week() -> ResponseReturnValue:
    """A practitioner's week, a column per day."""
    clinic = clinic_or_503()
    shown, problem = _requested_day(clinic)
    monday = shown - timedelta(days=shown.weekday())
    practitioners = practitioners_visible_to(db.session(), _user())
    chosen = request.args.get("practitioner", "")
    practitioner = next((p for p in practitioners if str(p.id) == chosen), None)
    if practitioner is None and practitioners:
        practitioner = practitioners[0]
        if chosen:
            problem = gettext("You cannot see that practitioner's week; showing one you can.")
    grid = week_grid(db.session(), clinic, monday, practitioner) if practitioner else None
    return render_template(
        "staff/week.html",
        clinic=clinic,
        day=shown,
        monday=monday,
        today=now().astimezone(clinic.tz).date(),
        grid=grid,
        practitioner=practitioner,
        practitioners=practitioners,
        problem=problem,
    )


@blueprint.get("/day/sheet")
@staff_only()
def day_sheet_page() -> ResponseReturnValue:
    """The day on paper: each practitioner's bookings with the patient's contact details."""
    clinic = clinic_or_503()
    shown, problem = _requested_day(clinic)
    practitioners = practitioners_visible_to(db.session(), _user())
    return render_template(
        "staff/day_sheet.html",
        clinic=clinic,
        day=shown,
        sheet=day_sheet(db.session(), clinic, shown, practitioners),
        problem=problem,
    )
