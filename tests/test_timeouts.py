"""Request timeouts: a request still running after its budget is answered 503 and its work is
cancelled, so a slow query cannot pin a worker or a database connection.

The slow work is a test-only route running a deliberately slow query (PostgreSQL: pg_sleep;
SQLite: a recursive count), mounted in front of the real app's routes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import FIXED_NOW
from tests.databases import ADMIN_URL_VAR, DEFAULT_ADMIN_URL, TestDatabase
from usagegraph.app import create_app
from usagegraph.auth.resolve import Caller
from usagegraph.db.engine import create_engine
from usagegraph.outages import Unavailability, classify
from usagegraph.settings import Settings

BUDGET_SECONDS = 0.5
TIMEOUT_MESSAGE = "The request took too long and was cancelled; try again later"
MARKER = "usagegraph_slow_test_marker"


def slow_query(backend: str, seconds: float) -> str:
    """A query that runs for about `seconds` (SQLite: roughly, at ~3 million steps a second
    on this machine's class of hardware; the tests only rely on it being slow)."""
    if backend == "postgresql":
        return f"SELECT pg_sleep({seconds}), '{MARKER}'"
    steps = int(seconds * 3_000_000)
    return (
        f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {steps}) "
        "SELECT count(*) FROM c"
    )


def _slow_route(path: str, backend: str) -> Route:
    async def slow(request: Request) -> JSONResponse:
        async with request.app.state.sessions() as session:
            await session.execute(text(slow_query(backend, 5)))
        return JSONResponse({"finished": True})

    return Route(path, slow, methods=["GET"])


SLOW_PATHS = {
    "legacy": "/api/user/slow-test",
    "coded": "/auth/slow-test",
    "clients": "/api/v1/clients/slow-test/history-slow",
}


@pytest.fixture
async def slow_app(settings: Settings, database: TestDatabase) -> AsyncIterator[Starlette]:
    """The real app with a 0.5 s budget and slow test-only routes in front of its own."""
    budgeted = dataclasses.replace(settings, request_timeout_seconds=BUDGET_SECONDS)
    app = create_app(budgeted, clock=lambda: FIXED_NOW)
    for path in SLOW_PATHS.values():
        app.router.routes.insert(0, _slow_route(path, database.backend))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(slow_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=slow_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def _timeout_body(family: str, request_id: str) -> dict:
    if family == "legacy":
        return {"success": False, "message": TIMEOUT_MESSAGE}
    if family == "clients":
        return {"error": TIMEOUT_MESSAGE, "request_id": request_id}
    if family == "graphql":
        extensions = {"code": "SERVICE_UNAVAILABLE", "requestId": request_id}
        return {"errors": [{"message": TIMEOUT_MESSAGE, "extensions": extensions}]}
    return {
        "error": {"code": "SERVICE_UNAVAILABLE", "message": TIMEOUT_MESSAGE},
        "meta": {"request_id": request_id},
    }


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 3) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "the slow work was not cancelled"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("family", sorted(SLOW_PATHS))
async def test_a_slow_request_is_answered_503_at_its_deadline(
    http: httpx.AsyncClient, family: str
) -> None:
    started = time.monotonic()
    response = await http.get(SLOW_PATHS[family])
    elapsed = time.monotonic() - started
    # Answered at the 0.5 s budget (not after the query's 5 s, nor the minutes on SQLite).
    assert BUDGET_SECONDS <= elapsed < BUDGET_SECONDS + 1.0
    request_id = response.headers["x-request-id"]
    assert (response.status_code, response.json()) == (503, _timeout_body(family, request_id))


async def test_the_slow_work_is_cancelled_and_its_connection_given_back(
    http: httpx.AsyncClient, slow_app: Starlette, database: TestDatabase
) -> None:
    assert (await http.get(SLOW_PATHS["coded"])).status_code == 503
    pool = slow_app.state.engine.pool

    async def released() -> bool:
        return pool.checkedout() == 0

    # SQLite interrupts the statement itself; PostgreSQL's is cancelled with its connection.
    await _eventually(released)
    if database.backend == "postgresql":

        async def gone_from_the_server() -> bool:
            return not await _running_slow_queries(database)

        await _eventually(gone_from_the_server)
    # The app is as good as before: a normal request is served at once.
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/auth/account/credits")).status_code == 401


