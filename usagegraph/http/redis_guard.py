"""Redis as an optimisation, never a dependency: bounded calls, and a pause after a failure.

The cache, the rate limiter and the persisted queries keep shared state in Redis when
`USAGEGRAPH_REDIS_URL` is set. Each call is bounded by `timeout_seconds` and never retried;
after a failure Redis is skipped for `retry_after_seconds` (one warning each time), so an
outage costs one timeout per pause, not one per request. What a caller does meanwhile (a
miss, local buckets) is its own decision: `RedisUnavailable` tells it to make it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

T = TypeVar("T")
MonotonicClock = Callable[[], float]

# A Redis that answers slower than this is slower than doing without it.
DEFAULT_REDIS_TIMEOUT_SECONDS = 0.5
# After a failure, skip Redis for this long.
DEFAULT_REDIS_RETRY_AFTER_SECONDS = 5.0


class RedisUnavailable(Exception):
    """Redis failed just now, or is being skipped after a failure."""


class RedisGuard:
    """One Redis client and the rule above; `fallback` says in the warning what happens."""

    def __init__(
        self,
        url: str,
        *,
        fallback: str,
        timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS,
        retry_after_seconds: float = DEFAULT_REDIS_RETRY_AFTER_SECONDS,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        self.client = Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )
        self._fallback = fallback
        self._timeout = timeout_seconds
        self._retry_after = retry_after_seconds
        self._clock = clock
        self._skip_until = float("-inf")

    async def run(self, operation: str, call: Callable[[Redis], Awaitable[T]]) -> T:
        """`call(client)` within the time bound; RedisUnavailable when skipped or failed."""
        if self._clock() < self._skip_until:
            raise RedisUnavailable(operation)
        try:
            async with asyncio.timeout(self._timeout):
                return await call(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._skip_until = self._clock() + self._retry_after
            log.warning(
                "Redis %s failed (%s); %s for %.0f s",
                operation,
                type(exc).__name__,
                self._fallback,
                self._retry_after,
            )
            raise RedisUnavailable(operation) from exc

    async def close(self) -> None:
        await self.client.aclose()
