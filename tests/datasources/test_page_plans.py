"""Every connection and per-parent list costs its page, not its history (issue 14).

For each list of the graph that is loaded per parent, one parent holds 50,000 rows of the
list's table and the others a handful; the list is read for 50 parents (`first: 5`, or the
field's own page argument) through the resolver the GraphQL field calls, so the loader
batches them as a query would: one statement for all the parents (two for billing periods).
Every statement that path really issued is then explained: on PostgreSQL the rows the scans
of the big table read (EXPLAIN ANALYZE, filtered-out rows included) stay within a small
multiple of parents x page, and those of all tables within twice that; on SQLite every read
of the big table is a search of the index that serves the list's order, with no sort of what
it reads, and no statement scans any table whole.

Lists without a page argument (a user's memberships, an institution's client buckets) return
a parent's rows whole, so there the 50,000 rows belong to a parent that is not asked for and
the bound is a multiple of the rows returned: the cost follows the answer, not the table.

A page that is not asked for its total issues no count statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.applications import Starlette

from tests.conftest import FIXED_NOW
from tests.fixtures.contexts import request_context
from tests.fixtures.factories import add_usage_events, add_user
from tests.fixtures.page_plans import (
    analyze,
    capture_statements,
    days_before,
    hex24,
    insert_series,
    postgres_plan,
    reads_table,
    rows_read,
    seconds_before,
    sqlite_access_faults,
    sqlite_full_scans,
    sqlite_plan,
)
from tests.fixtures.statements import count_statements
from tests.schema.graph import graphql
from usagegraph.auth.access import INSTITUTION_ADMIN_PERMISSION
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Base, ClientBucket, Institution, UsageEvent, User
from usagegraph.resolvers import billing, buckets, directory, usage_events, wallet_ledger
from usagegraph.resolvers.request_context import RequestContext

BIG_HISTORY = 50_000
PARENTS = 50
FIRST = 5
SMALL = 3  # rows of every other parent
SUPER = Principal(kind=CallerKind.USER, user_id=0, role="super")
ADMIN_ID = 10**9  # not among the rows: an admin reads them as their institutions' admin
NOW = FIXED_NOW.strftime("%Y-%m-%d %H:%M:%S")
TODAY = FIXED_NOW.strftime("%Y-%m-%d")
LONG_AGO = "2000-01-01 00:00:00"
FIRST_INSTITUTION = f"{1:024x}"  # the id `_institutions` gives its first institution


# --- fixtures: parents, then one big history and small ones, each one INSERT ... SELECT ---


async def _users(connection: AsyncConnection, count: int) -> list[int]:
    dialect = connection.dialect.name
    await insert_series(
        connection,
        "users",
        count,
        {
            "email": "'p' || n || '@x.org'",
            "role": "'user'",
            "permissions": "'[]'",
            "created_at": seconds_before(dialect, NOW, "0"),
        },
    )
    return list((await connection.scalars(select(User.id).order_by(User.id))).all())


async def _institutions(connection: AsyncConnection, count: int) -> list[str]:
    dialect = connection.dialect.name
    await insert_series(
        connection,
        "institutions",
        count,
        {
            "id": hex24(dialect, "n"),
            "name": "'i' || n",
            "currency": "'usd'",
            "enforce_caps": "FALSE",
            "created_at": seconds_before(dialect, LONG_AGO, "0"),
        },
    )
    return list((await connection.scalars(select(Institution.id).order_by(Institution.id))).all())


def _small_parent(first: Any, per: int = SMALL) -> str:
    """SQL for the parent of row n of the small histories: `per` rows for each parent after
    `first` (integer ids are consecutive, so the n-th small row belongs to first + 1 + ...)."""
    return f"{first} + 1 + (n - 1) / {per}"


def _event_columns(dialect: str) -> dict[str, str]:
    """The columns every seeded usage event shares (a personal event unless overridden)."""
    return {
        "credits": "1",
        "messages": "1",
        "status": "'success'",
        "forgotten": "FALSE",
        "over_cap": "FALSE",
        "created_at": seconds_before(dialect, NOW, "0"),
    }


async def _seed_usage_events(connection: AsyncConnection) -> list[Any]:
    dialect = connection.dialect.name
    users = await _users(connection, PARENTS)
    # In an institution, so an admin of it reads them as well as super does.
    (institution,) = await _institutions(connection, 1)
    event = {**_event_columns(dialect), "institution_id": f"'{institution}'"}
    await insert_series(
        connection,
        "usage_events",
        BIG_HISTORY,
        {**event, "user_id": str(users[0]), "occurred_at": seconds_before(dialect, NOW, "5 * n")},
    )
    await insert_series(
        connection,
        "usage_events",
        SMALL * (PARENTS - 1),
        {
            **event,
            "user_id": _small_parent(users[0]),
            "occurred_at": seconds_before(dialect, NOW, "60 * n"),
        },
    )
    return users


async def _seed_ledger(connection: AsyncConnection) -> list[Any]:
    dialect = connection.dialect.name
    users = await _users(connection, PARENTS)
    entry = {
        "type": "'credit'",
        "amount": "1",
        "balance_after": "n",
        "metadata": "'{}'",
    }
    await insert_series(
        connection,
        "ledger_entries",
        BIG_HISTORY,
        {**entry, "user_id": str(users[0]), "created_at": seconds_before(dialect, NOW, "5 * n")},
    )
    await insert_series(
        connection,
        "ledger_entries",
        SMALL * (PARENTS - 1),
        {
            **entry,
            "user_id": _small_parent(users[0]),
            "created_at": seconds_before(dialect, NOW, "60 * n"),
        },
    )
    return users


async def _seed_memberships(connection: AsyncConnection) -> tuple[list[str], list[int]]:
    """The first institution has 50,000 members; each other institution has three of them."""
    dialect = connection.dialect.name
    institutions = await _institutions(connection, PARENTS)
    users = await _users(connection, BIG_HISTORY)
    membership = {"role": "'user'", "created_at": seconds_before(dialect, NOW, "0")}
    await insert_series(
        connection,
        "memberships",
        BIG_HISTORY,
        {**membership, "institution_id": f"'{institutions[0]}'", "user_id": f"{users[0]} - 1 + n"},
    )
    await insert_series(
        connection,
        "memberships",
        SMALL * (PARENTS - 1),
        {
            **membership,
            "institution_id": hex24(dialect, "2 + (n - 1) / 3"),
            "user_id": f"{users[0]} - 1 + n",
        },
    )
    return institutions, users


async def _seed_usage_events_of_an_instance(connection: AsyncConnection) -> list[Any]:
    """Every user has events in one institution; the first also has 50,000 newer personal
    events, which a page of that institution's events must not read through."""
    dialect = connection.dialect.name
    users = await _users(connection, PARENTS)
    (institution,) = await _institutions(connection, 1)
    event = _event_columns(dialect)
    await insert_series(
        connection,
        "usage_events",
        BIG_HISTORY,
        {**event, "user_id": str(users[0]), "occurred_at": seconds_before(dialect, NOW, "5 * n")},
    )
    await insert_series(
        connection,
        "usage_events",
        SMALL * PARENTS,
        {
            **event,
            "institution_id": f"'{institution}'",
            "user_id": f"{users[0]} + (n - 1) / {SMALL}",
            "occurred_at": seconds_before(dialect, NOW, f"{5 * BIG_HISTORY} + 60 * n"),
        },
    )
    return users


