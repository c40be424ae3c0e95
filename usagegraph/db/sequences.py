"""Keep PostgreSQL identity sequences ahead of ids that were inserted explicitly.

Imports and the demo generator write ids themselves (to keep a migrated system's ids, or to
use COPY); afterwards the sequence must continue past the largest id or the next ORM insert
collides. SQLite needs nothing: it takes max(rowid) + 1.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

TABLES_WITH_GENERATED_IDS = ("users", "usage_events", "ledger_entries", "api_keys")


async def bump_id_sequences(connection: AsyncConnection) -> None:
    if connection.dialect.name != "postgresql":
        return
    for table in TABLES_WITH_GENERATED_IDS:
        await connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
            )
        )
