"""Latency from a usage write to the websocket message of a `usageUpdated` subscriber.

    python -m bench.live [--writes 1000] [--subscribers 100] [--workers 2]
                         [--transport redis|postgresql] [--redis URL]

On a throwaway PostgreSQL database next to `postgres` (USAGEGRAPH_TEST_POSTGRES_URL): an
institution with `--subscribers` members, then a real `usagegraph serve --workers N` with
Redis pub/sub (or, with `--transport postgresql`, no Redis: LISTEN/NOTIFY). Every member
holds a websocket subscribed to `usageUpdated` of the institution (scope own). Then
`--writes` usage events, one at a time, each for the next member in turn, go in as
`recordUsage` mutations over one kept-alive HTTP connection (the super user's JWT); each
write's latency is from sending the request to its member's socket receiving the new totals
(checked to include that write). Writes rotate over the members so that no subscriber gets
two writes within a second: each message is pushed at once, not held by the coalescing.

The HTTP connection lands on one worker, the sockets on both, so about half the messages
cross between workers through the bus. Printed: p50, p90, p99 and max of write-to-message,
and of the write's own HTTP round trip for comparison. The client, the server, Redis and
PostgreSQL share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import orjson
from sqlalchemy.engine import URL, make_url
from websockets.asyncio.client import ClientConnection, connect

from bench.dataset import ADMIN_URL
from bench.server import JWT_SECRET, serving
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import create_engine, session_factory
from usagegraph.db.models import Institution, Membership, User
from usagegraph.db.schema_version import upgrade_to_head

INSTITUTION = "65f1c0ffee00000000001ace"
SUBSCRIBE = (
    'subscription { usageUpdated(instanceId: "' + INSTITUTION + '") { totals { messages } } }'
)
RECORD = "mutation($e: UsageEventInput!) { recordUsage(input: $e) { status } }"


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _seed(url: URL, members: int) -> tuple[str, list[int]]:
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
        async with session_factory(engine)() as session, session.begin():
            session.add(Institution(id=INSTITUTION, name="Live Bench U"))
            root = User(email="root@bench.io", role="super", permissions=[])
            users = [User(email=f"live{i}@bench.io", permissions=[]) for i in range(members)]
            session.add_all([root, *users])
            await session.flush()
            session.add_all(
                Membership(user_id=u.id, institution_id=INSTITUTION, role="user") for u in users
            )
            return mint_token(root.id, JWT_SECRET, 3600), [u.id for u in users]
    finally:
        await engine.dispose()


async def _subscribe(address: str, user_id: int, stack: AsyncExitStack) -> ClientConnection:
    socket = await stack.enter_async_context(
        connect(f"ws://{address}/graphql", subprotocols=["graphql-transport-ws"])
    )
    token = mint_token(user_id, JWT_SECRET, 3600)
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
    await socket.send(orjson.dumps(init).decode())
    assert orjson.loads(await socket.recv())["type"] == "connection_ack"
    query = {"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}}
    await socket.send(orjson.dumps(query).decode())
    first = orjson.loads(await socket.recv())
    assert first["payload"]["data"]["usageUpdated"]["totals"]["messages"] == 0, first
    return socket


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return (
        f"p50 {cut[49] * 1000:6.1f} ms  p90 {cut[89] * 1000:6.1f} ms  "
        f"p99 {cut[98] * 1000:6.1f} ms  max {ordered[-1] * 1000:6.1f} ms"
    )


async def run(args: argparse.Namespace) -> None:
    name = f"usagegraph_bench_live_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    extra = {"USAGEGRAPH_LIVE_MAX_CONNECTIONS": "10"}
    if args.transport == "redis":
        extra["USAGEGRAPH_REDIS_URL"] = args.redis
    try:
        token, members = await _seed(url, args.subscribers)
        with (
            tempfile.TemporaryDirectory() as tmp,
            serving(
                url, Path(tmp), Path(tmp) / "serve.log", workers=args.workers, extra_env=extra
            ) as server,
        ):
            address = server.base_url.removeprefix("http://")
            async with AsyncExitStack() as stack:
                sockets = [await _subscribe(address, member, stack) for member in members]
                http = await stack.enter_async_context(
                    httpx.AsyncClient(base_url=server.base_url, timeout=30)
                )
                headers = {"Authorization": f"Bearer {token}"}
                when = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
                pushed: list[float] = []
                round_trips: list[float] = []
                for n in range(args.writes):
                    member = n % len(members)
                    event = {
                        "userId": members[member],
                        "instance": INSTITUTION,
                        "occurredAt": when,
                        "credits": "0.5",
                        "messages": 1,
                    }
                    body = {"query": RECORD, "variables": {"e": event}}
                    started = time.perf_counter()
                    message = asyncio.ensure_future(sockets[member].recv())
                    response = await http.post("/graphql", json=body, headers=headers)
                    round_trips.append(time.perf_counter() - started)
                    assert response.json()["data"]["recordUsage"]["status"] == "INSERTED"
                    data = orjson.loads(await asyncio.wait_for(message, 30))
                    pushed.append(time.perf_counter() - started)
                    seen = data["payload"]["data"]["usageUpdated"]["totals"]["messages"]
                    assert seen == n // len(members) + 1, (n, data)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        f"usageUpdated latency, {args.writes} writes, {args.subscribers} subscribers, "
        f"serve --workers {args.workers}, bus: {args.transport}"
    )
    print(f"  write sent -> websocket message: {_percentiles(pushed)}")
    print(f"  write HTTP round trip:           {_percentiles(round_trips)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--transport", choices=("redis", "postgresql"), default="redis")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
