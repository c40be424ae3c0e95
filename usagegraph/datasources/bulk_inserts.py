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
from the sequence first (`allocate_ids`), then the rows go in as one JSON text parameter
that the server turns back into typed rows (`json_rows`). Binding a thousand rows value by
value (10,000 parameters, a statement text per batch size) cost more than the insert; one
array per column was better, but the driver checks and encodes every element of every
array in Python (~12 ms of a 1,000-event batch's ~60 ms of CPU), where orjson writes the
whole batch in well under a millisecond and the server parses it in about one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from functools import cache
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Select,
    Table,
    Text,
    TypeDecorator,
    bindparam,
    cast,
    column,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import REGCLASS
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


def json_rows(table: Table, names: Sequence[str], *, parameter: str = "rows") -> Select[Any]:
    """PostgreSQL: rows given as one JSON text parameter (`rows_json`: an array of objects
    keyed by column name, extra keys ignored), typed by the server as `table`'s columns into
    a derived table `given`, in the order given.

    The statement's text is the same whatever the number of rows, so it is prepared once.
    """
    typed = [column(name, plain_type(table.c[name].type)) for name in names]
    text = cast(bindparam(parameter, type_=Text), JSON)
    given = func.json_to_recordset(text).table_valued(*typed)
    return select(*given.render_derived(name="given", with_types=True).c)


def rows_json(rows: Iterable[Mapping[str, Any]]) -> str:
    """The rows as `json_rows` reads them: exact Decimals as JSON strings (the server reads
    them into NUMERIC as written), times in ISO 8601 with their offset."""
    return orjson.dumps(list(rows), default=_exact).decode()


def _exact(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a JSON column value")


def plain_type(column_type: Any) -> Any:
    """The driver-level type of a column (Money is NUMERIC on PostgreSQL): values sent as
    arrays or JSON bypass the decorator, so they must already be what it would have made."""
    return column_type.impl_instance if isinstance(column_type, TypeDecorator) else column_type


def rows_with_defaults(
    table: Table, rows: Sequence[dict[str, Any]], **extra: Sequence[Any]
) -> list[dict[str, Any]]:
    """Every row with every column but `id`, a value the row leaves out taken from the
    column's Python-side default as an ORM or executemany insert would (None if it has none);
    `extra` adds columns given as one value per row (the ids drawn beforehand).

    Rows sent as JSON bypass SQLAlchemy's default handling, and a column left out would be
    NULL for every row that omits it.
    """
    defaults = {col.name: _default_of(col) for col in table.c if col.name != "id"}
    completed = [{**defaults, **row} for row in rows]
    for name, values in extra.items():
        for row, value in zip(completed, values, strict=True):
            row[name] = value
    return completed


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
    """The sequence is looked up once per statement, as an uncorrelated subquery (an
    InitPlan): written inside `nextval(...)`, `pg_get_serial_sequence` ran once per id, a
    catalog lookup that cost ten times the `nextval` itself (2.6 of 2.9 ms for 1,000 ids)."""
    sequence = select(cast(func.pg_get_serial_sequence(table.name, "id"), REGCLASS))
    return select(func.nextval(sequence.scalar_subquery())).select_from(
        func.generate_series(1, bindparam("count"))
    )
