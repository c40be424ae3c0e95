"""Keeping the usage rollups equal to the events they summarise.

Every path that writes usage events ends here, inside its own transaction: metered writes
and imports add the sums of the rows they insert (`add_usage`), bulk loads add what SQL sums
from the rows they just copied (`add_usage_from_events`), and forgetting moves sums from the
"remembered" rows to the "forgotten" ones (`forget_usage`). `rebuild_rollups` throws the
rollups away and recomputes them from the events; a test pins that it changes nothing.

Rows are upserted in primary-key order, so two transactions touching overlapping rows lock
them in the same order and cannot deadlock each other here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    Integer,
    Table,
    cast,
    delete,
    extract,
    func,
    literal,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from usagegraph.datasources.bulk_inserts import json_rows, rows_json
from usagegraph.db.models import PERSONAL_INSTANCE, ROLLUPS, UsageEvent

Executor = AsyncSession | AsyncConnection
MEASURES = ("credits", "messages", "events", "failed_events")
_TABLES: tuple[Table, ...] = tuple(model.__table__ for model in ROLLUPS)
_SLOT_SECONDS = {model.__table__: getattr(model, "slot_seconds", None) for model in ROLLUPS}
# Only the tables that keep forgotten usage apart change when usage is forgotten.
_FORGETTABLE = tuple(table for table in _TABLES if "forgotten" in table.c)


def _dialect(executor: Executor) -> str:
    bind = executor.bind if isinstance(executor, AsyncSession) else executor
    return bind.dialect.name


def slot_start_of(dialect: str, seconds: int, occurred_at: Any) -> ColumnElement[int]:
    """The start (Unix seconds) of the `seconds`-long slot holding `occurred_at`, in SQL."""
    if dialect == "postgresql":
        epoch = extract("epoch", occurred_at)
        return cast(func.floor(epoch.op("/")(seconds)), BigInteger) * seconds
    epoch_seconds = cast(func.strftime("%s", occurred_at), Integer)
    return epoch_seconds.op("/")(seconds) * seconds  # SQLite: integer division floors


def _key_columns(table: Table) -> tuple[str, ...]:
    """The columns that say which row an event belongs to (institution_id rides along)."""
    return _KEYS[table]


_KEYS = {t: tuple(c.name for c in t.c if c.name not in MEASURES) for t in _TABLES}


@dataclass(frozen=True, slots=True)
class UsageFact:
    """What the rollups need to know of one usage event."""

    user_id: int
    institution_id: str | None
    occurred_at: datetime
    credits: Decimal
    messages: int
    failed: bool
    endpoint: str | None
    forgotten: bool

    @classmethod
    def of_row(cls, row: dict[str, Any]) -> UsageFact:
        """From the column values of a usage event about to be inserted."""
        return cls(
            user_id=row["user_id"],
            institution_id=row["institution_id"],
            occurred_at=row["occurred_at"],
            credits=Decimal(row.get("credits") or 0),
            messages=int(row.get("messages", 1)),
            failed=row.get("status", "success") == "failed",
            endpoint=row.get("endpoint"),
            forgotten=bool(row.get("forgotten", False)),
        )


class RollupDelta:
    """Sums to add to rollup rows: per table, per row key, the four measures."""

    def __init__(self) -> None:
        self._rows: dict[Table, dict[tuple[Any, ...], list[Any]]] = {t: {} for t in _TABLES}

    def add(self, fact: UsageFact, *, sign: int = 1, tables: Sequence[Table] = _TABLES) -> None:
        """Count `fact` once (sign 1) or take it away (sign -1) in these tables."""
        epoch = int(fact.occurred_at.timestamp())  # once, not once per slot size
        values = {
            "user_id": fact.user_id,
            "instance": fact.institution_id or PERSONAL_INSTANCE,
            "institution_id": fact.institution_id,
            "endpoint_given": fact.endpoint is not None,
            "endpoint": fact.endpoint or "",
            "forgotten": fact.forgotten,
        }
        measures = (fact.credits * sign, fact.messages * sign, sign, int(fact.failed) * sign)
        for table in tables:
            seconds = _SLOT_SECONDS[table]
            if seconds is not None:
                values["slot_start"] = epoch // seconds * seconds
            key = tuple(values[name] for name in _key_columns(table))
            rows = self._rows[table]
            sums = rows.get(key)
            if sums is None:
                rows[key] = list(measures)
            else:
                for index, value in enumerate(measures):
                    sums[index] += value

    def rows(self, table: Table) -> list[dict[str, Any]]:
        """The table's rows to upsert, in primary-key order."""
        names = _column_names(table)
        return [dict(zip(names, (*key, *sums), strict=True)) for key, sums in self._sorted(table)]

    def _sorted(self, table: Table) -> list[tuple[tuple[Any, ...], list[Any]]]:
        return sorted(self._rows[table].items(), key=_lock_order(table))


def _column_names(table: Table) -> list[str]:
    return [*_key_columns(table), *MEASURES]


def _lock_order(table: Table) -> Any:
    """Sort key of a row: its primary key, so concurrent writers lock rows in one order."""
    positions = [_key_columns(table).index(column.name) for column in table.primary_key.columns]
    return lambda item: tuple(item[0][position] for position in positions)


def _insert(dialect: str, table: Table) -> Any:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _adding_measures(statement: Any, table: Table) -> Any:
    """`statement` (an INSERT into `table`) made to add its measures to an existing row with
    the same key instead of failing on it."""
    return statement.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={m: table.c[m] + statement.excluded[m] for m in MEASURES},
    )


