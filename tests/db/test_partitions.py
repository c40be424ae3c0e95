"""Monthly partitions of usage_events on PostgreSQL: migration, creation ahead, DEFAULT
catching and splitting, detaching; SQLite keeps its single table."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.running import cli_env, run_cli
from tests.databases import TestDatabase
from tests.fixtures.factories import add_usage_events, add_user
from usagegraph.auth.principal import Principal
from usagegraph.datasources.usage import of_user, usage_by_slot
from usagegraph.db.engine import create_engine, session_factory
from usagegraph.db.models import UsageEvent
from usagegraph.db.partitions import (
    DEFAULT_PARTITION,
    detach_month,
    ensure_months,
    is_partitioned,
    keep_partitions_ahead,
    list_partitions,
    maintain_partitions,
    month_start,
    partition_name,
)
from usagegraph.db.schema_version import migrate, upgrade_to_head
from usagegraph.importer import import_file

NOW = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)


def _clock() -> datetime:
    return NOW


def _at(year: int, month: int, day: int = 15) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


async def _names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [p.name for p in await list_partitions(conn)]


async def _rows_in(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


@pytest.fixture
async def fresh(empty_database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    """A database of its own (partitions are schema objects: tests must not share them)."""
    engine = create_engine(empty_database.url)
    yield engine
    await engine.dispose()


def _postgres_only(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("usage events are partitioned on PostgreSQL only")


async def test_sqlite_keeps_one_table_and_maintenance_does_nothing(fresh: AsyncEngine) -> None:
    if fresh.dialect.name != "sqlite":
        pytest.skip("the SQLite side of the rule")
    await upgrade_to_head(fresh)
    async with fresh.connect() as conn:
        assert not await is_partitioned(conn)
    assert await maintain_partitions(fresh, _clock) == []


async def test_migration_moves_existing_events_into_month_partitions(fresh: AsyncEngine) -> None:
    _postgres_only(fresh)
    await migrate(fresh, "upgrade", "0003")
    user = await add_user(fresh, email="ada@acme.edu")
    async with session_factory(fresh)() as session, session.begin():
        await add_usage_events(
            session,
            UsageEvent(user_id=user, occurred_at=_at(2026, 1, 31), credits=Decimal(1)),
            UsageEvent(user_id=user, occurred_at=_at(2026, 3, 1), credits=Decimal(2)),
            UsageEvent(user_id=user, occurred_at=_at(2026, 3, 2), credits=Decimal(4)),
        )
    await upgrade_to_head(fresh)
    async with fresh.connect() as conn:
        assert await is_partitioned(conn)
    assert await _names(fresh) == [
        DEFAULT_PARTITION,
        "usage_events_y2026m01",
        "usage_events_y2026m03",
    ]
    assert await _rows_in(fresh, "usage_events_y2026m03") == 2
    # ids keep counting from the same sequence
    async with session_factory(fresh)() as session, session.begin():
        event = UsageEvent(user_id=user, occurred_at=_at(2026, 3, 3), credits=Decimal(8))
        await add_usage_events(session, event)
    assert event.id == 4
    # and the migration can be undone, data intact
    await migrate(fresh, "downgrade", "0003")
    async with fresh.connect() as conn:
        assert not await is_partitioned(conn)
        assert await conn.scalar(text("SELECT sum(credits) FROM usage_events")) == Decimal(15)


async def test_maintenance_creates_this_month_and_three_ahead_once(fresh: AsyncEngine) -> None:
    _postgres_only(fresh)
    await upgrade_to_head(fresh)
    created = await maintain_partitions(fresh, _clock)
    assert created == [
        "usage_events_y2026m11",
        "usage_events_y2026m12",
        "usage_events_y2027m01",
        "usage_events_y2027m02",
    ]
    assert await maintain_partitions(fresh, _clock) == []


async def test_maintenance_splits_out_caught_months_of_the_event_window_only(
    fresh: AsyncEngine,
) -> None:
    """Rows DEFAULT caught for a month inside the online window (35 days back from NOW,
    2026-11-22: October 2026) get their partition; older history stays in DEFAULT, so no
    amount of backdated rows makes maintenance create partitions beyond the window."""
    _postgres_only(fresh)
    await upgrade_to_head(fresh)
    await maintain_partitions(fresh, _clock)
    user = await add_user(fresh, email="ada@acme.edu")
    async with session_factory(fresh)() as session, session.begin():
        await add_usage_events(
            session,
            UsageEvent(user_id=user, occurred_at=_at(2019, 6), credits=Decimal(1)),
            UsageEvent(user_id=user, occurred_at=_at(2019, 6, 30), credits=Decimal(2)),
            UsageEvent(user_id=user, occurred_at=_at(2026, 10, 20), credits=Decimal(8)),
            UsageEvent(user_id=user, occurred_at=_at(2026, 11), credits=Decimal(4)),
            *(
                UsageEvent(user_id=user, occurred_at=_at(1900 + n // 12, n % 12 + 1))
                for n in range(300)
            ),
        )
    assert await _rows_in(fresh, DEFAULT_PARTITION) == 303
    assert await maintain_partitions(fresh, _clock) == ["usage_events_y2026m10"]
    assert await maintain_partitions(fresh, _clock) == []
    assert await _rows_in(fresh, "usage_events_y2026m10") == 1
    assert await _rows_in(fresh, DEFAULT_PARTITION) == 302  # history stays where it is
    assert len(await _names(fresh)) == 1 + 4 + 1  # DEFAULT, Nov to Feb, October
    async with session_factory(fresh)() as session:
        total = await session.scalar(select(func.sum(UsageEvent.credits)))
    assert total == Decimal(15)


async def test_the_window_maintenance_looks_back_is_its_history_argument(
    fresh: AsyncEngine,
) -> None:
    _postgres_only(fresh)
    await upgrade_to_head(fresh)
    user = await add_user(fresh, email="ada@acme.edu")
    async with session_factory(fresh)() as session, session.begin():
        await add_usage_events(
            session, UsageEvent(user_id=user, occurred_at=_at(2026, 8), credits=Decimal(1))
        )
    assert "usage_events_y2026m08" not in await maintain_partitions(fresh, _clock)
    longer = await maintain_partitions(fresh, _clock, history=timedelta(days=120))
    assert longer == ["usage_events_y2026m08"]


async def test_an_import_gives_exactly_the_months_it_loaded_partitions(
    fresh: AsyncEngine, tmp_path: Path
) -> None:
    """Imported history gets one partition per month it holds (so it can be detached and
    archived); an older month DEFAULT held before the import is not the import's and stays."""
    _postgres_only(fresh)
    await upgrade_to_head(fresh)
    user = await add_user(fresh, email="ada@acme.edu")
    async with session_factory(fresh)() as session, session.begin():
        await add_usage_events(
            session, UsageEvent(user_id=user, occurred_at=_at(2001, 1), credits=Decimal(1))
        )
    lines = [
        {"kind": "usage", "user": user, "instance": "personal", "occurred_at": when}
        for when in ("2019-06-15T12:00:00Z", "2019-06-30T23:59:59Z", "2023-02-01T00:00:00Z")
    ]
    path = tmp_path / "history.ndjson"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    await import_file(fresh, path, clock=_clock)
    names = await _names(fresh)
    assert {"usage_events_y2019m06", "usage_events_y2023m02"} <= set(names)
    assert "usage_events_y2001m01" not in names
    assert len(names) == 1 + 2 + 4  # DEFAULT, the two imported months, Nov 2026 to Feb 2027
    assert await _rows_in(fresh, "usage_events_y2019m06") == 2
    assert await _rows_in(fresh, DEFAULT_PARTITION) == 1  # 2001's row only


