"""Monthly partitions of `usage_events` on PostgreSQL: created ahead, split out, detached.

On PostgreSQL `usage_events` is partitioned by range of `occurred_at`, one partition per UTC
calendar month (`usage_events_y2026m05`), plus a DEFAULT partition that catches any event
whose month has no partition yet (an import of old history, a backdated event), so a write
never fails for want of a partition. `maintain_partitions` (run by `usagegraph migrate`, at
server start and hourly while serving, and by `partitions maintain`) creates this month's
and the next months' partitions ahead of time, and moves rows the DEFAULT partition caught
into partitions of their own only for months inside the online acceptance window of event
times (by default the last 35 days; `resolvers.event_time_window`). Nothing a client sends
can therefore make maintenance create more than that handful of months, whatever sits in
DEFAULT. `usagegraph import` gives the months it loaded partitions of their own through
`ensure_months` (an operator's history, since 1970 at the earliest: at most one partition
per month of history actually loaded). An old month can then be detached (`usagegraph
partitions detach 2025-01`): it becomes an ordinary table to archive and drop, and the live
table stops carrying it. The rollups keep that month's sums (reports still show it; see
docs/decisions.md). SQLite keeps one plain table: none of this applies there.

All DDL runs in its own short transaction under an advisory lock, so two server workers
starting together cannot race to create the same partition.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from usagegraph.clock import Clock, system_clock
from usagegraph.settings import EventTimeWindow

log = logging.getLogger(__name__)

PARENT = "usage_events"
DEFAULT_PARTITION = "usage_events_default"
MONTHS_AHEAD = 3
# How far back maintenance looks for caught rows: the online writes' oldest event time.
DEFAULT_HISTORY = EventTimeWindow().max_age
MAINTENANCE_INTERVAL_SECONDS = 3600.0
_MONTH_NAME = re.compile(r"^usage_events_y(\d{4})m(\d{2})$")
# pg_advisory_xact_lock key: "usagegraph partitions" folded into a bigint.
_LOCK_KEY = 0x7573_6167_6570_6172


def is_partition_table(name: str | None) -> bool:
    """A partition of usage_events (not a table the models describe)."""
    return name is not None and (name == DEFAULT_PARTITION or bool(_MONTH_NAME.match(name)))


def month_start(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"usage_events_y{month.year:04d}m{month.month:02d}"


def _bound(month: date) -> str:
    return f"'{month.isoformat()} 00:00:00+00'"


@dataclass(frozen=True, slots=True)
class Partition:
    """One attached partition: its table, its month (None for DEFAULT) and its size."""

    name: str
    month: date | None
    estimated_rows: int


async def is_partitioned(conn: AsyncConnection) -> bool:
    """Whether this database partitions usage events (PostgreSQL after migration 0004)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = await conn.scalar(
        text(f"SELECT relkind::text FROM pg_class WHERE oid = '{PARENT}'::regclass")
    )
    return kind == "p"


async def list_partitions(conn: AsyncConnection) -> list[Partition]:
    rows = await conn.execute(
        text(
            "SELECT c.relname, GREATEST(c.reltuples, 0)::bigint FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'usage_events'::regclass "
            "ORDER BY c.relname"
        )
    )
    partitions = []
    for name, estimate in rows:
        found = _MONTH_NAME.match(name)
        month = date(int(found[1]), int(found[2]), 1) if found else None
        partitions.append(Partition(name=name, month=month, estimated_rows=int(estimate)))
    return partitions


async def _lock(conn: AsyncConnection) -> None:
    await conn.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})"))


async def _months_in_default(conn: AsyncConnection, first: date, last: date) -> set[date]:
    """The months from `first` to `last` (inclusive) of which DEFAULT holds rows; rows of
    other months (older history, or an `infinity` stored by an older version) are not even
    looked at."""
    rows = await conn.execute(
        text(
            f"SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date "
            f"FROM {DEFAULT_PARTITION} WHERE occurred_at >= {_bound(first)} "
            f"AND occurred_at < {_bound(next_month(last))}"
        )
    )
    return {row[0] for row in rows}