async def _running_slow_queries(database: TestDatabase) -> list[str]:
    connection = await asyncpg.connect(os.environ.get(ADMIN_URL_VAR, DEFAULT_ADMIN_URL))
    try:
        rows = await connection.fetch(
            "SELECT query FROM pg_stat_activity WHERE datname = $1 AND state = 'active' "
            "AND query LIKE $2 AND pid <> pg_backend_pid()",
            database.url.database,
            f"%{MARKER}%",
        )
    finally:
        await connection.close()
    return [row["query"] for row in rows]


async def test_resolving_the_caller_is_inside_the_budget(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The principal middleware reads the database too; a hang there is a 503 as well (here
    on /graphql, in a GraphQL-shaped body)."""

    async def hang(*_args: object, **_kwargs: object) -> Caller:
        await asyncio.sleep(30)
        raise AssertionError("not cancelled")

    monkeypatch.setattr("usagegraph.auth.middleware.resolve_caller", hang)
    started = time.monotonic()
    response = await http.post(
        "/graphql", json={"query": "{ viewer { kind } }"}, headers={"Authorization": "Bearer x.y.z"}
    )
    assert time.monotonic() - started < BUDGET_SECONDS + 1.0
    request_id = response.headers["x-request-id"]
    assert (response.status_code, response.json()) == (503, _timeout_body("graphql", request_id))


# --- the statement budget, enforced by the database itself ---


async def test_the_engine_gives_every_statement_the_request_budget(
    database: TestDatabase, engine: AsyncEngine
) -> None:
    """Even without the request deadline, the database stops a statement over the budget:
    PostgreSQL through statement_timeout, SQLite through its progress handler."""
    budgeted = create_engine(database.url, statement_timeout_seconds=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the driver's own error
            async with budgeted.connect() as connection:
                await connection.execute(text(slow_query(database.backend, 5)))
        assert 0.3 <= time.monotonic() - started < 5  # not 30 s, not never
        assert classify(caught.value) is Unavailability.TIMEOUT
        async with budgeted.connect() as connection:  # the connection is usable again
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await budgeted.dispose()


async def test_an_engine_without_a_budget_lets_statements_run(
    database: TestDatabase, engine: AsyncEngine
) -> None:
    """Migrations and the command line get no budget: the same query, given about 1 s of work,
    is interrupted at 0.3 s on a budgeted engine and finishes on an unbudgeted one."""
    query = slow_query(database.backend, 1)
    assert await _outcome(database, 0.3, query) == Unavailability.TIMEOUT
    assert await _outcome(database, None, query) == "finished"


async def _outcome(database: TestDatabase, budget: float | None, query: str) -> str:
    candidate = create_engine(database.url, statement_timeout_seconds=budget)
    try:
        async with candidate.connect() as connection:
            await connection.execute(text(query))
    except Exception as exc:
        return str(classify(exc) or repr(exc))
    finally:
        await candidate.dispose()
    return "finished"


async def test_waiting_for_another_writers_lock_is_bounded_by_the_budget(
    database: TestDatabase, engine: AsyncEngine
) -> None:
    """Another connection holds the users table (PostgreSQL: an exclusive table lock; SQLite:
    the write lock); a budgeted write gives up at the 0.3 s budget, not after SQLite's usual
    30 s busy timeout or never (PostgreSQL's default lock wait)."""
    budgeted = create_engine(database.url, statement_timeout_seconds=0.3)
    write = text("DELETE FROM users WHERE id = -1")
    try:
        async with engine.connect() as holder:
            if database.backend == "postgresql":
                await holder.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
            else:
                await holder.execute(write)  # the driver begins a transaction: the write lock
            started = time.monotonic()
            with pytest.raises(Exception) as caught:  # noqa: PT011 - the driver's own error
                async with budgeted.connect() as connection:
                    await connection.execute(write)
            assert 0.25 <= time.monotonic() - started < 5  # not 30 s, not never
            assert classify(caught.value) is not None  # a 503, whichever way it is classified
            await holder.rollback()
    finally:
        await budgeted.dispose()


async def test_a_pool_with_no_free_connection_is_busy_not_down(database: TestDatabase) -> None:
    """Overload (every pooled connection taken for the pool's whole wait) is told apart from
    an outage: both answer 503, with their own message and log line."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import AsyncAdaptedQueuePool

    tiny = create_async_engine(
        database.url, poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    try:
        async with tiny.connect() as held:
            await held.execute(text("SELECT 1"))
            with pytest.raises(Exception) as caught:  # noqa: PT011 - SQLAlchemy's pool timeout
                async with tiny.connect():
                    pass
        assert classify(caught.value) is Unavailability.BUSY
    finally:
        await tiny.dispose()
