"""Rate limiting per credential: a token bucket per caller, 429 with Retry-After in the route
family's envelope; in-process by default, in Redis (real, at 127.0.0.1:6379) when configured.

Bucket arithmetic uses a fake monotonic clock; the app tests use their own app with limiting
on (the shared `client` fixture has it off).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.conftest import FIXED_NOW, TEST_JWT_SECRET
from tests.fixtures.factories import add_institution, add_user
from usagegraph.app import create_app
from usagegraph.auth.api_keys import create_api_key
from usagegraph.auth.middleware import caller_key
from usagegraph.auth.principal import Principal
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import session_factory
from usagegraph.http.rate_limit import (
    Decision,
    MemoryRateLimiter,
    RedisRateLimiter,
    create_rate_limiter,
)
from usagegraph.settings import RateLimit, Settings

REDIS_URL = "redis://127.0.0.1:6379/0"
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
# Serving fails fast (0.5 s) to local limits; tests of Redis semantics must not fail over
# because a loaded CI machine answered slowly, so they wait this long.
PATIENT = 10.0
ACME = "65f1c0ffee0000000000000a"
GLOBEX = "65f1c0ffee0000000000000b"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refused(seconds: int) -> Decision:
    return Decision(allowed=False, retry_after_seconds=seconds)


ALLOWED = Decision(allowed=True)


# --- the bucket, in process ---


async def test_a_full_bucket_allows_the_burst_then_refuses() -> None:
    """60/min = 1 token a second, burst 3: three at once pass, the fourth waits 1 s."""
    limiter = MemoryRateLimiter(RateLimit(per_minute=60, burst=3), clock=FakeClock())
    decisions = [await limiter.take("user:1") for _ in range(4)]
    assert decisions == [ALLOWED, ALLOWED, ALLOWED, refused(1)]


async def test_the_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(RateLimit(per_minute=60, burst=3), clock=clock)
    for _ in range(3):
        await limiter.take("user:1")
    clock.now += 2.5  # 2.5 tokens back
    assert [await limiter.take("user:1") for _ in range(3)] == [ALLOWED, ALLOWED, refused(1)]
    clock.now += 3600  # an hour idle: full again, but never above the burst of 3
    decisions = [await limiter.take("user:1") for _ in range(4)]
    assert decisions == [ALLOWED, ALLOWED, ALLOWED, refused(1)]


async def test_retry_after_is_the_whole_seconds_until_a_token_is_back() -> None:
    """6/min = 0.1 token a second, burst 1: empty needs 10 s; after 4 s (0.4), 6 s more."""
    clock = FakeClock()
    limiter = MemoryRateLimiter(RateLimit(per_minute=6, burst=1), clock=clock)
    assert await limiter.take("k") == ALLOWED
    assert await limiter.take("k") == refused(10)
    clock.now += 4
    assert await limiter.take("k") == refused(6)
    clock.now += 5.5  # 0.95 token: 0.05 missing = 0.5 s, rounded up to 1
    assert await limiter.take("k") == refused(1)
    clock.now += 0.5
    assert await limiter.take("k") == ALLOWED


async def test_each_key_has_its_own_bucket() -> None:
    limiter = MemoryRateLimiter(RateLimit(per_minute=60, burst=1), clock=FakeClock())
    assert await limiter.take("user:1") == ALLOWED
    assert await limiter.take("user:1") == refused(1)
    assert await limiter.take("user:2") == ALLOWED
    assert await limiter.take("institution:1") == ALLOWED


async def test_the_least_recently_seen_bucket_is_forgotten_beyond_the_bound() -> None:
    limiter = MemoryRateLimiter(RateLimit(per_minute=60, burst=1), clock=FakeClock(), max_buckets=2)
    for key in ("a", "b", "c"):  # "a" is dropped when "c" arrives
        await limiter.take(key)
    assert await limiter.take("c") == refused(1)
    assert await limiter.take("a") == ALLOWED  # a fresh bucket


def test_caller_keys_are_the_identity_the_credential_resolved_to() -> None:
    scope: dict[str, Any] = {"client": ("203.0.113.7", 5555)}
    user = Principal.for_user(42, "user", frozenset(), {})
    assert caller_key(user, scope) == "user:42"
    assert caller_key(Principal.for_institution(ACME), scope) == f"institution:{ACME}"
    assert caller_key(Principal.anonymous(), scope) == "ip:203.0.113.7"
    assert caller_key(Principal.anonymous(rejection="token expired"), scope) == "ip:203.0.113.7"
    assert caller_key(None, {"client": None}) == "ip:unknown"


def _settings(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)


async def test_the_limiter_follows_the_settings(settings: Settings) -> None:
    assert create_rate_limiter(_settings(settings, rate_limit=RateLimit(per_minute=0))) is None
    local = create_rate_limiter(_settings(settings, rate_limit=RateLimit()))
    assert isinstance(local, MemoryRateLimiter)
    shared = create_rate_limiter(_settings(settings, rate_limit=RateLimit(), redis_url=REDIS_URL))
    assert isinstance(shared, RedisRateLimiter)
    await shared.close()


# --- the bucket, in Redis ---


@pytest.fixture
async def raw_redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(raw_redis: Redis) -> AsyncIterator[str]:
    """A key prefix unique to this test; only its own keys are deleted afterwards."""
    unique = f"usagegraph-test:{uuid.uuid4().hex}:"
    yield unique
    keys = [key async for key in raw_redis.scan_iter(match=unique + "*")]
    if keys:
        await raw_redis.delete(*keys)


async def test_redis_buckets_allow_the_burst_then_refuse(prefix: str) -> None:
    limiter = RedisRateLimiter(
        REDIS_URL, RateLimit(per_minute=60, burst=3), prefix=prefix, timeout_seconds=PATIENT
    )
    try:
        decisions = [await limiter.take("user:1") for _ in range(4)]
        assert decisions == [ALLOWED, ALLOWED, ALLOWED, refused(1)]
        assert await limiter.take("user:2") == ALLOWED
    finally:
        await limiter.close()


async def test_workers_share_a_redis_bucket(prefix: str) -> None:
    """Two limiters (two workers) on one Redis: together they get one burst of 2."""
    limit = RateLimit(per_minute=6, burst=2)
    one = RedisRateLimiter(REDIS_URL, limit, prefix=prefix, timeout_seconds=PATIENT)
    two = RedisRateLimiter(REDIS_URL, limit, prefix=prefix, timeout_seconds=PATIENT)
    try:
        assert await one.take("user:7") == ALLOWED
        assert await two.take("user:7") == ALLOWED
        # Empty: 1 token at 0.1 a second is 10 s (a few ms have passed: still 10 whole seconds).
        assert await one.take("user:7") == refused(10)
        assert await two.take("user:7") == refused(10)
    finally:
        await one.close()
        await two.close()


async def test_a_redis_bucket_refills_and_expires_once_full(prefix: str, raw_redis: Redis) -> None:
    """6000/min = 100 tokens a second: an empty bucket of 1 is back after 10 ms, and a key
    lives only until its bucket would be full again (plus a second)."""
    limiter = RedisRateLimiter(
        REDIS_URL, RateLimit(per_minute=6000, burst=1), prefix=prefix, timeout_seconds=PATIENT
    )
    try:
        assert await limiter.take("k") == ALLOWED
        assert (await limiter.take("k")).allowed is False
        await asyncio.sleep(0.05)
        assert await limiter.take("k") == ALLOWED
        assert 0 < await raw_redis.pttl(prefix + "k") <= 1010
    finally:
        await limiter.close()


async def test_an_unreachable_redis_falls_back_to_local_buckets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis outage never refuses a request by itself, nor lets everyone through."""
    limiter = RedisRateLimiter(DEAD_REDIS_URL, RateLimit(per_minute=60, burst=2))
    try:
        with caplog.at_level(logging.WARNING, logger="usagegraph.http.redis_guard"):
            decisions = [await limiter.take("user:1") for _ in range(3)]
    finally:
        await limiter.close()
    assert decisions == [ALLOWED, ALLOWED, refused(1)]
    messages = [r.getMessage() for r in caplog.records if r.name == "usagegraph.http.redis_guard"]
    assert len(messages) == 1  # then Redis is skipped for a while: one warning, not three
    assert messages[0].startswith("Redis rate limiter failed")