async def _create_month(conn: AsyncConnection, month: date, *, move_from_default: bool) -> None:
    """Create the month's partition; with rows of it in DEFAULT, move them over first.

    PostgreSQL refuses a new partition while DEFAULT holds rows of its range, so DEFAULT is
    detached, its rows of that month are moved into the new partition, and it is attached
    again, all in the caller's transaction.
    """
    name, start, end = partition_name(month), _bound(month), _bound(next_month(month))
    if not move_from_default:
        await conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {PARENT} "
                f"FOR VALUES FROM ({start}) TO ({end})"
            )
        )
        return
    await conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {DEFAULT_PARTITION}"))
    await conn.execute(
        text(f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES FROM ({start}) TO ({end})")
    )
    in_month = f"occurred_at >= {start} AND occurred_at < {end}"
    await conn.execute(
        text(f"INSERT INTO {PARENT} SELECT * FROM {DEFAULT_PARTITION} WHERE {in_month}")
    )
    await conn.execute(text(f"DELETE FROM {DEFAULT_PARTITION} WHERE {in_month}"))
    await conn.execute(text(f"ALTER TABLE {PARENT} ATTACH PARTITION {DEFAULT_PARTITION} DEFAULT"))


async def _ensure(
    engine: AsyncEngine, months: Iterable[date], caught_since: date | None = None
) -> list[str]:
    """Create the partitions of `months`, and of any month from `caught_since` to the last
    of `months` that DEFAULT holds rows of, moving those rows over; the names created."""
    wanted = set(months)
    if not wanted:
        return []
    created: list[str] = []
    async with engine.begin() as conn:
        if not await is_partitioned(conn):
            return created
        await _lock(conn)
        existing = {p.month for p in await list_partitions(conn) if p.month is not None}
        first = min(wanted | ({caught_since} if caught_since else set()))
        in_default = await _months_in_default(conn, first, max(wanted))
        if caught_since is not None:
            wanted |= {month for month in in_default if month >= caught_since}
        for month in sorted(wanted - existing):
            await _create_month(conn, month, move_from_default=month in in_default)
            created.append(partition_name(month))
    return created


async def ensure_months(engine: AsyncEngine, months: Iterable[date]) -> list[str]:
    """Make sure exactly these months have partitions (moving their rows out of DEFAULT
    where it holds some); the names of the partitions created. For operators' bulk loads
    (import, demo), whose months they chose. Does nothing where nothing is partitioned."""
    return await _ensure(engine, months)


async def maintain_partitions(
    engine: AsyncEngine,
    clock: Clock = system_clock,
    months_ahead: int = MONTHS_AHEAD,
    history: timedelta = DEFAULT_HISTORY,
) -> list[str]:
    """This month's and the next `months_ahead` months' partitions, and those of the months
    since `history` ago (the online event-time window) that DEFAULT caught rows of; the
    names of the partitions created. Older months in DEFAULT stay there: at most
    `months_ahead` + 1 + the window's months are ever created here."""
    now = clock().astimezone(UTC)
    month = month_start(now)
    wanted = [month]
    for _ in range(months_ahead):
        month = next_month(month)
        wanted.append(month)
    return await _ensure(engine, wanted, caught_since=month_start(now - history))


async def keep_partitions_ahead(
    engine: AsyncEngine,
    interval: float = MAINTENANCE_INTERVAL_SECONDS,
    history: timedelta = DEFAULT_HISTORY,
    after_round: Callable[[AsyncEngine], Awaitable[object]] | None = None,
) -> None:
    """Run `maintain_partitions` every `interval` seconds until cancelled (a server that runs
    for months keeps its partitions ahead), then `after_round` (the server reads the layout
    again: `db.partition_span`). A failed round is logged and tried next time."""
    while True:
        await asyncio.sleep(interval)
        try:
            created = await maintain_partitions(engine, history=history)
            if after_round is not None:
                await after_round(engine)
        except Exception:  # the database may be down for a while: the server carries on
            log.warning("usage partition maintenance failed; retrying in %s s", interval)
            continue
        if created:
            log.info("created usage partitions %s", ", ".join(created))


async def detach_month(engine: AsyncEngine, month: date) -> str | None:
    """Detach a month's partition from usage_events (it stays as a table of its own, ready
    to archive); its name, or None when that month has no partition."""
    name = partition_name(month)
    async with engine.begin() as conn:
        if not await is_partitioned(conn):
            return None
        await _lock(conn)
        if name not in {p.name for p in await list_partitions(conn)}:
            return None
        await conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {name}"))
    return name
