"""The bus on its own: which transport a deployment gets, notes crossing between two buses
(two workers) through real Redis and real PostgreSQL, and notes leaving only committed
transactions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import TestDatabase
from tests.fixtures.factories import add_user
from usagegraph.datasources.transactions import write_transaction
from usagegraph.datasources.wallet_writes import LedgerBook, locked_wallet
from usagegraph.db.engine import session_factory
from usagegraph.live.bus import LiveBus, PostgresBus, RedisBus, create_bus
from usagegraph.live.changes import note_change, publisher_info
from usagegraph.live.channels import Payload, wallet_channel
from usagegraph.live.feed import Feed, coalesced

REDIS_URL = "redis://127.0.0.1:6379/0"
SQLITE = make_url("sqlite+aiosqlite:///x.db")
POSTGRES = make_url("postgresql+asyncpg://postgres@127.0.0.1:5432/x")


def test_the_transport_follows_the_settings() -> None:
    assert type(create_bus(REDIS_URL, SQLITE)) is RedisBus
    assert type(create_bus(REDIS_URL, POSTGRES)) is RedisBus
    assert type(create_bus(None, POSTGRES)) is PostgresBus
    assert type(create_bus(None, SQLITE)) is LiveBus


async def _redis_or_skip() -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    finally:
        await client.aclose()


@asynccontextmanager
async def started(*buses: LiveBus) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for bus in buses:
            await bus.start()
            stack.push_async_callback(bus.close)
        for bus in buses:
            await asyncio.wait_for(bus.receiving.wait(), 10)
        yield


async def _crosses(writer: LiveBus, reader: LiveBus) -> None:
    """A note published by one bus reaches the other's subscriber, and only its channel's."""
    async with reader.subscribe(["usage.abc"]) as feed:
        writer.publish({"usage.other": {"users": [2]}, "usage.abc": {"users": [1]}})
        notes = await asyncio.wait_for(feed.next_notes(), 10)
        await asyncio.sleep(0.2)
        notes += feed.drain()
    assert notes == [("usage.abc", {"users": [1]})]


async def test_redis_carries_notes_between_workers(database: TestDatabase) -> None:
    await _redis_or_skip()
    one, two = create_bus(REDIS_URL, database.url), create_bus(REDIS_URL, database.url)
    stranger = create_bus(REDIS_URL, make_url("sqlite+aiosqlite:///another-deployment.db"))
    async with started(one, two, stranger):
        await _crosses(one, two)
        async with stranger.subscribe(["usage.abc"]) as feed:
            one.publish({"usage.abc": {"users": [1]}})
            await asyncio.sleep(0.5)
            assert feed.drain() == []  # another database, another deployment


@pytest.mark.postgres_only
async def test_postgresql_notify_carries_notes_between_workers(database: TestDatabase) -> None:
    if database.url.get_backend_name() != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    one, two = create_bus(None, database.url), create_bus(None, database.url)
    assert isinstance(one, PostgresBus)
    async with started(one, two):
        await _crosses(one, two)


async def test_notes_leave_committed_transactions_only(engine: AsyncEngine) -> None:
    user = await add_user(engine, email="wallet@example.test")
    published: list[dict[str, Payload]] = []
    sessions = session_factory(
        engine, info=publisher_info(lambda notes: published.append(dict(notes)))
    )

    async def noted_then_failed() -> None:
        async with sessions() as session, write_transaction(session):
            note_change(session, "usage.abc", user)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await noted_then_failed()
    assert published == []
    async with sessions() as session, write_transaction(session):
        wallet = await locked_wallet(session, user, _now(), create=True)
        assert wallet is not None
        LedgerBook(session, _now(), {user: wallet}).post(wallet, "credit", 5, description="x")
        assert published == []  # not before the commit
    assert published == [{wallet_channel(user): {"users": [user]}}]


async def test_coalescing_answers_a_lone_note_at_once_and_a_burst_once_a_second() -> None:
    feed = Feed()
    turns = coalesced(feed, lambda _channel, _note: True, min_interval=0.5)
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    feed.push("c", {"users": None})
    await anext(turns)
    assert loop.time() - started_at >= 0.45  # within the interval of the subscription's start
    for _ in range(5):
        feed.push("c", {"users": None})
    burst_at = loop.time()
    await anext(turns)
    assert loop.time() - burst_at >= 0.45
    assert feed.drain() == []  # the burst was answered by that one turn
    waiting = asyncio.ensure_future(anext(turns))  # the consumer asks at once, as it does
    await asyncio.sleep(0.6)
    quiet_at = loop.time()
    feed.push("c", {"users": None})
    await waiting
    assert loop.time() - quiet_at < 0.2  # after a quiet interval: at once


def _now() -> datetime:
    return datetime.now(UTC)
