"""Rate limiting per credential: a token bucket per caller, answering 429 with Retry-After.

Each caller has a bucket of `burst` tokens that refills at `per_minute / 60` tokens a second;
a request takes one token, and a request that finds less than one is refused with the whole
seconds until one is back. The bucket belongs to who the credential identifies, as resolved
by the principal middleware (which runs first): the user for a JWT (every token of the user
shares it), the institution for an API key (every key of it shares one), the client address
for anonymous callers (including those whose credentials were refused).

Buckets live in this process by default; with `USAGEGRAPH_REDIS_URL` they live in Redis, so
all workers share them. Redis being down or slow never refuses a request: the limiter falls
back to this process's buckets for a few seconds and tries Redis again.
The probes (/healthz, /readyz) are never limited, and `per_minute = 0` turns limiting off.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from usagegraph.errors import rate_limited
from usagegraph.http.envelopes import error_response_for
from usagegraph.http.health import PROBE_PATHS
from usagegraph.http.metrics_endpoint import METRICS_PATH
from usagegraph.http.redis_guard import (
    DEFAULT_REDIS_RETRY_AFTER_SECONDS,
    DEFAULT_REDIS_TIMEOUT_SECONDS,
    MonotonicClock,
    RedisGuard,
    RedisUnavailable,
)
from usagegraph.observability.metrics import count_rate_limited
from usagegraph.settings import RateLimit, Settings

DEFAULT_KEY_PREFIX = "usagegraph:ratelimit:"
# Beyond this many callers in one process, the least recently seen bucket is forgotten.
DEFAULT_MAX_BUCKETS = 100_000


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may proceed; if not, the whole seconds until it may (at least 1)."""

    allowed: bool
    retry_after_seconds: int = 0


ALLOWED = Decision(allowed=True)


class RateLimiter(Protocol):
    async def take(self, key: str) -> Decision:
        """Take one token from `key`'s bucket, or say how long until one is there."""
        ...

    async def close(self) -> None: ...


def refilled(tokens: float, elapsed_seconds: float, limit: RateLimit) -> float:
    """The bucket's tokens after `elapsed_seconds` of refilling, capped at the burst."""
    per_second = limit.per_minute / 60
    return min(float(limit.burst), tokens + max(0.0, elapsed_seconds) * per_second)


def take_from(tokens: float, limit: RateLimit) -> tuple[float, Decision]:
    """Take one token from a bucket holding `tokens`: the tokens left and the decision."""
    if tokens >= 1:
        return tokens - 1, ALLOWED
    per_second = limit.per_minute / 60
    return tokens, Decision(
        allowed=False, retry_after_seconds=whole_seconds((1 - tokens) / per_second)
    )


def whole_seconds(seconds: float) -> int:
    """Retry-After is whole seconds; rounding up never invites a retry that is refused again."""
    return max(1, math.ceil(seconds - 1e-9))


class MemoryRateLimiter:
    """Buckets in this process, keyed by caller; a monotonic clock (injectable for tests)."""

    def __init__(
        self,
        limit: RateLimit,
        clock: MonotonicClock = time.monotonic,
        max_buckets: int = DEFAULT_MAX_BUCKETS,
    ) -> None:
        if limit.per_minute <= 0 or limit.burst < 1:
            raise ValueError("a rate limiter needs per_minute > 0 and burst >= 1")
        self._limit = limit
        self._clock = clock
        self._max_buckets = max_buckets
        # key -> (tokens, when they were counted); nothing here awaits, so no lock is needed.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def take(self, key: str) -> Decision:
        now = self._clock()
        tokens, counted_at = self._buckets.get(key, (float(self._limit.burst), now))
        tokens, decision = take_from(refilled(tokens, now - counted_at, self._limit), self._limit)
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_buckets:
            self._buckets.popitem(last=False)
        return decision

    async def close(self) -> None:
        self._buckets.clear()


# One atomic step of a bucket in Redis, timed by the Redis server's clock so that every
# worker agrees. Rate in tokens per millisecond; returns {allowed, milliseconds to wait}.
_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return {allowed, wait}
"""


class RedisRateLimiter:
    """Buckets in Redis, shared by every worker; each key is `prefix` + the caller's key.

    A bucket expires once it would be full again, so idle callers cost no memory.
    """

    def __init__(
        self,
        url: str,
        limit: RateLimit,
        *,
        prefix: str = DEFAULT_KEY_PREFIX,
        timeout_seconds: float = DEFAULT_REDIS_TIMEOUT_SECONDS,
        retry_after_seconds: float = DEFAULT_REDIS_RETRY_AFTER_SECONDS,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        self.prefix = prefix
        self._limit = limit
        self._fallback = MemoryRateLimiter(limit, clock)
        self._redis = RedisGuard(
            url,
            fallback="limiting in this process",
            timeout_seconds=timeout_seconds,
            retry_after_seconds=retry_after_seconds,
            clock=clock,
        )
        self._script = self._redis.client.register_script(_TAKE_SCRIPT)

    async def take(self, key: str) -> Decision:
        per_millisecond = self._limit.per_minute / 60_000
        try:
            allowed, wait = await self._redis.run(
                "rate limiter",
                lambda _redis: self._script(
                    keys=[self.prefix + key], args=[repr(per_millisecond), self._limit.burst]
                ),
            )
        except RedisUnavailable:
            return await self._fallback.take(key)
        if int(allowed) == 1:
            return ALLOWED
        return Decision(allowed=False, retry_after_seconds=whole_seconds(int(wait) / 1000))

    async def close(self) -> None:
        await self._fallback.close()
        await self._redis.close()


def create_rate_limiter(settings: Settings) -> RateLimiter | None:
    """None when limiting is off; Redis when configured (shared by all workers), else local."""
    if settings.rate_limit.per_minute == 0:
        return None
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url, settings.rate_limit)
    return MemoryRateLimiter(settings.rate_limit)


# Probes and scrapes always get an answer.
UNLIMITED_PATHS = PROBE_PATHS | {METRICS_PATH}
# Where the principal middleware leaves the caller's bucket key (auth/middleware.py).
CALLER_KEY_STATE = "caller_key"


def bucket_key(scope: Scope) -> str:
    """Whose bucket a request takes from: the key the principal middleware resolved, else
    the client address."""
    key = scope.get("state", {}).get(CALLER_KEY_STATE)
    if key is not None:
        return key
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


class RateLimitMiddleware:
    """Pure ASGI, after the principal middleware; the limiter is the app state's, if any."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter: RateLimiter | None = getattr(scope["app"].state, "rate_limiter", None)
        if scope["type"] != "http" or limiter is None or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        decision = await limiter.take(bucket_key(scope))
        if decision.allowed:
            await self.app(scope, receive, send)
            return
        seconds = decision.retry_after_seconds
        principal = scope.get("state", {}).get("principal")
        count_rate_limited(str(getattr(principal, "kind", "anonymous")))
        response = error_response_for(
            scope["path"],
            rate_limited(seconds),
            scope.get("state", {}).get("request_id", "unknown"),
            headers={"Retry-After": str(seconds)},
        )
        await response(scope, receive, send)