async def _seed_ledger_of_a_type(connection: AsyncConnection) -> list[Any]:
    """Every user has three debits; the first also has 50,000 newer credits, which a page of
    debits must not read through."""
    dialect = connection.dialect.name
    users = await _users(connection, PARENTS)
    entry = {"amount": "1", "balance_after": "n", "metadata": "'{}'"}
    await insert_series(
        connection,
        "ledger_entries",
        BIG_HISTORY,
        {
            **entry,
            "type": "'credit'",
            "user_id": str(users[0]),
            "created_at": seconds_before(dialect, NOW, "5 * n"),
        },
    )
    await insert_series(
        connection,
        "ledger_entries",
        SMALL * PARENTS,
        {
            **entry,
            "type": "'debit'",
            "user_id": f"{users[0]} + (n - 1) / {SMALL}",
            "created_at": seconds_before(dialect, NOW, f"{5 * BIG_HISTORY} + 60 * n"),
        },
    )
    return users


async def _seed_members(connection: AsyncConnection) -> list[Any]:
    institutions, _ = await _seed_memberships(connection)
    return list(institutions)


async def _seed_memberships_of_users(connection: AsyncConnection) -> list[Any]:
    """50 of the big institution's members, each also a member of one small institution."""
    _, users = await _seed_memberships(connection)
    return users[:PARENTS]


