"""A real server and a real websocket client for the subscription tests.

`served` runs the app under uvicorn in the test's own event loop on a free port (real
sockets, real websocket handshakes, uvicorn's own websocket implementation), so a test can
also reach the database the app writes to. `LiveSocket` speaks graphql-transport-ws with the
`websockets` client, as any other client would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.cli.running import free_port
from usagegraph.app import create_app
from usagegraph.clock import Clock, system_clock
from usagegraph.settings import Settings

PROTOCOL = "graphql-transport-ws"
USAGE_UPDATED = """
subscription Usage($instance: String!, $scope: Scope) {
  usageUpdated(instanceId: $instance, scope: $scope) {
    instanceId scope totals { credits messages users }
  }
}"""
WALLET_CHANGED = "subscription { walletChanged { userId balance available reserved } }"


@contextlib.asynccontextmanager
async def served(settings: Settings, clock: Clock = system_clock) -> AsyncIterator[str]:
    """`host:port` of the app served by uvicorn in this event loop, until the block ends."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, clock=clock),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


class LiveSocket:
    """One graphql-transport-ws connection."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self._ids = itertools.count(1)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, address: str) -> AsyncIterator[LiveSocket]:
        async with connect(f"ws://{address}/graphql", subprotocols=[PROTOCOL]) as connection:
            yield cls(connection)

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(orjson.dumps(message).decode())

    async def receive(self, wait: float = 10) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.connection.recv(), wait)
        assert isinstance(raw, str), "graphql-transport-ws messages are text frames"
        return orjson.loads(raw)

    async def init(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        """Send connection_init; the answer (connection_ack), or ConnectionClosed."""
        message: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        await self.send(message)
        return await self.receive()

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        operation_id = str(next(self._ids))
        await self.send(
            {
                "id": operation_id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
        )
        return operation_id

    async def closed(self, wait: float = 10) -> tuple[int | None, str]:
        """Wait for the server to close the socket: its close code and reason."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.wait_for(self.connection.recv(), wait)
        received = self.connection.protocol.close_rcvd
        return (received.code, received.reason) if received else (None, "")

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Every message that arrives within `seconds`."""
        messages = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            try:
                messages.append(await self.receive(wait=left))
            except TimeoutError:
                break
        return messages


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}
