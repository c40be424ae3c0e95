"""The response cache: a bounded in-process TTL cache and a real Redis one that fails open."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from usagegraph.cache import MemoryCache, NoCache, RedisCache, create_cache
from usagegraph.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
# Serving fails fast (0.5 s) to local limits; tests of Redis semantics must not fail over
# because a loaded CI machine answered slowly, so they wait this long.
PATIENT = 10.0


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


# --- in-process ---


async def test_memory_entry_lives_exactly_its_ttl() -> None:
    clock = FakeMonotonic()
    cache = MemoryCache(clock=clock)
    assert await cache.get("k") is None
    await cache.set("k", b"v", 60)
    clock.now += 59.999
    assert await cache.get("k") == b"v"
    clock.now += 0.001
    assert await cache.get("k") is None
    assert len(cache) == 0  # the expired entry is dropped, not kept


async def test_memory_cache_is_bounded_least_recently_used_first() -> None:
    cache = MemoryCache(max_entries=2, clock=FakeMonotonic())
    await cache.set("a", b"1", 60)
    await cache.set("b", b"2", 60)
    assert await cache.get("a") == b"1"  # a is now the most recently used
    await cache.set("c", b"3", 60)
    assert (await cache.get("a"), await cache.get("b"), await cache.get("c")) == (b"1", None, b"3")
    assert len(cache) == 2


async def test_memory_cache_evicts_expired_entries_before_live_ones() -> None:
    clock = FakeMonotonic()
    cache = MemoryCache(max_entries=2, clock=clock)
    await cache.set("short", b"1", 1)
    await cache.set("long", b"2", 60)
    clock.now += 2
    await cache.set("new", b"3", 60)
    assert (await cache.get("long"), await cache.get("new")) == (b"2", b"3")


async def test_memory_cache_ignores_non_positive_ttl_and_clears_on_close() -> None:
    cache = MemoryCache()
    await cache.set("k", b"v", 0)
    assert await cache.get("k") is None
    await cache.set("k", b"v", 60)
    await cache.close()
    assert await cache.get("k") is None
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(max_entries=0)


# --- Redis (real, at 127.0.0.1:6379) ---


@pytest.fixture
async def raw_redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError as exc:
        await client.aclose()
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
async def redis_cache(raw_redis: Redis) -> AsyncIterator[RedisCache]:
    """A cache under a prefix unique to this test; only its own keys are deleted after."""
    cache = RedisCache(
        REDIS_URL, prefix=f"usagegraph-test:{uuid.uuid4().hex}:", timeout_seconds=PATIENT
    )
    yield cache
    keys = [key async for key in raw_redis.scan_iter(match=cache.prefix + "*")]
    if keys:
        await raw_redis.delete(*keys)
    await cache.close()


async def test_redis_round_trip_under_the_prefix_with_a_ttl(
    redis_cache: RedisCache, raw_redis: Redis
) -> None:
    assert await redis_cache.get("k") is None
    await redis_cache.set("k", b"\x00payload", 60)
    assert await redis_cache.get("k") == b"\x00payload"
    assert await raw_redis.get(redis_cache.prefix + "k") == b"\x00payload"
    assert 59_000 < await raw_redis.pttl(redis_cache.prefix + "k") <= 60_000


async def test_redis_entry_expires(redis_cache: RedisCache) -> None:
    await redis_cache.set("short", b"v", 0.6)
    assert await redis_cache.get("short") == b"v"
    await asyncio.sleep(0.8)
    assert await redis_cache.get("short") is None


async def test_redis_outage_reads_as_a_miss_and_is_skipped_for_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeMonotonic()
    cache = RedisCache(DEAD_REDIS_URL, retry_after_seconds=5, clock=clock)
    try:
        with caplog.at_level(logging.WARNING, logger="usagegraph.cache"):
            assert await cache.get("k") is None
            await cache.set("k", b"v", 60)  # skipped: no second warning
            clock.now += 4.9
            assert await cache.get("k") is None
            assert len(caplog.records) == 1
            clock.now += 0.1
            await cache.set("k", b"v", 60)  # tried again, failed again
    finally:
        await cache.close()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("Redis cache read failed")
    assert messages[1].startswith("Redis cache write failed")


# --- choosing one ---


def _settings(tmp_path: Path, redis_url: str | None) -> Settings:
    return Settings(
        database_url=make_url(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"),
        embedded_database=False,
        jwt_secret="x" * 32,
        redis_url=redis_url,
        data_dir=tmp_path,
    )


async def test_redis_is_used_when_configured(tmp_path: Path) -> None:
    cache = create_cache(_settings(tmp_path, REDIS_URL))
    try:
        assert isinstance(cache, RedisCache)
        assert cache.prefix == "usagegraph:"
    finally:
        await cache.close()
    assert isinstance(create_cache(_settings(tmp_path, None)), MemoryCache)


async def test_cache_off_remembers_nothing(tmp_path: Path) -> None:
    cache = create_cache(dataclasses.replace(_settings(tmp_path, REDIS_URL), cache_enabled=False))
    assert isinstance(cache, NoCache)
    await cache.set("k", b"v", 60)
    assert await cache.get("k") is None
