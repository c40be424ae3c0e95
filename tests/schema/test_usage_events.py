"""Usage events in the graph: newest first, paginated in SQL, visible as the reports are."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FIXED_NOW
from tests.fixtures.factories import (
    add_institution,
    add_institution_admin,
    add_usage_events,
    add_user,
)
from tests.schema.graph import graphql
from usagegraph.db.engine import session_factory
from usagegraph.db.models import UsageEvent

ACME = "a" * 24
OTHER = "b" * 24
EVENTS = """query($id: Int!, $after: String, $instance: String) { user(id: $id) {
  usageEvents(first: 2, after: $after, instanceId: $instance) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { instanceId credits endpoint } } } } }"""


async def _seed(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    await add_institution(engine, institution_id=OTHER, name="Other")
    ids = {
        "admin": await add_institution_admin(engine, email="a@acme.edu", institution_id=ACME),
        "member": await add_user(
            engine, email="m@acme.edu", member_of={ACME: "user", OTHER: "user"}
        ),
    }
    async with session_factory(engine)() as session, session.begin():
        for minutes, institution, credits in (
            (50, ACME, "1"),
            (40, None, "2"),
            (30, ACME, "3"),
            (20, OTHER, "4"),
            (10, ACME, "5"),
        ):
            await add_usage_events(
                session,
                UsageEvent(
                    user_id=ids["member"],
                    institution_id=institution,
                    credits=Decimal(credits),
                    occurred_at=FIXED_NOW - timedelta(minutes=minutes),
                    endpoint="/v1/chat",
                ),
            )
    return ids


async def _walk(client: httpx.AsyncClient, caller: int, user: int, instance: str | None) -> list:
    credits, after = [], None
    while True:
        body = await graphql(
            client,
            EVENTS,
            user_id=caller,
            variables={"id": user, "after": after, "instance": instance},
        )
        page = body["data"]["user"]["usageEvents"]
        credits += [edge["node"]["credits"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return [page["totalCount"], credits]
        after = page["pageInfo"]["endCursor"]


async def test_own_events_page_newest_first(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    ids = await _seed(engine)
    assert await _walk(client, ids["member"], ids["member"], None) == [5, ["5", "4", "3", "2", "1"]]
    assert await _walk(client, ids["member"], ids["member"], "personal") == [1, ["2"]]


async def test_admin_sees_a_members_events_only_in_their_institution(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    ids = await _seed(engine)
    # The member's personal (2) and OTHER (4) events are not the admin's to read.
    assert await _walk(client, ids["admin"], ids["member"], None) == [3, ["5", "3", "1"]]
