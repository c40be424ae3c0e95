"""The unbroken run of monthly `usage_events` partitions: where a newest-first page can read
one partition after another and stop.

A user's newest events (`ORDER BY occurred_at DESC, id DESC LIMIT n`) on the partitioned
table were a Merge Append: PostgreSQL opened an index scan on every partition (eleven with
the default layout: six months back, this one, three ahead, DEFAULT) and merged them, for
every parent of a page. DEFAULT may hold rows of any time, so the partitions are not known to
be in order. When a query's own time range lies inside months that all have partitions, the
planner prunes DEFAULT and reads the partitions one after another, newest first, stopping
after n rows (an ordered Append): mostly one partition read, the empty ones ahead cost a
probe each. On the 1M-event demo, 100 users' pages of six: 6.1-6.6 ms before, 1.7-2.2 ms
after (`EXPLAIN ANALYZE`, the machine otherwise idle).

So a page over `usage_events` is read as two time bands whose union is all time: inside the
run (the ordered Append) and outside it (DEFAULT, and any partition apart from the run: an
imported old month, a month left between detached ones). Each band is limited, then the two
are merged and cut again (`datasources.pages`, `datasources.json_reads`).

The bounds are literals in the statement's text, so PostgreSQL prunes when it plans, also in
the generic plan of a prepared statement (a bound parameter would only prune at run time,
and keep the Merge Append). They are read from the catalog when a server starts and after
each maintenance round (`db.partitions.keep_partitions_ahead`). A stale span costs speed,
never rows: whatever the catalog holds, the two bands cover every moment exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import ColumnElement, and_, literal_column, or_
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from usagegraph.db.models import UsageEvent
from usagegraph.db.partitions import Partition, is_partitioned, list_partitions, next_month


@dataclass(frozen=True, slots=True)
class PartitionSpan:
    """[start, end): the months from `start` up to `end` all have partitions of their own."""

    start: datetime
    end: datetime

    def literals(self) -> tuple[str, str]:
        """The bounds as SQL timestamp literals (our own values, never a client's)."""
        return (_literal(self.start), _literal(self.end))

    def bands(self, column: ColumnElement[datetime]) -> tuple[ColumnElement[bool], ...]:
        """Inside the span, and outside it: together every moment, each exactly once."""
        start, end = (literal_column(bound) for bound in self.literals())
        return (and_(column >= start, column < end), or_(column < start, column >= end))


@lru_cache(maxsize=8)
def occurred_at_bands(span: PartitionSpan) -> tuple[ColumnElement[bool], ...]:
    """The span's bands on `usage_events.occurred_at`, for both read paths (the compiled one
    renders them as text); built once per span, since a kept page statement is keyed by its
    clauses' structure, not by these objects."""
    return span.bands(UsageEvent.occurred_at)


def _literal(moment: datetime) -> str:
    return f"'{moment.isoformat()}'::timestamptz"


def span_of(partitions: Sequence[Partition]) -> PartitionSpan | None:
    """The run of consecutive months ending at the newest month partition (this month and the
    months ahead, with the recent ones behind them), or None without month partitions."""
    months = sorted({p.month for p in partitions if p.month is not None}, reverse=True)
    if not months:
        return None
    first = months[0]
    for month in months[1:]:
        if next_month(month) != first:
            break
        first = month
    return PartitionSpan(start=_midnight(first), end=_midnight(next_month(months[0])))


def _midnight(month: date) -> datetime:
    return datetime(month.year, month.month, month.day, tzinfo=UTC)


# The span of each database, by its engine (a test process talks to several databases).
_SPANS: WeakKeyDictionary[Engine, PartitionSpan] = WeakKeyDictionary()


async def refresh_span(engine: AsyncEngine) -> PartitionSpan | None:
    """Read the span from the catalog and keep it for `known_span`; None where usage events
    are not partitioned (SQLite)."""
    async with engine.connect() as connection:
        partitioned = await is_partitioned(connection)
        span = span_of(await list_partitions(connection)) if partitioned else None
    if span is None:
        _SPANS.pop(engine.sync_engine, None)
    else:
        _SPANS[engine.sync_engine] = span
    return span


def known_span(bind: AsyncSession | AsyncConnection | AsyncEngine | Any) -> PartitionSpan | None:
    """The span last read for the database behind `bind` (a session, a connection or an
    engine); None when none was read, and a page is then read without bands."""
    if isinstance(bind, AsyncSession):
        bind = bind.bind
    if isinstance(bind, AsyncConnection):
        bind = bind.engine
    if isinstance(bind, AsyncEngine):
        return _SPANS.get(bind.sync_engine)
    return None
