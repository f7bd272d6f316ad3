"""Staff accounts: who may log in to the staff area, and in which role."""

from __future__ import annotations

import enum
import hashlib
import hmac
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from scheduler.clinic.models import Practitioner
from scheduler.db import Base, UTCDateTime, utcnow, value_enum

# What every personal API token starts with, so a leaked one is easy to recognise.
TOKEN_PREFIX = "sk_"  # noqa: S105  (a prefix, not a secret)


# A password hash keyed with PASSWORD_PEPPER starts with this (OWASP ASVS 2.4.5).
PEPPERED = "peppered$"


def _peppered(password: str, pepper: str) -> str:
    """HMAC-SHA256 of ``password`` under ``pepper``: what is hashed when there is a pepper."""
    return hmac.new(pepper.encode(), password.encode(), hashlib.sha256).hexdigest()


class Role(enum.StrEnum):
    """What a staff member may do."""

    ADMIN = "admin"
    RECEPTION = "reception"
    PRACTITIONER = "practitioner"


class User(Base):
    """A staff member who logs in; a practitioner's account points at their practitioner."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(value_enum(Role, "user_role"))
    practitioner_id: Mapped[int | None] = mapped_column(
        ForeignKey("practitioners.id", ondelete="SET NULL"), nullable=True
    )
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Failed logins since the last success; from the fifth on, the account locks for longer
    # each time (see scheduler.staff.auth).
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Changes whenever the password does, so that a password change logs out other sessions.
    session_version: Mapped[int] = mapped_column(Integer, default=0)
    # Set when an admin chose the password: the account must choose its own before anything
    # else (OWASP ASVS 2.3.1).
    must_change_password: Mapped[bool] = mapped_column(default=False)
    # The second factor (scheduler/staff/totp.py): the TOTP secret, encrypted with a key
    # derived from SECRET_KEY; when it was switched on; and the last 30-second step a code
    # was accepted for, so that no code works twice.
    totp_secret: Mapped[str | None] = mapped_column(String(255), nullable=True)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    practitioner: Mapped[Practitioner | None] = relationship()
    recovery_codes: Mapped[list[RecoveryCode]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    security_keys: Mapped[list[SecurityKey]] = relationship(
        back_populates="user",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="SecurityKey.id",
    )

    # What Flask-Login asks of a user.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        """Whether the account may log in."""
        return self.active

    def get_id(self) -> str:
        """Return what the session cookie keeps: the id and the password's version."""
        return f"{self.id}:{self.session_version}"

    def set_password(self, password: str, *, pepper: str = "") -> None:
        """Store a salted scrypt hash of ``password`` (keyed first with ``pepper``, a secret
        kept outside the database, when there is one); other sessions end."""
        self.rehash(password, pepper=pepper)
        self.session_version = (self.session_version or 0) + 1

    def rehash(self, password: str, *, pepper: str = "") -> None:
        """Store ``password``'s hash anew (as :meth:`set_password`, sessions untouched)."""
        if pepper:
            keyed = _peppered(password, pepper)
            self.password_hash = PEPPERED + generate_password_hash(keyed, method="scrypt")
        else:
            self.password_hash = generate_password_hash(password, method="scrypt")

    def check_password(self, password: str, *, pepper: str = "") -> bool:
        """Tell whether ``password`` is this user's. A peppered hash needs its pepper; a hash
        from before the pepper still checks without it (see :meth:`needs_rehash`)."""
        if self.password_hash.startswith(PEPPERED):
            stored = self.password_hash.removeprefix(PEPPERED)
            return bool(pepper) and check_password_hash(stored, _peppered(password, pepper))
        return check_password_hash(self.password_hash, password)

    def needs_rehash(self, pepper: str) -> bool:
        """Whether the stored hash is not yet keyed with ``pepper`` (rehash at the login)."""
        return bool(pepper) and not self.password_hash.startswith(PEPPERED)

    @property
    def has_second_factor(self) -> bool:
        """Whether logging in takes a code from an authenticator app too."""
        return self.totp_secret is not None and self.totp_enabled_at is not None


class RecoveryCode(Base):
    """A one-time code that stands in for the authenticator app (a lost phone); only its
    SHA-256 is kept: the code carries 80 random bits."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(back_populates="recovery_codes")


class SecurityKey(Base):
    """A security key or passkey (WebAuthn) that gives the second step of a staff login in
    place of a code from the app (scheduler/staff/security_keys.py).

    Only what the key made for this site is kept: its credential id and public key, and how
    many times the key says it has signed, so that a cloned key shows itself.
    """

    __tablename__ = "security_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # base64url, as the browser names it (at most 1,023 bytes: 1,364 characters).
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # How the browser may reach the key ("usb,nfc", "internal", ...), a hint for the next login.
    transports: Mapped[str] = mapped_column(String(200), default="")
    name: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(back_populates="security_keys")


class StaffSession(Base):
    """One login of a staff member on one device, so that they can see their sessions and end
    one (OWASP ASVS 3.3.4). The cookie holds a random key; only its SHA-256 is kept here.

    A session lives while it is not ended, its ``version`` is the account's
    ``session_version`` (a password change or logging out ends the others at once) and it
    is younger than ``STAFF_SESSION_MAX_HOURS``.
    """

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    address: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")

    user: Mapped[User] = relationship()


class ApiToken(Base):
    """A personal API token: it acts as its user, with their role, until revoked.

    Only the SHA-256 of the token is kept (the token is random, so a plain hash suffices);
    ``hint`` is its first few characters, to tell one token from another on the page.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Chosen when the token is made (OWASP ASVS 3.5.2: no key lives for ever).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    def is_live(self, now: datetime) -> bool:
        """Whether the token works at ``now``: not revoked, not expired, and its user may
        still log in."""
        return self.revoked_at is None and now < self.expires_at and self.user.active
