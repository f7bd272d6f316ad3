"""Work that waits for the unit of work to commit: noted on the session, dropped on rollback.

Operations only flush; views and commands commit. Some consequences of a change must happen
only if it commits: a webhook delivery written in the same transaction, a log line saying a
booking changed. An :class:`OnCommit` collects such notes on the session and hands them over
when the outermost transaction commits: to ``before`` inside it (which may still write), and
to ``after`` once it has committed (which must not touch the database). A rollback drops
them; a savepoint's rollback drops only those noted inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

Item = TypeVar("Item")


@dataclass(frozen=True)
class _Noted(Generic[Item]):
    item: Item
    # The savepoint it was noted in, if any: that savepoint's rollback takes it back.
    savepoint: SessionTransaction | None


class OnCommit(Generic[Item]):
    """Items noted on sessions, handed over when each session's unit of work commits."""

    def __init__(
        self,
        key: str,
        *,
        before: Callable[[Session, list[Item]], object] | None = None,
        after: Callable[[list[Item]], object] | None = None,
    ) -> None:
        self.noted = key
        self.committing = key + ":committing"
        self.before = before
        self.after = after
        event.listen(Session, "before_commit", self._before_commit)
        event.listen(Session, "after_commit", self._after_commit)
        event.listen(Session, "after_soft_rollback", self._after_rollback)
        event.listen(Session, "after_transaction_end", self._after_end)

    def note(self, session: Session, item: Item) -> None:
        """Keep ``item`` until ``session`` commits (or drop it when it rolls back)."""
        noted: list[_Noted[Item]] = session.info.setdefault(self.noted, [])
        noted.append(_Noted(item, session.get_nested_transaction()))

    def _before_commit(self, session: Session) -> None:
        # A savepoint's commit is not the end of the unit of work; wait for the real one.
        if session.in_nested_transaction():
            return
        items = [noted.item for noted in session.info.pop(self.noted, [])]
        if not items:
            return
        if self.before is not None:
            self.before(session, items)
        if self.after is not None:
            session.info[self.committing] = items

    def _after_commit(self, session: Session) -> None:
        items = session.info.pop(self.committing, None)
        if items and self.after is not None:
            self.after(items)

    def _after_rollback(self, session: Session, previous: SessionTransaction) -> None:
        session.info.pop(self.committing, None)  # the commit failed
        noted: list[_Noted[Item]] | None = session.info.get(self.noted)
        if not noted:
            return
        if previous.nested:
            session.info[self.noted] = [n for n in noted if n.savepoint is not previous]
        else:
            session.info.pop(self.noted, None)

    def _after_end(self, session: Session, transaction: SessionTransaction) -> None:
        # Closing the session without committing drops what was noted, like a rollback.
        if transaction.parent is None:
            session.info.pop(self.noted, None)
            session.info.pop(self.committing, None)
