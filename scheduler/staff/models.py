"""Staff accounts: who may log in to the staff area, and in which role."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from scheduler.clinic.models import Practitioner
from scheduler.db import Base, UTCDateTime, utcnow, value_enum

# What every personal API token starts with, so a leaked one is easy to recognise.
TOKEN_PREFIX = "sk_"  # noqa: S105  (a prefix, not a secret)


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

    practitioner: Mapped[Practitioner | None] = relationship()

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

    def set_password(self, password: str) -> None:
        """Store a salted scrypt hash of ``password``."""
        self.password_hash = generate_password_hash(password, method="scrypt")
        self.session_version = (self.session_version or 0) + 1

    def check_password(self, password: str) -> bool:
        """Tell whether ``password`` is this user's."""
        return check_password_hash(self.password_hash, password)


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

    user: Mapped[User] = relationship()

    @property
    def is_live(self) -> bool:
        """Whether the token still works: not revoked, and its user may still log in."""
        return self.revoked_at is None and self.user.active
