"""Throwaway test databases on SQLite and PostgreSQL, created and dropped by the fixtures.

One place decides the backend; tests receive a URL and an engine and never ask which one.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from usagegraph.db.models import Base

BACKENDS = ("sqlite", "postgresql")
ADMIN_URL_VAR = "USAGEGRAPH_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_VAR = "USAGEGRAPH_TEST_REQUIRE_POSTGRES"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class TestDatabase:
    """A database a test may use, and how to reach it from a subprocess."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    backend: str
    url: URL

    @property
    def url_string(self) -> str:
        return self.url.render_as_string(hide_password=False)

    def env(self, **extra: str) -> dict[str, str]:
        """An environment for running the `usagegraph` command against this database."""
        env = {**os.environ, "USAGEGRAPH_DATABASE_URL": self.url_string}
        env.update(extra)
        return env


def _admin_dsn() -> str:
    return os.environ.get(ADMIN_URL_VAR, DEFAULT_ADMIN_URL)


async def _postgres_reachable() -> str | None:
    try:
        connection = await asyncpg.connect(_admin_dsn(), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return None


def skip_or_fail_without_postgres() -> None:
    """Skip PostgreSQL tests on a machine without it, unless CI demands them."""
    problem = asyncio.run(_postgres_reachable())
    if problem is None:
        return
    message = f"PostgreSQL not reachable at {_admin_dsn()} ({problem})"
    if os.environ.get(REQUIRE_POSTGRES_VAR) == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


async def _create_postgres_database(name: str) -> None:
    connection = await asyncpg.connect(_admin_dsn())
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop_postgres_database(name: str) -> None:
    connection = await asyncpg.connect(_admin_dsn())
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def create_empty_database(backend: str, tmp_dir: Path) -> TestDatabase:
    """A new database with no tables: a file for SQLite, a uniquely named one on PostgreSQL."""
    name = f"usagegraph_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        return TestDatabase(backend, make_url(f"sqlite+aiosqlite:///{tmp_dir / name}.sqlite3"))
    skip_or_fail_without_postgres()
    asyncio.run(_create_postgres_database(name))
    admin = make_url(_admin_dsn())
    url = admin.set(drivername="postgresql+asyncpg", database=name)
    return TestDatabase(backend, url)


def drop_database(database: TestDatabase) -> None:
    if database.backend == "postgresql":
        asyncio.run(_drop_postgres_database(database.url.database or ""))
    elif database.url.database:
        for suffix in ("", "-wal", "-shm"):
            Path(database.url.database + suffix).unlink(missing_ok=True)


async def reset_tables(engine: AsyncEngine) -> None:
    """Empty every table (ids restart), far cheaper than a new database per test."""
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await connection.execute(text(f"DELETE FROM {table}"))
