"""The same CloudEvents batch sent by 20 clients at once is recorded exactly once.

Every request runs through the real app, each on its own pooled connection, so the database
decides the interleaving: the idempotency keys' primary key picks one winner per event, the
others are judged again and answer duplicates. Personal events debit wallets (row locks),
institution events do not.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.events_data import BATCH, PATH, cloud_event, seed_events_world, top_up
from tests.fixtures.usage_recording_data import ACME, assert_chain, key_rows, ledger, usage_rows

CLIENTS = 20


async def test_the_same_batch_from_20_clients_writes_each_event_once(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await seed_events_world(engine)
    await top_up(engine, world, world.ada, "1000")
    events = [
        cloud_event(
            f"c-{i}",
            world.ada if i % 2 else world.bob,
            "personal" if i % 5 == 0 and i % 2 else ACME,
            "1.25",
            minutes_ago=i + 1,
        )
        for i in range(100)
    ]
    body = orjson.dumps(events)

    async def send() -> dict[str, int]:
        response = await client.post(PATH, content=body, headers={**world.super_jwt, **BATCH})
        assert response.status_code == 200, response.text
        return response.json()

    answers = await asyncio.gather(*(send() for _ in range(CLIENTS)))
    assert sum(a["inserted"] for a in answers) == len(events)
    assert sum(a["duplicates"] for a in answers) == len(events) * (CLIENTS - 1)
    assert all(a["refused"] == 0 for a in answers)
    rows = await usage_rows(engine)
    assert len(rows) == len(events)
    assert len(await key_rows(engine)) == len(events)
    personal = [row for row in rows if row.institution_id is None]
    entries = await ledger(engine, world.ada)
    assert len([e for e in entries if e.type == "debit"]) == len(personal)
    assert assert_chain(entries) == Decimal(1000) - Decimal("1.25") * len(personal)
