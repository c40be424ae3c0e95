"""One autocommit connection per request for the loaders' read-only batches.

Each loader batch used to open a session, and so a transaction: a nested read of 9 statements
came with 16 BEGIN/ROLLBACK pairs, a round trip each. Batches only read, one statement each,
and every statement is scoped by its caller's `readable_*` rule, so they need no transaction:
they share one connection in AUTOCOMMIT mode, opened on first use and released at the end of
the request (`http.request_resources`). Batches of sibling fields run concurrently and one
connection must not be, so they take turns (a lock). Writes never come here: a mutation keeps
its own session and transaction (`datasources.transactions`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from usagegraph.db.partition_span import PartitionSpan, known_span


class ReadsClosed(Exception):
    """A batch asked for the request's read connection after the request ended (its field
    was cancelled with its failed siblings; nobody waits for its rows)."""


class ReadConnection:
    """The request's read connection, opened lazily, used by one batch at a time."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._turn = asyncio.Lock()
        self._closed = False

    @property
    def dialect_name(self) -> str:
        """`postgresql` or `sqlite`: what the compiled read path may run on."""
        return self._engine.dialect.name

    @property
    def partition_span(self) -> PartitionSpan | None:
        """The database's unbroken run of usage partitions, as last read (`db.partition_span`)."""
        return known_span(self._engine)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session on the shared connection, for one batch (no BEGIN, no ROLLBACK)."""
        async with (
            self.connection() as connection,
            AsyncSession(bind=connection, expire_on_commit=False) as session,
        ):
            yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """The shared connection itself, for one Core statement that needs no session (the
        caller's principal, which every request reads: a session costs ~0.1 ms to make)."""
        async with self._turn:
            if self._closed:
                raise ReadsClosed("the request has ended")
            if self._connection is None:
                connection = await self._engine.connect()
                self._connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield self._connection

    async def release(self) -> None:
        """Give the connection back to the pool for now; the next batch takes one again.

        After the caller is resolved: a request that goes on to write holds its own session,
        and must not hold this connection meanwhile (twenty such requests would hold forty
        connections, more than the pool has, each waiting for a second one).
        """
        async with self._turn:
            connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def close(self) -> None:
        """Give the connection back to the pool (the end of the request), once the batch
        using it is done: a batch whose fields were cancelled still runs to its end, and a
        connection handed back mid-statement would break the next request that takes it."""
        async with self._turn:
            connection, self._connection = self._connection, None
            self._closed = True
        if connection is not None:
            await connection.close()
