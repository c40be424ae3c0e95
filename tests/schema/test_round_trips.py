"""A nested read costs the same statements for 5 members as for 100, and its loader batches
open no transactions: they share the request's autocommit read connection (issue 14)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from strawberry.relay import to_base64

from tests.conftest import with_read_path
from tests.fixtures.factories import add_institution, add_institution_admin, add_user
from tests.fixtures.statements import count_statements
from tests.schema.graph import graphql
from tests.schema.test_wallet import ACME, _institution_with_members
from usagegraph.settings import Settings

NESTED = """query($id: String!) { institution(id: $id) { members(first: 100) { edges { node {
  user { email usageEvents(first: 5) { edges { node { credits } } }
         ledger(first: 5) { edges { node { amount } } } } } } } } }"""


@pytest.fixture(params=[True, False], ids=["compiled", "resolvers"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """Both read paths: on PostgreSQL the compiled one answers the nested read whole."""
    return with_read_path(settings, request.param)


async def _costs(
    app: Starlette,
    client: httpx.AsyncClient,
    caller: int,
    query: str = NESTED,
    variables: dict[str, Any] | None = None,
) -> tuple[int, int, dict[str, Any]]:
    """(statements, transaction-control events that reach the database, answer) of one read."""
    control: list[str] = []
    sync_engine = app.state.engine.sync_engine

    def record(connection: Any, *_args: Any) -> None:
        # In AUTOCOMMIT, SQLAlchemy's begin/rollback are bookkeeping: nothing is sent.
        if not connection._is_autocommit_isolation():
            control.append("transaction")

    for name in ("begin", "rollback", "commit"):
        event.listen(sync_engine, name, record)
    try:
        with count_statements(app.state.engine) as statements:
            body = await graphql(
                client,
                query,
                user_id=caller,
                variables={"id": ACME} if variables is None else variables,
            )
    finally:
        for name in ("begin", "rollback", "commit"):
            event.remove(sync_engine, name, record)
    assert "errors" not in body, body
    return len(statements), len(control), body


@pytest.mark.parametrize("members", [5, 100])
async def test_a_nested_read_costs_the_same_whatever_the_members(
    engine: AsyncEngine, app: Starlette, client: httpx.AsyncClient, members: int
) -> None:
    caller = await _institution_with_members(engine, members)
    statements, control, _ = await _costs(app, client, caller)
    if app.state.settings.graphql.compile_reads and app.state.engine.dialect.name == "postgresql":
        # the caller's principal (one statement), then ONE compiled statement
        assert statements == 2
    else:
        # principal, institution, members page (their users with it), usage events, ledger
        assert statements == 5
    # The caller's resolution reads on the request's autocommit connection too: no BEGIN or
    # ROLLBACK reaches the database.
    assert control == 0


INSTITUTIONS_MEMBERS_EVENTS = """{ institutions(first: 5) { totalCount edges { node {
  members(first: 20) { edges { node { role user { email
    usageEvents(first: 5) { edges { node { credits } } } } } } } } } } }"""


async def test_the_institutions_page_reads_without_a_transaction(
    engine: AsyncEngine, app: Starlette, client: httpx.AsyncClient
) -> None:
    """Issue 14's question from the root: the page of institutions and its count are read on
    the request's read connection like the batches below them, with no BEGIN or ROLLBACK."""
    caller = await _institution_with_members(engine, 3)
    statements, control, _ = await _costs(
        app, client, caller, INSTITUTIONS_MEMBERS_EVENTS, variables={}
    )
    if app.state.settings.graphql.compile_reads and app.state.engine.dialect.name == "postgresql":
        assert statements == 2  # the caller's principal, then one compiled statement
    else:
        # principal, institutions, their count, members page with users, usage events
        assert statements == 5
    assert control == 0


async def test_an_admins_members_bring_their_users_in_a_batch_of_their_own(
    engine: AsyncEngine, app: Starlette, client: httpx.AsyncClient
) -> None:
    """A super's member page carries each member's user (one statement less); an admin's does
    not (joined per row, their condition would read the whole institution's memberships), so
    the users come from the loader's batch: one more statement, the same answer."""
    await _institution_with_members(engine, 3)
    admin = await add_institution_admin(engine, email="boss@acme.edu", institution_id=ACME)
    query = """query($id: String!) { institution(id: $id) { members(first: 10) { edges { node {
      user { email } } } } } }"""
    statements, control, body = await _costs(app, client, admin, query)
    emails = [
        edge["node"]["user"]["email"] for edge in body["data"]["institution"]["members"]["edges"]
    ]
    assert sorted(emails) == [
        "boss@acme.edu",
        "member0@acme.edu",
        "member1@acme.edu",
        "member2@acme.edu",
    ]
    if app.state.settings.graphql.compile_reads and app.state.engine.dialect.name == "postgresql":
        assert statements == 2
    else:
        assert statements == 4  # principal, institution, members page, the users' batch
    assert control == 0


async def test_the_callers_own_row_is_read_once_when_they_are_authenticated(
    engine: AsyncEngine, app: Starlette, client: httpx.AsyncClient
) -> None:
    """`viewer { user }` is the row the caller's principal was read from: no second
    statement, on either read path (`viewer` is not compiled)."""
    await add_institution(engine, institution_id=ACME, name="Acme")
    caller = await add_user(engine, email="Ada@acme.edu", member_of={ACME: "admin"})
    query = "{ viewer { email user { id email role } } }"
    with count_statements(app.state.engine) as statements:
        body = await graphql(client, query, user_id=caller)
    viewer = body["data"]["viewer"]
    assert viewer == {
        "email": "Ada@acme.edu",
        "user": {"id": viewer["user"]["id"], "email": "Ada@acme.edu", "role": "user"},
    }
    assert len(statements) == 1  # the caller's principal, the users row with it


async def test_another_users_row_is_still_read_through_the_caller_scoped_loader(
    engine: AsyncEngine, app: Starlette, client: httpx.AsyncClient
) -> None:
    """Only the caller's own row is known in advance: a member of an institution the caller
    administers is read (one more statement), a user outside it is null."""
    await add_institution(engine, institution_id=ACME, name="Acme")
    caller = await add_institution_admin(engine, email="admin@acme.edu", institution_id=ACME)
    member = await add_user(engine, email="member@acme.edu", member_of={ACME: "user"})
    stranger = await add_user(engine, email="stranger@else.org")
    query = """query($m: ID!, $s: ID!) { m: node(id: $m) { ... on User { email } }
      s: node(id: $s) { ... on User { email } } }"""
    variables = {"m": to_base64("User", member), "s": to_base64("User", stranger)}
    with count_statements(app.state.engine) as statements:
        body = await graphql(client, query, user_id=caller, variables=variables)
    assert body["data"] == {"m": {"email": "member@acme.edu"}, "s": None}, body
    assert len(statements) == 2  # the caller's principal, then one batch of users
