"""A small cache for computed payloads: in-process by default, Redis when one is configured.

Values are opaque bytes with a time to live. A cache is an optimisation, never a dependency:
a Redis that is down or slow reads as a miss and drops writes (with a warning), so callers
simply recompute. Keys are built by whoever caches (e.g. resolvers/usage_history.py), and
they, not this module, decide what makes two payloads distinct.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from usagegraph.settings import Settings

log = logging.getLogger(__name__)

MonotonicClock = Callable[[], float]

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_KEY_PREFIX = "usagegraph:"
# A cache that answers slower than this is slower than recomputing a small report.
DEFAULT_REDIS_TIMEOUT_SECONDS = 0.5
# After a Redis failure, skip it for this long, so an outage costs one timeout, not one per call.
DEFAULT_REDIS_RETRY_AFTER_SECONDS = 5.0


class Cache(Protocol):
    """What callers need: read, write with a TTL, and release resources on shutdown."""

    async def get(self, key: str) -> bytes | None:
        """The stored value, or None when absent, expired or unreachable."""
        ...

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store `value` for `ttl_seconds`; failures are swallowed (and logged)."""
        ...

    async def close(self) -> None: ...


class MemoryCache:
    """A bounded, least-recently-used TTL cache for one process.

    Expiry uses a monotonic clock (injectable for tests), so wall-clock jumps never keep an
    entry alive or kill it early. No lock is needed: nothing here awaits.
    """

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, clock: MonotonicClock = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = (self._clock() + ttl_seconds, value)
        self._entries.move_to_end(key)
        self._evict()

    def _evict(self) -> None:
        """Drop expired entries, then the least recently used, until within the bound."""
        if len(self._entries) <= self._max_entries:
            return
        now = self._clock()
        for key in [k for k, (expires_at, _) in self._entries.items() if expires_at <= now]:
            del self._entries[key]
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def close(self) -> None:
        self._entries.clear()


class RedisCache:
    """A cache shared by every worker, in Redis (`redis.asyncio`).

    Every key gets `prefix`, so one Redis can serve several deployments (and tests). Calls are
    bounded by `timeout_seconds` and never retried; after a failure Redis is skipped for
    `retry_after_seconds`.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_KEY_PREFIX,
        timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS,
        retry_after_seconds: float = DEFAULT_REDIS_RETRY_AFTER_SECONDS,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        self.prefix = prefix
        self._timeout = timeout_seconds
        self._retry_after = retry_after_seconds
        self._clock = clock
        self._skip_until = float("-inf")
        self._client = Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )

    async def get(self, key: str) -> bytes | None:
        if self._skipping():
            return None
        try:
            async with asyncio.timeout(self._timeout):
                value = await self._client.get(self.prefix + key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("read", exc)
            return None
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if self._skipping():
            return
        milliseconds = max(1, round(ttl_seconds * 1000))
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.set(self.prefix + key, value, px=milliseconds)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("write", exc)

    async def close(self) -> None:
        await self._client.aclose()

    def _skipping(self) -> bool:
        return self._clock() < self._skip_until

    def _failed(self, operation: str, exc: BaseException) -> None:
        self._skip_until = self._clock() + self._retry_after
        log.warning(
            "Redis cache %s failed (%s); computing without the cache for %.0f s",
            operation,
            type(exc).__name__,
            self._retry_after,
        )


class NoCache:
    """Remembers nothing: every report is computed (USAGEGRAPH_CACHE=off, for measuring)."""

    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        return None

    async def close(self) -> None:
        return None


def create_cache(settings: Settings) -> Cache:
    """Redis when `USAGEGRAPH_REDIS_URL` is set (shared by all workers), else in-process;
    none at all with USAGEGRAPH_CACHE=off."""
    if not settings.cache_enabled:
        return NoCache()
    if settings.redis_url:
        return RedisCache(settings.redis_url)
    return MemoryCache()
