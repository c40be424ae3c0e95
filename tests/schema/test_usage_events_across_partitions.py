"""A user's events page newest first wherever the partitioned table keeps them.

Event pages are read in two time bands (db/partition_span.py): inside the run of month
partitions the server last read, and outside it. The layout here has every kind of place: the
run (April 2026 to three months ahead of today), a partition apart from it (January 2024),
DEFAULT with events older and newer than any partition; and after the server has read its
span, the layout changes under it: March 2026 gets a partition (outside the span it knows),
July 2026 is detached and its new event lands in DEFAULT (inside the span it knows). Walking
`first: 2` with the cursor must return every event once, newest first, ties by id, on both read
paths, for the user and for a super user. SQLite keeps one table: the same walk.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FIXED_NOW, client_of, settings_for, with_read_path
from tests.databases import TestDatabase
from tests.fixtures.factories import add_usage_events, add_user, stored_usage_events
from tests.fixtures.partition_layouts import months_up_to_the_servers, start_of
from tests.schema.graph import graphql
from usagegraph.db.engine import session_factory
from usagegraph.db.models import UsageEvent
from usagegraph.db.partition_span import PartitionSpan, refresh_span
from usagegraph.db.partitions import detach_month, ensure_months, next_month

TIED = FIXED_NOW - timedelta(days=1)
MOMENTS = [
    datetime(2031, 2, 1, tzinfo=UTC),  # DEFAULT: after every partition
    TIED,
    TIED,
    datetime(2026, 7, 15, tzinfo=UTC),  # DEFAULT once July is detached, inside the known span
    datetime(2026, 4, 10, tzinfo=UTC),
    datetime(2026, 3, 10, tzinfo=UTC),  # a partition made after the server read its span
    datetime(2024, 1, 15, tzinfo=UTC),  # a partition apart from the run
    datetime(2001, 6, 1, tzinfo=UTC),  # DEFAULT: before every partition
]

PAGE = """query($id: Int!, $after: String) { user(id: $id) {
  usageEvents(first: 2, after: $after) {
    edges { node { credits } } pageInfo { hasNextPage endCursor } } } }"""


async def _walk(client: httpx.AsyncClient, user: int, caller: int) -> list[Decimal]:
    credits: list[Decimal] = []
    after = None
    for _ in range(len(MOMENTS)):
        body = await graphql(client, PAGE, user_id=caller, variables={"id": user, "after": after})
        assert "errors" not in body, body
        page = body["data"]["user"]["usageEvents"]
        credits += [Decimal(edge["node"]["credits"]) for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return credits
        after = page["pageInfo"]["endCursor"]
    raise AssertionError(f"more pages than events: {credits}")


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "resolvers"])
async def test_every_event_once_newest_first_whatever_the_partitions(
    own_database: AsyncEngine, empty_database: TestDatabase, tmp_path: Path, compiled: bool
) -> None:
    run = months_up_to_the_servers(date(2026, 4, 1))
    await ensure_months(own_database, [*run, date(2024, 1, 1)])
    if own_database.dialect.name == "postgresql":
        span = PartitionSpan(start=start_of(run[0]), end=start_of(next_month(run[-1])))
        assert await refresh_span(own_database) == span
    user = await add_user(own_database, email="events@x.org")
    boss = await add_user(own_database, email="boss@x.org", role="super")
    settings = with_read_path(settings_for(empty_database, tmp_path), compiled)
    async with client_of(settings) as client:
        await client.get("/health")  # started: the server has read its span
        assert await detach_month(own_database, date(2026, 7, 1)) in (None, "usage_events_y2026m07")
        await ensure_months(own_database, [date(2026, 3, 1)])
        async with session_factory(own_database)() as session, session.begin():
            for number, moment in enumerate(MOMENTS, start=1):
                await add_usage_events(
                    session, UsageEvent(user_id=user, occurred_at=moment, credits=Decimal(number))
                )
        rows = await stored_usage_events(own_database, user)
        expected = [credits for _at, _id, credits in sorted(rows, reverse=True)]
        assert len(expected) == len(MOMENTS)
        for caller in (user, boss):
            assert await _walk(client, user, caller) == expected
