"""Claiming outbox rows under a lease, for the dispatchers of mail and of webhooks.

An outbox row (a notification, a webhook delivery) has ``status``, ``next_attempt_at``,
``claimed_by`` and ``claimed_until``. A dispatcher claims due rows in batches: on PostgreSQL the
claiming query skips rows another dispatcher has locked (``FOR UPDATE SKIP LOCKED``), on SQLite
the claim runs under the database's write lock. A claim lasts until its lease runs out, after
which another dispatcher may take the row over; before working on a row, a dispatcher checks it
still holds it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from scheduler.db import begin_write

Row = TypeVar("Row")


class Claimant(Protocol):
    """Who claims: a dispatcher's unique name, its lease and its batch size."""

    name: str
    lease: timedelta
    batch_size: int


def claim_due(
    session: Session,
    model: type[Any],
    *,
    pending: enum.Enum,
    sending: enum.Enum,
    claimant: Claimant,
    now: datetime,
    only: Sequence[ColumnElement[bool]] = (),
) -> list[int]:
    """Claim up to a batch of ``model``'s due rows (pending and due, or sending with a lapsed
    lease, and matching ``only``) for ``claimant``, commit, and return their ids."""
    begin_write(session)
    due = (
        select(model.id)
        .where(
            or_(
                and_(model.status == pending, model.next_attempt_at <= now),
                and_(model.status == sending, model.claimed_until < now),
            ),
            *only,
        )
        .order_by(model.next_attempt_at, model.id)
        .limit(claimant.batch_size)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(due))
    if ids:
        session.execute(
            update(model)
            .where(model.id.in_(ids))
            .values(status=sending, claimed_by=claimant.name, claimed_until=now + claimant.lease)
        )
    session.commit()
    return ids


def waiting_since(
    session: Session,
    model: type[Any],
    *,
    pending: enum.Enum,
    sending: enum.Enum,
    now: datetime,
    only: Sequence[ColumnElement[bool]] = (),
) -> datetime | None:
    """Return since when the longest-waiting due row of ``model`` (one :func:`claim_due`
    would take) has waited, or ``None`` when nothing is due: how far the dispatchers are
    behind."""
    due_since = select(func.min(model.next_attempt_at)).where(
        model.status == pending, model.next_attempt_at <= now, *only
    )
    lapsed_since = select(func.min(model.claimed_until)).where(
        model.status == sending, model.claimed_until < now, *only
    )
    found = [session.scalar(due_since), session.scalar(lapsed_since)]
    return min((moment for moment in found if moment is not None), default=None)


def held(
    session: Session, model: type[Row], row_id: int, *, sending: enum.Enum, claimant: Claimant
) -> Row | None:
    """Lock and return the row, read afresh, if ``claimant`` still holds its claim.

    Runs in the transaction already open, which should hold the write lock (:func:`begin_write`).
    """
    row = session.scalars(
        select(model)
        .where(model.id == row_id)  # type: ignore[attr-defined]
        .with_for_update()
        # A session that keeps objects across commits must not answer from its memory.
        .execution_options(populate_existing=True)
    ).first()
    if row is None or row.status is not sending or row.claimed_by != claimant.name:  # type: ignore[attr-defined]
        return None
    return row


def still_held(
    session: Session, model: type[Row], row_id: int, *, sending: enum.Enum, claimant: Claimant
) -> Row | None:
    """Lock and return the row if ``claimant`` still holds its claim; otherwise roll back."""
    begin_write(session)
    row = held(session, model, row_id, sending=sending, claimant=claimant)
    if row is None:
        session.rollback()
    return row


def release(
    session: Session,
    model: type[Any],
    ids: Sequence[int],
    *,
    pending: enum.Enum,
    sending: enum.Enum,
    claimant: Claimant,
) -> None:
    """Give back rows ``claimant`` claimed and will not work on, for others to take at once."""
    begin_write(session)
    session.execute(
        update(model)
        .where(model.id.in_(ids), model.status == sending, model.claimed_by == claimant.name)
        .values(status=pending, claimed_by=None, claimed_until=None)
    )
    session.commit()
