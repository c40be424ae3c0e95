"""Accounts in the graph: batched (constant SQL), paginated in SQL, private to their holder."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.conftest import FIXED_NOW, TEST_JWT_SECRET, client_of, with_read_path
from tests.fixtures.factories import (
    add_institution,
    add_institution_admin,
    add_ledger_entries,
    add_usage_events,
    add_user,
    numbered_credits,
)
from tests.fixtures.statements import count_statements
from tests.schema.graph import error_codes, graphql
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import session_factory
from usagegraph.db.models import LedgerEntry, Membership, UsageEvent, User, Wallet
from usagegraph.settings import Settings

ACME = "a" * 24

MEMBERS_WITH_ACCOUNTS = """
query($id: String!) {
  institution(id: $id) {
    members(first: 100) {
      totalCount
      edges { node {
        capLimit effectiveCap
        user { email wallet { balance available }
               ledger(first: 10) { totalCount edges { node { amount balanceAfter } } } }
      } }
    }
  }
}"""


async def _institution_with_members(engine: AsyncEngine, members: int) -> int:
    """`members` members with a wallet and 12 ledger entries each (+10 each), and a super."""
    await add_institution(engine, institution_id=ACME, name="Acme")
    async with session_factory(engine)() as session, session.begin():
        for n in range(members):
            user = User(email=f"member{n}@acme.edu", role="user", permissions=[])
            session.add(user)
            await session.flush()
            session.add(Membership(user_id=user.id, institution_id=ACME, role="user"))
            session.add(Wallet(user_id=user.id, balance=Decimal(120), reserved=Decimal(0)))
            await add_ledger_entries(
                session,
                *(
                    LedgerEntry(
                        user_id=user.id,
                        type="credit",
                        amount=Decimal(10),
                        balance_after=Decimal(10 * (i + 1)),
                        created_at=FIXED_NOW - timedelta(hours=12 - i),
                        metadata_={},
                    )
                    for i in range(12)
                ),
            )
    return await add_user(engine, email="root@ug.io", role="super")


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "resolvers"])
@pytest.mark.parametrize("members", [5, 100])
async def test_members_with_balances_and_ledgers_cost_a_constant_number_of_statements(
    engine: AsyncEngine, settings: Settings, members: int, compiled: bool
) -> None:
    super_id = await _institution_with_members(engine, members)
    apps: list[Starlette] = []
    keep = lambda application: apps.append(application) or application  # noqa: E731
    async with client_of(with_read_path(settings, compiled), changes=keep) as client:
        app = apps[0]
        with count_statements(app.state.engine) as statements:
            body = await graphql(
                client, MEMBERS_WITH_ACCOUNTS, user_id=super_id, variables={"id": ACME}
            )
    edges = body["data"]["institution"]["members"]["edges"]
    assert len(edges) == members
    first = edges[0]["node"]["user"]
    assert first["wallet"] == {"balance": "120", "available": "120"}
    assert first["ledger"]["totalCount"] == 12
    assert [e["node"]["balanceAfter"] for e in first["ledger"]["edges"]][:3] == [
        "120",
        "110",
        "100",
    ]
    if compiled and app.state.engine.dialect.name == "postgresql":
        # principal 1, then the whole read in ONE compiled statement.
        assert len(statements) == 2, statements
    else:
        # principal 1, institution 1, members page (a super's comes with the users) 1 +
        # count 1, wallets 1, ledger pages 1 + counts 1 — the same for 5 members as for 100.
        assert len(statements) == 7, statements


async def test_a_250_entry_ledger_pages_without_gaps_or_repeats(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    user_id = await add_user(engine, email="rich@example.com")
    async with session_factory(engine)() as session, session.begin():
        # Pairs share a timestamp, so the id tie-break is exercised too.
        moments = (FIXED_NOW - timedelta(minutes=250 - i // 2 * 2) for i in range(250))
        await add_ledger_entries(session, *numbered_credits(user_id, moments))
    query = """query($id: Int!, $after: String) { user(id: $id) {
        ledger(first: 100, after: $after) {
          totalCount pageInfo { hasNextPage endCursor } edges { node { metadata } } } } }"""
    seen: list[int] = []
    after = None
    pages = []
    while True:
        body = await graphql(
            client, query, user_id=user_id, variables={"id": user_id, "after": after}
        )
        page = body["data"]["user"]["ledger"]
        assert page["totalCount"] == 250
        pages.append(len(page["edges"]))
        seen += [edge["node"]["metadata"]["n"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == [100, 100, 50]
    assert sorted(seen) == list(range(250))
    assert seen[0] in (248, 249)  # newest first


async def test_someone_elses_wallet_is_forbidden_even_to_their_admin(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await add_institution(engine, institution_id=ACME, name="Acme")
    admin = await add_institution_admin(engine, email="a@acme.edu", institution_id=ACME)
    member = await add_user(engine, email="m@acme.edu", member_of={ACME: "user"})
    body = await graphql(
        client,
        "query($id: Int!) { user(id: $id) { email wallet { balance } } }",
        user_id=admin,
        variables={"id": member},
    )
    assert error_codes(body) == ["FORBIDDEN"]
    assert body["data"] is None or body["data"]["user"] is None


async def test_graph_and_rest_agree_on_balance_ledger_and_usage(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    user_id = await add_user(engine, email="same@example.com")
    async with session_factory(engine)() as session, session.begin():
        session.add(Wallet(user_id=user_id, balance=Decimal("7.25"), reserved=Decimal("1.5")))
        await add_ledger_entries(
            session,
            LedgerEntry(
                user_id=user_id,
                type="credit",
                amount=Decimal("7.25"),
                balance_after=Decimal("7.25"),
                created_at=FIXED_NOW - timedelta(days=1),
                metadata_={},
            ),
        )
        for day, credits in ((3, "0.5"), (19, "1.25"), (20, "2")):
            await add_usage_events(
                session,
                UsageEvent(
                    user_id=user_id,
                    occurred_at=FIXED_NOW.replace(day=day, hour=1),
                    credits=Decimal(credits),
                    endpoint="/v1/chat",
                ),
            )
    headers = {"Authorization": f"Bearer {mint_token(user_id, TEST_JWT_SECRET)}"}
    credits = (await client.get("/auth/account/credits", headers=headers)).json()
    usage = (
        await client.get(
            "/auth/account/usage?period=daily&from=2026-05-18T00:00:00Z", headers=headers
        )
    ).json()
    rest_ledger = (await client.get("/auth/account/ledger", headers=headers)).json()
    body = await graphql(
        client,
        """query($id: Int!) { user(id: $id) {
             wallet { balance reserved available }
             ledger { edges { node { amount balanceAfter } } }
             usage(period: DAILY, from: "2026-05-18T00:00:00Z") {
               creditsConsumed totalRequests periodStart }
        } }""",
        user_id=user_id,
        variables={"id": user_id},
    )
    user = body["data"]["user"]
    assert (
        [Decimal(user["wallet"][k]) for k in ("balance", "reserved", "available")]
        == [Decimal(str(credits[k])) for k in ("balance", "reserved", "available")]
        == [Decimal("7.25"), Decimal("1.5"), Decimal("5.75")]
    )
    assert [Decimal(e["node"]["amount"]) for e in user["ledger"]["edges"]] == [
        Decimal(str(e["amount"])) for e in rest_ledger["data"]
    ]
    # 18 May: 0; 19 May: 1.25; 20 May until 15:30: 2 — worked by hand.
    assert (
        [Decimal(u["creditsConsumed"]) for u in user["usage"]]
        == [Decimal(str(u["credits_consumed"])) for u in usage["data"]]
        == [Decimal(0), Decimal("1.25"), Decimal(2)]
    )
