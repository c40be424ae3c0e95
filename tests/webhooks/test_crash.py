"""`kill -9` of a real `usagegraph serve --workers 2` between the outbox write and the
delivery: every event is delivered after the restart, exactly once from the receiver's point
of view (deduplicated by `webhook-id`), and never by both workers.

1. The server runs with its deliverer off (USAGEGRAPH_WEBHOOKS_DELIVER=false): an admin
   registers a real receiver (loopback) and creates and revokes API keys, so six events are
   committed to the outbox with pending deliveries. The server is SIGKILLed.
2. It restarts with the deliverer on; the receiver holds the first request it gets, and the
   whole process group is SIGKILLed while deliveries are in flight (sent, not yet recorded).
3. It restarts again; once the dead holder's lease has run out (2 s), the new leader sends
   what is still pending. Every delivery ends `delivered`; the receiver has each event id,
   verified with the library, at least once and at most twice (once before the kill, once
   after: two workers never both sent it; one recorded as delivered before the kill
   came exactly once).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.running import cli_env, free_port
from tests.conftest import TEST_JWT_SECRET
from tests.databases import TestDatabase
from tests.fixtures.usage_recording_data import ACME
from tests.ingestion.test_crash import _kill_group, _start, _stop_group
from tests.schema.mutations_data import add_people
from tests.webhooks.receiver import receiving
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import session_factory
from usagegraph.db.models import OutboxEvent, WebhookDelivery

KEYS = 3
FAST = {
    "USAGEGRAPH_WEBHOOKS_ALLOW_PRIVATE": "true",
    "USAGEGRAPH_WEBHOOKS_LEASE_SECONDS": "2",
    "USAGEGRAPH_WEBHOOKS_POLL_MS": "50",
    "USAGEGRAPH_WEBHOOKS_RETRY_BASE_MS": "200",
}


def _graphql(port: int, admin: int, query: str, variables: dict[str, object]) -> dict:
    token = mint_token(admin, TEST_JWT_SECRET)
    response = httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def _pending(engine: AsyncEngine) -> int:
    async with session_factory(engine)() as session:
        return await session.scalar(
            select(func.count()).where(WebhookDelivery.status != "delivered")
        )


async def _delivered_ids(engine: AsyncEngine) -> set[str]:
    async with session_factory(engine)() as session:
        rows = await session.scalars(
            select(OutboxEvent.event_id)
            .join(WebhookDelivery, WebhookDelivery.outbox_event_id == OutboxEvent.id)
            .where(WebhookDelivery.status == "delivered")
        )
        return set(rows)


async def test_kill_9_between_outbox_and_delivery_delivers_once_after_restart(
    database: TestDatabase, engine: AsyncEngine, tmp_path: Path
) -> None:
    admin = (await add_people(engine))["admin"]
    port = free_port()
    log = tmp_path / "serve.log"
    with receiving() as receiver:
        # 1. events committed to the outbox, nobody delivering; then kill -9
        quiet = cli_env(tmp_path, database.url_string, USAGEGRAPH_WEBHOOKS_DELIVER="false", **FAST)
        server = await asyncio.to_thread(_start, quiet, port, log)
        try:
            created = _graphql(
                port,
                admin,
                """mutation($input: CreateWebhookEndpointInput!) {
                  createWebhookEndpoint(input: $input) { secret }
                }""",
                {
                    "input": {
                        "institutionId": ACME,
                        "url": receiver.url,
                        "eventTypes": ["api_key.created", "api_key.revoked"],
                    }
                },
            )
            secret = created["createWebhookEndpoint"]["secret"]
            for _ in range(KEYS):
                key = _graphql(
                    port,
                    admin,
                    """mutation($input: CreateApiKeyInput!) {
                      createApiKey(input: $input) { apiKey { apiKeyId } }
                    }""",
                    {"input": {"institutionId": ACME}},
                )["createApiKey"]["apiKey"]["apiKeyId"]
                _graphql(
                    port,
                    admin,
                    "mutation($id: Int!) { revokeApiKey(apiKeyId: $id) { revokedAt } }",
                    {"id": key},
                )
        finally:
            await asyncio.to_thread(_kill_group, server)
        assert await _pending(engine) == 2 * KEYS
        assert receiver.received == []

        # 2. delivering; killed while the receiver holds the first request
        arrived, release = threading.Event(), threading.Event()

        def hold_first(index: int) -> None:
            if index == 0:
                arrived.set()
                release.wait(60)

        receiver.on_request = hold_first
        loud = cli_env(tmp_path, database.url_string, **FAST)
        server = await asyncio.to_thread(_start, loud, port, log)
        try:
            assert await asyncio.to_thread(arrived.wait, 60), log.read_text()
        finally:
            await asyncio.to_thread(_kill_group, server)
            release.set()
        in_flight = await _pending(engine)
        assert in_flight >= 1  # at least the held one was sent and never recorded
        done_before = await _delivered_ids(engine)

        # 3. restart: the pending ones are delivered (after the dead leader's lease ran out)
        server = await asyncio.to_thread(_start, loud, port, log)
        try:
            deadline = time.monotonic() + 60
            while await _pending(engine):
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)
        finally:
            await asyncio.to_thread(_stop_group, server)

    async with session_factory(engine)() as session:
        ids = set(await session.scalars(select(OutboxEvent.event_id)))
    assert len(ids) == 2 * KEYS
    verified = receiver.verified(secret)  # raises unless every request verifies
    assert set(verified) == ids  # exactly once each, after deduplication by webhook-id
    times = Counter(item.headers["webhook-id"] for item in receiver.received)
    # recorded before the kill: sent once; in flight at the kill: once more after the restart
    assert {times[event_id] for event_id in done_before} <= {1}, times
    assert {times[event_id] for event_id in ids - done_before} <= {1, 2}, times
    print(
        f"\n{len(ids)} events, {len(receiver.received)} requests received "
        f"({in_flight} in flight at the kill), {len(verified)} after dedup by webhook-id"
    )
