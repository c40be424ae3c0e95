"""What one request did, gathered while it runs, for its access-log line and its metrics.

The telemetry middleware opens a record per request and keeps it in a context variable; the
code below it (the SQL statement counter, the GraphQL extension) adds to it without being
handed it. Context variables are copied into tasks the request starts (the availability
middleware runs the work in one) and into SQLAlchemy's greenlets, and the copy holds the same
record object, so what they add is seen by the middleware.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(slots=True)
class GraphQLOperation:
    """One operation of a request (a batch holds several): bounded name and type."""

    name: str
    type: str
    errors: bool = False


@dataclass(slots=True)
class RequestRecord:
    """Facts about one request that only code below the middleware knows."""

    request_id: str
    sql_statements: int = 0
    operations: list[GraphQLOperation] = field(default_factory=list)


_current: ContextVar[RequestRecord | None] = ContextVar("usagegraph_request", default=None)


def open_record(request_id: str) -> RequestRecord:
    """Start recording this request (in the current context and any it starts)."""
    record = RequestRecord(request_id)
    _current.set(record)
    return record


def current_record() -> RequestRecord | None:
    """This request's record; None outside a request (the CLI, start-up, background tasks)."""
    return _current.get()


def current_request_id() -> str | None:
    """The request id the client sees in `X-Request-Id`, for log lines written meanwhile."""
    record = _current.get()
    return record.request_id if record is not None else None
