"""GraphQL subscriptions over graphql-transport-ws, against the app served by uvicorn.

Both backends: on SQLite (no Redis) the notes travel in-process; on PostgreSQL they travel
through LISTEN/NOTIFY, the fallback without Redis. Writes go over HTTP as a client's would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.live.served import USAGE_UPDATED, WALLET_CHANGED, LiveSocket, bearer, served
from tests.live.world import (
    ACME,
    GLOBEX,
    as_decimal,
    build_world,
    graphql,
    record,
    revoke_keys,
    top_up,
    totals,
    usage_event,
)
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Membership
from usagegraph.settings import LiveLimits, Settings, TokenRules


async def test_usage_updated_pushes_the_callers_totals_after_a_write(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    async with served(settings) as address, LiveSocket.open(address) as socket:
        assert (await socket.init(bearer(world.token(world.member)))) == {"type": "connection_ack"}
        await socket.subscribe(USAGE_UPDATED, {"instance": ACME})
        first = totals(await socket.receive())
        assert (as_decimal(first["credits"]), first["messages"], first["users"]) == (0, 0, 0)
        await record(address, world, world.member, ACME, "2.5")
        pushed = totals(await socket.receive())
        assert as_decimal(pushed["credits"]) == Decimal("2.5")
        assert pushed["messages"] == 1
        # Another member's usage is not the caller's (scope own): nothing is pushed.
        await record(address, world, world.admin, ACME, "4")
        assert await socket.quiet(1.5) == []


async def test_scope_all_follows_every_member_for_an_admin(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    async with served(settings) as address, LiveSocket.open(address) as socket:
        await socket.init(bearer(world.token(world.admin)))
        await socket.subscribe(USAGE_UPDATED, {"instance": ACME, "scope": "ALL"})
        assert totals(await socket.receive())["messages"] == 0
        await record(address, world, world.member, ACME, "1")
        pushed = totals(await socket.receive())
        assert (pushed["messages"], pushed["users"]) == (1, 1)


async def test_several_writes_within_a_second_are_one_message(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    async with served(settings) as address, LiveSocket.open(address) as socket:
        await socket.init(bearer(world.token(world.member)))
        await socket.subscribe(USAGE_UPDATED, {"instance": ACME})
        await socket.receive()  # the current totals: from now on, at most one a second
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(record(address, world, world.member, ACME, "1") for _ in range(5)))
        burst = loop.time() - started
        arrivals = []
        messages = []
        while len(messages) < 6:
            try:
                messages.append(await socket.receive(wait=2.5))
            except TimeoutError:
                break
            arrivals.append(loop.time())
        assert totals(messages[-1])["messages"] == 5
        if burst < 0.8:  # all five committed within the second after the first message
            assert len(messages) == 1, messages
        else:  # a loaded machine spread them out: still never two messages within a second
            gaps = [b - a for a, b in itertools.pairwise(arrivals)]
            assert all(gap >= 0.9 for gap in gaps), gaps
            assert len(messages) < 5


async def test_wallet_changed_pushes_balance_and_available(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    async with served(settings) as address, LiveSocket.open(address) as socket:
        await socket.init(bearer(world.token(world.member)))
        await socket.subscribe(WALLET_CHANGED)
        first = (await socket.receive())["payload"]["data"]["walletChanged"]
        assert as_decimal(first["balance"]) == 0
        await top_up(address, world, world.member, "10")
        topped = (await socket.receive())["payload"]["data"]["walletChanged"]
        assert as_decimal(topped["available"]) == 10
        await asyncio.sleep(1.1)  # past the coalescing second: the debit is its own message
        await record(address, world, world.member, "personal", "2.5")
        debited = (await socket.receive())["payload"]["data"]["walletChanged"]
        assert (as_decimal(debited["balance"]), as_decimal(debited["available"])) == (
            Decimal("7.5"),
            Decimal("7.5"),
        )
        assert debited["userId"] == world.member


async def test_another_tenants_instance_is_forbidden_and_pushes_nothing(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    async with served(settings) as address, LiveSocket.open(address) as socket:
        await socket.init(bearer(world.token(world.outsider)))
        await socket.subscribe(USAGE_UPDATED, {"instance": ACME})
        refused = await socket.receive()
        assert refused["type"] == "next"
        assert refused["payload"]["data"] is None
        assert refused["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert (await socket.receive())["type"] == "complete"
        await record(address, world, world.member, ACME, "3")
        assert await socket.quiet(1.5) == []


@pytest.mark.parametrize(
    "payload",
    [None, {}, {"Authorization": "Bearer not-a-token.at.all"}, {"Authorization": "Basic x"}],
    ids=["no-payload", "empty", "bad-token", "not-bearer"],
)
async def test_connection_init_without_a_valid_credential_is_closed_4403(
    engine: AsyncEngine, settings: Settings, payload: dict[str, str] | None
) -> None:
    async with served(settings) as address, LiveSocket.open(address) as socket:
        await socket.send({"type": "connection_init", **({"payload": payload} if payload else {})})
        code, reason = await socket.closed()
        assert code == 4403
        assert reason.startswith("Forbidden")


async def test_expired_token_and_revoked_key_are_refused_at_init(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    strict = dataclasses.replace(settings, tokens=TokenRules(leeway_seconds=0))
    async with served(strict) as address:
        expired = world.token(world.member, ttl=1)
        await asyncio.sleep(1.5)
        async with LiveSocket.open(address) as socket:
            await socket.send({"type": "connection_init", "payload": bearer(expired)})
            assert (await socket.closed())[0] == 4403
        await revoke_keys(engine)
        async with LiveSocket.open(address) as socket:
            await socket.send({"type": "connection_init", "payload": {"X-API-Key": world.key}})
            assert (await socket.closed())[0] == 4403


async def test_subscribe_before_connection_init_is_closed_4401(
    engine: AsyncEngine, settings: Settings
) -> None:
    async with served(settings) as address, LiveSocket.open(address) as socket:
        await socket.subscribe(WALLET_CHANGED)
        assert (await socket.closed())[0] == 4401


async def test_a_token_that_expires_while_open_closes_the_socket(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    strict = dataclasses.replace(settings, tokens=TokenRules(leeway_seconds=0))
    async with served(strict) as address, LiveSocket.open(address) as socket:
        await socket.init(bearer(world.token(world.member, ttl=2)))
        await socket.subscribe(WALLET_CHANGED)
        assert (await socket.receive())["type"] == "next"
        code, reason = await socket.closed(wait=5)
        assert (code, reason) == (4403, "Forbidden: the credential is no longer valid")


async def test_a_key_revoked_while_open_closes_the_socket(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    quick = dataclasses.replace(settings, live=LiveLimits(recheck_seconds=1))
    async with served(quick) as address, LiveSocket.open(address) as socket:
        assert (await socket.init({"X-API-Key": world.key}))["type"] == "connection_ack"
        await revoke_keys(engine)
        assert (await socket.closed(wait=5))[0] == 4403


async def test_an_api_key_has_no_personal_usage_or_wallet(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    async with served(settings) as address, LiveSocket.open(address) as socket:
        await socket.init(bearer(world.key))
        for query, variables in ((USAGE_UPDATED, {"instance": ACME}), (WALLET_CHANGED, {})):
            await socket.subscribe(query, variables)
            refused = await socket.receive()
            assert refused["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHORIZED"
            assert (await socket.receive())["type"] == "complete"


async def test_connections_per_credential_are_limited(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    limited = dataclasses.replace(settings, live=LiveLimits(max_connections_per_credential=2))
    token = world.token(world.member)
    async with served(limited) as address:
        async with LiveSocket.open(address) as first, LiveSocket.open(address) as second:
            assert (await first.init(bearer(token)))["type"] == "connection_ack"
            assert (await second.init(bearer(token)))["type"] == "connection_ack"
            async with LiveSocket.open(address) as third:
                await third.send({"type": "connection_init", "payload": bearer(token)})
                assert await third.closed() == (
                    4403,
                    "Forbidden: too many open connections for this credential",
                )
            # Another credential has its own allowance.
            async with LiveSocket.open(address) as other:
                other_token = world.token(world.admin)
                assert (await other.init(bearer(other_token)))["type"] == "connection_ack"
        await asyncio.sleep(0.2)  # the server sees both closes
        async with LiveSocket.open(address) as again:
            assert (await again.init(bearer(token)))["type"] == "connection_ack"


async def test_queries_and_mutations_belong_on_http(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    async with served(settings) as address, LiveSocket.open(address) as socket:
        await socket.init(bearer(world.token(world.member)))
        operation = await socket.subscribe("{ viewer { userId } }")
        refused = await socket.receive()
        assert refused["id"] == operation
        assert refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["code"] == "INVALID_REQUEST"


async def test_personal_usage_reaches_only_its_owner(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    async with served(settings) as address:
        await top_up(address, world, world.member, "10")
        await top_up(address, world, world.outsider, "10")
        async with LiveSocket.open(address) as mine, LiveSocket.open(address) as theirs:
            await mine.init(bearer(world.token(world.member)))
            await theirs.init(bearer(world.token(world.outsider)))
            await mine.subscribe(USAGE_UPDATED, {"instance": "personal"})
            await theirs.subscribe(USAGE_UPDATED, {"instance": "personal"})
            await mine.receive()
            await theirs.receive()
            await record(address, world, world.member, "personal", "1")
            assert totals(await mine.receive())["messages"] == 1
            assert await theirs.quiet(1.5) == []
        _ = GLOBEX


async def test_a_subscription_over_http_is_refused_with_a_code(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    async with served(settings) as address, httpx.AsyncClient(base_url=f"http://{address}") as http:
        response = await http.post(
            "/graphql",
            json={"query": WALLET_CHANGED},
            headers=bearer(world.token(world.member)),
        )
    body = response.json()
    assert response.status_code in (200, 400), body
    assert body["errors"][0]["extensions"]["code"] == "INVALID_REQUEST", body


async def test_forgetting_usage_pushes_the_smaller_totals(
    engine: AsyncEngine, settings: Settings
) -> None:
    """Forgotten usage leaves the usage history: forgetting is a change subscribers hear."""
    world = await build_world(engine)
    async with served(settings) as address, LiveSocket.open(address) as socket:
        recorded = await graphql(
            address,
            world.token(world.super_user),
            "mutation($e: UsageEventInput!) { recordUsage(input: $e) { event { eventId } } }",
            {"e": usage_event(world.member, ACME, "2")},
        )
        event_id = recorded["recordUsage"]["event"]["eventId"]
        await socket.init(bearer(world.token(world.member)))
        await socket.subscribe(USAGE_UPDATED, {"instance": ACME})
        assert totals(await socket.receive())["messages"] == 1
        await graphql(
            address,
            world.token(world.member),
            "mutation($ids: [BigInt!]) { forgetUsage(input: {ids: $ids}) { forgottenCount } }",
            {"ids": [event_id]},
        )
        assert totals(await socket.receive())["messages"] == 0


async def test_a_reservation_lowers_available_not_the_balance(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    async with served(settings) as address, LiveSocket.open(address) as socket:
        await top_up(address, world, world.member, "10")
        await socket.init(bearer(world.token(world.member)))
        await socket.subscribe(WALLET_CHANGED)
        await socket.receive()
        await graphql(
            address,
            world.token(world.super_user),
            "mutation($u: Int!) { reserveCredits(input: {userId: $u, amount: 4}) "
            "{ wallet { available } } }",
            {"u": world.member},
        )
        held = (await socket.receive())["payload"]["data"]["walletChanged"]
        assert (as_decimal(held["balance"]), as_decimal(held["reserved"])) == (10, 4)
        assert as_decimal(held["available"]) == 6


async def test_an_admin_removed_while_subscribed_is_refused_at_the_next_push(
    engine: AsyncEngine, settings: Settings
) -> None:
    """Memberships are read again while the socket is open: the next read is the query's
    answer for the caller as they stand now (FORBIDDEN), and the subscription ends."""
    world = await build_world(engine)
    quick = dataclasses.replace(settings, live=LiveLimits(recheck_seconds=1))
    async with served(quick) as address, LiveSocket.open(address) as socket:
        await socket.init(bearer(world.token(world.admin)))
        await socket.subscribe(USAGE_UPDATED, {"instance": ACME, "scope": "ALL"})
        await socket.receive()
        async with session_factory(engine)() as session, session.begin():
            await session.execute(delete(Membership).where(Membership.user_id == world.admin))
        await asyncio.sleep(1.5)  # a re-check has read the memberships again
        await record(address, world, world.member, ACME, "1")
        refused = await socket.receive()
        assert refused["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert refused["payload"]["data"] is None
        assert (await socket.receive())["type"] == "complete"
