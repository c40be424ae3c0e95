"""A usage write reads the rows of its own events, whatever the size of what is around them.

Every write of usage events reads the caps of its members and the live idempotency keys of
its events (datasources/usage_writes.py). One event of a member of a 2,000-member institution
whose user already holds 2,000 live keys must probe one membership and one key: PostgreSQL's
EXPLAIN ANALYZE counts the rows the scans read, filtered-out rows included; SQLite's plan
must search those tables by index, never scan them whole. Matched by two arrays or joined to
JSON rows, the same statements read every membership of the institution and every key of the
table (1,000 memberships and 15,000 keys per single event in the benchmark).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.conftest import FIXED_NOW
from tests.fixtures.page_plans import (
    analyze,
    capture_statements,
    hex24,
    insert_series,
    postgres_plan,
    rows_read,
    seconds_before,
    sqlite_full_scans,
    sqlite_plan,
)
from usagegraph.datasources import usage_writes
from usagegraph.db.engine import session_factory
from usagegraph.db.models import User

CROWD = 2_000
INSTITUTION = f"{1:024x}"  # the id hex24 gives 1
NOW = FIXED_NOW.strftime("%Y-%m-%d %H:%M:%S")
PROBED = ("memberships", "usage_idempotency_keys")


async def _crowd(connection: AsyncConnection) -> int:
    """CROWD users, all members of one institution; the first holds CROWD live keys."""
    dialect = connection.dialect.name
    await insert_series(
        connection,
        "institutions",
        1,
        {
            "id": hex24(dialect, "n"),
            "name": "'crowded'",
            "currency": "'usd'",
            "enforce_caps": "FALSE",
            "created_at": seconds_before(dialect, NOW, "0"),
        },
    )
    await insert_series(
        connection,
        "users",
        CROWD,
        {
            "email": "'m' || n || '@x.org'",
            "role": "'user'",
            "permissions": "'[]'",
            "created_at": seconds_before(dialect, NOW, "0"),
        },
    )
    first = (await connection.scalars(select(User.id).order_by(User.id).limit(1))).one()
    await insert_series(
        connection,
        "memberships",
        CROWD,
        {
            "user_id": f"{first} - 1 + n",
            "institution_id": f"'{INSTITUTION}'",
            "role": "'user'",
            "created_at": seconds_before(dialect, NOW, "0"),
        },
    )
    await insert_series(
        connection,
        "usage_idempotency_keys",
        CROWD,
        {
            "user_id": str(first),
            "key": "'key-' || n",
            "usage_event_id": "n",
            "created_at": seconds_before(dialect, NOW, "n"),
        },
    )
    await analyze(connection)
    return first


async def test_one_event_probes_its_membership_and_its_key(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        member = await _crowd(connection)
    async with session_factory(engine)() as session, session.begin():
        with capture_statements(engine) as issued:
            caps = await usage_writes.member_caps(session, {(member, INSTITUTION)})
            locked = await usage_writes.member_caps(session, {(member, INSTITUTION)}, lock=True)
            keys = await usage_writes.live_keys(
                session, {(member, "key-7")}, FIXED_NOW - timedelta(days=32)
            )
        connection = await session.connection()
        if engine.dialect.name == "postgresql":
            plans = [await postgres_plan(connection, each) for each in issued[:3]]
            read = {table: [rows_read(plan, table) for plan in plans] for table in PROBED}
            # One probe each: a statement that does not read a table reads 0 of it.
            assert read == {"memberships": [1, 1, 0], "usage_idempotency_keys": [0, 0, 1]}
        else:
            for each in issued[:3]:
                assert sqlite_full_scans(await sqlite_plan(connection, each), PROBED, ()) == []
    assert list(caps) == list(locked) == [(member, INSTITUTION)]
    assert caps[(member, INSTITUTION)].cap is None
    assert list(keys) == [(member, "key-7")]


async def test_members_outside_the_pairs_are_not_members(engine: AsyncEngine) -> None:
    """Pairs, not users times institutions: a user of the batch who belongs to another
    institution of the batch is no member of it for the write."""
    async with engine.begin() as connection:
        member = await _crowd(connection)
    other = f"{2:024x}"
    async with session_factory(engine)() as session, session.begin():
        caps = await usage_writes.member_caps(session, {(member, INSTITUTION), (member + 1, other)})
    assert list(caps) == [(member, INSTITUTION)]