async def _seed_snapshots(connection: AsyncConnection) -> list[Any]:
    dialect = connection.dialect.name
    (institution,) = await _institutions(connection, 1)
    await insert_series(
        connection,
        "client_buckets",
        PARENTS,
        {
            "id": "'b' || (1000 + n)",
            "institution_id": f"'{institution}'",
            "created_at": seconds_before(dialect, NOW, "0"),
        },
    )
    bucket_ids = list((await connection.scalars(select(ClientBucket.id).order_by("id"))).all())
    # As many buckets again without snapshots: who may read a snapshot is decided per bucket,
    # and that decision must not read the bucket table whole for every parent either.
    await insert_series(
        connection,
        "client_buckets",
        BIG_HISTORY,
        {
            "id": "'z' || n",
            "institution_id": f"'{institution}'",
            "created_at": seconds_before(dialect, NOW, "0"),
        },
    )
    snapshot = {
        "records": "'{}'",
        "object_count": "0",
        "total_bytes": "0",
        "by_prefix": "'{}'",
        "computed_at": seconds_before(dialect, NOW, "0"),
    }
    await insert_series(
        connection,
        "snapshots",
        BIG_HISTORY,
        {
            **snapshot,
            "bucket_id": f"'{bucket_ids[0]}'",
            "snapshot_date": days_before(dialect, TODAY, "n"),
        },
    )
    await insert_series(
        connection,
        "snapshots",
        SMALL * (PARENTS - 1),
        {
            **snapshot,
            "bucket_id": "'b' || (1001 + 1 + (n - 1) / 3)",
            "snapshot_date": days_before(dialect, TODAY, "(n - 1) % 3"),
        },
    )
    return bucket_ids


async def _seed_client_buckets(connection: AsyncConnection) -> list[Any]:
    """The first institution owns 50,000 buckets and is not asked for; 50 others own three."""
    dialect = connection.dialect.name
    institutions = await _institutions(connection, PARENTS + 1)
    bucket = {"created_at": seconds_before(dialect, NOW, "0")}
    await insert_series(
        connection,
        "client_buckets",
        BIG_HISTORY,
        {**bucket, "id": "'big-' || n", "institution_id": f"'{institutions[0]}'"},
    )
    await insert_series(
        connection,
        "client_buckets",
        SMALL * PARENTS,
        {**bucket, "id": "'small-' || n", "institution_id": hex24(dialect, "2 + (n - 1) / 3")},
    )
    return institutions[1:]


async def _seed_institutions(connection: AsyncConnection) -> list[Any]:
    """50,000 institutions under the one root list."""
    await _institutions(connection, BIG_HISTORY)
    return [None]


async def _seed_billing(connection: AsyncConnection) -> list[Any]:
    """50,000 days of the first institution's usage in the day rollups (back to 1889), three
    days of each other's."""
    institutions = await _institutions(connection, PARENTS)
    (user,) = await _users(connection, 1)
    midnight = int(FIXED_NOW.replace(hour=0, minute=0).timestamp())
    day = {
        "user_id": str(user),
        "credits": "1",
        "messages": "1",
        "events": "1",
        "failed_events": "0",
        "forgotten": "FALSE",
    }
    await insert_series(
        connection,
        "usage_rollups_day",
        BIG_HISTORY,
        {
            **day,
            "instance": f"'{institutions[0]}'",
            "institution_id": f"'{institutions[0]}'",
            "slot_start": f"{midnight} - 86400 * CAST(n - 1 AS BIGINT)",
        },
    )
    small = hex24(connection.dialect.name, "2 + (n - 1) / 3")
    await insert_series(
        connection,
        "usage_rollups_day",
        SMALL * (PARENTS - 1),
        {
            **day,
            "instance": small,
            "institution_id": small,
            "slot_start": f"{midnight} - 86400 * CAST((n - 1) % 3 AS BIGINT)",
        },
    )
    return institutions


