"""A small cache for computed payloads: in-process by default, Redis when one is configured.

Values are opaque bytes with a time to live. A cache is an optimisation, never a dependency:
a Redis that is down or slow reads as a miss and drops writes (with a warning), so callers
simply recompute. Keys are built by whoever caches (e.g. resolvers/usage_history.py), and
they, not this module, decide what makes two payloads distinct.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from typing import Protocol

from usagegraph.http.redis_guard import (
    DEFAULT_REDIS_RETRY_AFTER_SECONDS,
    DEFAULT_REDIS_TIMEOUT_SECONDS,
    MonotonicClock,
    RedisGuard,
    RedisUnavailable,
)
from usagegraph.observability.metrics import count_cache_lookup
from usagegraph.settings import Settings

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_KEY_PREFIX = "usagegraph:"


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
        value = self._lookup(key)
        count_cache_lookup("memory", hit=value is not None)
        return value

    def _lookup(self, key: str) -> bytes | None:
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

    Every key gets `prefix`, so one Redis can serve several deployments (and tests). Calls go
    through a `RedisGuard`: bounded, never retried, Redis skipped for a while after a failure
    (a read is then a miss and a write is dropped).
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
        self._redis = RedisGuard(
            url,
            fallback="computing without the cache",
            timeout_seconds=timeout_seconds,
            retry_after_seconds=retry_after_seconds,
            clock=clock,
        )

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.run("cache read", lambda redis: redis.get(self.prefix + key))
        except RedisUnavailable:
            count_cache_lookup("redis", hit=False)
            return None
        count_cache_lookup("redis", hit=value is not None)
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        milliseconds = max(1, round(ttl_seconds * 1000))
        with contextlib.suppress(RedisUnavailable):
            await self._redis.run(
                "cache write",
                lambda redis: redis.set(self.prefix + key, value, px=milliseconds),
            )

    async def close(self) -> None:
        await self._redis.close()


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
