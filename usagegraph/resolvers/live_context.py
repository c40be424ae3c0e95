"""The context of one subscription websocket: its caller, and a fresh request context for
every read it pushes.

A websocket lives for hours; a `RequestContext` is one moment (its `now`, its loaders'
cache). So the connection keeps only what lasts (the caller, re-checked while the socket is
open, and the app's database and bus), and each message is read through a new
`RequestContext`, exactly as a query of that moment would be.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from usagegraph.auth.principal import Principal
from usagegraph.clock import Clock
from usagegraph.datasources.loaders import Loaders
from usagegraph.datasources.read_connection import ReadConnection
from usagegraph.live.bus import LiveBus
from usagegraph.resolvers.request_context import RequestContext
from usagegraph.settings import Settings


@dataclass(slots=True)
class LiveContext:
    """What the subscriptions of one websocket share."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    settings: Settings
    bus: LiveBus
    request_id: str
    # Anonymous until `connection_init` presents a valid credential; replaced when re-checked.
    principal: Principal = field(default_factory=Principal.anonymous)
    # The `connection_init` payload (Strawberry sets it).
    connection_params: dict[str, Any] | None = None

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[RequestContext]:
        """A request context for one read, as the caller stands now."""
        reads = ReadConnection(self.engine)
        try:
            yield RequestContext(
                principal=self.principal,
                sessions=self.sessions,
                request_id=self.request_id,
                now=self.clock(),
                loaders=Loaders(self.sessions, self.principal, reads),
                cache=None,  # a pushed value is read fresh, never from the 60-second cache
                settings=self.settings,
            )
        finally:
            await reads.close()