# --- reads: what each GraphQL field's resolver asks for one parent -------------------------


async def _read_usage_events(context: RequestContext, user: Any) -> Sequence[Any]:
    rows, _count = await usage_events.usage_event_page(
        context, user, usage_events.PageRequest(size=FIRST)
    )
    return rows


async def _read_ledger(context: RequestContext, user: Any) -> Sequence[Any]:
    rows, _count = await wallet_ledger.ledger_keyset_page(
        context, user, wallet_ledger.LedgerFilter(), size=FIRST, before=(None, None)
    )
    return rows


async def _read_usage_events_of_an_instance(context: RequestContext, user: Any) -> Sequence[Any]:
    rows, _count = await usage_events.usage_event_page(
        context, user, usage_events.PageRequest(size=FIRST, instance=FIRST_INSTITUTION)
    )
    return rows


async def _read_debits(context: RequestContext, user: Any) -> Sequence[Any]:
    debits = wallet_ledger.LedgerFilter(entry_type=wallet_ledger.LedgerType.DEBIT)
    rows, _count = await wallet_ledger.ledger_keyset_page(
        context, user, debits, size=FIRST, before=(None, None)
    )
    return rows


async def _read_members(context: RequestContext, institution: Any) -> Sequence[Any]:
    rows, _count = await directory.member_page(context, institution, size=FIRST, after_user_id=None)
    return rows


async def _read_memberships(context: RequestContext, user: Any) -> Sequence[Any]:
    return await directory.memberships_of_user(context, user)


async def _read_snapshots(context: RequestContext, bucket: Any) -> Sequence[Any]:
    return await buckets.snapshot_page(
        context, bucket, start_date=None, end_date=None, size=FIRST, after_day=None
    )


async def _read_client_buckets(context: RequestContext, institution: Any) -> Sequence[Any]:
    return await buckets.buckets_of_institution(context, institution)


async def _read_institutions(context: RequestContext, _root: Any) -> Sequence[Any]:
    rows, _count = await directory.institutions_page(context, size=FIRST, after_id=None)
    return rows


async def _read_billing_periods(context: RequestContext, institution: Any) -> Sequence[Any]:
    page = await billing.billing_periods(context, institution, limit=FIRST, offset=0)
    return page.periods


@dataclass(frozen=True, slots=True)
class PerParentList:
    """A list of the graph read for many parents, and what its page may cost."""

    field: str
    table: str
    seed: Callable[[AsyncConnection], Awaitable[list[Any]]]
    read: Callable[[RequestContext, Any], Awaitable[Sequence[Any]]]
    # Rows the read returns over all parents (pages carry their one look-ahead row).
    returned: int
    # On PostgreSQL, the most rows the scans of `table` may read over all parents.
    most_rows_read: int
    # On SQLite, how every read of `table` must begin (an index search, not a scan).
    sqlite_access: str | tuple[str, ...]
    # Statements for all the parents together: a batch, never one per parent.
    statements: int = 1
    # Who reads it: super, and an institution admin (but a ledger is its holder's and
    # super's only).
    callers: tuple[str, ...] = ("super", "admin")

    def __str__(self) -> str:
        return self.field


