"""Staff accounts: create them, change their role, switch them off, set a new password.

Shared by the ``users`` command and the admin's pages, so both apply the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.clinic.models import Practitioner
from scheduler.i18n import current_language
from scheduler.notifications.models import AccountChange
from scheduler.staff.auth import clear_failures
from scheduler.staff.models import Role, User
from scheduler.staff.notices import queue_notice

# OWASP ASVS 2.1.1: at least 12 characters, counted with runs of spaces as one.
MIN_PASSWORD_LENGTH = 12
# Words that guessers try first, alone or dressed up with digits and symbols ("Password2026!"):
# the commonest bases of breached passwords, and what this service is called (NIST 800-63B
# 5.1.1.2 asks for both). zxcvbn's lists of breached passwords, names and words catch the rest.
GUESSED_FIRST = frozenset(
    {
        "password",
        "passw",
        "pass",
        "qwerty",
        "qwertyuiop",
        "asdfgh",
        "asdfghjkl",
        "zxcvbnm",
        "letmein",
        "welcome",
        "iloveyou",
        "admin",
        "administrator",
        "login",
        "changeme",
        "secret",
        "monkey",
        "dragon",
        "football",
        "baseball",
        "sunshine",
        "princess",
        "abc",
        "abcdef",
        "trustno",
        "acupuncture",
        "clinic",
        "scheduler",
        "reception",
        "practitioner",
    }
)
# Runs along a keyboard row, the alphabet or the digits, either way ("123456789012", "lkjhgfdsa").
_RUNS = (
    "1234567890" * 3,
    "abcdefghijklmnopqrstuvwxyz",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
)


class AccountError(Exception):
    """An account change that cannot go ahead, with a message for the person asking."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def normalise_email(email: str) -> str:
    """Return ``email`` checked and lower-cased, or raise why it is not an address.

    Clinics may use internal domains (clinic.local), so special-use names are allowed.
    """
    try:
        checked = validate_email(
            email.strip(), check_deliverability=False, globally_deliverable=False
        )
    except EmailNotValidError as exc:
        raise AccountError(
            gettext("%(email)s is not an email address: %(reason)s", email=repr(email), reason=exc),
            field="email",
        ) from exc
    return checked.normalized.lower()


def check_password(password: str, *, email: str = "", strength: Strength | None = None) -> None:
    """Refuse a password too short or too easy to guess for the account of ``email``
    (``strength``: zxcvbn's estimate of it, when the caller has it already).

    Any characters are allowed (spaces, accents, emoji) and none is required: length is
    what makes a password strong, so there are no rules of the kind "one digit, one capital".
    """
    if len(re.sub(r"\s+", " ", password)) < MIN_PASSWORD_LENGTH:
        raise AccountError(
            gettext("The password needs at least %(least)d characters.", least=MIN_PASSWORD_LENGTH),
            field="password",
        )
    reason = _guessable(password, email) or _estimated_weak(
        strength or password_strength(password, email=email)
    )
    if reason:
        raise AccountError(
            gettext(
                "That password is too easy to guess: %(reason)s. "
                "A few unrelated words make a good one.",
                reason=reason,
            ),
            field="password",
        )


def _guessable(password: str, email: str) -> str | None:
    """Say why ``password`` is among the first a guesser would try, if it is."""
    lowered = password.lower()
    letters = re.sub(r"[^a-z]", "", lowered)
    if len(set(lowered)) <= 2:
        return gettext("it repeats one or two characters")
    compact = re.sub(r"\s", "", lowered)
    if any(compact in run or compact in run[::-1] for run in _RUNS):
        return gettext("it is a run of keys or digits")
    if any(re.fullmatch(f"(?:{word})+", letters) for word in GUESSED_FIRST) or re.fullmatch(
        r"(?:pas+wo?rd|ps+wrd)+", letters
    ):
        return gettext("it is a common password with digits or symbols around it")
    name = re.sub(r"[^a-z]", "", email.partition("@")[0].lower())
    if len(name) >= 4 and name in letters:
        return gettext("it contains the account's email address")
    return None


# zxcvbn's score: 3 is "safely unguessable" against an online attack (about 10^8 guesses and
# up), which the login's lock and rate limits make the only attack without the database.
LEAST_SCORE = 3


@dataclass(frozen=True)
class Strength:
    """How guessable a password is: zxcvbn's score from 0 to 4, and its advice."""

    score: int
    warning: str
    suggestions: tuple[str, ...]


