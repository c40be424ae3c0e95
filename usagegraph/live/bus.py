"""The bus that carries change notes from the worker that committed a write to every worker
holding subscribers: Redis pub/sub, else PostgreSQL LISTEN/NOTIFY, else in-process.

- `USAGEGRAPH_REDIS_URL` set: Redis pub/sub. Each worker publishes a commit's notes (one
  PUBLISH per channel) and listens with one pattern subscription for all channels; Redis
  is already how workers share the cache and the rate limits.
- else, on PostgreSQL: `NOTIFY usagegraph_live` with the channel and note as payload, read
  by one `LISTEN` connection per worker (asyncpg's `add_listener`).
- else (SQLite without Redis): in-process, which reaches only the subscribers of the worker
  that wrote; run one worker (`serve --workers 1`, the default) for complete live updates.

Delivery is at most once and in order per worker: a note lost to a broken connection (the
bus reconnects within a second) only delays a subscriber's next message until the next
write, and every message carries complete totals, never a difference, so nothing is ever
double-counted. Publishing never blocks or fails a write: notes are queued, sent by a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis
from sqlalchemy.engine import URL

from usagegraph.live.channels import Payload
from usagegraph.live.feed import Feed

log = logging.getLogger(__name__)

REDIS_PREFIX = "usagegraph:live:"
POSTGRES_CHANNEL = "usagegraph_live"
RECONNECT_SECONDS = 1.0
# Notes waiting to be sent when the bus is down; past this, the oldest are dropped.
MAX_OUTBOX = 10_000
READY_WAIT_SECONDS = 5.0


class LiveBus:
    """Local fan-out to this worker's subscriptions; subclasses carry notes between workers."""

    kind = "in-process"

    def __init__(self) -> None:
        self._feeds: dict[str, set[Feed]] = {}
        # Set while notes from other workers are being received (always, in-process).
        self.receiving = asyncio.Event()
        self.receiving.set()

    async def start(self) -> None:
        """Connect (the in-process bus has nothing to connect)."""

    async def close(self) -> None:
        """Disconnect and stop the bus's tasks."""

    def publish(self, notes: Mapping[str, Payload]) -> None:
        """Announce a commit's notes; called right after the commit, never blocks."""
        self.deliver_all(notes.items())

    def deliver_all(self, notes: Iterable[tuple[str, Payload]]) -> None:
        for channel, payload in notes:
            for feed in self._feeds.get(channel, ()):
                feed.push(channel, payload)

    @contextlib.asynccontextmanager
    async def subscribe(self, channels: Iterable[str]) -> AsyncIterator[Feed]:
        """A feed of the notes of `channels` while the block runs."""
        feed = Feed()
        names = set(channels)
        # A subscription's first message should mean "every later write reaches you": wait
        # (briefly) for the receiving connection, which is opened when the worker starts.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.receiving.wait(), READY_WAIT_SECONDS)
        for name in names:
            self._feeds.setdefault(name, set()).add(feed)
        try:
            yield feed
        finally:
            for name in names:
                feeds = self._feeds.get(name)
                if feeds is not None:
                    feeds.discard(feed)
                    if not feeds:
                        del self._feeds[name]


class _RemoteBus(LiveBus):
    """A bus whose notes travel through a server: sent by one task, received by another."""

    def __init__(self) -> None:
        super().__init__()
        self.receiving.clear()
        self._outbox: asyncio.Queue[tuple[str, Payload]] = asyncio.Queue(MAX_OUTBOX)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._keep(self._send, "sending")),
            asyncio.create_task(self._keep(self._receive, "receiving")),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def publish(self, notes: Mapping[str, Payload]) -> None:
        for item in notes.items():
            if self._outbox.full():
                self._outbox.get_nowait()
            self._outbox.put_nowait(item)

    async def _keep(self, run: Any, what: str) -> None:
        """Run `run` for ever, reconnecting after a failure."""
        while True:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("live updates bus (%s): %s; retrying", what, error)
            if what == "receiving":
                self.receiving.clear()
            await asyncio.sleep(RECONNECT_SECONDS)

    def _received(self, raw: bytes | str) -> None:
        try:
            message = orjson.loads(raw)
            self.deliver_all([(message["c"], message["p"])])
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            log.warning("live updates bus: unreadable note %r: %s", raw, error)

    async def _send(self) -> None:
        raise NotImplementedError

    async def _receive(self) -> None:
        raise NotImplementedError


class RedisBus(_RemoteBus):
    """Redis pub/sub: PUBLISH per note, one PSUBSCRIBE per worker.

    Channel names carry a digest of the database URL: deployments sharing one Redis (staging
    and production, say) but not a database never hear each other's notes. Redis pub/sub
    ignores the database number of the URL, so that cannot separate them.
    """

    kind = "redis"

    def __init__(self, url: str, database_url: URL) -> None:
        super().__init__()
        self._url = url
        self.prefix = redis_prefix(database_url)

    async def _send(self) -> None:
        redis = Redis.from_url(self._url)
        try:
            while True:
                channel, payload = await self._outbox.get()
                body = orjson.dumps({"c": channel, "p": payload})
                try:
                    await redis.publish(self.prefix + channel, body)
                except Exception:
                    await self._outbox.put((channel, payload))  # sent after reconnecting
                    raise
        finally:
            await redis.aclose()

    async def _receive(self) -> None:
        redis = Redis.from_url(self._url)
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(self.prefix + "*")
            self.receiving.set()
            async for message in pubsub.listen():
                if message.get("type") == "pmessage":
                    self._received(message["data"])
        finally:
            await pubsub.aclose()
            await redis.aclose()


class PostgresBus(_RemoteBus):
    """PostgreSQL NOTIFY/LISTEN on one channel, `usagegraph_live`."""

    kind = "postgresql"

    def __init__(self, database_url: URL) -> None:
        super().__init__()
        self._dsn = database_url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def _send(self) -> None:
        connection = await asyncpg.connect(self._dsn)
        try:
            while True:
                channel, payload = await self._outbox.get()
                body = orjson.dumps({"c": channel, "p": payload}).decode()
                try:
                    await connection.execute("SELECT pg_notify($1, $2)", POSTGRES_CHANNEL, body)
                except Exception:
                    await self._outbox.put((channel, payload))
                    raise
        finally:
            await connection.close()

    async def _receive(self) -> None:
        connection = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(
                POSTGRES_CHANNEL, lambda _c, _pid, _channel, body: self._received(body)
            )
            self.receiving.set()
            await lost.wait()
            raise ConnectionError("the LISTEN connection was closed")
        finally:
            await connection.close()


def redis_prefix(database_url: URL) -> str:
    """`usagegraph:live:<12 hex of the database URL's digest>:`."""
    name = database_url.render_as_string(hide_password=True)
    return f"{REDIS_PREFIX}{hashlib.sha256(name.encode()).hexdigest()[:12]}:"


def create_bus(redis_url: str | None, database_url: URL) -> LiveBus:
    """Redis when configured, else PostgreSQL when that is the database, else in-process."""
    if redis_url is not None:
        return RedisBus(redis_url, database_url)
    if database_url.get_backend_name() == "postgresql":
        return PostgresBus(database_url)
    return LiveBus()