PAGED = FIRST + 1 + SMALL * (PARENTS - 1)  # the big parent's page and its look-ahead row
LISTS = [
    PerParentList(
        "User.usageEvents",
        "usage_events",
        _seed_usage_events,
        _read_usage_events,
        returned=PAGED,
        # Each page plus at most one row per month partition scanned per parent.
        most_rows_read=PARENTS * (FIRST + 1) * 4,
        # Super's page walks the user's events; an admin's, those of the institution they
        # administer.
        sqlite_access=(
            "SEARCH usage_events USING INDEX ix_usage_events_user_time_id",
            "SEARCH usage_events USING INDEX ix_usage_events_user_instance_time_id",
        ),
    ),
    PerParentList(
        "User.ledger",
        "ledger_entries",
        _seed_ledger,
        _read_ledger,
        returned=PAGED,
        most_rows_read=PARENTS * (FIRST + 1) * 2,
        sqlite_access="SEARCH ledger_entries USING INDEX ix_ledger_entries_user_time",
        callers=("super",),
    ),
    PerParentList(
        "User.usageEvents(instanceId)",
        "usage_events",
        _seed_usage_events_of_an_instance,
        _read_usage_events_of_an_instance,
        returned=SMALL * PARENTS,
        most_rows_read=PARENTS * (FIRST + 1) * 4,
        sqlite_access="SEARCH usage_events USING INDEX ix_usage_events_user_instance_time_id",
    ),
    PerParentList(
        # An admin's page of a member's events, without a filter: the member's 50,000
        # personal events are not the admin's to read, and must not be read through either.
        "User.usageEvents(beside unreadable history)",
        "usage_events",
        _seed_usage_events_of_an_instance,
        _read_usage_events,
        returned=SMALL * PARENTS,
        most_rows_read=PARENTS * (FIRST + 1) * 4,
        sqlite_access="SEARCH usage_events USING INDEX ix_usage_events_user_instance_time_id",
        callers=("admin",),
    ),
    PerParentList(
        "User.ledger(type)",
        "ledger_entries",
        _seed_ledger_of_a_type,
        _read_debits,
        returned=SMALL * PARENTS,
        most_rows_read=PARENTS * (FIRST + 1) * 2,
        sqlite_access="SEARCH ledger_entries USING INDEX ix_ledger_entries_user_type_time",
        callers=("super",),
    ),
    PerParentList(
        "Institution.members",
        "memberships",
        _seed_members,
        _read_members,
        returned=PAGED,
        most_rows_read=PARENTS * (FIRST + 1) * 2,
        sqlite_access="SEARCH memberships USING INDEX ix_memberships_institution_user",
    ),
    PerParentList(
        "ClientBucket.snapshots",
        "snapshots",
        _seed_snapshots,
        _read_snapshots,
        returned=PAGED,
        most_rows_read=PARENTS * (FIRST + 1) * 2,
        sqlite_access="SEARCH snapshots USING INDEX sqlite_autoindex_snapshots_1",
    ),
    PerParentList(
        "User.memberships",
        "memberships",
        _seed_memberships_of_users,
        _read_memberships,
        returned=2 * PARENTS,
        most_rows_read=2 * 2 * PARENTS,
        sqlite_access="SEARCH memberships USING INDEX sqlite_autoindex_memberships_1",
    ),
    PerParentList(
        "Institution.buckets",
        "client_buckets",
        _seed_client_buckets,
        _read_client_buckets,
        returned=SMALL * PARENTS,
        most_rows_read=2 * SMALL * PARENTS,
        sqlite_access="SEARCH client_buckets USING INDEX ix_client_buckets_institution_bucket",
    ),
    PerParentList(
        "Query.institutions",
        "institutions",
        _seed_institutions,
        _read_institutions,
        returned=FIRST + 1,
        most_rows_read=2 * (FIRST + 1),
        # Super's list walks the primary key until the LIMIT; a member's searches it for
        # their institutions.
        sqlite_access=(
            "SCAN institutions USING INDEX sqlite_autoindex_institutions_1",
            "SEARCH institutions USING INDEX sqlite_autoindex_institutions_1",
        ),
    ),
    PerParentList(
        "Institution.billingPeriods",
        "usage_rollups_day",
        _seed_billing,
        _read_billing_periods,
        returned=FIRST * PARENTS,
        # A month is up to 31 day rows of each user active in it: the page is months.
        most_rows_read=PARENTS * FIRST * 31,
        sqlite_access="SEARCH usage_rollups_day USING INDEX ix_usage_rollups_day_institution_slot",
        # The institutions' billing facts, then the months of their pages.
        statements=2,
    ),
]


async def _admin_of_the_first_institutions(engine: AsyncEngine) -> Principal:
    """An institution admin of the first 51 institutions by id: every institution of each
    fixture but the 50,000 of the institutions list. Their scoping clauses (memberships,
    administered institutions) are what a real caller's page carries around it."""
    async with engine.connect() as connection:
        institutions = (
            await connection.scalars(
                select(Institution.id).order_by(Institution.id).limit(PARENTS + 1)
            )
        ).all()
    return Principal.for_user(
        ADMIN_ID,
        "admin",
        frozenset({INSTITUTION_ADMIN_PERMISSION}),
        dict.fromkeys(institutions, "admin"),
    )


