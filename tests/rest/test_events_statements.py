"""POST /v1/events costs a fixed number of SQL statements per request, however many events:
the write is set-based (one insert of the events, one of the ledger entries, one claim of the
keys, the rollups upserted once per table or, on PostgreSQL, summed in the events' insert),
not a statement per event."""

from __future__ import annotations

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.fixtures.events_data import BATCH, PATH, cloud_event, seed_events_world, top_up
from tests.fixtures.statements import count_statements
from tests.fixtures.usage_recording_data import ACME


@pytest.mark.parametrize("instance", [ACME, "personal"])
async def test_a_request_costs_the_same_statements_for_10_or_1000_events(
    engine: AsyncEngine, app: Starlette, client: httpx.AsyncClient, instance: str
) -> None:
    world = await seed_events_world(engine)
    users = [world.ada, world.bob]
    for user in users:
        await top_up(engine, world, user, "10000")
    headers = world.super_jwt if instance == "personal" else world.api_key
    costs = []
    for size in (10, 1000):
        events = [
            cloud_event(f"{size}-{i}", users[i % 2], instance, "0.5", minutes_ago=1 + i % 600)
            for i in range(size)
        ]
        with count_statements(app.state.engine) as statements:
            response = await client.post(
                PATH, content=orjson.dumps(events), headers={**headers, **BATCH}
            )
        assert response.status_code == 200
        assert response.json()["inserted"] == size
        costs.append(len(statements))
    assert costs[0] == costs[1], costs
