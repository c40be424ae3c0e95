"""Multi-row inserts that give back the new ids in the order the rows were given.

Every batched writer (usage events, ledger entries) needs its rows' ids, in order, from one
statement. PostgreSQL promises that with `INSERT ... RETURNING` sorted by parameter order.
SQLite does not promise RETURNING's order, so SQLAlchemy would fall back to one statement
per row (a thousand-event batch, a thousand INSERTs); instead it gets one executemany, then
the ids above the largest id before it.

That is exact because only one transaction at a time writes to SQLite (`BEGIN IMMEDIATE`),
and a rowid table numbers each new row one above the largest id: the rows are this insert's
own, numbered in the order given. (A transaction whose snapshot went stale before its first
write is refused by SQLite, so nobody can slip rows in between.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.datasources.transactions import dialect_of


async def insert_returning_ids(
    session: AsyncSession, model: Any, rows: Sequence[dict[str, Any]]
) -> list[int]:
    """Insert `rows` into `model` (an ORM class with an integer `id`, or its Table) in one
    statement; their new ids, in the order given."""
    if not rows:
        return []
    id_column = model.c.id if hasattr(model, "c") else model.id
    if dialect_of(session) != "sqlite":
        statement = insert(model).returning(id_column, sort_by_parameter_order=True)
        return list((await session.scalars(statement, list(rows))).all())
    before = await session.scalar(select(func.max(id_column))) or 0
    await session.execute(insert(model), list(rows))
    found = await session.scalars(select(id_column).where(id_column > before).order_by(id_column))
    ids = list(found.all())
    if len(ids) != len(rows):
        raise RuntimeError(f"inserted {len(rows)} rows but found {len(ids)} new ids")
    return ids
