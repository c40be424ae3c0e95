"""Usage-event pages read the partitions' unbroken run in order (db/partition_span.py).

The span is the run of consecutive month partitions ending at the newest; a page is read as
the band inside it (PostgreSQL prunes DEFAULT and reads the partitions newest first, stopping
after the page) and the band outside it. The plan test reads EXPLAIN ANALYZE: before the
bands, every partition's index scan ran for every parent (a Merge Append); now the months
older than the page never run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import column
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.conftest import FIXED_NOW, client_of, settings_for, with_read_path
from tests.databases import TestDatabase
from tests.fixtures.contexts import request_context
from tests.fixtures.factories import add_usage_events, add_user
from tests.fixtures.page_plans import Issued, analyze, capture_statements, postgres_plan
from tests.fixtures.partition_layouts import months_up_to_the_servers
from tests.schema.graph import graphql
from usagegraph.auth.principal import Principal
from usagegraph.datasources.usage import EventFilter, usage_event_pages
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Institution, UsageEvent
from usagegraph.db.partition_span import PartitionSpan, known_span, refresh_span, span_of
from usagegraph.db.partitions import (
    DEFAULT_PARTITION,
    Partition,
    ensure_months,
    maintain_partitions,
    partition_name,
)

SUPER = Principal.for_user(1, "super", frozenset(), {})


def _month(year: int, month: int) -> Partition:
    return Partition(
        name=partition_name(date(year, month, 1)), month=date(year, month, 1), estimated_rows=0
    )


def _utc(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


def test_the_span_is_the_run_of_months_ending_at_the_newest() -> None:
    partitions = [
        Partition(name=DEFAULT_PARTITION, month=None, estimated_rows=9),
        _month(2024, 1),  # an imported old month, apart from the run
        _month(2026, 4),
        _month(2026, 5),
        _month(2026, 6),
        _month(2026, 7),
    ]
    assert span_of(partitions) == PartitionSpan(start=_utc(2026, 4), end=_utc(2026, 8))


def test_a_gap_cuts_the_run_and_a_year_boundary_does_not() -> None:
    partitions = [_month(2026, 10), _month(2026, 12), _month(2027, 1), _month(2027, 2)]
    assert span_of(partitions) == PartitionSpan(start=_utc(2026, 12), end=_utc(2027, 3))


def test_no_month_partitions_no_span() -> None:
    assert span_of([Partition(name=DEFAULT_PARTITION, month=None, estimated_rows=0)]) is None
    assert span_of([]) is None


def test_the_bands_cover_every_moment_exactly_once() -> None:
    span = PartitionSpan(start=_utc(2026, 4), end=_utc(2026, 8))
    april, august = (
        "'2026-04-01T00:00:00+00:00'::timestamptz",
        "'2026-08-01T00:00:00+00:00'::timestamptz",
    )
    inside, outside = (str(band.compile()) for band in span.bands(column("t")))
    assert (inside, outside) == (
        f"t >= {april} AND t < {august}",
        f"t < {april} OR t >= {august}",
    )


async def test_the_span_is_read_from_the_catalog(own_database: AsyncEngine) -> None:
    if own_database.dialect.name != "postgresql":
        assert await refresh_span(own_database) is None
        assert known_span(own_database) is None
        return
    await maintain_partitions(own_database, lambda: FIXED_NOW)  # May 2026 and three months ahead
    await ensure_months(own_database, [date(2026, 4, 1), date(2020, 1, 1)])
    expected = PartitionSpan(start=_utc(2026, 4), end=_utc(2026, 9))
    assert await refresh_span(own_database) == expected
    async with session_factory(own_database)() as session:
        assert known_span(session) == expected
        assert known_span(await session.connection()) == expected


USERS, PER_USER, FIRST = 20, 10, 5
INSTITUTION = "p" * 24
MEMBERS_EVENTS = """query($id: String!) { institution(id: $id) { members(first: 20) {
  edges { node { user { usageEvents(first: 5) { edges { node { occurredAt } } } } } } } } }"""


def _scans(plan: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    if "Relation Name" in plan:
        yield plan
    for child in plan.get("Plans", []):
        yield from _scans(child)


async def _members_with_three_months(engine: AsyncEngine) -> list[int]:
    """USERS members of INSTITUTION, each with PER_USER events in each of March, April and May
    2026, in a run of partitions from March to the months ahead of today."""
    await ensure_months(engine, months_up_to_the_servers(date(2026, 3, 1)))
    async with session_factory(engine)() as session, session.begin():
        session.add(Institution(id=INSTITUTION, name="Partitioned"))
    users = [
        await add_user(engine, email=f"u{n}@x.org", member_of={INSTITUTION: "user"})
        for n in range(USERS)
    ]
    async with session_factory(engine)() as session, session.begin():
        for user in users:
            for month in (3, 4, 5):
                moment = datetime(2026, month, 10, tzinfo=UTC)
                await add_usage_events(
                    session,
                    *(
                        UsageEvent(
                            user_id=user,
                            occurred_at=moment + timedelta(minutes=n),
                            credits=Decimal(1),
                        )
                        for n in range(PER_USER)
                    ),
                )
    async with engine.begin() as connection:
        await analyze(connection)
    return users


async def _loader_page_statement(
    engine: AsyncEngine, _database: TestDatabase, users: list[int], _tmp: Path
) -> Issued:
    """The resolver path's batch: every user's page, one statement."""
    assert await refresh_span(engine) is not None
    context = request_context(engine, SUPER)
    with capture_statements(engine) as issued:
        async with context.sessions() as session:
            pages = await usage_event_pages(
                session, SUPER, users, EventFilter(), first=FIRST, before=None
            )
    assert all(len(page) == FIRST + 1 for page in pages.values())
    assert all(row.occurred_at.month == 5 for page in pages.values() for row in page)
    [statement] = issued
    return statement


async def _compiled_statement(
    engine: AsyncEngine, database: TestDatabase, users: list[int], tmp_path: Path
) -> Issued:
    """The compiled path's one statement for the members and their pages, from a real app."""
    boss = await add_user(engine, email="boss@x.org", role="super")
    started: list[Starlette] = []
    settings = with_read_path(settings_for(database, tmp_path), compiled=True)
    async with client_of(settings, changes=lambda app: started.append(app) or app) as client:
        with capture_statements(started[0].state.engine) as issued:
            body = await graphql(
                client, MEMBERS_EVENTS, user_id=boss, variables={"id": INSTITUTION}
            )
    members = body["data"]["institution"]["members"]["edges"]
    pages = [member["node"]["user"]["usageEvents"]["edges"] for member in members]
    events = [edge["node"]["occurredAt"] for page in pages for edge in page]
    assert len(members) == USERS
    assert len(events) == USERS * FIRST
    assert all(moment.startswith("2026-05-") for moment in events)
    return issued[-1]


@pytest.mark.parametrize(
    "read", [_loader_page_statement, _compiled_statement], ids=["loader", "compiled"]
)
async def test_a_page_reads_the_newest_months_and_stops(
    own_database: AsyncEngine,
    empty_database: TestDatabase,
    tmp_path: Path,
    read: Callable[[AsyncEngine, TestDatabase, list[int], Path], Awaitable[Issued]],
) -> None:
    if own_database.dialect.name != "postgresql":
        pytest.skip("usage events are partitioned on PostgreSQL only")
    users = await _members_with_three_months(own_database)
    statement = await read(own_database, empty_database, users, tmp_path)
    async with own_database.connect() as connection:
        plan = await postgres_plan(connection, statement)
    loops: dict[str, int] = {}
    for scan in _scans(plan):
        name = scan["Relation Name"]
        loops[name] = loops.get(name, 0) + int(scan["Actual Loops"])
    print(loops)
    # May answers every page; the months behind it are never opened (a Merge Append opened
    # each of them once per user), the empty months ahead cost a probe per user.
    assert loops[partition_name(date(2026, 5, 1))] == USERS
    assert loops.get(partition_name(date(2026, 4, 1)), 0) == 0
    assert loops.get(partition_name(date(2026, 3, 1)), 0) == 0
