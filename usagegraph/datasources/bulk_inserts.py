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

Usage events on PostgreSQL take a faster path (`usage_writes.insert_events`): ids drawn
from the sequence first (`allocate_ids`), then the rows go in as one array per column
(`unnested_rows`). Binding a thousand rows value by value (10,000 parameters, a statement
text per batch size) cost more than the insert.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Select, Table, TypeDecorator, bindparam, func, insert, select
from sqlalchemy.dialects import postgresql
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


def unnested_rows(table: Table, names: Sequence[str], *, prefix: str = "") -> Select[Any]:
    """PostgreSQL: rows given as one array parameter per column (named `prefix + column`),
    unnested by the server into a derived table `given`.

    A few arrays cost the driver a fraction of a thousand rows bound one value at a time,
    and the statement's text is the same whatever the number of rows, so it is prepared
    once.
    """
    arrays = [
        bindparam(prefix + name, type_=postgresql.ARRAY(plain_type(table.c[name].type)))
        for name in names
    ]
    given = func.unnest(*arrays).table_valued(*names).render_derived(name="given")
    return select(*given.c)


def plain_type(column_type: Any) -> Any:
    """The driver-level type of a column (Money is NUMERIC on PostgreSQL): array items are
    bound as they are, so they must already be what the decorator would have made them."""
    return column_type.impl_instance if isinstance(column_type, TypeDecorator) else column_type


def columns_of(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """The rows as one list per column, for `unnested_rows`."""
    return {name: [row[name] for row in rows] for name in names}


def columns_with_defaults(table: Table, rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Every column but `id` as one list, a value the row leaves out taken from the column's
    Python-side default as an ORM or executemany insert would (None if it has none).

    Unnested rows bypass SQLAlchemy's default handling, and a column left out of the
    arrays would be missing for every row, not just for those that omit it.
    """
    columns: dict[str, list[Any]] = {}
    for column in table.c:
        if column.name == "id":
            continue
        default = _default_of(column)
        columns[column.name] = [row.get(column.name, default) for row in rows]
    return columns


def _default_of(column: Any) -> Any:
    default = column.default
    if default is None:
        return None
    if default.is_scalar:
        return default.arg
    return default.arg(None)  # a callable default, wrapped by SQLAlchemy to take a context


async def allocate_ids(session: AsyncSession, table: Table, count: int) -> list[int]:
    """PostgreSQL: `count` new ids from the table's id sequence, ascending, in one statement.

    Rows inserted with ids drawn beforehand need no RETURNING, whose order PostgreSQL
    promises only for VALUES lists, not for rows unnested from arrays.
    """
    allocated = await session.scalars(_allocating_ids(table), {"count": count})
    return sorted(allocated.all())


@cache
def _allocating_ids(table: Table) -> Select[Any]:
    sequence = func.pg_get_serial_sequence(table.name, "id")
    return select(func.nextval(sequence)).select_from(func.generate_series(1, bindparam("count")))
