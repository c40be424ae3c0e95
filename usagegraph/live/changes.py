"""Changes noted by a writing transaction, handed to the bus once it has committed.

Writers call `note_change(session, channel, user_id)` at the one place of each write path
(datasources: usage rows inserted or forgotten, a wallet row moved). The notes live in the
session's `info` until the transaction ends: after a commit they go, once, to the publisher
the session factory put in `info` (the app's bus); after a rollback they are dropped, so a
write that did not happen is never announced and a retried transaction announces once.
Sessions without a publisher (the CLI, tests of the rules) note and forget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from usagegraph.live.channels import Payload, note_of

CHANGES_KEY = "usagegraph.live.changes"
PUBLISHER_KEY = "usagegraph.live.publisher"

Publisher = Callable[[Mapping[str, Payload]], None]


def note_change(session: AsyncSession | Session, channel: str, user_id: int | None) -> None:
    """Note that this transaction changed `channel` for `user_id` (None: for anyone)."""
    changes: dict[str, set[int] | None] = session.info.setdefault(CHANGES_KEY, {})
    if user_id is None:
        changes[channel] = None
        return
    users = changes.setdefault(channel, set())
    if users is not None:
        users.add(user_id)


def publisher_info(publisher: Publisher) -> dict[str, Any]:
    """The `info` for a session factory whose commits are published."""
    return {PUBLISHER_KEY: publisher}


@event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    changes = session.info.pop(CHANGES_KEY, None)
    publisher: Publisher | None = session.info.get(PUBLISHER_KEY)
    if changes and publisher is not None:
        publisher({channel: note_of(users) for channel, users in changes.items()})


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(CHANGES_KEY, None)