# --- through the app ---


@dataclasses.dataclass(frozen=True)
class People:
    ada: int
    bob: int
    acme_keys: tuple[str, str]
    globex_key: str


@pytest.fixture
async def people(engine: AsyncEngine) -> People:
    await add_institution(engine, institution_id=ACME, name="Acme")
    await add_institution(engine, institution_id=GLOBEX, name="Globex")
    ada = await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"})
    bob = await add_user(engine, email="bob@acme.edu", member_of={ACME: "user"})
    async with session_factory(engine)() as session, session.begin():
        _row, first = await create_api_key(session, ACME)
        _row, second = await create_api_key(session, ACME)
        _row, globex = await create_api_key(session, GLOBEX)
    return People(ada, bob, (first, second), globex)


async def _limited_app(settings: Settings, limit: RateLimit) -> Starlette:
    return create_app(_settings(settings, rate_limit=limit), clock=lambda: FIXED_NOW)


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[Starlette]:
    """The real app with 6 requests a minute and a burst of 2 per caller."""
    app = await _limited_app(settings, RateLimit(per_minute=6, burst=2))
    async with app.router.lifespan_context(app):
        yield app


def _client(app: Starlette, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _bearer(user_id: int) -> dict[str, str]:
    # A fresh token each time: the bucket is the user's, not the token's.
    return {"Authorization": f"Bearer {mint_token(user_id, TEST_JWT_SECRET)}"}


MESSAGE = "Too many requests; retry after 10 seconds"


@pytest.mark.parametrize(
    ("family", "method", "path", "body"),
    [
        ("legacy", "GET", "/api/user/usage-history?instanceId=personal", None),
        ("legacy", "POST", "/api/admin/histories/charts/user-stats", {}),
        ("coded", "GET", "/auth/account/credits", None),
        ("clients", "GET", "/api/v1/clients/acme-main/history", None),
        ("graphql", "POST", "/graphql", {"query": "{ viewer { kind } }"}),
        ("coded", "GET", "/v1/billing/usage-history", None),
    ],
)
async def test_the_third_request_in_a_burst_of_two_is_429_in_the_familys_envelope(
    limited: Starlette, people: People, family: str, method: str, path: str, body: Any
) -> None:
    """6/min, burst 2: two pass, the third waits 10 s (1 token at 0.1 a second)."""
    token = mint_token(people.ada, TEST_JWT_SECRET)
    headers = (
        {"X-API-Key": people.acme_keys[0]}
        if path.startswith("/v1/")
        else {"x-access-token": token, "Authorization": f"Bearer {token}"}
    )
    async with _client(limited) as http:
        for _ in range(2):
            response = await http.request(method, path, headers=headers, json=body)
            assert response.status_code != 429
        response = await http.request(method, path, headers=headers, json=body)
    request_id = response.headers["x-request-id"]
    assert response.status_code == 429
    assert response.headers["retry-after"] == "10"
    assert response.json() == _rate_limited_body(family, request_id)


def _rate_limited_body(family: str, request_id: str) -> dict:
    if family == "legacy":
        return {"success": False, "message": MESSAGE}
    if family == "clients":
        return {"error": MESSAGE, "request_id": request_id}
    if family == "graphql":
        extensions = {"code": "RATE_LIMITED", "requestId": request_id}
        return {"errors": [{"message": MESSAGE, "extensions": extensions}]}
    return {
        "error": {"code": "RATE_LIMITED", "message": MESSAGE},
        "meta": {"request_id": request_id},
    }


async def _statuses(http: httpx.AsyncClient, headers_list: list[dict[str, str]]) -> list[int]:
    statuses = []
    for headers in headers_list:
        response = await http.get("/auth/account/credits", headers=headers)
        statuses.append(response.status_code)
    return statuses


async def test_a_users_tokens_share_one_bucket_and_users_do_not_share(
    limited: Starlette, people: People
) -> None:
    async with _client(limited) as http:
        ada = await _statuses(http, [_bearer(people.ada) for _ in range(3)])
        bob = await _statuses(http, [_bearer(people.bob) for _ in range(3)])
    assert ada == [200, 200, 429]
    assert bob == [200, 200, 429]


async def test_an_institutions_keys_share_one_bucket(limited: Starlette, people: People) -> None:
    path = "/v1/billing/usage-history"
    first, second = people.acme_keys
    async with _client(limited) as http:
        statuses = [
            (await http.get(path, headers={"X-API-Key": key})).status_code
            for key in (first, second, first)
        ]
        globex = (await http.get(path, headers={"X-API-Key": people.globex_key})).status_code
    assert statuses[:2] != [429, 429]
    assert statuses[2] == 429
    assert globex != 429


async def test_anonymous_callers_are_limited_by_address(limited: Starlette) -> None:
    """Refused credentials count as anonymous: the address is the bucket either way."""
    garbage = {"Authorization": "Bearer not.a.token"}
    async with _client(limited, "198.51.100.1") as first, _client(limited, "198.51.100.2") as other:
        assert await _statuses(first, [{}, garbage, {}]) == [401, 401, 429]
        assert await _statuses(other, [{}]) == [401]


async def test_probes_are_never_limited(limited: Starlette) -> None:
    async with _client(limited) as http:
        for _ in range(5):
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 200


async def test_zero_per_minute_turns_limiting_off(
    client: httpx.AsyncClient, people: People
) -> None:
    """The shared `client` fixture's settings: per_minute 0."""
    statuses = await _statuses(client, [_bearer(people.ada) for _ in range(150)])
    assert set(statuses) == {200}


async def test_the_app_limits_through_redis_when_configured(
    settings: Settings, people: People, prefix: str
) -> None:
    app = create_app(
        _settings(settings, rate_limit=RateLimit(per_minute=6, burst=2), redis_url=REDIS_URL),
        clock=lambda: FIXED_NOW,
    )
    async with app.router.lifespan_context(app):
        limiter = app.state.rate_limiter
        assert isinstance(limiter, RedisRateLimiter)
        limiter.prefix = prefix  # this test's keys only
        async with _client(app) as http:
            statuses = await _statuses(http, [_bearer(people.ada) for _ in range(3)])
        client = Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=prefix + "*")]
        finally:
            await client.aclose()
    assert statuses == [200, 200, 429]
    assert keys == [f"{prefix}user:{people.ada}".encode()]
