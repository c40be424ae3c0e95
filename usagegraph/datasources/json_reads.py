"""The compiled read: a root field's selection as ONE PostgreSQL statement whose single value
is that field's JSON, exactly as the resolver path would answer it.

Every relation is read through the caller's `readable_*` clause of its datasource and the
same filter builders the loaders use (`ledger_filter_conditions`, `EventFilter`,
`usage_page_scope`, `rollup_count_conditions`): this module shapes JSON, it decides nothing
about who reads what. Pages have the shape of `datasources.pages` on PostgreSQL: for each
parent, `ORDER BY ... LIMIT n + 1` over the index of that order, correlated to the parent
row (a LATERAL read), so a page costs its rows, not the history.

Anything this module does not know how to render raises `NotCompilable`, and the whole
root field goes down the resolver path (the reference). The types and fields covered are
the tables `_FIELDS` below; `docs/decisions.md` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.auth.principal import Principal
from usagegraph.datasources import json_text as js
from usagegraph.datasources.directory import (
    MEMBERS_BY_USER,
    readable_institutions,
    readable_memberships,
    readable_users,
)
from usagegraph.datasources.pages import Ordered
from usagegraph.datasources.selections import TYPENAME, NotCompilable, Selection
from usagegraph.datasources.usage import (
    EVENTS_NEWEST_FIRST,
    EventFilter,
    rollup_count_conditions,
    splits_pages,
    usage_page_scope,
)
from usagegraph.datasources.wallet import (
    LedgerPosition,
    ledger_filter_conditions,
    older_than,
    readable_account,
    total_is_kept,
)
from usagegraph.datasources.wallet_batches import LEDGER_NEWEST_FIRST
from usagegraph.db.models import PERSONAL_INSTANCE, UsageEvent, UsageTotal, Wallet
from usagegraph.db.partition_span import PartitionSpan, occurred_at_bands
from usagegraph.recently_used import RecentlyUsed

_DIALECT = postgresql.dialect()
# The column a joined row carries to tell a row from the NULLs of none (`JsonStatement.join`).
_PRESENT = "json_present"
DEFAULT_CURRENCY = "usd"  # a user without a wallet reads as an empty usd one (wallet_account)


class JsonStatement:
    """One statement being built: its parameters ($1, $2, ...) and row aliases."""

    def __init__(self, principal: Principal, span: PartitionSpan | None = None) -> None:
        self.principal = principal
        # The partitioned usage events' unbroken run of months: pages read by time band.
        self.span = span
        self.parameters: list[Any] = []
        self._aliases = 0
        # The to-one rows joined onto a row: its alias -> the aliases of the joined rows, and
        # each joined row's LEFT JOIN text (see `linked`).
        self._joined_onto: dict[str, list[str]] = {}
        self._join_text: dict[str, str] = {}

    def parameter(self, value: Any) -> str:
        self.parameters.append(value)
        return f"${len(self.parameters)}"

    def alias(self) -> str:
        self._aliases += 1
        return f"r{self._aliases}"

    def clause(self, *conditions: ColumnElement[bool]) -> str:
        """SQLAlchemy conditions (the datasources' own) as SQL text with our parameters."""
        compiled = and_(*conditions).compile(
            dialect=_DIALECT, compile_kwargs={"render_postcompile": True}
        )
        text = str(compiled)
        for name, value in compiled.params.items():
            text = text.replace(f"%({name})s", self.parameter(value))
        return "(" + text.replace("%%", "%") + ")"

    # --- objects ------------------------------------------------------------------------

    def object(self, type_name: str, row: str, selection: Selection, parent: str | None) -> str:
        """The JSON object of `row` (an alias of a `type_name` row) with the selected keys."""
        fields = _FIELDS.get(type_name)
        if fields is None:
            raise NotCompilable(type_name)
        members = []
        for selected in selection.children:
            if selected.name == TYPENAME:
                members.append((selected.key, js.constant(f'"{js.response_key(type_name)}"')))
                continue
            render = fields.get(selected.name)
            if render is None:
                raise NotCompilable(f"{type_name}.{selected.name}")
            members.append((selected.key, render(self, row, selected, parent)))
        return js.json_object(members)

    def linked(
        self, type_name: str, table: str, conditions: str, selection: Selection, parent: str
    ) -> str:
        """A to-one link of the row `parent`: the object, or `null` when there is none the
        caller may read.

        The linked row is LEFT JOINed onto the row it hangs from (`join`), not read by a
        subquery per row: a correlated subquery is planned once for a single parent, and on
        a small table that plan is a sequential scan repeated for every row of the page
        (50 members cost 100 scans of `users` and `wallets`: 0.5 ms of a 2.9 ms statement).
        A join is planned for the whole page: a hash join or an index per row, by size.
        """
        row = self.join(parent, table, conditions)
        value = self.object(type_name, row, selection, parent)
        return f"(CASE WHEN {row}.{_PRESENT} THEN {value} ELSE 'null' END)"

    def join(self, onto: str, table: str, conditions: str) -> str:
        """LEFT JOIN the `table` row matching `conditions` (at most one) onto the row `onto`;
        its alias. Its columns are NULL, and `_PRESENT` not true, when no row matches."""
        row = self.alias()
        self._joined_onto.setdefault(onto, []).append(row)
        self._join_text[row] = (
            f" LEFT JOIN LATERAL (SELECT true AS {_PRESENT}, {table}.* FROM {table} "
            f"WHERE {conditions}) AS {row} ON true"
        )
        return row

    def joins(self, row: str) -> str:
        """The LEFT JOINs of the rows joined onto `row`, and of theirs, in the order they
        were made (a joined row's own joins follow it: they refer to it). Called once the
        objects of `row` are rendered, when the FROM clause that introduces `row` is built."""
        return "".join(
            self._join_text[joined] + self.joins(joined)
            for joined in self._joined_onto.get(row, ())
        )

    # --- connections --------------------------------------------------------------------

    def connection(self, page: Page, selection: Selection) -> str:
        """A Relay connection in the resolver path's shape: `size + 1` rows read, `size`
        shown, the extra one only telling that a next page exists."""
        row, totals = self.alias(), self.alias()
        size = self.parameter(page.size)
        aggregates = ["count(*) AS n"]
        members = []
        for selected in selection.children:
            if selected.name == TYPENAME:
                members.append((selected.key, js.constant(f'"{page.type_name}Connection"')))
            elif selected.name == "totalCount":
                members.append((selected.key, page.count(self)))
            elif selected.name == "edges":
                edge = self.edge(page, row, selected)
                aggregates.append(
                    f"string_agg({edge}, ',' ORDER BY {row}.rn) "
                    f"FILTER (WHERE {row}.rn <= {size}) AS e{len(aggregates)}"
                )
                members.append((selected.key, js.json_array(f"{totals}.e{len(aggregates) - 1}")))
            elif selected.name == "pageInfo":
                members.append(
                    (selected.key, self.page_info(page, row, totals, size, selected, aggregates))
                )
            else:
                raise NotCompilable(f"{page.type_name}Connection.{selected.name}")
        order = ", ".join(_order_sql(key, "q") for key in page.order)
        source = (
            f"(SELECT q.*, row_number() OVER (ORDER BY {order}) AS rn, count(*) OVER () AS n "
            f"FROM {page.rows(self, f'{size} + 1')} AS q) AS {row}{self.joins(row)}"
        )
        return (
            f"(SELECT {js.json_object(members)} FROM "
            f"(SELECT {', '.join(aggregates)} FROM {source}) AS {totals})"
        )

    def edge(self, page: Page, row: str, selection: Selection) -> str:
        members = []
        for selected in selection.children:
            if selected.name == TYPENAME:
                members.append((selected.key, js.constant(f'"{page.type_name}Edge"')))
            elif selected.name == "cursor":
                members.append((selected.key, f"('\"' || {page.cursor(row)} || '\"')"))
            elif selected.name == "node":
                members.append(
                    (selected.key, self.object(page.type_name, row, selected, page.parent))
                )
            else:
                raise NotCompilable(f"{page.type_name}Edge.{selected.name}")
        return js.json_object(members)

    def page_info(
        self,
        page: Page,
        row: str,
        totals: str,
        size: str,
        selection: Selection,
        aggregates: list[str],
    ) -> str:
        members = []
        for selected in selection.children:
            name = selected.name
            if name == TYPENAME:
                value = js.constant('"PageInfo"')
            elif name == "hasNextPage":
                value = f"(CASE WHEN {totals}.n > {size} THEN 'true' ELSE 'false' END)"
            elif name == "hasPreviousPage":
                value = js.constant("true" if page.after_given else "false")
            elif name in ("startCursor", "endCursor"):
                at = "1" if name == "startCursor" else f"least({row}.n, {size})"
                shown = f"{row}.rn = {at} AND {row}.rn <= {size}"
                aggregates.append(
                    f"max({page.cursor(row)}) FILTER (WHERE {shown}) AS e{len(aggregates)}"
                )
                value = f"coalesce('\"' || {totals}.e{len(aggregates) - 1} || '\"', 'null')"
            else:
                raise NotCompilable(f"PageInfo.{name}")
            members.append((selected.key, value))
        return js.json_object(members)


@dataclass(frozen=True, slots=True)
class Page:
    """One connection: which rows, in which order, how to count them, how to name them."""

    type_name: str  # the node type; the connection is `<type>Connection`
    size: int
    after_given: bool
    order: Sequence[Ordered]
    # SQL text of the page's rows (limited to the given count), ordered by `order`.
    rows: Callable[[JsonStatement, str], str]
    count: Callable[[JsonStatement], str]  # SQL text of the total, as JSON
    cursor: Callable[[str], str]  # SQL text of a row's cursor
    parent: str | None = None  # the parent row's alias (a member's institution)

    @classmethod
    def of(
        cls,
        selection: Selection,
        type_name: str,
        order: Sequence[Ordered],
        rows: Callable[[JsonStatement, str], str],
        count: Callable[[JsonStatement], str],
        cursor: Callable[[str], str],
        parent: str | None = None,
    ) -> Page:
        """The page a connection's decoded arguments ask for (`schema.compiled_execution`)."""
        return cls(
            type_name=type_name,
            size=selection.argument("size"),
            after_given=selection.argument("after_given", False),
            order=order,
            rows=rows,
            count=count,
            cursor=cursor,
            parent=parent,
        )


def _order_sql(key: Ordered, row: str) -> str:
    return f"{row}.{key.name} {'DESC' if key.descending else 'ASC'}"


def _limited(table: str, conditions: str, order: Sequence[Ordered], limit: str) -> str:
    ordered = ", ".join(_order_sql(key, table) for key in order)
    return f"(SELECT {table}.* FROM {table} WHERE {conditions} ORDER BY {ordered} LIMIT {limit})"


def _merged(selects: Sequence[str], order: Sequence[Ordered], limit: str) -> str:
    """Limited selects of one table merged in `order` and cut again to `limit`; the one
    select itself when alone."""
    if len(selects) == 1:
        return selects[0]
    ordered = ", ".join(_order_sql(key, "b") for key in order)
    union = " UNION ALL ".join(selects)
    return f"(SELECT b.* FROM ({union}) AS b ORDER BY {ordered} LIMIT {limit})"


def _count(table: str, conditions: str) -> str:
    return f"(SELECT count(*) FROM {table} WHERE {conditions})::text"


# --- the pages -------------------------------------------------------------------------


def _members(institution: str, selection: Selection) -> Page:
    after = selection.argument("after")

    def conditions(s: JsonStatement) -> str:
        parts = [
            f"memberships.institution_id = {institution}.id",
            s.clause(readable_memberships(s.principal)),
        ]
        return " AND ".join(parts)

    def rows(s: JsonStatement, limit: str) -> str:
        where = conditions(s)
        if after is not None:
            where += f" AND memberships.user_id > {s.parameter(after)}"
        return _limited("memberships", where, MEMBERS_BY_USER, limit)

    return Page.of(
        selection,
        type_name="Membership",
        order=MEMBERS_BY_USER,
        rows=rows,
        count=lambda s: _count("memberships", conditions(s)),
        cursor=lambda row: js.cursor(f"'[' || {row}.user_id::text || ']'"),
        parent=institution,
    )


def _institutions(selection: Selection) -> Page:
    after = selection.argument("after")
    order = (Ordered("id"),)

    def rows(s: JsonStatement, limit: str) -> str:
        where = s.clause(readable_institutions(s.principal))
        if after is not None:
            where += f" AND institutions.id > {s.parameter(after)}"
        return _limited("institutions", where, order, limit)

    return Page.of(
        selection,
        type_name="Institution",
        order=order,
        rows=rows,
        count=lambda s: _count("institutions", s.clause(readable_institutions(s.principal))),
        cursor=lambda row: js.cursor(f"'[\"' || {row}.id || '\"]'"),
    )


def _ledger(user: str, selection: Selection) -> Page:
    entry_type = selection.argument("type")
    start, end = selection.argument("from"), selection.argument("to")
    moment = selection.argument("before")
    before = LedgerPosition(created_at=moment[0], id=moment[1]) if moment is not None else None

    def conditions(s: JsonStatement) -> str:
        filters = ledger_filter_conditions(s.principal, entry_type, start, end)
        return f"ledger_entries.user_id = {user}.id AND {s.clause(*filters)}"

    def rows(s: JsonStatement, limit: str) -> str:
        where = conditions(s)
        if before is not None:
            where += f" AND {s.clause(older_than(before))}"
        return _limited("ledger_entries", where, LEDGER_NEWEST_FIRST, limit)

    def count(s: JsonStatement) -> str:
        if not total_is_kept(entry_type, start, end):
            return _count("ledger_entries", conditions(s))
        readable = s.clause(readable_account(s.principal, Wallet.user_id))
        wallet = s.join(user, "wallets", f"wallets.user_id = {user}.id AND {readable}")
        return f"coalesce({wallet}.entry_count, 0)::text"

    return Page.of(
        selection,
        type_name="LedgerEntry",
        order=LEDGER_NEWEST_FIRST,
        rows=rows,
        count=count,
        cursor=lambda row: js.cursor(
            f"'[\"' || {js.iso_instant(f'{row}.created_at')} || '\", ' || {row}.id::text || ']'"
        ),
    )


def _usage_events(user: str, selection: Selection) -> Page:
    event_filter = EventFilter(
        instance=selection.argument("instance"),
        start=selection.argument("from"),
        end=selection.argument("to"),
    )
    before = selection.argument("before")

    def rows(s: JsonStatement, limit: str) -> str:
        narrowing = list(event_filter.narrowing())
        if before is not None:
            occurred_at, event_id = before
            narrowing.append(
                (UsageEvent.occurred_at < occurred_at)
                | ((UsageEvent.occurred_at == occurred_at) & (UsageEvent.id < event_id))
            )
        branches = []
        # Each page per time band of the partitions (`db.partition_span`), merged and cut.
        bands = [s.clause(band) for band in occurred_at_bands(s.span)] if s.span else []
        for of_caller, gate in _usage_branches(s, user):
            scope = usage_page_scope(s.principal, of_caller=of_caller)
            if scope is None:
                continue
            where = f"{gate} AND usage_events.user_id = {user}.id AND {s.clause(scope, *narrowing)}"
            banded = [
                _limited("usage_events", within, EVENTS_NEWEST_FIRST, limit)
                for within in ([f"{where} AND {band}" for band in bands] or [where])
            ]
            branches.append(_merged(banded, EVENTS_NEWEST_FIRST, limit))
        if not branches:
            return "(SELECT usage_events.* FROM usage_events WHERE false)"
        return _merged(branches, EVENTS_NEWEST_FIRST, limit)

    def count(s: JsonStatement) -> str:
        if event_filter.start is not None or event_filter.end is not None:
            raise NotCompilable("usageEvents.totalCount with from/to")  # day rollups + edges
        conditions = rollup_count_conditions(UsageTotal, s.principal, event_filter.instance)
        return (
            f"(SELECT coalesce(sum(usage_totals.events), 0) FROM usage_totals "
            f"WHERE usage_totals.user_id = {user}.id AND {s.clause(*conditions)})::text"
        )

    return Page.of(
        selection,
        type_name="UsageEvent",
        order=EVENTS_NEWEST_FIRST,
        rows=rows,
        count=count,
        cursor=lambda row: js.cursor(
            f"'[\"' || {js.iso_instant(f'{row}.occurred_at')} || '\", ' || {row}.id::text || ']'"
        ),
    )


def _usage_branches(statement: JsonStatement, user: str) -> list[tuple[bool, str]]:
    """The caller's own page and other users' pages read through different clauses
    (`usage_page_scope`); each branch is gated on the page's user, a one-time filter."""
    if not splits_pages(statement.principal):
        return [(True, "true")]
    me = statement.parameter(statement.principal.user_id)
    return [(True, f"{user}.id = {me}"), (False, f"{user}.id <> {me}")]


# --- the fields of each type -------------------------------------------------------------

Render = Callable[[JsonStatement, str, Selection, "str | None"], str]


def _column(format_: Callable[[str], str], column: str) -> Render:
    return lambda s, row, selected, parent: format_(f"{row}.{column}")


def _user_wallet(s: JsonStatement, user: str, selection: Selection, parent: str | None) -> str:
    """Always an object: a user without a wallet (or whose wallet the caller may not read)
    reads as an empty one, its columns NULL through the LEFT JOIN."""
    readable = s.clause(readable_account(s.principal, Wallet.user_id))
    wallet = s.join(user, "wallets", f"wallets.user_id = {user}.id AND {readable}")
    return s.object("CreditBalance", wallet, selection, user)


def _effective_cap(s: JsonStatement, row: str, selection: Selection, parent: str | None) -> str:
    if parent is None:  # a membership not listed from its institution: not compiled
        raise NotCompilable("Membership.effectiveCap outside members")
    return js.money(f"coalesce({row}.cap_limit, {parent}.default_cap)")


def _member_user(s: JsonStatement, row: str, selection: Selection, parent: str | None) -> str:
    readable = s.clause(readable_users(s.principal))
    return s.linked("User", "users", f"users.id = {row}.user_id AND {readable}", selection, row)


def _member_institution(
    s: JsonStatement, row: str, selection: Selection, parent: str | None
) -> str:
    readable = s.clause(readable_institutions(s.principal))
    conditions = f"institutions.id = {row}.institution_id AND {readable}"
    return s.linked("Institution", "institutions", conditions, selection, row)


def _typed_id(type_name: str, key: Callable[[str], str]) -> Render:
    return lambda s, row, selected, parent: js.global_id(type_name, key(row))


_FIELDS: dict[str, dict[str, Render]] = {
    "Institution": {
        "id": _typed_id("Institution", lambda row: f"{row}.id"),
        "databaseId": _column(js.string, "id"),
        "name": _column(js.string, "name"),
        "aiName": _column(js.string, "ai_name"),
        "currency": _column(js.string, "currency"),
        "planLimit": _column(js.integer, "plan_limit"),
        "defaultCap": _column(js.money, "default_cap"),
        "createdAt": _column(js.instant, "created_at"),
        "members": lambda s, row, selected, parent: s.connection(_members(row, selected), selected),
    },
    "Membership": {
        "id": _typed_id(
            "Membership", lambda row: f"{row}.user_id::text || ':' || {row}.institution_id"
        ),
        "role": _column(js.string, "role"),
        "capLimit": _column(js.money, "cap_limit"),
        "effectiveCap": _effective_cap,
        "user": _member_user,
        "institution": _member_institution,
    },
    "User": {
        "id": _typed_id("User", lambda row: f"{row}.id::text"),
        "userId": _column(js.integer, "id"),
        "email": _column(js.string, "email"),
        "fname": _column(js.string, "fname"),
        "lname": _column(js.string, "lname"),
        "role": _column(js.string, "role"),
        "permissions": lambda s, row, selected, parent: js.json_column(
            f"{row}.permissions", "array", "[]"
        ),
        "createdAt": _column(js.instant, "created_at"),
        "lastLoginAt": _column(js.instant, "last_login_at"),
        "wallet": _user_wallet,
        "ledger": lambda s, row, selected, parent: s.connection(_ledger(row, selected), selected),
        "usageEvents": lambda s, row, selected, parent: s.connection(
            _usage_events(row, selected), selected
        ),
    },
    # A wallet row (or the NULLs of none) of the user `parent`.
    "CreditBalance": {
        "userId": lambda s, row, selected, user: js.integer(f"{user}.id"),
        "balance": lambda s, row, selected, user: js.money(f"coalesce({row}.balance, 0)"),
        "reserved": lambda s, row, selected, user: js.money(f"coalesce({row}.reserved, 0)"),
        "available": lambda s, row, selected, user: js.money(
            f"coalesce({row}.balance - {row}.reserved, 0)"
        ),
        "currency": lambda s, row, selected, user: js.string(
            f"coalesce(nullif({row}.currency, ''), '{DEFAULT_CURRENCY}')"
        ),
        "lastUpdated": _column(js.instant, "updated_at"),
        "autoReloadEnabled": lambda s, row, selected, user: js.boolean(
            f"coalesce({row}.auto_reload_enabled, false)"
        ),
        "autoReloadThreshold": _column(js.money, "auto_reload_threshold"),
        "autoReloadAmount": _column(js.money, "auto_reload_amount"),
    },
    "LedgerEntry": {
        "id": _typed_id("LedgerEntry", lambda row: f"{row}.id::text"),
        "userId": _column(js.integer, "user_id"),
        "type": lambda s, row, selected, parent: js.string(f"upper({row}.type)"),
        "amount": _column(js.money, "amount"),
        "balanceAfter": _column(js.money, "balance_after"),
        "description": _column(js.string, "description"),
        "reference": _column(js.string, "reference"),
        "metadata": lambda s, row, selected, parent: js.json_column(
            f"{row}.metadata", "object", "{}"
        ),
        "createdAt": _column(js.instant, "created_at"),
    },
    "UsageEvent": {
        "id": _typed_id("UsageEvent", lambda row: f"{row}.id::text"),
        "userId": _column(js.integer, "user_id"),
        "instanceId": lambda s, row, selected, parent: js.string(
            f"coalesce({row}.institution_id, '{PERSONAL_INSTANCE}')"
        ),
        "occurredAt": _column(js.instant, "occurred_at"),
        "credits": _column(js.money, "credits"),
        "messages": _column(js.integer, "messages"),
        "endpoint": _column(js.string, "endpoint"),
        "status": _column(js.string, "status"),
        "forgotten": _column(js.boolean, "forgotten"),
    },
}


# --- the root fields ----------------------------------------------------------------------


def root_statement(
    principal: Principal, root: Selection, span: PartitionSpan | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The statement (text, parameters) answering one root field; its one value is the
    field's JSON, or NULL when the root object is not there (the resolver path then answers,
    with its error where it has one). `span` is the database's `known_span`.

    Kept per (caller, selection, span): the text depends on all three (the caller's
    `readable_*` clauses, the selected fields and arguments, the bands of event pages), and a
    client repeats its few queries.
    """
    key = (_caller_key(principal), root, span)
    return _STATEMENTS.get_or_make(key, lambda: _root_statement(principal, root, span))


MAX_STATEMENTS = 1024
_STATEMENTS: RecentlyUsed[tuple[Any, ...], tuple[str, tuple[Any, ...]]] = RecentlyUsed(
    MAX_STATEMENTS
)


def _caller_key(principal: Principal) -> tuple[Any, ...]:
    """Everything of a caller the `readable_*` clauses read."""
    return (
        principal.kind,
        principal.user_id,
        principal.role,
        principal.permissions,
        tuple(sorted(principal.memberships.items())),
        principal.institution_id,
    )


def _root_statement(
    principal: Principal, root: Selection, span: PartitionSpan | None
) -> tuple[str, tuple[Any, ...]]:
    statement = JsonStatement(principal, span)
    if root.name == "institution":
        row = statement.alias()
        conditions = (
            f"institutions.id = {statement.parameter(root.argument('id'))} AND "
            f"{statement.clause(readable_institutions(principal))}"
        )
        institution = statement.object("Institution", row, root, None)
        source = f"(SELECT institutions.* FROM institutions WHERE {conditions}) AS {row}"
        value = f"(SELECT {institution} FROM {source}{statement.joins(row)})"
    elif root.name == "user":
        row = statement.alias()
        conditions = (
            f"users.id = {statement.parameter(root.argument('id'))} AND "
            f"{statement.clause(readable_users(principal))}"
        )
        user = statement.object("User", row, root, None)
        source = f"(SELECT users.* FROM users WHERE {conditions}) AS {row}"
        value = f"coalesce((SELECT {user} FROM {source}{statement.joins(row)}), 'null')"
    elif root.name == "institutions":
        value = statement.connection(_institutions(root), root)
    else:
        raise NotCompilable(f"Query.{root.name}")
    return f"SELECT {value}", tuple(statement.parameters)


async def read_json(session: AsyncSession, text: str, parameters: Sequence[Any]) -> str | None:
    """Run a compiled statement on the request's read connection: its JSON text, or None."""
    connection = await session.connection()
    result = await connection.exec_driver_sql(text, tuple(parameters))
    return result.scalar()
