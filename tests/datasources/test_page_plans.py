"""A connection's page costs its page, not its history (issue 14).

One parent holds 50,000 events and 49 hold a handful; `first: 5` for all 50 must read about
50 x 6 rows of the big table, never the big parent's history: PostgreSQL's EXPLAIN ANALYZE
counts the rows its scans returned, SQLite's query plan shows each page walking the index.
A page that is not asked for its total issues no count statement.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.conftest import FIXED_NOW
from tests.fixtures.factories import add_usage_events, add_user
from tests.fixtures.statements import count_statements
from tests.schema.graph import graphql
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.datasources.pages import page_per_parent_statements
from usagegraph.datasources.usage import EVENTS_NEWEST_FIRST, EventFilter
from usagegraph.db.engine import session_factory
from usagegraph.db.models import UsageEvent

BIG_HISTORY = 50_000
PARENTS = 50
FIRST = 5
SUPER = Principal(kind=CallerKind.USER, user_id=0, role="super")


async def _seed(engine: AsyncEngine) -> list[int]:
    """50 users; the first has 50,000 events in the last days, the others three each."""
    users = [await add_user(engine, email=f"u{index}@x.org") for index in range(PARENTS)]
    rows: list[dict[str, Any]] = [
        {
            "user_id": users[0],
            "occurred_at": FIXED_NOW - timedelta(seconds=5 * index),
            "credits": 1,
            "messages": 1,
            "status": "success",
            "forgotten": False,
            "created_at": FIXED_NOW,
        }
        for index in range(BIG_HISTORY)
    ]
    rows += [
        {**rows[0], "user_id": user, "occurred_at": FIXED_NOW - timedelta(minutes=index)}
        for user in users[1:]
        for index in range(3)
    ]
    async with engine.begin() as connection:
        await connection.execute(insert(UsageEvent), rows)
        if engine.dialect.name == "postgresql":
            await connection.execute(text("ANALYZE usage_events"))
    return users


def _explained(engine: AsyncEngine, users: list[int], prefix: str) -> str:
    """The page statement with its values inlined, behind `prefix` (EXPLAIN ...)."""
    compiled = _plain(engine, users).compile(
        engine.sync_engine, compile_kwargs={"literal_binds": True}
    )
    return f"{prefix} {compiled}"


def _rows_read(plan: dict[str, Any], table: str) -> int:
    """Rows the scans of `table` (and its partitions) returned, over all their loops."""
    read = 0
    if str(plan.get("Relation Name", "")).startswith(table):
        read += int(plan["Actual Rows"]) * int(plan["Actual Loops"])
    for child in plan.get("Plans", []):
        read += _rows_read(child, table)
    return read


async def test_a_page_per_user_reads_the_page_not_the_history(engine: AsyncEngine) -> None:
    users = await _seed(engine)
    async with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            raw = (
                await connection.exec_driver_sql(
                    _explained(engine, users, "EXPLAIN (ANALYZE, FORMAT JSON)")
                )
            ).scalar_one()
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
            read = _rows_read(plan, "usage_events")
            print(f"PostgreSQL rows read from usage_events: {read}")
            # 50 parents x 6 rows, plus at most a row per partition scanned per parent.
            assert read <= PARENTS * (FIRST + 1) * 4, read
        else:
            result = await connection.exec_driver_sql(
                _explained(engine, users, "EXPLAIN QUERY PLAN")
            )
            details = [str(row[-1]) for row in result]
            print("\n".join(details))
            uses = [d for d in details if "ix_usage_events_user_time_id" in d]
            assert len(uses) == PARENTS, details
    async with session_factory(engine)() as session:
        rows = (await session.scalars(_plain(engine, users))).all()
    assert len(rows) == FIRST + 1 + 3 * (PARENTS - 1)


def _plain(engine: AsyncEngine, users: list[int]) -> Any:
    (statement,) = page_per_parent_statements(
        engine.dialect.name,
        UsageEvent,
        UsageEvent.user_id,
        users,
        EventFilter().conditions(SUPER),
        EVENTS_NEWEST_FIRST,
        FIRST + 1,
    )
    return statement


EVENTS = """query($id: Int!) { user(id: $id) { usageEvents(first: 2) {
  edges { node { credits } } %s } } }"""


async def test_no_count_statement_unless_total_count_is_selected(
    engine: AsyncEngine, app: Starlette, client: httpx.AsyncClient
) -> None:
    user = await add_user(engine, email="me@x.org")
    async with session_factory(engine)() as session, session.begin():
        for minutes in range(3):
            await add_usage_events(
                session,
                UsageEvent(
                    user_id=user, occurred_at=FIXED_NOW - timedelta(minutes=minutes), credits=1
                ),
            )
    with count_statements(app.state.engine) as without_total:
        body = await graphql(client, EVENTS % "", user_id=user, variables={"id": user})
    assert len(body["data"]["user"]["usageEvents"]["edges"]) == 2
    with count_statements(app.state.engine) as with_total:
        body = await graphql(client, EVENTS % "totalCount", user_id=user, variables={"id": user})
    assert body["data"]["user"]["usageEvents"]["totalCount"] == 3

    def counting(statements: list[str]) -> list[str]:
        return [s for s in statements if "count(" in s.lower() or "sum(" in s.lower()]

    assert counting(without_total) == []
    assert len(counting(with_total)) == 1
    assert "usage_totals" in counting(with_total)[0]
