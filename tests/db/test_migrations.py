"""Migrations build the whole schema from nothing, on both backends, and status reports it."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from tests.databases import TestDatabase
from usagegraph.db.engine import create_engine
from usagegraph.db.models import Base
from usagegraph.db.partitions import is_partition_table
from usagegraph.db.schema_version import (
    SchemaBehindError,
    ensure_schema,
    migrate,
    schema_status,
    upgrade_to_head,
)


async def _table_names(database: TestDatabase) -> set[str]:
    engine = create_engine(database.url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_from_empty_creates_every_model_table(empty_database: TestDatabase) -> None:
    engine = create_engine(empty_database.url)
    try:
        before = await schema_status(engine)
        after = await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    assert before.current is None
    assert after.up_to_date
    tables = await _table_names(empty_database)
    assert {table.name for table in Base.metadata.sorted_tables} <= tables
    assert "alembic_version" in tables


def _not_a_partition(name: str | None, kind: str, _parents: object) -> bool:
    return not (kind == "table" and is_partition_table(name))


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings(
    "ignore:autogenerate skipping metadata-specified expression-based index"
)
async def test_models_match_the_migrations(empty_database: TestDatabase) -> None:
    """Autogenerate finds nothing to do: the models and the migration files agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(empty_database.url)
    try:
        await upgrade_to_head(engine)
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"include_name": _not_a_partition}),
                    Base.metadata,
                )
            )
    finally:
        await engine.dispose()
    assert diff == []


async def test_ensure_schema_refuses_an_empty_database_and_names_the_fix(
    empty_database: TestDatabase,
) -> None:
    engine = create_engine(empty_database.url)
    try:
        with pytest.raises(SchemaBehindError, match="usagegraph migrate"):
            await ensure_schema(engine, migrate=False)
    finally:
        await engine.dispose()


async def test_ensure_schema_migrates_when_allowed(empty_database: TestDatabase) -> None:
    engine = create_engine(empty_database.url)
    try:
        status = await ensure_schema(engine, migrate=True)
        again = await ensure_schema(engine, migrate=False)
    finally:
        await engine.dispose()
    assert status.up_to_date
    assert again.up_to_date


async def test_rollup_tables_keep_room_for_in_page_updates(empty_database: TestDatabase) -> None:
    """PostgreSQL: every rollup table is created with fillfactor 70 (migration 0010), as the
    models declare, so a usage write's increments stay on their pages."""
    from sqlalchemy import text

    from usagegraph.db.models.usage_rollups import ROLLUPS

    if empty_database.backend != "postgresql":
        pytest.skip("fillfactor is a PostgreSQL storage parameter")
    engine = create_engine(empty_database.url)
    try:
        await upgrade_to_head(engine)
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:names)"),
                {"names": [model.__tablename__ for model in ROLLUPS]},
            )
            options = {name: reloptions for name, reloptions in rows}
    finally:
        await engine.dispose()
    assert options == {model.__tablename__: ["fillfactor=70"] for model in ROLLUPS}


async def test_wallets_count_the_ledgers_they_already_have(empty_database: TestDatabase) -> None:
    """Migration 0011 counts each existing wallet's entries once; a wallet without entries
    holds 0. From then on the writers keep the count (tests/fixtures/wallet_invariants.py)."""
    from sqlalchemy import text

    engine = create_engine(empty_database.url)
    try:
        await migrate(engine, "upgrade", "0010")
        async with engine.begin() as connection:
            for user_id in (1, 2):
                await connection.execute(
                    text(
                        "INSERT INTO users (id, email, role, permissions, created_at) "
                        "VALUES (:id, :email, 'user', '[]', '2026-01-01')"
                    ),
                    {"id": user_id, "email": f"u{user_id}@x.org"},
                )
                await connection.execute(
                    text(
                        "INSERT INTO wallets (user_id, currency, balance, reserved, "
                        "auto_reload_enabled, updated_at) VALUES (:id, 'usd', 0, 0, false, "
                        "'2026-01-01')"
                    ),
                    {"id": user_id},
                )
            for _ in range(3):
                await connection.execute(
                    text(
                        "INSERT INTO ledger_entries (user_id, type, amount, balance_after, "
                        "metadata, created_at) VALUES (1, 'credit', 1, 1, '{}', '2026-01-01')"
                    )
                )
        await upgrade_to_head(engine)
        async with engine.connect() as connection:
            counts = dict(
                (await connection.execute(text("SELECT user_id, entry_count FROM wallets"))).all()
            )
    finally:
        await engine.dispose()
    assert counts == {1: 3, 2: 0}
