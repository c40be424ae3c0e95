"""The same usage through POST /v1/events, GraphQL recordUsageBatch and `import` gives the
same store: identical usage rows and rollups, and (for the two online paths, which debit
wallets) identical ledgers. Imported usage is history and debits nothing (CONTRACT.md), so
its wallets keep only their top-ups: that is checked too.

Each path runs on the emptied database with the same people (ids restart), so rows compare
as they are, ids included; only `created_at` (the moment of writing) is left out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import reset_tables
from tests.fixtures.events_data import (
    BATCH,
    PATH,
    EventsWorld,
    cloud_event,
    seed_events_world,
    top_up,
)
from tests.fixtures.usage_recording_data import ACME
from tests.fixtures.wallet_invariants import wallets_miscounting_their_ledger
from usagegraph.db.engine import session_factory
from usagegraph.db.models import ROLLUPS, LedgerEntry, UsageEvent, Wallet
from usagegraph.importer import import_file

BATCH_MUTATION = """
mutation($events: [UsageEventInput!]!) {
  recordUsageBatch(events: $events) { inserted duplicates refused }
}"""


def _events(world: EventsWorld) -> list[dict[str, Any]]:
    """Personal and institution usage of two users over several days, every field used."""
    events = []
    for i in range(60):
        user = world.ada if i % 3 else world.bob
        instance = "personal" if i % 4 == 0 else ACME
        events.append(
            cloud_event(
                f"evt-{i}",
                user,
                instance,
                f"{i % 7}.{i:02d}",
                minutes_ago=37 * i + 1,
                messages=i % 5,
                endpoint=None if i % 6 == 0 else f"/v1/e{i % 3}",
                status="failed" if i % 9 == 0 else "success",
            )
        )
    return events


def _usage_input(event: dict[str, Any]) -> dict[str, Any]:
    """The GraphQL input of a CloudEvent (the mapping of the API reference)."""
    data = event["data"]
    return {
        "userId": int(event["subject"]),
        "instance": data["instance"],
        "occurredAt": event["time"],
        "credits": data["credits"],
        "messages": data["messages"],
        "endpoint": data["endpoint"],
        "status": data["status"].upper(),
        "idempotencyKey": event["id"],
    }


def _import_line(event: dict[str, Any]) -> bytes:
    data = event["data"]
    line = {
        "kind": "usage",
        "user": int(event["subject"]),
        "instance": data["instance"],
        "occurred_at": event["time"],
        "credits": data["credits"],
        "messages": data["messages"],
        "endpoint": data["endpoint"],
        "status": data["status"],
        "idempotency_key": event["id"],
    }
    return orjson.dumps(line) + b"\n"


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


async def _store(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Usage rows, every rollup table and the ledger, without the moments of writing."""
    store: dict[str, list[tuple[Any, ...]]] = {}
    async with session_factory(engine)() as session:
        tables = [UsageEvent.__table__, *(model.__table__ for model in ROLLUPS)]
        for table in tables:
            columns = [c for c in table.c if c.name != "created_at"]
            rows = await session.execute(select(*columns).order_by(*table.primary_key.columns))
            store[table.name] = [tuple(_utc(v) for v in row) for row in rows]
        ledger = await session.execute(
            select(
                LedgerEntry.user_id,
                LedgerEntry.type,
                LedgerEntry.amount,
                LedgerEntry.balance_after,
                LedgerEntry.description,
                LedgerEntry.reference,
                LedgerEntry.metadata_,
            ).order_by(LedgerEntry.id)
        )
        store["ledger"] = [tuple(row) for row in ledger]
        wallets = await session.execute(select(Wallet.user_id, Wallet.balance).order_by("user_id"))
        store["wallets"] = [tuple(row) for row in wallets]
    # Whichever path wrote the debits, each wallet counts exactly its entries.
    assert await wallets_miscounting_their_ledger(engine) == []
    return store


async def _fresh_world(engine: AsyncEngine) -> EventsWorld:
    await reset_tables(engine)
    world = await seed_events_world(engine)
    for user in (world.ada, world.bob):
        await top_up(engine, world, user, "500")
    return world


async def test_events_graphql_and_import_store_the_same(
    engine: AsyncEngine, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    world = await _fresh_world(engine)
    events = _events(world)
    response = await client.post(
        PATH, content=orjson.dumps(events), headers={**world.super_jwt, **BATCH}
    )
    assert response.json()["inserted"] == len(events), response.text
    through_events = await _store(engine)

    world = await _fresh_world(engine)
    response = await client.post(
        "/graphql",
        json={"query": BATCH_MUTATION, "variables": {"events": [_usage_input(e) for e in events]}},
        headers=world.super_jwt,
    )
    assert response.json()["data"]["recordUsageBatch"]["inserted"] == len(events), response.text
    through_graphql = await _store(engine)

    world = await _fresh_world(engine)
    path = tmp_path / "usage.ndjson"
    path.write_bytes(b"".join(_import_line(event) for event in events))
    await import_file(engine, path, clock=lambda: datetime(2026, 5, 20, 15, 30, tzinfo=UTC))
    through_import = await _store(engine)

    assert len(through_events["usage_events"]) == len(events)
    assert any(entry[1] == "debit" for entry in through_events["ledger"])
    assert through_events == through_graphql
    for name, rows in through_events.items():
        if name not in ("ledger", "wallets"):
            assert through_import[name] == rows, name
    # Imported usage debits nothing: only the top-ups are in its ledger.
    assert [entry[1] for entry in through_import["ledger"]] == ["credit", "credit"]
