"""Compiled reads on PostgreSQL: one statement per root field, plans kept, scalars spelled
as the resolver path spells them, and whole fallbacks (the differential test compares
generated operations; these pin the properties by hand)."""

from __future__ import annotations

import base64
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.conftest import FIXED_NOW, client_of, with_read_path
from tests.fixtures.factories import add_ledger_entries, add_usage_events
from tests.fixtures.page_plans import capture_statements, postgres_plan
from tests.fixtures.statements import count_statements
from tests.schema.graph import graphql
from tests.schema.test_wallet import ACME, MEMBERS_WITH_ACCOUNTS, _institution_with_members
from usagegraph.db.engine import session_factory
from usagegraph.db.models import LedgerEntry, UsageEvent, User, Wallet
from usagegraph.schema.compiled_execution import PLANS
from usagegraph.schema.pagination import encode_cursor
from usagegraph.settings import Settings

pytestmark = pytest.mark.parametrize("migrated_database", ["postgresql"], indirect=True)

LEDGER = """query($id: Int!, $after: String) { user(id: $id) {
  id userId email permissions lastLoginAt
  wallet { balance reserved available currency lastUpdated autoReloadEnabled }
  ledger(first: 2, after: $after) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id type amount balanceAfter metadata createdAt } }
  }
} }"""


@pytest.mark.parametrize("members", [5, 40])
async def test_a_compiled_root_field_is_one_statement_whatever_the_list_sizes(
    engine: AsyncEngine, app: Starlette, client: httpx.AsyncClient, members: int
) -> None:
    super_id = await _institution_with_members(engine, members)
    with count_statements(app.state.engine) as statements:
        body = await graphql(
            client, MEMBERS_WITH_ACCOUNTS, user_id=super_id, variables={"id": ACME}
        )
    assert len(body["data"]["institution"]["members"]["edges"]) == members
    # The caller's principal, then the whole answer: members, users, wallets, ledger pages
    # and counts in ONE statement.
    assert len(statements) == 2, statements
    assert statements[1].lstrip().startswith("SELECT (SELECT ('{\"members\":'")


async def test_a_members_user_and_wallet_are_joined_onto_the_page_not_scanned_per_member(
    engine: AsyncEngine, app: Starlette, client: httpx.AsyncClient
) -> None:
    """A to-one link read by a subquery per row is planned for one row: on a small table a
    sequential scan, repeated for every member. Joined onto the page it is planned for all
    of them (a hash join, or an index per row): no table is scanned whole more than once."""
    super_id = await _institution_with_members(engine, 40)
    async with engine.connect() as connection:
        await connection.exec_driver_sql("ANALYZE")
    with capture_statements(app.state.engine) as issued:
        body = await graphql(
            client, MEMBERS_WITH_ACCOUNTS, user_id=super_id, variables={"id": ACME}
        )
    assert len(body["data"]["institution"]["members"]["edges"]) == 40
    async with engine.connect() as connection:
        plan = await postgres_plan(connection, issued[-1])
    repeated = [
        (node["Relation Name"], node["Actual Loops"])
        for node in _nodes(plan)
        if node["Node Type"] == "Seq Scan" and node["Actual Loops"] > 1
    ]
    assert repeated == []


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


