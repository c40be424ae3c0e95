"""Ids drawn ahead of a batched insert (datasources/bulk_inserts.py, PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.page_plans import capture_statements, postgres_plan
from usagegraph.datasources.bulk_inserts import allocate_ids
from usagegraph.db.engine import session_factory
from usagegraph.db.models import UsageEvent


def _init_plans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [child for child in plan.get("Plans", []) if child["Parent Relationship"] == "InitPlan"]


async def test_ids_are_drawn_in_order_with_the_sequence_looked_up_once(
    engine: AsyncEngine,
) -> None:
    """1,000 distinct ascending ids from one statement, whose sequence lookup is an InitPlan
    (run once): inside `nextval(...)` it ran once per id and cost ten times the `nextval`."""
    if engine.dialect.name != "postgresql":
        pytest.skip("ids are drawn ahead on PostgreSQL only (SQLite numbers rows as it inserts)")
    async with session_factory(engine)() as session, session.begin():
        with capture_statements(engine) as issued:
            ids = await allocate_ids(session, UsageEvent.__table__, 1000)
        assert len(issued) == 1
        plan = await postgres_plan(await session.connection(), issued[0])
    assert ids == sorted(set(ids))
    assert len(ids) == 1000
    assert plan["Node Type"] == "Function Scan"  # generate_series, one row per id
    [lookup] = _init_plans(plan)
    assert lookup["Actual Loops"] == 1
