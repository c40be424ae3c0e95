"""The async engine and session factory, configured alike for SQLite and PostgreSQL.

An engine serving requests gets a statement budget (the request timeout), so that no statement
outlives the request that wanted it, even if its cancellation is lost: PostgreSQL enforces it
as `statement_timeout`, SQLite through a progress handler that interrupts a statement running
past it. Migrations and the command line get no budget.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util.concurrency import await_

from usagegraph.settings import DATABASE_POOL_OVERFLOW, DEFAULT_DATABASE_POOL_SIZE

# A PostgreSQL server that does not accept a connection within this is treated as down.
CONNECT_TIMEOUT_SECONDS = 10.0
# How long a SQLite connection waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
# SQLite calls the deadline check every this many virtual-machine steps (well under 1 ms).
_SQLITE_PROGRESS_STEPS = 10_000
# Where a SQLite connection keeps when its current statement started (None: between them).
_STARTED_KEY = "usagegraph_statement_started"


def create_engine(
    url: URL,
    *,
    statement_timeout_seconds: float | None = None,
    pool_size: int = DEFAULT_DATABASE_POOL_SIZE,
    **kwargs: Any,
) -> AsyncEngine:
    """An engine for `url`; SQLite gets foreign keys, WAL and a busy timeout. On PostgreSQL
    the pool keeps `pool_size` connections, and opens up to DATABASE_POOL_OVERFLOW more.

    The pool pings a connection that sat idle before handing it out (`_ping_when_idle`), so
    connections that died in an outage are replaced by fresh ones and the service recovers
    once the database is back.
    """
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url, statement_timeout_seconds, **kwargs)
    kwargs.setdefault("max_overflow", DATABASE_POOL_OVERFLOW)
    connect_args = dict(kwargs.pop("connect_args", {}))
    connect_args.setdefault("timeout", CONNECT_TIMEOUT_SECONDS)
    if statement_timeout_seconds is not None:
        server_settings = dict(connect_args.get("server_settings", {}))
        server_settings["statement_timeout"] = str(_milliseconds(statement_timeout_seconds))
        connect_args["server_settings"] = server_settings
    engine = create_async_engine(url, connect_args=connect_args, pool_size=pool_size, **kwargs)
    if "pool_pre_ping" not in kwargs:
        _ping_when_idle(engine)
    return engine


# A pooled connection unused for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 5.0
_CHECKED_IN_KEY = "usagegraph_checked_in_at"


def _ping_when_idle(engine: AsyncEngine) -> None:
    """SQLAlchemy's pre-ping, for connections that sat idle in the pool.

    A connection that died in an outage must not be handed out (the pool replaces it; that
    is how the service recovers by itself). But a ping is a round trip, and a request takes
    a connection two or three times (its caller, its reads, its writes) within milliseconds
    of the last use: pinging then measured as ~15 % of a compiled read. A connection that
    fails mid-statement anyway is invalidated with the whole pool (SQLAlchemy's disconnect
    handling), so the next requests get fresh ones.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_KEY] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN_KEY)
        if checked_in is not None and time.monotonic() - checked_in <= IDLE_PING_SECONDS:
            return
        try:
            sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool discards it and connects afresh
            raise DisconnectionError("a pooled connection did not answer its ping") from exc


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _create_sqlite_engine(
    url: URL, statement_timeout_seconds: float | None, **kwargs: Any
) -> AsyncEngine:
    if url.database:
        from pathlib import Path

        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # Waiting for another writer's lock is bounded too: by the budget when there is one.
    busy_ms = _milliseconds(SQLITE_BUSY_TIMEOUT_SECONDS)
    if statement_timeout_seconds is not None:
        busy_ms = min(busy_ms, _milliseconds(statement_timeout_seconds))
    engine = create_async_engine(url, connect_args={"timeout": busy_ms / 1000}, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    if statement_timeout_seconds is not None:
        _interrupt_statements_after(engine, statement_timeout_seconds)
    return engine


def _interrupt_statements_after(engine: AsyncEngine, seconds: float) -> None:
    """SQLite's statement_timeout: interrupt a statement running longer than `seconds`.

    Each connection's progress handler (called from SQLite's own thread) compares the time
    with when its current statement started; aborting makes SQLite raise `interrupted`.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _install(dbapi_connection: Any, record: Any) -> None:
        started: list[float | None] = record.info.setdefault(_STARTED_KEY, [None])

        def over_budget() -> int:
            began = started[0]
            return int(began is not None and time.monotonic() - began > seconds)

        driver = dbapi_connection.driver_connection
        await_(driver.set_progress_handler(over_budget, _SQLITE_PROGRESS_STEPS))

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _start(connection: Connection, *_args: Any) -> None:
        started = connection.connection.info.get(_STARTED_KEY)
        if started is not None:
            started[0] = time.monotonic()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _finish(connection: Connection, *_args: Any) -> None:
        started = connection.connection.info.get(_STARTED_KEY)
        if started is not None:
            started[0] = None


def session_factory(
    engine: AsyncEngine, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit (results outlive their transaction);
    `info` is copied into every session's `info` (the app puts its live-updates publisher
    there: usagegraph/live/changes.py)."""
    return async_sessionmaker(engine, expire_on_commit=False, info=info)