@cache
def _adding_rows(dialect: str, table: Table) -> Any:
    """The upsert of executemany rows, built once per table: every usage write runs it, and
    building the construct costs more than running its cached compiled form."""
    return _adding_measures(_insert(dialect, table), table)


def _adding_json(table: Table) -> Any:
    """PostgreSQL: the table's upsert fed its rows as one JSON text (a batch of 1,000 events
    touches up to 5,000 rollup rows), named `<table>__rows` so every table's upsert fits
    in one statement."""
    names = _column_names(table)
    given = json_rows(table, names, parameter=_rows_name(table))
    return _adding_measures(postgresql.insert(table).from_select(names, given), table)


@cache
def _adding_to_every_table() -> Any:
    """PostgreSQL: every table's JSON upsert as a data-modifying CTE of one statement.

    One round trip instead of one per table; a table given no rows is left alone.
    PostgreSQL runs each CTE exactly once, in the same order for every transaction.
    """
    upserts = [_adding_json(table).cte(f"add_{table.name}") for table in _TABLES]
    return select(literal(1)).add_cte(*upserts)


def _rows_name(table: Table) -> str:
    return f"{table.name}__rows"


async def apply_delta(executor: Executor, delta: RollupDelta) -> None:
    """Add the delta to the rollups: one statement on PostgreSQL, one per table on SQLite."""
    dialect = _dialect(executor)
    if dialect == "postgresql":
        sent = {_rows_name(table): rows_json(delta.rows(table)) for table in _TABLES}
        await executor.execute(_adding_to_every_table(), sent)
        return
    for table in _TABLES:
        rows = delta.rows(table)
        if rows:
            await executor.execute(_adding_rows(dialect, table), rows)


async def add_usage(executor: Executor, facts: Iterable[UsageFact]) -> None:
    """Count newly inserted events in the rollups."""
    delta = RollupDelta()
    for fact in facts:
        delta.add(fact)
    await apply_delta(executor, delta)


async def forget_usage(executor: Executor, facts: Sequence[UsageFact]) -> None:
    """Move just-forgotten events (`facts` as they were before) to the forgotten rows.

    Lifetime totals keep them: forgotten usage still cost credits. Slot rows left with no
    events are deleted, so a forgotten slot does not count its user as active.
    """
    if not facts:
        return
    delta = RollupDelta()
    for fact in facts:
        delta.add(fact, sign=-1, tables=_FORGETTABLE)
        delta.add(replace(fact, forgotten=True), tables=_FORGETTABLE)
    await apply_delta(executor, delta)
    users = sorted({f.user_id for f in facts})
    for table in _FORGETTABLE:
        await executor.execute(delete(table).where(table.c.user_id.in_(users), table.c.events == 0))


# The event columns `summing_upserts` reads: what the rollups group by and sum.
SUMMED_EVENT_COLUMNS = (
    "user_id",
    "institution_id",
    "occurred_at",
    "credits",
    "messages",
    "endpoint",
    "status",
    "forgotten",
)


def summing_upserts(dialect: str, source: FromClause, where: Any = None) -> list[Any]:
    """Per rollup table, the upsert that adds the sums of the events in `source` (the usage
    events table, or rows shaped like it), grouped by the table's key and sorted by its
    primary key (the lock order every writer keeps).

    The database sums: the rows need not come back to Python to be counted.
    """
    events = source.c  # SUMMED_EVENT_COLUMNS, and no other
    expressions: dict[str, Any] = {
        "user_id": events.user_id,
        "instance": func.coalesce(events.institution_id, literal(PERSONAL_INSTANCE)),
        "institution_id": events.institution_id,
        "endpoint_given": events.endpoint.is_not(None),
        "endpoint": func.coalesce(events.endpoint, literal("")),
        "forgotten": events.forgotten,
    }
    measures = [
        func.sum(events.credits),
        func.sum(events.messages),
        func.count(),
        func.sum(cast(events.status == "failed", Integer)),
    ]
    upserts = []
    for table in _TABLES:
        seconds = _SLOT_SECONDS[table]
        if seconds is not None:
            expressions["slot_start"] = slot_start_of(dialect, seconds, events.occurred_at)
        columns = _key_columns(table)
        keys = [expressions[name] for name in columns]
        order = [expressions[column.name] for column in table.primary_key.columns]
        summed = select(*keys, *measures).group_by(*keys).order_by(*order)
        if where is not None:
            summed = summed.where(where)
        statement = _insert(dialect, table).from_select([*columns, *MEASURES], summed)
        upserts.append(_adding_measures(statement, table))
    return upserts


async def add_usage_from_events(executor: Executor, where: ColumnElement[bool]) -> None:
    """Count the events matching `where` in the rollups, summed by the database.

    For bulk loads: the rows were just copied in, and SQL sums them without a round trip.
    """
    for upsert in summing_upserts(_dialect(executor), UsageEvent.__table__, where):
        await executor.execute(upsert)


async def rebuild_rollups(executor: Executor) -> None:
    """Recompute every rollup from the events (within the caller's transaction).

    On PostgreSQL usage writes wait for it (SHARE lock on the events; reads go on), so no
    event can be counted twice or missed while the rollups are empty. On SQLite the
    transaction is the only writer anyway.
    """
    if _dialect(executor) == "postgresql":
        await executor.execute(text("LOCK TABLE usage_events IN SHARE MODE"))
    for table in _TABLES:
        await executor.execute(delete(table))
    await add_usage_from_events(executor, true())
