"""Fixtures shared by the whole suite: one backend fixture runs every DB test on both databases."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.databases import (
    BACKENDS,
    TestDatabase,
    create_empty_database,
    drop_database,
    reset_tables,
)
from usagegraph.app import create_app
from usagegraph.db.engine import create_engine
from usagegraph.db.schema_version import upgrade_to_head
from usagegraph.settings import RateLimit, Settings, WebhookSettings


@pytest.fixture(scope="session", params=BACKENDS)
def migrated_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestDatabase]:
    """One throwaway database per backend for the whole run, migrated to head once."""
    database = create_empty_database(request.param, tmp_path_factory.mktemp("db"))

    async def migrate() -> None:
        engine = create_engine(database.url)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(migrate())
    yield database
    drop_database(database)


@pytest.fixture
async def engine(migrated_database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    """An engine on the migrated database, with every table emptied first."""
    engine = create_engine(migrated_database.url)
    await reset_tables(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def database(migrated_database: TestDatabase, engine: AsyncEngine) -> TestDatabase:
    """The migrated, emptied database, for tests that run the CLI or a server against it."""
    return migrated_database


@pytest.fixture(params=BACKENDS)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestDatabase]:
    """A database with no schema at all, for migration and startup tests."""
    database = create_empty_database(request.param, tmp_path)
    yield database
    drop_database(database)


@pytest.fixture
async def own_database(empty_database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    """A migrated database of the test's own, for tests that change its usage partitions
    (schema objects: no other test may share them)."""
    engine = create_engine(empty_database.url)
    await upgrade_to_head(engine)
    yield engine
    await engine.dispose()


TEST_JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
# "Now" for every in-process app: a Wednesday afternoon, so windows can be worked out by hand.
FIXED_NOW = datetime(2026, 5, 20, 15, 30, tzinfo=UTC)


@pytest.fixture
def settings(database: TestDatabase, tmp_path: Path) -> Settings:
    """Settings of a server on the test database (not the embedded default)."""
    return settings_for(database, tmp_path)


def settings_for(database: TestDatabase, tmp_path: Path) -> Settings:
    """Settings of an in-process server on `database`, as every app of the suite runs."""
    return Settings(
        database_url=database.url,
        embedded_database=False,
        jwt_secret=TEST_JWT_SECRET,
        redis_url=None,
        data_dir=tmp_path,
        # Tests make many requests in a row with one token; tests/test_rate_limit.py turns it on.
        rate_limit=RateLimit(per_minute=0),
        # In-process apps run no webhook deliverer (tests/webhooks/ run theirs explicitly);
        # receivers in tests listen on loopback.
        webhooks=WebhookSettings(deliver=False, allow_private=True),
    )


@asynccontextmanager
async def client_of(
    settings: Settings,
    *,
    changes: Callable[[Starlette], Starlette] = lambda application: application,
    **transport: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on a real app built from `settings` (lifespan started, clock at FIXED_NOW),
    for tests that change a setting; `changes` may add to the app (a test-only route)."""
    application = changes(create_app(settings, clock=lambda: FIXED_NOW))
    async with application.router.lifespan_context(application):
        asgi = httpx.ASGITransport(app=application, **transport)
        async with httpx.AsyncClient(transport=asgi, base_url="http://test") as http:
            yield http


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    """The real ASGI app, lifespan started, whose clock reads FIXED_NOW."""
    application = create_app(settings, clock=lambda: FIXED_NOW)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the real app (lifespan, middleware), without a network hop."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def with_read_path(settings: Settings, compiled: bool) -> Settings:
    """The settings with compiled reads on or off (USAGEGRAPH_GRAPHQL_COMPILE)."""
    graphql = dataclasses.replace(settings.graphql, compile_reads=compiled)
    return dataclasses.replace(settings, graphql=graphql)