def password_strength(password: str, *, email: str = "") -> Strength:
    """Estimate how guessable ``password`` is (zxcvbn: breached passwords, names, words,
    keyboard patterns, dates, and the account's and this service's own words)."""
    # Imported here: its word lists take 12 MB, which a worker that never sees a new password
    # (most of them) need not hold.
    from zxcvbn import zxcvbn

    words = [email, *re.split(r"[^a-z0-9]+", email.lower()), *sorted(GUESSED_FIRST)]
    # zxcvbn takes 72 characters at most (its time grows fast with the length); a password
    # whose first 72 are hard to guess is too.
    result = zxcvbn(password[:72], user_inputs=[w for w in words if w])
    feedback = result["feedback"]
    return Strength(
        int(result["score"]),
        str(feedback["warning"]),
        tuple(str(s) for s in feedback["suggestions"]),
    )


def _estimated_weak(strength: Strength) -> str | None:
    """Say why zxcvbn finds a password of this ``strength`` guessable, if it does."""
    if strength.score >= LEAST_SCORE:
        return None
    warning = strength.warning.rstrip(".")
    if not warning or current_language() != "en":
        # zxcvbn's advice is in English only.
        return gettext("it is close to passwords seen in breaches")
    return warning[:1].lower() + warning[1:]


def _check_role(role: Role, practitioner: Practitioner | None) -> None:
    if role is Role.PRACTITIONER and practitioner is None:
        raise AccountError(
            gettext("A practitioner's account needs the practitioner whose schedule it is."),
            field="practitioner",
        )
    if role is not Role.PRACTITIONER and practitioner is not None:
        raise AccountError(
            gettext("Only a practitioner's account is linked to a practitioner."),
            field="practitioner",
        )


def create_user(
    session: Session,
    *,
    email: str,
    role: Role,
    password: str,
    practitioner: Practitioner | None = None,
    temporary: bool = False,
    pepper: str = "",
) -> User:
    """Add a staff account that can log in at once; with ``temporary`` (an admin chose the
    password) its first step is to choose its own."""
    email = normalise_email(email)
    check_password(password, email=email)
    _check_role(role, practitioner)
    if session.scalars(select(User).where(User.email == email)).first() is not None:
        raise AccountError(
            gettext("An account for %(email)s already exists.", email=email), field="email"
        )
    user = User(email=email, role=role, practitioner=practitioner)
    user.set_password(password, pepper=pepper)
    user.must_change_password = temporary
    session.add(user)
    session.flush()
    return user


def _active_admins(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.ADMIN, User.active.is_(True))
        )
        or 0
    )


def update_user(
    session: Session,
    *,
    user: User,
    role: Role,
    practitioner: Practitioner | None,
    active: bool,
    acting: User,
    now: datetime,
) -> User:
    """Change an account's role, practitioner or whether it may log in.

    Nobody can lock themselves out, and the clinic always keeps an active admin.
    """
    _check_role(role, practitioner)
    losing_admin = (
        user.role is Role.ADMIN and user.active and (role is not Role.ADMIN or not active)
    )
    if user.id == acting.id and losing_admin:
        raise AccountError(
            gettext("You cannot take away your own admin rights or switch off your own account."),
            field="role",
        )
    if losing_admin and _active_admins(session) <= 1:
        raise AccountError(gettext("The clinic needs at least one active admin."), field="role")
    if (user.role, user.active) != (role, active):
        user.session_version += 1  # a change of rights takes effect at once, on every device
        queue_notice(session, user, AccountChange.ROLE_CHANGED, now)
    user.role, user.practitioner, user.active = role, practitioner, active
    session.flush()
    return user


def set_new_password(
    session: Session, user: User, password: str, now: datetime, *, pepper: str = ""
) -> None:
    """Give ``user`` a new password chosen by an admin, which they must change when they
    next log in; unlock the account, log out its sessions and tell them by mail."""
    check_password(password, email=user.email)
    user.set_password(password, pepper=pepper)
    user.must_change_password = True
    clear_failures(user)
    queue_notice(session, user, AccountChange.PASSWORD_RESET, now)


def change_own_password(
    session: Session, user: User, password: str, now: datetime, *, pepper: str = ""
) -> None:
    """Give ``user`` the new password they chose; log out their other sessions and tell them
    by mail (the current password was checked by the caller)."""
    check_password(password, email=user.email)
    user.set_password(password, pepper=pepper)
    user.must_change_password = False
    queue_notice(session, user, AccountChange.PASSWORD_CHANGED, now)
