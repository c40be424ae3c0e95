"""What counts as the database being unavailable, and a per-request record of meeting it.

A request that meets an outage is answered 503, never 500 (see http/availability.py). Most such
failures propagate as exceptions and are classified where they are caught; some are swallowed
on the way (GraphQL turns resolver exceptions into `errors` of a 200 answer). So the engine
also reports every unavailability it meets into a record of the current request, which the
availability middleware reads before a response starts.

Classification walks an exception's causes, because drivers and SQLAlchemy wrap each other:
- PostgreSQL: connection exceptions (SQLSTATE class 08), shutdown or not yet accepting
  connections (57P01-57P03), too many connections (53300), a connection the pool found
  dropped (`connection_invalidated`), and a statement cancelled by `statement_timeout`
  (57014, a timeout rather than an outage);
- SQLite: a database file that cannot be opened or read, a database locked past its busy
  timeout, and a statement interrupted by its deadline (a timeout);
- the network below the driver: refused, reset or timed-out connections, unresolvable hosts;
- a pool with no connection to hand out within its timeout.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import sqlite3
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine


class Unavailability(StrEnum):
    """Why a request could not be served; each answers 503 with its own message."""

    DATABASE = "database unavailable"
    TIMEOUT = "timed out"
    # Every pooled connection stayed busy for the pool's whole wait: overload, not an outage.
    BUSY = "no database connection free"


MESSAGES: dict[Unavailability, str] = {
    Unavailability.DATABASE: "The database is temporarily unavailable; try again shortly",
    Unavailability.TIMEOUT: "The request took too long and was cancelled; try again later",
    Unavailability.BUSY: "The service is busy; try again shortly",
}

_POSTGRES_TIMEOUT_STATES = frozenset({"57014"})  # query_canceled (statement_timeout)
_POSTGRES_OUTAGE_STATES = frozenset({"57P01", "57P02", "57P03", "53300", "25P03"})
_SQLITE_OUTAGE_MESSAGES = (
    "unable to open database file",
    "disk i/o error",
    "database is locked",
)
_SQLITE_TIMEOUT_MESSAGE = "interrupted"
_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EPIPE,
    }
)
# Wrapping is a few levels deep at most; the bound only guards against odd cycles.
_MAX_CHAIN = 12


def classify(exc: BaseException) -> Unavailability | None:
    """The unavailability `exc` (or anything it wraps) stands for, or None for other errors."""
    for link in _chain(exc):
        kind = _classify_one(link)
        if kind is not None:
            return kind
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it wraps: the DBAPI error of a SQLAlchemy one, causes and contexts."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending and len(seen) < _MAX_CHAIN:
        link = pending.pop(0)
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        for wrapped in (getattr(link, "orig", None), link.__cause__, link.__context__):
            if isinstance(wrapped, BaseException):
                pending.append(wrapped)


def _classify_one(exc: BaseException) -> Unavailability | None:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return Unavailability.DATABASE
    if isinstance(exc, sa_exc.TimeoutError):  # the pool had no connection to hand out
        return Unavailability.BUSY
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        return _classify_sqlstate(sqlstate)
    if isinstance(exc, sqlite3.OperationalError):
        return _classify_sqlite(str(exc).lower())
    if _is_network_failure(exc):
        return Unavailability.DATABASE
    return None


def _classify_sqlstate(sqlstate: str) -> Unavailability | None:
    if sqlstate in _POSTGRES_TIMEOUT_STATES:
        return Unavailability.TIMEOUT
    if sqlstate.startswith("08") or sqlstate in _POSTGRES_OUTAGE_STATES:
        return Unavailability.DATABASE
    return None


def _classify_sqlite(message: str) -> Unavailability | None:
    if message == _SQLITE_TIMEOUT_MESSAGE:
        return Unavailability.TIMEOUT
    if message.startswith(_SQLITE_OUTAGE_MESSAGES):
        return Unavailability.DATABASE
    return None


def _is_network_failure(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS


# --- the record of the current request ---


@dataclass(slots=True)
class OutageRecord:
    """The first unavailability met while serving one request, if any."""

    met: Unavailability | None = None


_current: ContextVar[OutageRecord | None] = ContextVar("usagegraph_outage_record", default=None)


@contextlib.contextmanager
def recording() -> Iterator[OutageRecord]:
    """Record unavailabilities met by everything awaited inside (tasks it starts included)."""
    record = OutageRecord()
    token = _current.set(record)
    try:
        yield record
    finally:
        _current.reset(token)


def note_failure(exc: BaseException) -> None:
    """Put `exc` into the current request's record when it means the database is unavailable."""
    record = _current.get()
    if record is None or record.met is not None:
        return
    record.met = classify(exc)


def watch_engine(engine: AsyncEngine) -> None:
    """Report the engine's unavailabilities into the current request's record.

    Failed statements arrive through `handle_error`; failed connection attempts do not, so
    connecting goes through `do_connect`. A failed pre-ping is not reported: it only means a
    pooled connection went stale, and the pool replaces it with a fresh one (which is how the
    service recovers by itself after an outage). Neither is a cancelled statement.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        if context.is_pre_ping or not isinstance(context.original_exception, Exception):
            # A cancelled statement (CancelledError is no Exception) is not an outage: GraphQL
            # cancels the siblings of a failed field, and the deadline cancels overrunning
            # work, which the middleware answers as a timeout by itself.
            return
        if context.is_disconnect:
            record = _current.get()
            if record is not None and record.met is None:
                record.met = Unavailability.DATABASE
            return
        note_failure(context.original_exception)

    @event.listens_for(sync_engine, "do_connect")
    def _on_connect(
        dialect: Dialect, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]
    ) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            note_failure(exc)
            raise
