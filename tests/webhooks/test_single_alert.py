"""200 concurrent usage writes that cross one line raise exactly one alert.

The writes go through the real ASGI app (`recordUsage` with Acme's API key), all started at
once, ten members twenty writes each, one credit a write: on PostgreSQL they run in as many
concurrent transactions as the pool holds. Two lines are crossed: the institution's May
total reaching 150 (writers of different members, serialised only by the rule's row lock)
and Ada's usage reaching 50 % of her cap of 30 (serialised by her membership's lock). Each
fires once, with the value at the crossing, and each alert has one outbox event. On SQLite
the same test runs with its one writer at a time.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import add_user
from tests.fixtures.usage_recording_data import ACME
from tests.schema.graph import graphql
from tests.schema.mutations_data import RECORD, add_acme_key, add_people, usage, with_key
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Alert, Membership, OutboxEvent, UsageEvent

CREATE_RULE = (
    """mutation($input: CreateAlertRuleInput!) { createAlertRule(input: $input) { ruleId } }"""
)
WRITERS = 10
WRITES_EACH = 20


async def test_two_hundred_concurrent_writes_across_one_line_raise_one_alert(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    people = await add_people(engine)
    admin, ada = people["admin"], people["ada"]
    members = [ada] + [
        await add_user(engine, email=f"m{i}@acme.edu", member_of={ACME: "user"})
        for i in range(WRITERS - 1)
    ]
    async with session_factory(engine)() as session, session.begin():
        await session.execute(
            update(Membership).where(Membership.user_id == ada).values(cap_limit=30)
        )
    for kind, threshold in (("institution_period_usage", "150"), ("member_cap_percent", "50")):
        body = await graphql(
            client,
            CREATE_RULE,
            user_id=admin,
            variables={"input": {"institutionId": ACME, "kind": kind, "threshold": threshold}},
        )
        assert "errors" not in body, body
    key = await add_acme_key(engine)

    async def write(user: int) -> None:
        body = await with_key(client, RECORD, key, {"input": usage(user, credits="1")})
        assert body["data"]["recordUsage"]["status"] == "INSERTED", body

    await asyncio.gather(*(write(user) for _ in range(WRITES_EACH) for user in members))

    async with session_factory(engine)() as session:
        assert await session.scalar(select(func.count()).select_from(UsageEvent)) == 200
        alerts = (await session.scalars(select(Alert).order_by(Alert.kind))).all()
        raised = await session.scalar(
            select(func.count()).where(OutboxEvent.type == "alert.raised")
        )
    assert [(a.kind, a.subject, a.value) for a in alerts] == [
        ("institution_period_usage", "period:2026-05", Decimal(150)),
        ("member_cap_percent", f"member:{ada}", Decimal(50)),
    ]
    assert raised == 2
    print(f"\n{len(members) * WRITES_EACH} concurrent writes -> {len(alerts)} alerts (2 lines)")
