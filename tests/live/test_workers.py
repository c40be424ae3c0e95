"""A real `usagegraph serve --workers 2` with Redis: a subscriber on one worker hears a
usage write that another worker committed.

The test finds out which worker holds each connection (tests/live/workers.py reads /proc)
and sends the write over a connection that the *other* worker accepted, so the note must
have crossed between worker processes through Redis.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.running import cli_env, server_process
from tests.databases import TestDatabase
from tests.live.served import USAGE_UPDATED, LiveSocket, bearer
from tests.live.test_bus import REDIS_URL, _redis_or_skip
from tests.live.workers import RawHttp, worker_of, workers_of
from tests.live.world import ACME, RECORD, build_world, totals, usage_event

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


async def test_a_write_on_one_worker_reaches_a_subscriber_on_the_other(
    engine: AsyncEngine, database: TestDatabase, tmp_path: Path
) -> None:
    await _redis_or_skip()
    world = await build_world(engine)
    env = cli_env(tmp_path, database.url_string, USAGEGRAPH_REDIS_URL=REDIS_URL)
    with server_process(env, "usagegraph", "--workers", "2", timeout=90) as (base, process):
        port = int(base.rsplit(":", 1)[1])
        address = f"127.0.0.1:{port}"
        async with LiveSocket.open(address) as socket:
            await socket.init(bearer(world.token(world.member)))
            await socket.subscribe(USAGE_UPDATED, {"instance": ACME})
            assert totals(await socket.receive())["messages"] == 0
            workers = workers_of(process.pid)
            assert len(workers) == 2, workers
            listening = await worker_of(workers, port, socket.connection.local_address[1])
            writer = await _connection_on_another_worker(port, workers, listening)
            try:
                answer = await writer.post_json(
                    "/graphql",
                    {"query": RECORD, "variables": {"e": usage_event(world.member, ACME, "3")}},
                    bearer(world.token(world.super_user)),
                )
            finally:
                await writer.close()
            assert answer == {"data": {"recordUsage": {"status": "INSERTED"}}}
            pushed = totals(await socket.receive(wait=15))
            assert (Decimal(str(pushed["credits"])), pushed["messages"]) == (Decimal(3), 1)


async def _connection_on_another_worker(port: int, workers: list[int], avoid: int) -> RawHttp:
    """Open connections until one is accepted by a worker other than `avoid`."""
    for _ in range(100):
        connection = await RawHttp.open(port)
        if await worker_of(workers, port, connection.local_port) != avoid:
            return connection
        await connection.close()
    raise AssertionError("every connection went to the subscriber's worker")