async def test_the_second_identical_request_plans_nothing(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    super_id = await _institution_with_members(engine, 3)
    await graphql(client, MEMBERS_WITH_ACCOUNTS, user_id=super_id, variables={"id": ACME})
    built = PLANS.built
    for _ in range(3):
        body = await graphql(
            client, MEMBERS_WITH_ACCOUNTS, user_id=super_id, variables={"id": ACME}
        )
        assert len(body["data"]["institution"]["members"]["edges"]) == 3
    assert PLANS.built == built
    # Other variables are another plan.
    await graphql(client, MEMBERS_WITH_ACCOUNTS, user_id=super_id, variables={"id": "b" * 24})
    assert PLANS.built == built + 1


async def _rich_user(engine: AsyncEngine) -> int:
    """A user whose values take every spelling: money with and without decimals, a negative
    adjustment, instants with and without microseconds, JSON metadata, a wallet."""
    async with session_factory(engine)() as session, session.begin():
        user = User(email="ada@acme.edu", role="user", permissions=["reports.read"])
        session.add(user)
        await session.flush()
        session.add(Wallet(user_id=user.id, balance=Decimal("100.5"), reserved=Decimal("0.25")))
        entries = [
            ("credit", "100", "100", {}, FIXED_NOW - timedelta(hours=3)),
            ("debit", "30.25", "69.75", {"day": "2026-05-19"}, FIXED_NOW - timedelta(hours=2)),
            ("adjustment", "-2.5", "67.25", {}, FIXED_NOW - timedelta(microseconds=1500)),
        ]
        await add_ledger_entries(
            session,
            *(
                LedgerEntry(
                    user_id=user.id,
                    type=entry_type,
                    amount=Decimal(amount),
                    balance_after=Decimal(after),
                    metadata_=metadata,
                    created_at=at,
                )
                for entry_type, amount, after, metadata, at in entries
            ),
        )
        return user.id


async def test_values_are_spelled_as_the_resolver_path_spells_them(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    user_id = await _rich_user(engine)
    body = await graphql(client, LEDGER, user_id=user_id, variables={"id": user_id})
    user = body["data"]["user"]
    assert user["userId"] == user_id
    assert user["permissions"] == ["reports.read"]
    assert user["lastLoginAt"] is None
    wallet = user["wallet"]
    assert (wallet["balance"], wallet["reserved"], wallet["available"]) == (
        "100.5",
        "0.25",
        "100.25",
    )
    assert (wallet["currency"], wallet["autoReloadEnabled"]) == ("usd", False)
    ledger = user["ledger"]
    assert ledger["totalCount"] == 3
    newest = ledger["edges"][0]["node"]
    # 15:30 minus 1.5 ms: microseconds shown; whole seconds are not.
    assert newest["createdAt"] == "2026-05-20T15:29:59.998500+00:00"
    assert (newest["type"], newest["amount"], newest["balanceAfter"]) == (
        "ADJUSTMENT",
        "-2.5",
        "67.25",
    )
    second = ledger["edges"][1]["node"]
    assert second["createdAt"] == "2026-05-20T13:30:00+00:00"
    assert second["metadata"] == {"day": "2026-05-19"}
    assert ledger["edges"][0]["cursor"] == encode_cursor(
        "2026-05-20T15:29:59.998500+00:00", _database_id(newest["id"])
    )
    assert ledger["pageInfo"] == {
        "hasNextPage": True,
        "hasPreviousPage": False,
        "startCursor": ledger["edges"][0]["cursor"],
        "endCursor": ledger["edges"][1]["cursor"],
    }
    # The next page after the end cursor: the oldest entry, 100 whole.
    after = ledger["pageInfo"]["endCursor"]
    body = await graphql(client, LEDGER, user_id=user_id, variables={"id": user_id, "after": after})
    page = body["data"]["user"]["ledger"]
    assert [e["node"]["amount"] for e in page["edges"]] == ["100"]
    assert page["pageInfo"]["hasNextPage"] is False
    assert page["pageInfo"]["hasPreviousPage"] is True


def _database_id(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().split(":")[1])


async def test_the_same_answers_with_compilation_off(
    engine: AsyncEngine, settings: Settings, client: httpx.AsyncClient
) -> None:
    user_id = await _rich_user(engine)
    compiled = await graphql(client, LEDGER, user_id=user_id, variables={"id": user_id})
    async with client_of(with_read_path(settings, compiled=False)) as resolvers:
        resolved = await graphql(resolvers, LEDGER, user_id=user_id, variables={"id": user_id})
    assert compiled == resolved


async def test_an_uncovered_field_sends_the_whole_root_field_down_the_resolver_path(
    engine: AsyncEngine, app: Starlette, client: httpx.AsyncClient
) -> None:
    user_id = await _rich_user(engine)
    async with session_factory(engine)() as session, session.begin():
        await add_usage_events(
            session,
            UsageEvent(user_id=user_id, occurred_at=FIXED_NOW - timedelta(days=1), credits=2),
        )
    query = """query($id: Int!) { user(id: $id) { email
      usageEvents(first: 1) { edges { node { credits } } }
      usage(period: DAILY) { creditsConsumed } } }"""
    with count_statements(app.state.engine) as statements:
        body = await graphql(client, query, user_id=user_id, variables={"id": user_id})
    assert body["data"]["user"]["usageEvents"]["edges"] == [{"node": {"credits": "2"}}]
    assert "errors" not in body
    # `usage` is not compiled: the user, the events page and the usage slots come through
    # the loaders, no compiled statement among them.
    assert not any("trim_scale" in statement for statement in statements)
    assert len(statements) >= 3
