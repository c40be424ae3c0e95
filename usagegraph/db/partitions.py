"""Monthly partitions of `usage_events` on PostgreSQL: created ahead, split out, detached.

On PostgreSQL `usage_events` is partitioned by range of `occurred_at`, one partition per UTC
calendar month (`usage_events_y2026m05`), plus a DEFAULT partition that catches any event
whose month has no partition yet (an import of old history, a backdated event), so a write
never fails for want of a partition. `maintain_partitions` (run by `usagegraph migrate`, at
server start and hourly while serving, and after imports and demo loads) creates this month's
and the next months' partitions ahead of time and moves any rows the DEFAULT partition caught
into partitions of their own. An old month can then be detached (`usagegraph partitions
detach 2025-01`): it becomes an ordinary table to archive and drop, and the live table stops
carrying it. The rollups keep that month's sums (reports still show it; see
docs/decisions.md). SQLite keeps one plain table: none of this applies there.

All DDL runs in its own short transaction under an advisory lock, so two server workers
starting together cannot race to create the same partition.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from usagegraph.clock import Clock, system_clock

log = logging.getLogger(__name__)

PARENT = "usage_events"
DEFAULT_PARTITION = "usage_events_default"
MONTHS_AHEAD = 3
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


async def _months_in_default(conn: AsyncConnection) -> list[date]:
    rows = await conn.execute(
        text(
            f"SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date "
            f"FROM {DEFAULT_PARTITION}"
        )
    )
    return sorted(row[0] for row in rows)


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


async def ensure_months(engine: AsyncEngine, months: Iterable[date]) -> list[str]:
    """Make sure these months have partitions (moving rows out of DEFAULT where it holds
    some); the names of the partitions created. Does nothing where nothing is partitioned."""
    created: list[str] = []
    async with engine.begin() as conn:
        if not await is_partitioned(conn):
            return created
        await _lock(conn)
        existing = {p.month for p in await list_partitions(conn) if p.month is not None}
        in_default = set(await _months_in_default(conn))
        for month in sorted(set(months) | in_default):
            if month in existing:
                continue
            await _create_month(conn, month, move_from_default=month in in_default)
            created.append(partition_name(month))
    return created


async def maintain_partitions(
    engine: AsyncEngine, clock: Clock = system_clock, months_ahead: int = MONTHS_AHEAD
) -> list[str]:
    """This month's and the next `months_ahead` months' partitions, and any month the
    DEFAULT partition caught rows of; the names of the partitions created."""
    month = month_start(clock().astimezone(UTC))
    wanted = [month]
    for _ in range(months_ahead):
        month = next_month(month)
        wanted.append(month)
    return await ensure_months(engine, wanted)


async def keep_partitions_ahead(
    engine: AsyncEngine, interval: float = MAINTENANCE_INTERVAL_SECONDS
) -> None:
    """Run `maintain_partitions` every `interval` seconds until cancelled (a server that runs
    for months keeps its partitions ahead). A failed round is logged and tried next time."""
    while True:
        await asyncio.sleep(interval)
        try:
            created = await maintain_partitions(engine)
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
