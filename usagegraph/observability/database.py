"""What the database does for requests: statements per request, and the pool's connections.

`watch_database` hooks an engine's events once, when the app opens it: every statement is
counted into the current request's record (none outside a request), and every checkout and
checkin refreshes the pool gauges. The pool has no event for a caller starting to wait, so
`observe_pool` also reads the queue's waiters when a request starts and when /metrics is
scraped, which is when a backlog shows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from usagegraph.observability.metrics import set_pool
from usagegraph.observability.request_record import current_record


def watch_database(engine: AsyncEngine) -> None:
    """Count statements per request and keep the pool gauges current for `engine`."""
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _count(*_args: Any) -> None:
        record = current_record()
        if record is not None:
            record.sql_statements += 1

    def _pool_changed(*_args: Any) -> None:
        observe_pool(engine)

    for name in ("checkout", "checkin", "close", "detach"):
        event.listen(sync_engine.pool, name, _pool_changed)
    observe_pool(engine)


def observe_pool(engine: AsyncEngine) -> None:
    """Read the pool's connections in use, idle and waiting into the gauges.

    A queue pool (what both backends use) says what it holds; other pools (NullPool for
    tests) hold nothing worth reporting and read as zeros.
    """
    pool: Any = engine.sync_engine.pool
    in_use = _count_of(pool, "checkedout")
    idle = _count_of(pool, "checkedin")
    set_pool(in_use, idle, _waiting(pool))


def _count_of(pool: Any, method: str) -> int:
    reader = getattr(pool, method, None)
    if reader is None:
        return 0
    return max(0, int(reader()))


def _waiting(pool: Any) -> int:
    """Callers queued for a connection: the asyncio queue's waiting getters.

    SQLAlchemy does not publish this; its async queue pool keeps an `asyncio.Queue` whose
    getters are exactly those callers. Read defensively: a pool without one waits for none.
    """
    inner = getattr(pool, "_pool", None)
    # `_queue` is created on first use: read it only if it exists.
    queue = vars(inner).get("_queue") if hasattr(inner, "__dict__") else None
    getters = getattr(queue, "_getters", None)
    if getters is None:
        return 0
    return sum(1 for waiter in getters if not waiter.done())