@pytest.mark.parametrize(
    ("listed", "caller"),
    [
        pytest.param(listed, caller, id=f"{listed}-{caller}")
        for caller in ("super", "admin")
        for listed in LISTS
        if caller in listed.callers
    ],
)
async def test_a_list_per_parent_reads_its_page_not_the_history(
    engine: AsyncEngine, listed: PerParentList, caller: str
) -> None:
    async with engine.begin() as connection:
        parents = await listed.seed(connection)
        await analyze(connection)
    principal = SUPER if caller == "super" else await _admin_of_the_first_institutions(engine)
    context = request_context(engine, principal)
    with capture_statements(engine) as issued:
        pages = await asyncio.gather(*(listed.read(context, parent) for parent in parents))
    assert sum(len(page) for page in pages) == listed.returned
    assert len(issued) == listed.statements, [statement.statement for statement in issued]
    reading = [statement for statement in issued if reads_table(statement, listed.table)]
    assert reading, [statement.statement for statement in issued]
    async with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            big = every = 0
            for statement in issued:
                plan = await postgres_plan(connection, statement)
                big += rows_read(plan, listed.table)
                every += rows_read(plan, None)
            print(
                f"{listed} ({caller}): {len(issued)} statement(s) read {big} rows of "
                f"{listed.table}, {every} rows of all tables"
            )
            assert big <= listed.most_rows_read, big
            # Nor may the scoping (readable_*) or a look-up beside the page read a whole table.
            assert every <= 2 * listed.most_rows_read, every
        else:
            tables = {*Base.metadata.tables}
            accesses: set[str] = set()
            for statement in issued:
                plan = await sqlite_plan(connection, statement)
                details = [line.detail for line in plan]
                assert sqlite_full_scans(plan, tables, listed.sqlite_access) == [], details
                if statement in reading:
                    faults = sqlite_access_faults(plan, listed.table, listed.sqlite_access)
                    assert faults == [], details
                accesses |= {detail for detail in details if _names_a_table(detail, tables)}
            print(
                f"{listed} ({caller}): {len(issued)} statement(s):", *sorted(accesses), sep="\n  "
            )


def _names_a_table(detail: str, tables: set[str]) -> bool:
    """Whether a plan line reads one of the tables (not a subquery's rows)."""
    words = detail.split()
    return len(words) > 1 and words[1] in tables


EVENTS = """query($id: Int!) { user(id: $id) { usageEvents(first: 2) {
  edges { node { credits } } %s } } }"""


async def test_no_count_statement_unless_total_count_is_selected(
    engine: AsyncEngine, app: Starlette, client: httpx.AsyncClient
) -> None:
    user = await add_user(engine, email="me@x.org")
    async with session_factory(engine)() as session, session.begin():
        for minutes in range(3):
            await add_usage_events(
                session,
                UsageEvent(
                    user_id=user, occurred_at=FIXED_NOW - timedelta(minutes=minutes), credits=1
                ),
            )
    with count_statements(app.state.engine) as without_total:
        body = await graphql(client, EVENTS % "", user_id=user, variables={"id": user})
    assert len(body["data"]["user"]["usageEvents"]["edges"]) == 2
    with count_statements(app.state.engine) as with_total:
        body = await graphql(client, EVENTS % "totalCount", user_id=user, variables={"id": user})
    assert body["data"]["user"]["usageEvents"]["totalCount"] == 3

    def counting(statements: list[str]) -> list[str]:
        """Statements that count or sum events (a compiled page's own `count(*) AS n` of its
        at most first + 1 rows is not a count of the history)."""
        flat = [" ".join(s.lower().split()) for s in statements]
        return [s for s in flat if "usage_totals" in s or "count(*) from" in s or "sum(" in s]

    assert counting(without_total) == []
    assert len(counting(with_total)) == 1
    assert "usage_totals" in counting(with_total)[0]
