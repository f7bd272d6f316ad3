"""The staff login's second factor: a code from an authenticator app (TOTP, RFC 6238), or one
of ten one-time recovery codes for the day the phone is lost.

The TOTP secret is stored sealed (scheduler.sealing) with a key derived from ``SECRET_KEY``,
so a copy of the database alone cannot make codes; ``SECRET_KEY_FALLBACKS`` still opens
secrets sealed under an earlier key, so the key can be rotated. A code is taken once: the
step it belongs to is remembered, and no code of that step or an earlier one works again.
Wrong codes count towards the same lock as wrong passwords (auth.password_holds).

Like the other operations these take everything as arguments and only flush.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import secrets
from collections.abc import Sequence
from datetime import datetime

import pyotp
import segno
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from scheduler import sealing
from scheduler.i18n import N_
from scheduler.notifications.models import AccountChange
from scheduler.staff.auth import clear_failures, count_failure, is_locked
from scheduler.staff.models import RecoveryCode, User
from scheduler.staff.notices import queue_notice

ISSUER = "Acupuncture scheduler"
RECOVERY_CODES = 10
# A code from the step before or after now is taken too: phones' clocks drift.
VALID_WINDOW = 1
_CODE = re.compile(r"\d{6}")
# Recovery codes are 16 base-32 letters shown in groups of four: "k7qm-2xzt-...".
_RECOVERY = re.compile(r"[a-z2-7]{16}")


class TwoFactorError(Exception):
    """A second-factor step that cannot go ahead, with a message for the person asking."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def seal(secret: str, keys: Sequence[str]) -> str:
    """Encrypt a TOTP secret for the database (or a cookie)."""
    return sealing.seal(secret, keys, sealing.TOTP)


def unseal(sealed: str, keys: Sequence[str]) -> str | None:
    """Decrypt a sealed TOTP secret; ``None`` if no key opens it (or it was tampered with)."""
    try:
        return sealing.unseal(sealed, keys, sealing.TOTP)
    except sealing.Unreadable:
        return None


def new_secret() -> str:
    """A fresh random TOTP secret (160 bits, base 32, as authenticator apps expect)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, *, email: str, issuer: str) -> str:
    """The ``otpauth://`` address an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer or ISSUER)


def qr_svg(uri: str) -> bytes:
    """The QR code of ``uri`` as an SVG document (with its namespace, to stand alone)."""
    document = io.BytesIO()
    segno.make(uri, error="m").save(
        document, kind="svg", scale=5, dark="#111", light="#fff", xmldecl=False
    )
    return document.getvalue()


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _step_of(totp: pyotp.TOTP, code: str, now: datetime) -> int | None:
    """Return the time step ``code`` belongs to, within the window around ``now``."""
    current = totp.timecode(now)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def switch_on(
    session: Session, user: User, *, secret: str, code: str, now: datetime, keys: Sequence[str]
) -> None:
    """Switch the second factor on with ``secret`` once ``code`` shows the app has it; tell
    the account's owner by mail."""
    code = re.sub(r"\s", "", code)
    if not _CODE.fullmatch(code):
        raise TwoFactorError(N_("Please enter the 6-digit code your app shows."))
    step = _step_of(pyotp.TOTP(secret), code, now)
    if step is None:
        raise TwoFactorError(
            N_(
                "That code does not match. Check that the phone's clock is right and enter "
                "the code the app shows now."
            )
        )
    user.totp_secret = seal(secret, keys)
    user.totp_enabled_at = now
    user.totp_last_step = step
    # Other sessions of the account end: they were not made with the second factor.
    user.session_version += 1
    queue_notice(session, user, AccountChange.TWO_FACTOR_ON, now)


def new_recovery_codes(session: Session, user: User, now: datetime) -> list[str]:
    """Replace ``user``'s recovery codes with ten new ones; return them (shown this once)."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [
        base64.b32encode(secrets.token_bytes(10)).decode().lower() for _ in range(RECOVERY_CODES)
    ]
    for code in codes:
        session.add(RecoveryCode(user_id=user.id, code_hash=_hash(code), created_at=now))
    session.flush()
    return ["-".join(code[i : i + 4] for i in range(0, 16, 4)) for code in codes]


def renew_recovery_codes(session: Session, user: User, now: datetime) -> list[str]:
    """Replace ``user``'s recovery codes at their request; tell them by mail."""
    queue_notice(session, user, AccountChange.RECOVERY_CODES, now)
    return new_recovery_codes(session, user, now)


def recovery_codes_left(session: Session, user: User) -> int:
    """How many of ``user``'s recovery codes are unused."""
    return len(
        session.scalars(
            select(RecoveryCode.id).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        ).all()
    )


def switch_off(
    session: Session,
    user: User,
    now: datetime,
    change: AccountChange = AccountChange.TWO_FACTOR_OFF,
) -> None:
    """Remove the second factor, the recovery codes and any security keys (``change`` says
    who did: the owner, or :attr:`AccountChange.TWO_FACTOR_REMOVED` for an admin); end the
    account's sessions and tell the owner by mail."""
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    user.security_keys.clear()
    user.session_version += 1
    queue_notice(session, user, change, now)
    session.flush()


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def second_factor_holds(
    session: Session, user: User, code: str, *, now: datetime, keys: Sequence[str]
) -> str | None:
    """Check a code from the app, or a recovery code, for ``user``.

    Return how the login was made ("app" or "recovery code"), or ``None`` when it was refused:
    wrong, used before, or the account is locked. A wrong code counts towards the lock.
    """
    if is_locked(user, now) or not user.has_second_factor or user.totp_secret is None:
        return None
    compact = re.sub(r"[\s-]", "", code).lower()
    if _CODE.fullmatch(compact):
        secret = unseal(user.totp_secret, keys)
        step = None if secret is None else _step_of(pyotp.TOTP(secret), compact, now)
        if step is not None and step > (user.totp_last_step or -1):
            user.totp_last_step = step
            clear_failures(user)
            return "app"
    elif _RECOVERY.fullmatch(compact):
        recovery = session.scalars(
            select(RecoveryCode).where(
                RecoveryCode.user_id == user.id,
                RecoveryCode.code_hash == _hash(compact),
                RecoveryCode.used_at.is_(None),
            )
        ).first()
        if recovery is not None:
            recovery.used_at = now
            clear_failures(user)
            return "recovery code"
    count_failure(user, now)
    return None
