"""Where the database's schema stands against the migrations shipped with this code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class SchemaBehindError(RuntimeError):
    """The database's schema is older than the code; `usagegraph migrate` fixes it."""


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """The revision the database is at and the newest one this code ships."""

    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def alembic_config() -> Config:
    """An Alembic configuration that needs no alembic.ini on disk."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    """Read the database's revision (None for an empty database)."""

    def current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        revision = await connection.run_sync(current)
    return SchemaStatus(current=revision, head=_head())


async def upgrade_to_head(engine: AsyncEngine) -> SchemaStatus:
    """Apply every pending migration in one transaction and return the new status."""
    return await migrate(engine, "upgrade", "head")


async def migrate(engine: AsyncEngine, direction: str, revision: str) -> SchemaStatus:
    """Run Alembic's `upgrade` or `downgrade` to `revision` in one transaction."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)
    return await schema_status(engine)


async def ensure_schema(engine: AsyncEngine, *, migrate: bool) -> SchemaStatus:
    """Migrate when allowed (the embedded default), otherwise refuse a schema that is behind."""
    status = await schema_status(engine)
    if status.up_to_date:
        return status
    if migrate:
        return await upgrade_to_head(engine)
    at = status.current or "an empty schema"
    raise SchemaBehindError(
        f"the database schema is at {at}, this usagegraph needs {status.head}: "
        "run `usagegraph migrate` against this database first"
    )
