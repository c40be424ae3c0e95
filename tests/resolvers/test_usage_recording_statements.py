"""Ingestion costs a fixed number of SQL statements per request, however many events."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import TestDatabase
from tests.fixtures.factories import add_institution, add_user
from tests.fixtures.statements import count_statements
from tests.fixtures.usage_recording_data import ACME, API_ACME, NOW, event, run
from usagegraph.resolvers.usage_recording import OutcomeStatus, record_usage_batch

# An API key's batch of new institution events (no cap, fresh idempotency keys): read the
# memberships and the keys, insert the events, claim the keys, add to the rollups (last, so
# the hot rollup rows stay locked only until the commit), then read the institution's alert
# rules (resolvers/alerts.py: usually none, so nothing more). On PostgreSQL the ids are drawn
# from the sequence first and the five rollup tables take one statement (data-modifying
# CTEs). SQLite counts its BEGIN IMMEDIATE, reads the largest event id before the insert and
# the new ids after it, and upserts each rollup table apart.
EXPECTED = {"postgresql": 2 + 1 + 1 + 1 + 1 + 1, "sqlite": 1 + 2 + 3 + 1 + 5 + 1}


@pytest.fixture
async def members(engine: AsyncEngine) -> list[int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    return [
        await add_user(engine, email=f"m{i}@acme.edu", member_of={ACME: "user"}) for i in range(5)
    ]


@pytest.mark.parametrize("size", [1, 100])
async def test_a_batch_costs_the_same_statements_for_1_or_100_events(
    database: TestDatabase, engine: AsyncEngine, members: list[int], size: int
) -> None:
    events = [
        event(members[i % len(members)], ACME, "0.5", key=f"k{i}", minutes_ago=1 + i)
        for i in range(size)
    ]
    with count_statements(engine) as statements:
        result = await run(engine, lambda s: record_usage_batch(s, API_ACME, NOW, events))
    assert result.count(OutcomeStatus.INSERTED) == size
    assert len(statements) == EXPECTED[database.backend], "\n".join(s[:60] for s in statements)
