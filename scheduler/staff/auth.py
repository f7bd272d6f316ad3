"""Who is logged in to the staff area, what their role lets them do, and login throttling.

A staff login lives in Flask's signed session cookie. It names the account and its
``session_version``, so that a password change, a change of rights or logging out ends every
session of the account at once; and it carries when it began and when it was last used, so
that it ends after ``STAFF_SESSION_MAX_HOURS`` however busy, and after
``STAFF_SESSION_IDLE_MINUTES`` without a request.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

from flask import abort, current_app, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from scheduler.audit import Actor
from scheduler.clinic.models import Practitioner
from scheduler.eventlog import emit
from scheduler.extensions import db, login_manager
from scheduler.staff.models import Role, StaffSession, User

P = ParamSpec("P")
R = TypeVar("R")

# Four wrong passwords are free; each one after locks the account for twice as long as before.
FREE_FAILURES = 4
FIRST_LOCK = timedelta(seconds=30)
LONGEST_LOCK = timedelta(hours=1)
# What the session cookie keeps about the login itself (seconds since the epoch).
LOGGED_IN_AT = "staff_login_at"
# The random key naming this session's row (StaffSession).
SESSION_KEY = "staff_session"
# When the password was last given again for a high-value change (see needs_confirmation).
CONFIRMED_AT = "staff_confirmed_at"
SEEN_AT = "staff_seen_at"
# What an account that must first change its password or set up two-step login may still
# reach (see first_step).
OPEN_BEFORE = {
    "staff.password": frozenset({"staff.password", "staff.logout"}),
    "two_factor.index": frozenset(
        {
            "two_factor.index",
            "two_factor.qr",
            "two_factor.switch_on_view",
            "staff.password",
            "staff.logout",
        }
    ),
}
# The last request is noted to the minute, so that not every answer re-sends the cookie.
SEEN_RESOLUTION = 60


@functools.cache
def _dummy_hash() -> str:
    """A hash to check against when the email matches no account, so both take as long."""
    return generate_password_hash(secrets.token_hex(16), method="scrypt")


def init_app() -> None:
    """Tell Flask-Login how to find the user a session cookie names."""
    login_manager.login_view = "staff.login"
    login_manager.login_message = "Please log in to see the staff area."
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(key: str) -> User | None:
        user_id, _, version = key.partition(":")
        if not user_id.isdigit() or not version.isdigit() or not _session_current():
            _forget_login()
            return None
        user = db.session.get(User, int(user_id))
        if user is None or not user.active or user.session_version != int(version):
            _forget_login()
            return None
        row = this_session()
        if row is None or row.user_id != user.id or row.ended_at is not None:
            _forget_login()  # ended from another device, or made before sessions had rows
            return None
        return user


def _seconds() -> int:
    """The wall clock for session ages (not ``CLOCK``, the clinic's, which tests move by days)."""
    return int(current_app.config["SESSION_CLOCK"]())


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def start_session(user: User) -> None:
    """Log ``user`` in on a new session: nothing of the one before it is kept (its CSRF token
    least of all, which whoever planted that session could know). The session gets its row
    (see :class:`StaffSession`); the caller commits."""
    session.clear()
    login_user(user)
    session[LOGGED_IN_AT] = session[SEEN_AT] = _seconds()
    key = secrets.token_urlsafe(32)
    session[SESSION_KEY] = key
    now = current_app.config["CLOCK"]()
    oldest = _oldest_live(now)
    # What can no longer be used goes, so the table holds only a day's logins or so.
    db.session.execute(
        delete(StaffSession).where(
            StaffSession.user_id == user.id,
            or_(StaffSession.created_at < oldest, StaffSession.ended_at.is_not(None)),
        )
    )
    db.session.add(
        StaffSession(
            user_id=user.id,
            key_hash=_key_hash(key),
            version=user.session_version,
            created_at=now,
            address=(request.remote_addr or "")[:45],
            user_agent=request.user_agent.string[:200],
        )
    )


def _oldest_live(now: datetime) -> datetime:
    """When the oldest session that may still be in use began (STAFF_SESSION_MAX_HOURS)."""
    return now - timedelta(hours=current_app.config["STAFF_SESSION_MAX_HOURS"])


def this_session() -> StaffSession | None:
    """The row of this request's staff session, if it has one."""
    key = session.get(SESSION_KEY)
    if not isinstance(key, str) or len(key) > 100:
        return None
    return db.session.scalars(
        select(StaffSession).where(StaffSession.key_hash == _key_hash(key))
    ).first()


def renew_session(user: User) -> None:
    """Keep this session after a change of ``user``'s ``session_version`` has ended the
    others (a new password, two-step login switched on or off); the caller commits."""
    login_user(user)  # the cookie names the new version
    row = this_session()
    if row is not None:
        row.version = user.session_version


def live_sessions(user: User, now: datetime) -> list[StaffSession]:
    """``user``'s sessions that still work, newest first."""
    oldest = _oldest_live(now)
    return list(
        db.session.scalars(
            select(StaffSession)
            .where(
                StaffSession.user_id == user.id,
                StaffSession.ended_at.is_(None),
                StaffSession.version == user.session_version,
                StaffSession.created_at >= oldest,
            )
            .order_by(StaffSession.created_at.desc(), StaffSession.id.desc())
        )
    )


def _session_current() -> bool:
    """Whether the session's login is young enough and was used recently enough; note this
    request as its latest use."""
    logged_in_at, seen_at = session.get(LOGGED_IN_AT), session.get(SEEN_AT)
    if not isinstance(logged_in_at, int) or not isinstance(seen_at, int):
        return False  # a login from before sessions carried their age
    now = _seconds()
    config = current_app.config
    if now - logged_in_at >= config["STAFF_SESSION_MAX_HOURS"] * 3600:
        return False
    if now - seen_at >= config["STAFF_SESSION_IDLE_MINUTES"] * 60:
        return False
    if now - seen_at >= SEEN_RESOLUTION:
        session[SEEN_AT] = now
    return True


def confirmed_recently() -> bool:
    """Whether this session's login, or its last confirmation, is recent enough for a
    high-value change (``STAFF_CONFIRM_MINUTES``)."""
    at = session.get(CONFIRMED_AT, session.get(LOGGED_IN_AT))
    limit = current_app.config["STAFF_CONFIRM_MINUTES"] * 60
    return isinstance(at, int) and _seconds() - at < limit


def note_confirmed() -> None:
    """Note that the staff member has just given their password (and code) again."""
    session[CONFIRMED_AT] = _seconds()


def needs_confirmation(view: Callable[P, R]) -> Callable[P, R]:
    """Ask for the password again (and the code, with two-step login) before a high-value
    change, unless the login or the last confirmation is recent (OWASP ASVS 3.7.1, 4.3.3).

    A POST that comes too late changes nothing: the person confirms and makes it again.
    """

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if confirmed_recently():
            return view(*args, **kwargs)
        if request.method == "GET":
            back = request.full_path.rstrip("?")
        else:
            flash(_("Please confirm it is you, then make the change again."), "info")
            referrer = urlsplit(request.referrer or "")
            same_site = referrer.netloc in ("", request.host)
            back = referrer.path if same_site and referrer.path else request.path
        # The confirmation page checks ``back`` (safe_next) before it goes there.
        return redirect(url_for("two_factor.confirm", next=back), code=303)  # type: ignore[return-value]

    return wrapper


def _forget_login() -> None:
    """Drop a login that no longer holds from the session cookie."""
    for key in ("_user_id", "_fresh", "_id", LOGGED_IN_AT, SEEN_AT, CONFIRMED_AT, SESSION_KEY):
        session.pop(key, None)


def current_staff() -> User:
    """Return the staff member logged in to this request."""
    user: User = current_user._get_current_object()
    return user


def staff_actor() -> Actor:
    """Return the logged-in staff member as the audit trail names them."""
    user = current_staff()
    return Actor(user.email, user.id)


def staff_only(*roles: Role) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a logged-in staff member, in one of ``roles`` if any are given (else 403)."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            first = first_step(current_user)
            if first is not None and request.endpoint not in open_before(first):
                return redirect(url_for(first), code=303)  # type: ignore[return-value]
            if roles and current_user.role not in roles:
                security_event("staff.forbidden", user=current_user.id, path=request.path)
                abort(403)
            return view(*args, **kwargs)

        guarded: Callable[P, R] = login_required(wrapper)
        guarded.allowed_roles = frozenset(roles or Role)  # type: ignore[attr-defined]
        return guarded

    return decorate


def two_factor_required(user: User) -> bool:
    """Tell whether ``user``'s role must log in with a second factor (STAFF_TWO_FACTOR_ROLES)."""
    return user.role.value in current_app.config["STAFF_TWO_FACTOR_ROLES"]


def first_step(user: User) -> str | None:
    """The page ``user`` must see before anything else in the staff area, if any: the
    password page while an admin's choice of password stands, then the two-step login set-up
    while their role needs it and it is off."""
    if user.must_change_password:
        return "staff.password"
    if two_factor_required(user) and not user.has_second_factor:
        return "two_factor.index"
    return None


def open_before(first: str) -> frozenset[str]:
    """The endpoints reachable while ``first`` (a :func:`first_step`) waits to be done."""
    return OPEN_BEFORE[first]


def authenticate(session: Session, email: str, password: str, now: datetime) -> User | None:
    """Return the user these credentials belong to, counting failures and honouring locks.

    The answer never says which part was wrong or whether the account exists.
    """
    user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
    if user is None or not user.active:
        check_password_hash(_dummy_hash(), password)  # the same work either way
        security_event("staff.login_refused", user=None, reason="unknown")
        return None
    if not password_holds(user, password, now):
        return None
    security_event("staff.login", user=user.id)
    return user


def password_holds(user: User, password: str, now: datetime) -> bool:
    """Tell whether ``password`` is ``user``'s, counting a wrong one towards the lock.

    A locked account answers no without looking, but only after the same work as a real
    check: a quick answer would tell a guesser that the account exists and is locked.
    """
    if is_locked(user, now):
        check_password_hash(_dummy_hash(), password)
        security_event("staff.login_refused", user=user.id, reason="locked")
        return False
    pepper = pepper_of()
    if not user.check_password(password, pepper=pepper):
        count_failure(user, now)
        security_event("staff.login_refused", user=user.id, reason="password")
        return False
    if user.needs_rehash(pepper):
        user.rehash(password, pepper=pepper)  # a hash from before the pepper, keyed now
    if not user.has_second_factor:
        # With a second factor the count is cleared by a good code only: otherwise the
        # password alone would buy a guesser fresh tries at the code again and again.
        clear_failures(user)
    return True


def pepper_of() -> str:
    """The app's ``PASSWORD_PEPPER``: the key passwords are keyed with before scrypt."""
    return str(current_app.config.get("PASSWORD_PEPPER") or "")


def is_locked(user: User, now: datetime) -> bool:
    """Tell whether too many wrong passwords or codes have locked ``user`` out for now."""
    return user.locked_until is not None and user.locked_until > now


def clear_failures(user: User) -> None:
    """Forget ``user``'s wrong passwords and codes, and any lock they led to."""
    user.failed_logins = 0
    user.locked_until = None


def count_failure(user: User, now: datetime) -> None:
    """Count a wrong password or code; from the fifth on, lock the account for twice as long
    each time."""
    user.failed_logins += 1
    extra = user.failed_logins - FREE_FAILURES
    if extra > 0:
        user.locked_until = now + min(FIRST_LOCK * 2 ** min(extra - 1, 16), LONGEST_LOCK)


def security_event(event: str, **fields: object) -> None:
    """Log an authentication or access decision on the event log, with the client's address
    and never a password, an email address or a token."""
    emit(event, current_app.config["CLOCK"](), address=request.remote_addr, **fields)


def may_see_health(practitioner_id: int) -> bool:
    """Tell whether the logged-in staff member may read the health answers of a patient
    booked with ``practitioner_id``: the practitioner who treats them, and admins."""
    return sees_health(current_staff(), practitioner_id)


def sees_health(user: User, practitioner_id: int) -> bool:
    """Tell whether ``user`` may read the health answers of a patient booked with
    ``practitioner_id`` (see :func:`may_see_health`)."""
    if user.role is Role.ADMIN:
        return True
    return user.role is Role.PRACTITIONER and user.practitioner_id == practitioner_id


def practitioners_visible_to(session: Session, user: User) -> list[Practitioner]:
    """Return the practitioners whose calendars ``user`` may manage: their own, or everyone's."""
    if user.role is Role.PRACTITIONER:
        return [user.practitioner] if user.practitioner is not None else []
    return list(session.scalars(select(Practitioner).order_by(Practitioner.name)))
