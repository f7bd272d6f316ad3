"""Personal API tokens: issue one, revoke it, and find whose a presented token is.

A token is ``sk_`` and 43 random URL-safe characters, shown once when it is issued. Only its
SHA-256 is stored: the token carries 256 random bits, so a fast hash is as safe as a slow one,
and a token is found by its hash without comparing secrets character by character.

Like the other operations these take the session and everything else as arguments and only
flush; the caller commits.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from flask_babel import gettext
from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session, selectinload

from scheduler.staff.models import TOKEN_PREFIX, ApiToken, Role, User

MAX_NAME_LENGTH = 100
# How many live tokens one account may hold.
MAX_LIVE_TOKENS = 20
HINT_LENGTH = len(TOKEN_PREFIX) + 6
# ``last_used_at`` is written at most this often, so a busy integration does not write on
# every read.
USE_RESOLUTION = timedelta(minutes=1)
# How long a new token may live, in days (OWASP ASVS 3.5.2): the first is the default.
LIFETIMES = (90, 30, 365)
_TOKEN_SHAPE = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{43}")


class TokenError(Exception):
    """A token step that cannot go ahead, with a message for the person asking."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def hash_token(token: str) -> str:
    """Return the hex SHA-256 the database keeps instead of ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session, *, user: User, name: str, now: datetime, days: int = LIFETIMES[0]
) -> tuple[ApiToken, str]:
    """Create a token for ``user`` named ``name`` that works for ``days``; return it and the
    token itself, which is never stored and cannot be shown again."""
    if days not in LIFETIMES:
        raise TokenError(
            "A token lasts " + ", ".join(str(d) for d in sorted(LIFETIMES)) + " days.",
            field="days",
        )
    name = " ".join(name.split())
    if not name:
        raise TokenError(gettext("Please name the token after what will use it."), field="name")
    if len(name) > MAX_NAME_LENGTH:
        raise TokenError(
            gettext("Please keep the name within %(most)d characters.", most=MAX_NAME_LENGTH),
            field="name",
        )
    if not user.active:
        raise TokenError(gettext("A switched-off account cannot have API tokens."))
    live = session.scalars(
        select(ApiToken.id).where(
            ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None), ApiToken.expires_at > now
        )
    ).all()
    if len(live) >= MAX_LIVE_TOKENS:
        raise TokenError(
            gettext(
                "You have %(most)d tokens already; revoke one you no longer use first.",
                most=MAX_LIVE_TOKENS,
            )
        )
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=user,
        name=name,
        token_hash=hash_token(secret),
        hint=secret[:HINT_LENGTH],
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    session.add(token)
    session.flush()
    return token, secret


def revoke_token(session: Session, *, token: ApiToken, now: datetime) -> ApiToken:
    """Stop ``token`` working from now on (revoking it twice changes nothing)."""
    if token.revoked_at is None:
        token.revoked_at = now
        session.flush()
    return token


def tokens_visible_to(session: Session, user: User) -> list[ApiToken]:
    """Return the tokens ``user`` may see and revoke: their own, or everyone's for an admin;
    live ones first, newest first."""
    query = (
        select(ApiToken)
        .options(selectinload(ApiToken.user))
        .order_by(ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc(), ApiToken.id.desc())
    )
    if user.role is not Role.ADMIN:
        query = query.where(ApiToken.user_id == user.id)
    return list(session.scalars(query))


def may_revoke(user: User, token: ApiToken) -> bool:
    """Tell whether ``user`` may revoke ``token``: their own, or any for an admin."""
    return user.role is Role.ADMIN or token.user_id == user.id


def find_token(session: Session, presented: str, now: datetime) -> ApiToken | None:
    """Return the live token ``presented`` is, or ``None`` when it is malformed, unknown,
    revoked, expired, or its account is switched off."""
    if not _TOKEN_SHAPE.fullmatch(presented):
        return None
    token = session.scalars(
        select(ApiToken)
        .options(selectinload(ApiToken.user))
        .where(ApiToken.token_hash == hash_token(presented))
    ).first()
    if token is None or not token.is_live(now):
        return None
    return token


def use_due(token: ApiToken, now: datetime) -> bool:
    """Tell whether ``token``'s ``last_used_at`` is out of date enough to write again."""
    return token.last_used_at is None or now - token.last_used_at >= USE_RESOLUTION


def mark_used(session: Session | Connection, token_id: int, now: datetime) -> None:
    """Record that the token was used at ``now`` (with a plain UPDATE, so it can run in a
    transaction of its own)."""
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
