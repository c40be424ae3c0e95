"""GET /api/user/usage-history (CONTRACT.md section 1, seed 000) through the real app.

Data: tests/fixtures/usage_history_data.py; "now" is Wednesday 2026-05-20 15:30 UTC. Every
expected number below is worked out by hand from that fixture.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from redis.asyncio import Redis
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.conftest import FIXED_NOW, TEST_JWT_SECRET
from tests.fixtures.usage_history_data import (
    ACME,
    OTHER,
    UNKNOWN,
    People,
    Use,
    add_usage,
    at,
    seed,
    token_headers,
)
from usagegraph.app import create_app
from usagegraph.cache import MemoryCache, RedisCache
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Membership
from usagegraph.settings import Settings

PATH = "/api/user/usage-history"
REDIS_URL = "redis://127.0.0.1:6379/0"
NO_ACCESS = {"success": False, "message": "You do not have access to this instance"}
MALFORMED = {
    "success": False,
    "message": "instanceId must be 'personal' or a 24-character hexadecimal institution id",
}


async def _get(
    client: httpx.AsyncClient, user_id: int | None, **params: str
) -> tuple[int, dict[str, Any]]:
    headers = token_headers(user_id) if user_id is not None else {}
    response = await client.get(PATH, params=params, headers=headers)
    return response.status_code, response.json()


def _bucket(start: str, credits: float, messages: int, users: int) -> dict[str, Any]:
    return {"start": start, "credits": credits, "messages": messages, "users": users}


def _zero(day: int) -> dict[str, Any]:
    return _bucket(f"2026-05-{day:02d}T00:00:00.000Z", 0, 0, 0)


def _starts(body: dict[str, Any]) -> list[str]:
    return [bucket["start"] for bucket in body["buckets"]]


# --- the documented body ---


async def test_member_own_week_daily_is_exactly_the_seed_shape(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await seed(engine)
    status, body = await _get(client, people.member, instanceId=ACME, window="7")
    assert status == 200
    # ada in ACME, 14..20 May: 14 May 00:00 (1); 18 May failed (0.75); 19 May only forgotten;
    # 20 May 2.5 with 2 messages. 13 May 23:59:59 and 21 May 00:00 are outside.
    assert body == {
        "success": True,
        "instanceId": ACME,
        "window": 7,
        "interval": "daily",
        "scope": "own",
        "currency": "eur",
        "buckets": [
            _bucket("2026-05-14T00:00:00.000Z", 1, 1, 1),
            _zero(15),
            _zero(16),
            _zero(17),
            _bucket("2026-05-18T00:00:00.000Z", 0.75, 1, 1),
            _zero(19),
            _bucket("2026-05-20T00:00:00.000Z", 2.5, 2, 1),
        ],
        "totals": {"credits": 4.25, "messages": 4, "users": 1},  # 1 + 0.75 + 2.5
    }


async def test_credits_are_exact_json_numbers(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await seed(engine)
    response = await client.get(
        PATH, params={"instanceId": ACME, "window": "7"}, headers=token_headers(people.member)
    )
    assert response.headers["content-type"] == "application/json"
    assert b'"totals":{"credits":4.25,"messages":4,"users":1}' in response.content


async def test_admin_scope_all_sums_every_member_and_counts_distinct_users(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await seed(engine)
    status, body = await _get(client, people.admin, instanceId=ACME, window="7", scope="all")
    assert status == 200
    assert body["scope"] == "all"
    assert body["buckets"] == [
        _bucket("2026-05-14T00:00:00.000Z", 1, 1, 1),
        _zero(15),
        _zero(16),
        _zero(17),
        _bucket("2026-05-18T00:00:00.000Z", 0.75, 1, 1),
        _bucket("2026-05-19T00:00:00.000Z", 1.5, 1, 1),  # bob; ada's forgotten 5 is not here
        _bucket("2026-05-20T00:00:00.000Z", 2.75, 3, 2),  # ada 2.5 (2) + admin 0.25 (1)
    ]
    # 1 + 0.75 + 1.5 + 2.75 = 6 credits; 6 messages; ada, bob, admin = 3 users (not 1+1+1+2)
    assert body["totals"] == {"credits": 6, "messages": 6, "users": 3}


async def test_week_buckets_start_monday_and_only_count_usage_inside_the_window(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await seed(engine)
    _, body = await _get(client, people.member, instanceId=ACME, window="14", interval="weekly")
    assert (body["window"], body["interval"]) == (14, "weekly")
    # Window 7..20 May. Week of Mon 4 May begins before it: the 9 credits of 6 May are out.
    assert body["buckets"] == [
        _bucket("2026-05-04T00:00:00.000Z", 0.5, 1, 1),  # 7 May 00:00
        _bucket("2026-05-11T00:00:00.000Z", 5, 2, 1),  # 13 May 23:59:59 (4) + 14 May (1)
        _bucket("2026-05-18T00:00:00.000Z", 3.25, 3, 1),  # 0.75 + 2.5 (1 + 2 messages)
    ]
    assert body["totals"] == {"credits": 8.75, "messages": 6, "users": 1}


async def test_month_buckets_start_on_the_first(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await seed(engine)
    _, body = await _get(client, people.member, instanceId=ACME, window="90", interval="monthly")
    # Window 20 Feb .. 20 May; 19 Feb 23:00 (10) is out, 20 Feb 00:00 (2) in.
    assert body["buckets"] == [
        _bucket("2026-02-01T00:00:00.000Z", 2, 1, 1),
        _bucket("2026-03-01T00:00:00.000Z", 0, 0, 0),
        _bucket("2026-04-01T00:00:00.000Z", 1, 1, 1),  # 30 Apr 23:59:59
        # 1 May 1 + 6 May 9 + 7 May 0.5 + 13 May 4 + 14 May 1 + 18 May 0.75 + 20 May 2.5
        _bucket("2026-05-01T00:00:00.000Z", 18.75, 8, 1),
    ]
    assert body["totals"] == {"credits": 21.75, "messages": 10, "users": 1}


# --- window and interval fallbacks ---


async def test_default_window_is_30_days_daily(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await seed(engine)
    _, body = await _get(client, people.member, instanceId=ACME)
    assert (body["window"], body["interval"], body["scope"]) == (30, "daily", "own")
    assert len(body["buckets"]) == 30
    assert _starts(body)[0] == "2026-04-21T00:00:00.000Z"
    assert _starts(body)[-1] == "2026-05-20T00:00:00.000Z"
    # 30 Apr 1 + 1 May 1 + 6 May 9 + 7 May 0.5 + 13 May 4 + 14 May 1 + 18 May 0.75 + 20 May 2.5
    assert body["totals"] == {"credits": 19.75, "messages": 9, "users": 1}


@pytest.mark.parametrize("window", ["8", "0", "-7", "7.0", "1e1", "abc", "", " 7", "+7", "99999"])
async def test_invalid_window_falls_back_to_30(
    engine: AsyncEngine, client: httpx.AsyncClient, window: str
) -> None:
    people = await seed(engine)
    status, body = await _get(client, people.member, instanceId=ACME, window=window)
    assert status == 200
    assert (body["window"], body["interval"], len(body["buckets"])) == (30, "daily", 30)


async def test_long_windows_default_to_weekly(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await seed(engine)
    _, body = await _get(client, people.member, instanceId=ACME, window="90", interval="hourly")
    assert body["interval"] == "weekly"
    # Window from Fri 20 Feb: weeks from Mon 16 Feb to Mon 18 May = 13 weeks later -> 14 buckets
    assert len(body["buckets"]) == 14
    assert body["buckets"][0] == _bucket("2026-02-16T00:00:00.000Z", 2, 1, 1)
    assert _starts(body)[-1] == "2026-05-18T00:00:00.000Z"
    assert body["totals"] == {"credits": 21.75, "messages": 10, "users": 1}

    _, body = await _get(client, people.member, instanceId=ACME, window="180")
    assert body["interval"] == "weekly"
    # Window from Sat 22 Nov 2025: Mon 17 Nov 2025 .. Mon 18 May 2026 = 182 days -> 27 buckets
    assert len(body["buckets"]) == 27
    assert _starts(body)[0] == "2025-11-17T00:00:00.000Z"
    # everything of ada's in ACME except the forgotten 5 and 21 May's 100:
    # 10 + 2 + 1 + 1 + 9 + 0.5 + 4 + 1 + 0.75 + 2.5 = 31.75; 9 single messages + 2
    assert body["totals"] == {"credits": 31.75, "messages": 11, "users": 1}


@pytest.mark.parametrize(
    ("window", "interval", "expected", "buckets"),
    [
        ("7", "Weekly", "daily", 7),  # values are exact
        ("14", "monthly", "monthly", 1),  # 7..20 May all in May
        ("7", "weekly", "weekly", 2),  # 14..20 May: weeks of 11 and 18 May
        ("30", "yearly", "daily", 30),
    ],
)
async def test_interval_is_honoured_or_falls_back(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    window: str,
    interval: str,
    expected: str,
    buckets: int,
) -> None:
    people = await seed(engine)
    _, body = await _get(client, people.member, instanceId=ACME, window=window, interval=interval)
    assert (body["interval"], len(body["buckets"])) == (expected, buckets)


# --- scope ---


@pytest.mark.parametrize(
    ("who", "instance", "scope", "credits"),
    [
        ("member", ACME, "all", 4.25),  # a plain member asking for all gets their own
        ("weak_admin", ACME, "all", 0),  # admin without institutions.edit: own (nothing)
        ("admin", ACME, "own", 0.25),  # admin's own usage
        ("admin", ACME, "everything", 0.25),  # unknown scope: own
        ("admin", "personal", "all", 0),  # personal is always own
        ("super", ACME, "own", 0),  # super's own usage in ACME: none
    ],
)
async def test_scope_falls_back_to_own_and_is_echoed(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    who: str,
    instance: str,
    scope: str,
    credits: float,
) -> None:
    people = await seed(engine)
    status, body = await _get(
        client, getattr(people, who), instanceId=instance, window="7", scope=scope
    )
    assert status == 200
    assert body["scope"] == "own"
    assert body["totals"]["credits"] == credits


async def test_super_sees_all_of_any_institution(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await seed(engine)
    _, body = await _get(client, people.super, instanceId=ACME, window="7", scope="all")
    assert (body["scope"], body["totals"]) == ("all", {"credits": 6, "messages": 6, "users": 3})
    _, body = await _get(client, people.super, instanceId=OTHER, window="7", scope="all")
    assert (body["currency"], body["totals"]) == ("usd", {"credits": 7, "messages": 1, "users": 1})


async def test_personal_is_the_callers_personal_usage_in_wallet_currency(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await seed(engine)
    _, body = await _get(client, people.member, instanceId="personal", window="7")
    assert (body["instanceId"], body["scope"], body["currency"]) == ("personal", "own", "gbp")
    assert body["buckets"][-1] == _bucket("2026-05-20T00:00:00.000Z", 3, 1, 1)
    assert body["totals"] == {"credits": 3, "messages": 1, "users": 1}
    _, body = await _get(client, people.bob, instanceId="personal", window="7")
    assert (body["currency"], body["totals"]["credits"]) == ("usd", 0)  # no wallet: usd


async def test_upper_case_institution_ids_are_accepted_and_echoed_canonically(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await seed(engine)
    status, body = await _get(client, people.member, instanceId=ACME.upper(), window="7")
    assert (status, body["instanceId"], body["totals"]["credits"]) == (200, ACME, 4.25)


# --- errors ---


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {"success": False, "message": "instanceId is required"}),
        ({"instanceId": ""}, {"success": False, "message": "instanceId is required"}),
        ({"instanceId": "Personal"}, MALFORMED),
        ({"instanceId": "a" * 23}, MALFORMED),
        ({"instanceId": "z" * 24}, MALFORMED),
        ({"instanceId": ACME + "0"}, MALFORMED),
    ],
)
async def test_missing_or_malformed_instance_is_400(
    engine: AsyncEngine, client: httpx.AsyncClient, params: dict[str, str], expected: Any
) -> None:
    people = await seed(engine)
    assert await _get(client, people.member, **params) == (400, expected)


async def test_unknown_or_foreign_institution_is_the_same_403(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await seed(engine)
    assert await _get(client, people.outsider, instanceId=ACME) == (403, NO_ACCESS)
    assert await _get(client, people.member, instanceId=UNKNOWN) == (403, NO_ACCESS)
    assert await _get(client, people.member, instanceId=OTHER, scope="all") == (403, NO_ACCESS)
    assert await _get(client, people.super, instanceId=UNKNOWN) == (403, NO_ACCESS)


def _expired_token(user_id: int) -> str:
    past = datetime.now(UTC) - timedelta(hours=2)
    claims = {"sub": str(user_id), "iat": past, "exp": past + timedelta(hours=1)}
    return jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")


async def test_no_valid_token_is_401(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    people = await seed(engine)
    missing = {"success": False, "message": "Authentication required"}
    invalid = {"success": False, "message": "Invalid or expired token"}
    # A JWT in the header /graphql and /auth read: the message names the one this route reads.
    wrong_header = {"success": False, "message": "Send the credential in the x-access-token header"}
    wrong_secret = jwt.encode(
        {"sub": str(people.member), "exp": datetime.now(UTC) + timedelta(hours=1)},
        "another-secret-that-is-long-enough-for-hs256-000",
        algorithm="HS256",
    )
    unknown_user = token_headers(999_999)["x-access-token"]
    cases: list[tuple[dict[str, str], dict[str, Any]]] = [
        ({}, missing),
        (
            {"Authorization": f"Bearer {token_headers(people.member)['x-access-token']}"},
            wrong_header,
        ),
        ({"x-access-token": "not-a-jwt"}, invalid),
        ({"x-access-token": wrong_secret}, invalid),
        ({"x-access-token": _expired_token(people.member)}, invalid),
        ({"x-access-token": unknown_user}, invalid),
    ]
    for headers, expected in cases:
        response = await client.get(PATH, params={"instanceId": ACME}, headers=headers)
        assert (response.status_code, response.json()) == (401, expected), headers
        assert response.headers["www-authenticate"].startswith('Bearer realm="usagegraph"')
    # Authentication is checked before the parameters.
    response = await client.get(PATH)
    assert (response.status_code, response.json()) == (401, missing)


# --- the 60-second cache ---


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    """The real app (lifespan included), for tests that swap its cache."""
    application = create_app(settings, clock=lambda: FIXED_NOW)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# 10 more credits for ada in ACME today, written after a first request was cached.
LATE_USE = (Use("member", ACME, at(5, 20, 11), "10"),)


async def _assert_cache_serves_and_separates(
    engine: AsyncEngine, http: httpx.AsyncClient, people: People
) -> None:
    """Within the TTL a cached payload is served; other callers and scopes get their own."""
    _, before = await _get(http, people.member, instanceId=ACME, window="7")
    assert before["totals"]["credits"] == 4.25
    await add_usage(engine, people, LATE_USE)
    _, again = await _get(http, people.member, instanceId=ACME, window="7")
    assert again == before  # served from the cache: the new 10 credits are not in it
    # Bob's own payload is his (1.5), not ada's.
    _, bob = await _get(http, people.bob, instanceId=ACME, window="7")
    assert (bob["scope"], bob["totals"]["credits"]) == ("own", 1.5)
    # The admin's `all` is computed fresh: 6 + 10 = 16.
    _, admin_all = await _get(http, people.admin, instanceId=ACME, window="7", scope="all")
    assert (admin_all["scope"], admin_all["totals"]["credits"]) == ("all", 16)
    # A member asking for `all` never gets the admin's cached payload: their own cached one.
    _, member_all = await _get(http, people.member, instanceId=ACME, window="7", scope="all")
    assert member_all == before
    # Nor does an admin without institutions.edit: their own (nothing).
    _, weak = await _get(http, people.weak_admin, instanceId=ACME, window="7", scope="all")
    assert (weak["scope"], weak["totals"]["credits"]) == ("own", 0)
    # Another window is another payload: window 14 daily has 8.75 + 10.
    _, fortnight = await _get(http, people.member, instanceId=ACME, window="14")
    assert fortnight["totals"]["credits"] == 18.75


async def test_cached_payload_is_served_within_the_ttl_only_to_its_audience(
    engine: AsyncEngine, http: httpx.AsyncClient
) -> None:
    people = await seed(engine)
    await _assert_cache_serves_and_separates(engine, http, people)


async def test_expired_entry_is_recomputed(
    engine: AsyncEngine, app: Starlette, http: httpx.AsyncClient
) -> None:
    clock = FakeMonotonic()
    await app.state.cache.close()
    app.state.cache = MemoryCache(clock=clock)
    people = await seed(engine)
    _, first = await _get(http, people.member, instanceId=ACME, window="7")
    await add_usage(engine, people, LATE_USE)
    clock.now += 59.9
    _, cached = await _get(http, people.member, instanceId=ACME, window="7")
    assert cached["totals"]["credits"] == first["totals"]["credits"] == 4.25
    clock.now += 0.1  # 60 s after it was stored
    _, fresh = await _get(http, people.member, instanceId=ACME, window="7")
    assert fresh["totals"]["credits"] == 14.25  # 4.25 + 10
    assert fresh["buckets"][-1] == _bucket("2026-05-20T00:00:00.000Z", 12.5, 3, 1)


async def test_cache_never_outlives_access(engine: AsyncEngine, http: httpx.AsyncClient) -> None:
    people = await seed(engine)
    status, _ = await _get(http, people.member, instanceId=ACME, window="7")
    assert status == 200
    async with session_factory(engine)() as session, session.begin():
        await session.execute(delete(Membership).where(Membership.user_id == people.member))
    assert await _get(http, people.member, instanceId=ACME, window="7") == (403, NO_ACCESS)


async def _redis_or_skip() -> Redis:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError as exc:  # redis ConnectionError is an OSError subclass too
        await client.aclose()
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    return client


@pytest.fixture
async def redis_cache() -> AsyncIterator[RedisCache]:
    """A RedisCache under a prefix unique to this test; only its keys are deleted after."""
    raw = await _redis_or_skip()
    # Patient: a slow CI Redis must not turn this into a fallback test.
    cache = RedisCache(
        REDIS_URL, prefix=f"usagegraph-test:{uuid.uuid4().hex}:", timeout_seconds=10.0
    )
    try:
        yield cache
    finally:
        keys = [key async for key in raw.scan_iter(match=cache.prefix + "*")]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()
        await cache.close()


async def test_redis_cache_serves_and_separates_like_the_memory_one(
    engine: AsyncEngine, app: Starlette, http: httpx.AsyncClient, redis_cache: RedisCache
) -> None:
    await app.state.cache.close()
    app.state.cache = redis_cache
    people = await seed(engine)
    await _assert_cache_serves_and_separates(engine, http, people)
    raw = Redis.from_url(REDIS_URL)
    try:
        keys = sorted([k.decode() async for k in raw.scan_iter(match=redis_cache.prefix + "*")])
        own_key = redis_cache.prefix + f"usage-history:v1:{ACME}:7:daily:own:{people.member}:UTC:"
        assert own_key + "2026-05-14T00:00:00+00:00" in keys
        assert 0 < await raw.pttl(keys[0]) <= 60_000
    finally:
        await raw.aclose()


async def test_redis_outage_falls_back_to_computing(
    engine: AsyncEngine,
    app: Starlette,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await app.state.cache.close()
    app.state.cache = RedisCache("redis://127.0.0.1:1/0")  # nothing listens there
    people = await seed(engine)
    try:
        with caplog.at_level(logging.WARNING, logger="usagegraph.cache"):
            status, body = await _get(http, people.member, instanceId=ACME, window="7")
    finally:
        await app.state.cache.close()
    assert (status, body["totals"]["credits"]) == (200, 4.25)
    assert any("Redis cache read failed" in r.getMessage() for r in caplog.records)


async def test_with_the_cache_turned_off_every_request_is_computed(
    engine: AsyncEngine, settings: Settings
) -> None:
    people = await seed(engine)
    uncached = dataclasses.replace(settings, cache_enabled=False)
    application = create_app(uncached, clock=lambda: FIXED_NOW)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            _, before = await _get(client, people.member, instanceId=ACME, window="7")
            await add_usage(engine, people, LATE_USE)
            _, after = await _get(client, people.member, instanceId=ACME, window="7")
    assert (before["totals"]["credits"], after["totals"]["credits"]) == (4.25, 14.25)