async def test_ensure_months_prepares_a_bulk_load(fresh: AsyncEngine) -> None:
    _postgres_only(fresh)
    await upgrade_to_head(fresh)
    created = await ensure_months(fresh, [date(2025, 12, 1), date(2026, 1, 1)])
    assert created == ["usage_events_y2025m12", "usage_events_y2026m01"]


async def test_a_detached_month_leaves_the_events_but_reports_keep_its_sums(
    fresh: AsyncEngine,
) -> None:
    _postgres_only(fresh)
    await upgrade_to_head(fresh)
    user = await add_user(fresh, email="ada@acme.edu")
    await ensure_months(fresh, [date(2026, 1, 1), date(2026, 2, 1)])
    async with session_factory(fresh)() as session, session.begin():
        await add_usage_events(
            session,
            UsageEvent(user_id=user, occurred_at=_at(2026, 1), credits=Decimal(3)),
            UsageEvent(user_id=user, occurred_at=_at(2026, 2), credits=Decimal(5)),
        )
    assert await detach_month(fresh, date(2026, 1, 1)) == "usage_events_y2026m01"
    assert await detach_month(fresh, date(2026, 1, 1)) is None  # already gone
    assert "usage_events_y2026m01" not in await _names(fresh)
    assert await _rows_in(fresh, "usage_events_y2026m01") == 1  # the archive table
    async with session_factory(fresh)() as session:
        assert await session.scalar(select(func.count()).select_from(UsageEvent)) == 1
        owner = Principal.for_user(user, "user", frozenset(), {})
        slots = await usage_by_slot(
            session,
            owner,
            start=datetime(2026, 1, 1, tzinfo=UTC),
            end=datetime(2026, 3, 1, tzinfo=UTC),
            slot_seconds=86_400,
            filters=[of_user(user)],
            include_forgotten=False,
        )
    assert sum(s.credits for s in slots) == Decimal(8)


async def test_partition_commands_list_maintain_and_detach(
    empty_database: TestDatabase, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, empty_database.url_string)
    assert run_cli(env, "migrate").returncode == 0
    listed = run_cli(env, "partitions", "list")
    assert listed.returncode == 0, listed.stderr
    if empty_database.backend == "sqlite":
        assert "not partitioned" in listed.stdout
        return
    assert DEFAULT_PARTITION in listed.stdout
    assert "usage_events_y" in listed.stdout  # migrate created this month and the next ones
    maintained = run_cli(env, "partitions", "maintain")
    assert "nothing (all in place)" in maintained.stdout, maintained.stdout
    month = listed.stdout.split("usage_events_y")[1][:7]  # e.g. 2026m11
    detached = run_cli(env, "partitions", "detach", f"{month[:4]}-{month[5:]}")
    assert detached.returncode == 0, detached.stderr
    assert "detached" in detached.stdout
    refused = run_cli(env, "partitions", "detach", "2026-13")
    assert refused.returncode != 0
    assert "YYYY-MM" in refused.stderr or "2025-01" in refused.stderr


async def test_the_server_keeps_partitions_ahead_while_it_runs(fresh: AsyncEngine) -> None:
    _postgres_only(fresh)
    await upgrade_to_head(fresh)
    task = asyncio.create_task(keep_partitions_ahead(fresh, interval=0.05))
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if len(await _names(fresh)) == 5:  # DEFAULT + this month + three ahead
                break
    finally:
        task.cancel()
    month = month_start(datetime.now(UTC))
    assert partition_name(month) in await _names(fresh)
    assert len(await _names(fresh)) == 5
