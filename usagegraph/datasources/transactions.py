"""Write transactions that serialise on the right lock on both backends, with retries.

Every write is one transaction. On SQLite the single writer lock is taken up front with
`BEGIN IMMEDIATE`: a deferred transaction that reads first and writes later can find another
writer in the way and fail at once (SQLite cannot wait on a lock upgrade), whereas IMMEDIATE
waits its turn through the busy timeout. On PostgreSQL transactions stay READ COMMITTED and
the rows that matter are locked explicitly (`SELECT ... FOR UPDATE` in
`datasources.ledger_writes`); a deadlock or a lost race on a unique key is answered by running
the whole unit of work again in a fresh transaction.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.errors import ErrorCode, UsageGraphError, invalid
from usagegraph.money_range import MAX_STORED

log = logging.getLogger(__name__)
T = TypeVar("T")

# PostgreSQL errors after which the same work, run again from the start, may well succeed.
RETRYABLE_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        # Writers check that users and institutions exist before inserting; a foreign key
        # violation therefore means one was deleted meanwhile, and judging the work again
        # refuses just the events that lost their user or institution.
        "23503",  # foreign_key_violation
    }
)
DEFAULT_ATTEMPTS = 5
# numeric_value_out_of_range: a sum past what its column stores. Writers judge every sum
# against `money_range.MAX_STORED` before writing; only writers racing past the bound on the
# same unlocked total get here, and the client's write is what would overflow it.
OVERFLOW_SQLSTATE = "22003"
# session.info key of the outbox events the current write transaction queued.
QUEUED_EVENTS = "usagegraph.queued_events"


class WriteConflict(Exception):
    """A concurrent transaction won a race this one must not lose silently (e.g. it claimed
    the same idempotency key first); the work is rolled back and run again."""


def dialect_of(session: AsyncSession) -> str:
    """`sqlite` or `postgresql`, for the few statements the backends spell differently."""
    return session.bind.dialect.name


@asynccontextmanager
async def write_transaction(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """Begin a write transaction on a session that has none; commit on success.

    SQLite takes its write lock now (`BEGIN IMMEDIATE`), so two writers never deadlock on a
    lock upgrade; the busy timeout of the engine makes the second one wait.
    """
    async with session.begin():
        # The outbox events this transaction queues (`datasources.outbox.queued_events`);
        # emptied per attempt, so after a retried write it lists the committed attempt's.
        session.info[QUEUED_EVENTS] = []
        if dialect_of(session) == "sqlite":
            await session.execute(text("BEGIN IMMEDIATE"))
        yield session


def _sqlstate(error: Exception) -> str | None:
    return getattr(error.orig, "sqlstate", None) if isinstance(error, DBAPIError) else None


def _retryable(error: Exception) -> bool:
    if isinstance(error, WriteConflict):
        return True
    return _sqlstate(error) in RETRYABLE_SQLSTATES


async def run_write(
    session: AsyncSession,
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
) -> T:
    """Run `work` in one write transaction; run it again (fresh transaction) after a
    deadlock, a serialization failure or a `WriteConflict`.

    `work` must do everything inside the transaction it is given (no state kept across
    attempts), so a retry starts from what the database holds now.
    """
    for attempt in range(1, attempts + 1):
        try:
            async with write_transaction(session):
                return await work(session)
        except Exception as error:
            if _sqlstate(error) == OVERFLOW_SQLSTATE:
                raise invalid(
                    f"The write would take a stored total past {MAX_STORED}, the largest "
                    "amount stored"
                ) from error
            if not _retryable(error) or attempt == attempts:
                if _retryable(error):
                    log.warning("write gave up after %d attempts: %s", attempts, error)
                    raise UsageGraphError(
                        ErrorCode.SERVICE_UNAVAILABLE,
                        "The write conflicted with concurrent writes; try again",
                    ) from error
                raise
            session.expunge_all()
    raise AssertionError("unreachable")
