"""The SQL shapes of a page per parent: what one batch of a connection costs.

A connection nested under a list (each member's `usageEvents(first: 5)`, each user's ledger,
each institution's members, each bucket's snapshots) is read for every parent of the batch in
one statement. The rule of the design is that the cost follows what is returned, not how much
history is stored, so each parent's page must stop after `limit` rows of an index that
matches its order. A window function (`row_number() OVER (PARTITION BY parent ...)`) does
not: it ranks every matching row of every parent before the cut, which on a user with 50,000
events reads 50,000 rows to return six.

- PostgreSQL: the parents are unnested from one array parameter and each is joined LATERAL
  to `SELECT ... WHERE parent = p ORDER BY ... LIMIT n`, an index scan that stops after n
  rows (on the partitioned `usage_events`, one such select per time band, `bands`: inside
  the run of month partitions they are read newest first until the page is full).
- SQLite (no LATERAL): a `UNION ALL` of per-parent `ORDER BY ... LIMIT n` selects, each an
  index scan with the same stop; the parents are cut into chunks below SQLite's limit on
  compound selects, so a batch of up to `SQLITE_PARENTS_PER_STATEMENT` parents is one
  statement.

The caller passes the scoping conditions (`readable_*` of its datasource) with the filters:
this module only shapes the page, it never decides who reads what. The compiled-read path
reuses these builders so both paths cost the same.

Building a page statement with SQLAlchemy costs about a millisecond, more than PostgreSQL
takes to run it, and a nested read builds one per connection per request. On PostgreSQL the
parents are an execution parameter, so a statement is built once per shape and reused:
kept per (model, parent, order, limit, joined row, and the conditions with their values).
Conditions carry the caller's scope and the filters as bound values, so two callers or two
filters never share a statement; only the parents change between uses.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    func,
    inspect,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from usagegraph.datasources.column_rows import column_keys, labelled_columns
from usagegraph.recently_used import RecentlyUsed

ModelT = TypeVar("ModelT")

# SQLite refuses compound selects of more than 500 terms (SQLITE_MAX_COMPOUND_SELECT).
SQLITE_PARENTS_PER_STATEMENT = 250
# The parents of a PostgreSQL page statement, given when it runs (one array).
PARENTS = "page_parents"
# How many built PostgreSQL page statements a process keeps (least recently used go first).
KEPT_STATEMENTS = 512

# A statement, and the parameters it runs with: `session.execute(statement, parameters)`.
PageRead = tuple[Select[Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Ordered:
    """One key of a page's order, by attribute name, so it can be restated on the aliased
    rows of the page."""

    name: str
    descending: bool = False

    def on(self, entity: Any) -> ColumnElement[Any]:
        column: ColumnElement[Any] = getattr(entity, self.name)
        return column.desc() if self.descending else column.asc()


def newest_first(*names: str) -> tuple[Ordered, ...]:
    return tuple(Ordered(name, descending=True) for name in names)


@dataclass(frozen=True, slots=True)
class Joined:
    """Another model's row read with each page row: `model`'s row whose primary key is the
    page row's `by`, only where `condition` (the caller's `readable_*` of that model) lets
    it; a LEFT JOIN, so a refused or missing row comes back as nulls. Its columns are named
    `prefix` + attribute (column_rows.joined_row reads them back)."""

    model: Any
    by: str
    condition: ColumnElement[bool]
    prefix: str


def page_per_parent_statements(
    dialect: str,
    model: type[ModelT],
    parent: InstrumentedAttribute[Any],
    parents: Sequence[Any],
    conditions: Sequence[ColumnElement[bool]],
    order: Sequence[Ordered],
    limit: int,
    *,
    columns: bool = False,
    joined: Joined | None = None,
    bands: Sequence[ColumnElement[bool]] = (),
) -> list[PageRead]:
    """The statements reading, for each parent, its first `limit` rows of `model` that meet
    `conditions` in `order`, each with the parameters to run it with; rows come back ordered
    by parent, then in `order`.

    With `columns`, each row is the model's columns named by its attributes (run with
    `session.execute`), not an ORM object: for pages read only to be copied into answers,
    where building, identity-mapping and tracking hundreds of objects cost more than the SQL.

    With `joined` (rows of columns only), each row also carries the joined model's row: one
    statement instead of a second batch keyed by the page's rows.

    With `bands` (PostgreSQL; conditions that together hold for every row exactly once, such
    as `db.partition_span`'s time bands of the partitioned usage events), each parent's page
    is the first `limit` rows of each band, merged and cut again: the database can then read
    each band in order and stop, where it would merge every partition of the whole table.

    `order` must be served by an index led by `parent` (see migration 0006), or the database
    sorts each parent's rows before the cut.
    """
    wanted = sorted(set(parents))
    if not wanted:
        return []
    if joined is not None and not columns:
        raise ValueError("a joined row is read with rows of columns only")
    if dialect == "postgresql":
        shape = _Shape(
            model, parent, tuple(conditions), tuple(order), limit, columns, joined, tuple(bands)
        )
        return [(_kept_lateral(shape), {PARENTS: wanted})]
    statements = [
        _union_of_limited(
            model,
            parent,
            wanted[start : start + SQLITE_PARENTS_PER_STATEMENT],
            conditions,
            order,
            limit,
            columns,
        )
        for start in range(0, len(wanted), SQLITE_PARENTS_PER_STATEMENT)
    ]
    if joined is not None:
        statements = [_joining(statement, joined) for statement in statements]
    return [(statement, {}) for statement in statements]


async def read_column_pages(session: AsyncSession, reads: Sequence[PageRead]) -> list[Row[Any]]:
    """The rows of page statements built with `columns`, in order, run on the session's
    connection: the ORM's execution of a select of plain columns only wraps the same rows
    (~0.6 ms of issue 14's question for its two batches, in-process)."""
    connection = await session.connection()
    rows: list[Row[Any]] = []
    for statement, parameters in reads:
        rows.extend(await connection.execute(statement, parameters))
    return rows


@dataclass(frozen=True, slots=True)
class _Shape:
    """Everything a PostgreSQL page statement is built from but its parents."""

    model: Any
    parent: InstrumentedAttribute[Any]
    conditions: tuple[ColumnElement[bool], ...]
    order: tuple[Ordered, ...]
    limit: int
    columns: bool
    joined: Joined | None
    bands: tuple[ColumnElement[bool], ...] = ()

    def key(self) -> Hashable | None:
        """What identifies the statement: the conditions' SQL structure and bound values (the
        caller's scope, the filters, the bands), the rest as given; None when a value is not
        hashable."""
        clauses = [
            *self.conditions,
            *([self.joined.condition] if self.joined else []),
            *self.bands,
        ]
        cache_key = and_(true(), *clauses)._generate_cache_key()
        if cache_key is None:
            return None
        try:
            values = tuple(_frozen(bound.effective_value) for bound in cache_key.bindparams)
            hash(values)
        except TypeError:
            return None
        joined = self.joined
        return (
            self.model,
            self.parent.key,
            self.order,
            self.limit,
            self.columns,
            (joined.model, joined.by, joined.prefix) if joined else None,
            len(self.bands),
            cache_key.key,
            values,
        )


_KEPT: RecentlyUsed[Hashable, Select[Any]] = RecentlyUsed(KEPT_STATEMENTS)


def _kept_lateral(shape: _Shape) -> Select[Any]:
    """The PostgreSQL statement of this shape, built on first use."""
    key = shape.key()
    if key is None:
        return _built_lateral(shape)
    return _KEPT.get_or_make(key, lambda: _built_lateral(shape))


def _built_lateral(shape: _Shape) -> Select[Any]:
    statement = _lateral(
        shape.model,
        shape.parent,
        shape.conditions,
        shape.order,
        shape.limit,
        shape.columns,
        shape.bands,
    )
    return _joining(statement, shape.joined) if shape.joined is not None else statement


def _frozen(value: Any) -> Any:
    """A bound value as a hashable key part (IN lists become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    return value


def _lateral(
    model: type[ModelT],
    parent: InstrumentedAttribute[Any],
    conditions: Sequence[ColumnElement[bool]],
    order: Sequence[Ordered],
    limit: int,
    columns: bool,
    bands: Sequence[ColumnElement[bool]] = (),
) -> Select[Any]:
    """PostgreSQL: `unnest(:page_parents) CROSS JOIN LATERAL (... LIMIT n)`; one parameter
    whatever the number of parents, so the statement's text (and its cached plan) is one. The
    parents are given when it runs (`PARENTS`), so one statement serves every batch. With
    bands, the lateral is `(band 1 ... LIMIT n) UNION ALL (band 2 ...)`, ordered and cut."""
    array = bindparam(PARENTS, type_=ARRAY(parent.type), required=True)
    wanted = select(func.unnest(array).label("parent")).subquery("wanted")

    def limited(*band: ColumnElement[bool]) -> Select[Any]:
        return (
            select(model)
            .where(parent == wanted.c.parent, *conditions, *band)
            .order_by(*(key.on(model) for key in order))
            .limit(limit)
        )

    if not bands:
        page = limited().lateral("page")
    else:
        # Each band correlates to the parents explicitly: it sits in a FROM subquery, where
        # SQLAlchemy would otherwise list `wanted` again (a cross join, not the parent).
        banded = union_all(*(limited(band).correlate(wanted) for band in bands)).subquery("band")
        keys = dict(column_keys(model))
        page = (
            select(banded)
            .order_by(*(_directed(banded.c[keys[key.name]], key) for key in order))
            .limit(limit)
            .lateral("page")
        )
    row = _rows_of(model, page, columns)
    return (
        select(*_selected(model, row, columns))
        .select_from(wanted)
        .join(page, true())
        .order_by(wanted.c.parent, *(_ordered(model, row, key, columns) for key in order))
    )


def _union_of_limited(
    model: type[ModelT],
    parent: InstrumentedAttribute[Any],
    parents: list[Any],
    conditions: Sequence[ColumnElement[bool]],
    order: Sequence[Ordered],
    limit: int,
    columns: bool,
) -> Select[Any]:
    """SQLite: `SELECT * FROM (... LIMIT n) UNION ALL ...`, one limited select per parent.

    Each term is wrapped in a subquery because SQLite allows ORDER BY and LIMIT only on the
    whole compound. The outer ORDER BY sorts at most parents x limit rows.
    """
    terms = [
        select(model)
        .where(parent == value, *conditions)
        .order_by(*(key.on(model) for key in order))
        .limit(limit)
        .subquery()
        .select()
        for value in parents
    ]
    compound = (terms[0] if len(terms) == 1 else union_all(*terms)).subquery("page")
    row = _rows_of(model, compound, columns)
    return select(*_selected(model, row, columns)).order_by(
        _ordered(model, row, Ordered(parent.key), columns),
        *(_ordered(model, row, key, columns) for key in order),
    )


def _joining(statement: Select[Any], joined: Joined) -> Select[Any]:
    """`statement` (rows of `model`'s columns) LEFT JOINed to `joined.model`."""
    page_key = statement.selected_columns[joined.by]
    target = inspect(joined.model)
    on = and_(target.primary_key[0] == page_key, joined.condition)
    return statement.outerjoin(target.local_table, on).add_columns(
        *labelled_columns(joined.model, prefix=joined.prefix)
    )


def _rows_of(model: Any, page: Any, columns: bool) -> Any:
    """What the outer select reads the page through: the model aliased to the page (ORM
    objects), or the page's own columns. Labelling attributes of an aliased entity adapts
    each column through the alias, which cost ~1 ms per statement for 11 columns: more than
    the rest of building it, on every batch."""
    return page.c if columns else aliased(model, page)


def _selected(model: Any, row: Any, columns: bool) -> list[Any]:
    """The aliased entity itself, or the page's columns labelled by attribute name."""
    if not columns:
        return [row]
    return labelled_columns(model, row)


def _ordered(model: Any, row: Any, key: Ordered, columns: bool) -> ColumnElement[Any]:
    """`key` restated on the page's rows (an attribute of the alias, or the page's column)."""
    if not columns:
        return key.on(row)
    return _directed(row[dict(column_keys(model))[key.name]], key)


def _directed(column: ColumnElement[Any], key: Ordered) -> ColumnElement[Any]:
    return column.desc() if key.descending else column.asc()
