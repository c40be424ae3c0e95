"""Paging through every connection of the graph, two rows at a time, loses and repeats nothing.

Each connection is walked with `first: 2` and the `after` cursor of the page before, over rows
whose sort keys tie where the key can tie (usage events at the same instant, ledger entries
written at the same instant, to the microsecond): the walk must return every row once, in the
documented order (docs/decisions.md, "The graph"): usage events and ledger entries newest
first with ties by id descending, snapshots newest day first, members by user id,
institutions by id. A page boundary that falls inside a group of tied rows is where a cursor
holding only the time (or a time rounded on its way through the cursor) would skip or repeat
rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FIXED_NOW
from tests.fixtures.factories import (
    add_institution,
    add_ledger_entries,
    add_usage_events,
    add_user,
    numbered_credits,
    stored_usage_events,
)
from tests.schema.graph import graphql
from usagegraph.db.engine import session_factory
from usagegraph.db.models import ClientBucket, LedgerEntry, Membership, Snapshot, UsageEvent

# Two instants with microseconds (a cursor must carry them exactly), interleaved so that id
# order and time order disagree: the newer instant's rows are not the last inserted.
LATER = FIXED_NOW - timedelta(minutes=10) + timedelta(microseconds=123_456)
EARLIER = LATER - timedelta(minutes=1)
TIMES = [LATER, EARLIER, LATER, EARLIER, LATER, LATER, EARLIER]
ROWS = len(TIMES)
INSTITUTION = "c" * 24


@dataclass(frozen=True, slots=True)
class Walk:
    """A connection to walk, its rows, and the order the walk must return their labels in."""

    # The query: `$after` is the cursor, `$id` the parent; the connection is asked `first: 2`.
    query: str
    # Where the connection sits in the response's data.
    path: tuple[str, ...]
    # Writes the rows; returns the parent's id and the labels in the documented order.
    seed: Callable[[AsyncEngine], Awaitable[tuple[Any, list[Any]]]]
    # A row's label in the response.
    label: Callable[[dict[str, Any]], Any]
    name: str

    def __str__(self) -> str:
        return self.name


def _newest_first(rows: list[tuple[Any, int, Any]]) -> list[Any]:
    """Labels of (time, id, label) rows, newest first, ties by id descending."""
    return [label for _time, _id, label in sorted(rows, key=lambda r: (r[0], r[1]), reverse=True)]


async def _usage_events(engine: AsyncEngine) -> tuple[Any, list[Any]]:
    user = await add_user(engine, email="events@x.org")
    async with session_factory(engine)() as session, session.begin():
        for index, moment in enumerate(TIMES):
            await add_usage_events(
                session, UsageEvent(user_id=user, occurred_at=moment, credits=Decimal(index + 1))
            )
    rows = await stored_usage_events(engine, user)
    return user, _newest_first([(t, i, str(c)) for t, i, c in rows])


async def _ledger(engine: AsyncEngine) -> tuple[Any, list[Any]]:
    user = await add_user(engine, email="ledger@x.org")
    async with session_factory(engine)() as session, session.begin():
        await add_ledger_entries(session, *numbered_credits(user, TIMES))
    async with session_factory(engine)() as session:
        rows = (
            await session.execute(
                select(LedgerEntry.created_at, LedgerEntry.id, LedgerEntry.metadata_).where(
                    LedgerEntry.user_id == user
                )
            )
        ).all()
    return user, _newest_first([(t, i, m["n"]) for t, i, m in rows])


async def _members(engine: AsyncEngine) -> tuple[Any, list[Any]]:
    await add_institution(engine, institution_id=INSTITUTION, name="Paged")
    members = [await add_user(engine, email=f"m{index}@x.org") for index in range(ROWS)]
    async with session_factory(engine)() as session, session.begin():
        # Added in an order other than by id, which the page must not follow.
        session.add_all(
            Membership(user_id=user, institution_id=INSTITUTION, role="user")
            for user in reversed(members)
        )
    return INSTITUTION, sorted(members)


async def _snapshots(engine: AsyncEngine) -> tuple[Any, list[Any]]:
    await add_institution(engine, institution_id=INSTITUTION, name="Paged")
    days = [date(2026, 5, 1) + timedelta(days=offset) for offset in (3, 0, 6, 1, 5, 2, 4)]
    async with session_factory(engine)() as session, session.begin():
        session.add(ClientBucket(id="paged", institution_id=INSTITUTION))
        await session.flush()
        session.add_all(Snapshot(bucket_id="paged", snapshot_date=day, records={}) for day in days)
    return "paged", [day.isoformat() for day in sorted(days, reverse=True)]


async def _institutions(engine: AsyncEngine) -> tuple[Any, list[Any]]:
    ids = [f"{digit}" * 24 for digit in "3a6f1d9"]
    for institution_id in ids:
        await add_institution(engine, institution_id=institution_id, name=institution_id)
    return None, sorted(ids)


PAGE = "pageInfo { hasNextPage endCursor } edges { node { %s } }"
WALKS = [
    Walk(
        """query($id: Int!, $after: String) { user(id: $id) {
             usageEvents(first: 2, after: $after) { %s } } }"""
        % (PAGE % "credits"),
        ("user", "usageEvents"),
        _usage_events,
        lambda node: node["credits"],
        "User.usageEvents",
    ),
    Walk(
        """query($id: Int!, $after: String) { user(id: $id) {
             ledger(first: 2, after: $after) { %s } } }"""
        % (PAGE % "metadata"),
        ("user", "ledger"),
        _ledger,
        lambda node: node["metadata"]["n"],
        "User.ledger",
    ),
    Walk(
        """query($id: String!, $after: String) { institution(id: $id) {
             members(first: 2, after: $after) { %s } } }"""
        % (PAGE % "user { userId }"),
        ("institution", "members"),
        _members,
        lambda node: node["user"]["userId"],
        "Institution.members",
    ),
    Walk(
        """query($id: String!, $after: String) { bucket(id: $id) {
             snapshots(first: 2, after: $after) { %s } } }"""
        % (PAGE % "snapshotDate"),
        ("bucket", "snapshots"),
        _snapshots,
        lambda node: node["snapshotDate"],
        "ClientBucket.snapshots",
    ),
    Walk(
        """query($after: String) { institutions(first: 2, after: $after) { %s } }"""
        % (PAGE % "databaseId"),
        ("institutions",),
        _institutions,
        lambda node: node["databaseId"],
        "Query.institutions",
    ),
]


@pytest.mark.parametrize("walk", WALKS, ids=str)
async def test_paging_two_at_a_time_returns_every_row_once_in_the_documented_order(
    engine: AsyncEngine, client: httpx.AsyncClient, walk: Walk
) -> None:
    caller = await add_user(engine, email="root@x.org", role="super")
    parent, expected = await walk.seed(engine)
    assert len(expected) == ROWS
    seen: list[Any] = []
    sizes: list[int] = []
    after: str | None = None
    while True:
        variables: dict[str, Any] = {"after": after}
        if parent is not None:
            variables["id"] = parent
        body = await graphql(client, walk.query, user_id=caller, variables=variables)
        assert "errors" not in body, body
        page = body["data"]
        for key in walk.path:
            page = page[key]
        sizes.append(len(page["edges"]))
        seen += [walk.label(edge["node"]) for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert len(sizes) <= ROWS, seen  # a cursor that does not advance would loop forever
    assert seen == expected
    assert sizes == [2, 2, 2, 1]
