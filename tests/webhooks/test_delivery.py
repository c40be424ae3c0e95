"""Webhooks end to end in one process: an admin registers a real receiver (a loopback HTTP
server), changes are written to the outbox, and the deliverer POSTs them signed per Standard
Webhooks; the receiver verifies them with the `standardwebhooks` library, a tampered body
fails, failures are retried with back-off until the endpoint is marked failing, and the
delivery log and `redeliverWebhook` work through the graph. URLs are refused as they must be.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import client_of
from tests.fixtures.usage_recording_data import ACME
from tests.schema.graph import error_codes, graphql
from tests.webhooks.receiver import Receiver, receiving
from usagegraph.db.engine import session_factory
from usagegraph.db.models import OutboxEvent, WebhookEndpoint
from usagegraph.settings import Settings, WebhookSettings
from usagegraph.webhooks.deliverer import Deliverer

CREATE = """mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) { secret endpoint { endpointId url eventTypes status } }
}"""
CREATE_KEY = """mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) { apiKey { apiKeyId } }
}"""
REVOKE = "mutation($id: Int!) { revokeApiKey(apiKeyId: $id) { revokedAt } }"
LOG = """query($id: Int!) {
  webhookDeliveries(endpointId: $id) {
    deliveryId eventId eventType status attempts lastStatusCode lastError
  }
}"""
REDELIVER = "mutation($id: Int!) { redeliverWebhook(deliveryId: $id) { status attempts } }"
FAST = WebhookSettings(
    allow_private=True, retry_base_ms=20, max_attempts=3, poll_ms=20, lease_seconds=5
)


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    from tests.schema.mutations_data import add_people

    return await add_people(engine)


async def _register(
    client: httpx.AsyncClient, admin: int, url: str, types: list[str] | None = None
) -> dict[str, Any]:
    body = await graphql(
        client,
        CREATE,
        user_id=admin,
        variables={
            "input": {
                "institutionId": ACME,
                "url": url,
                "eventTypes": types or ["api_key.created", "api_key.revoked"],
            }
        },
    )
    assert "errors" not in body, body
    return body["data"]["createWebhookEndpoint"]


async def _deliver_until(engine: AsyncEngine, done: Any) -> None:
    """Run a real deliverer on the test database until `done()` holds (20 s at most)."""
    deliverer = Deliverer(session_factory(engine), FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(deliverer.run(stop))
    try:
        async with asyncio.timeout(20):
            while not await done():  # noqa: ASYNC110 - polls the database and the receiver
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task


async def test_a_real_receiver_gets_signed_deliveries_and_a_tampered_body_fails(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    admin = people["admin"]
    with receiving() as receiver:
        created = await _register(client, admin, receiver.url)
        secret = created["secret"]
        assert secret.startswith("whsec_")
        body = await graphql(
            client, CREATE_KEY, user_id=admin, variables={"input": {"institutionId": ACME}}
        )
        key_id = body["data"]["createApiKey"]["apiKey"]["apiKeyId"]
        await graphql(client, REVOKE, user_id=admin, variables={"id": key_id})

        async def two() -> bool:
            return len(receiver.received) >= 2

        await _deliver_until(engine, two)
        payloads = receiver.verified(secret)
        async with session_factory(engine)() as session:
            statement = select(OutboxEvent.event_id).order_by(OutboxEvent.id)
            ids = list(await session.scalars(statement))
        # concurrent attempts: any order of arrival
        assert sorted(payloads) == sorted(ids)
        revoked = payloads[ids[1]]
        assert isinstance(revoked, dict)
        assert revoked["type"] == "api_key.revoked"
        assert revoked["data"]["api_key_id"] == key_id
        (first,) = [r for r in receiver.received if b'"api_key.revoked"' in r.body]
        assert set(first.headers) >= {"webhook-id", "webhook-timestamp", "webhook-signature"}
        tampered = first.body.replace(b'"api_key.revoked"', b'"api_key.created"')
        assert tampered != first.body
        with pytest.raises(WebhookVerificationError):
            Verifier(secret).verify(tampered, first.headers)
        with pytest.raises(WebhookVerificationError):
            Verifier("whsec_" + "A" * 32).verify(first.body, first.headers)
    log = (await graphql(client, LOG, user_id=admin, variables={"id": _id(created)}))["data"]
    assert [(d["eventType"], d["status"], d["attempts"]) for d in log["webhookDeliveries"]] == [
        ("api_key.revoked", "delivered", 1),
        ("api_key.created", "delivered", 1),
    ]


def _id(created: dict[str, Any]) -> int:
    return created["endpoint"]["endpointId"]


async def test_failures_are_retried_then_the_endpoint_is_failing_and_redeliver_sends_again(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    admin = people["admin"]
    with receiving() as receiver:
        receiver.answer = lambda n: 500 if n < FAST.max_attempts else 204
        created = await _register(client, admin, receiver.url)
        await graphql(
            client, CREATE_KEY, user_id=admin, variables={"input": {"institutionId": ACME}}
        )

        async def failed() -> bool:
            async with session_factory(engine)() as session:
                endpoint = await session.get(WebhookEndpoint, _id(created), populate_existing=True)
                return endpoint is not None and endpoint.status == "failing"

        await _deliver_until(engine, failed)
        assert len(receiver.received) == FAST.max_attempts
        # every attempt of one delivery carries the same webhook-id
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
        log = (await graphql(client, LOG, user_id=admin, variables={"id": _id(created)}))["data"]
        (delivery,) = log["webhookDeliveries"]
        assert (delivery["status"], delivery["attempts"], delivery["lastStatusCode"]) == (
            "failed",
            FAST.max_attempts,
            500,
        )
        body = await graphql(
            client, REDELIVER, user_id=admin, variables={"id": delivery["deliveryId"]}
        )
        assert body["data"]["redeliverWebhook"] == {"status": "pending", "attempts": 0}

        async def active() -> bool:
            return not await failed()

        await _deliver_until(engine, active)
        assert len(receiver.received) == FAST.max_attempts + 1
        log = (await graphql(client, LOG, user_id=admin, variables={"id": _id(created)}))["data"]
        assert log["webhookDeliveries"][0]["status"] == "delivered"


async def test_only_the_lease_holder_sends(engine: AsyncEngine, people: dict[str, int]) -> None:
    first = Deliverer(session_factory(engine), FAST, holder="one")
    second = Deliverer(session_factory(engine), FAST, holder="two")
    assert await first.lead()
    assert not await second.lead()
    assert await first.lead()  # renewal
    await first.release()
    assert await second.lead()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://user:pass@8.8.8.8/hook",
        "https:///nohost",
    ],
)
async def test_urls_are_refused_for_other_schemes_and_private_addresses(
    settings: Settings, people: dict[str, int], url: str
) -> None:
    strict = dataclasses.replace(settings, webhooks=WebhookSettings(allow_private=False))
    async with client_of(strict) as client:
        body = await graphql(
            client,
            CREATE,
            user_id=people["admin"],
            variables={
                "input": {"institutionId": ACME, "url": url, "eventTypes": ["alert.raised"]}
            },
        )
    assert error_codes(body) == ["INVALID_REQUEST"], body


async def test_a_public_address_is_accepted_and_private_ones_when_allowed(
    settings: Settings, people: dict[str, int]
) -> None:
    strict = dataclasses.replace(settings, webhooks=WebhookSettings(allow_private=False))
    async with client_of(strict) as client:
        created = await _register(client, people["admin"], "https://93.184.215.14/hook")
    assert created["endpoint"]["status"] == "active"
    async with client_of(settings) as client:  # the tests' setting: private allowed
        created = await _register(client, people["admin"], "http://127.0.0.1:9/hook")
    assert created["endpoint"]["url"] == "http://127.0.0.1:9/hook"


async def test_another_tenant_sees_and_manages_no_endpoint_or_delivery(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    admin, ada, olga = people["admin"], people["ada"], people["olga"]
    receiver = Receiver(url="http://127.0.0.1:9/hook")
    created = await _register(client, admin, receiver.url)
    await graphql(client, CREATE_KEY, user_id=admin, variables={"input": {"institutionId": ACME}})
    log = (await graphql(client, LOG, user_id=admin, variables={"id": _id(created)}))["data"]
    delivery_id = log["webhookDeliveries"][0]["deliveryId"]
    listing = "query($i: String!) { webhookEndpoints(institutionId: $i) { endpointId } }"
    delete = "mutation($id: Int!) { deleteWebhookEndpoint(endpointId: $id) { deleted } }"
    for intruder in (ada, olga):
        body = await graphql(client, listing, user_id=intruder, variables={"i": ACME})
        assert error_codes(body) == ["FORBIDDEN"]
        for query, variables in (
            (LOG, {"id": _id(created)}),
            (REDELIVER, {"id": delivery_id}),
            (delete, {"id": _id(created)}),
        ):
            body = await graphql(client, query, user_id=intruder, variables=variables)
            assert error_codes(body) == ["NOT_FOUND"], (intruder, query)
        body = await graphql(
            client,
            CREATE,
            user_id=intruder,
            variables={
                "input": {
                    "institutionId": ACME,
                    "url": receiver.url,
                    "eventTypes": ["alert.raised"],
                }
            },
        )
        assert error_codes(body) == ["FORBIDDEN"]
    body = await graphql(client, listing, user_id=admin, variables={"i": ACME})
    assert body["data"]["webhookEndpoints"] == [{"endpointId": _id(created)}]
