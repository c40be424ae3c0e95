"""Members' usage-event pages are read ahead with the members' page (schema/usage_events.py,
`prefetch_event_pages`), so each member's `usageEvents` answers at once, as the resolver path's
reference answer would.

The look-ahead decodes the nested selection as the compiled path does: fragments, aliases
with other arguments, variables and `@skip`/`@include`. What it reads ahead is counted at the
loader; what the fields still read themselves is counted at the resolver's read.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FIXED_NOW, client_of, with_read_path
from tests.fixtures.factories import add_institution, add_usage_events, add_user
from tests.schema.graph import graphql
from usagegraph.db.engine import session_factory
from usagegraph.db.models import UsageEvent
from usagegraph.resolvers import usage_events as usage_event_rules
from usagegraph.schema import usage_events as usage_event_fields
from usagegraph.settings import Settings

ACME = "e" * 24
MEMBERS = 4


async def _members_with_events(engine: AsyncEngine) -> tuple[int, int]:
    """MEMBERS members of ACME with 3 events each; (a super user, the first member)."""
    await add_institution(engine, institution_id=ACME, name="Acme")
    members = []
    for n in range(MEMBERS):
        user = await add_user(engine, email=f"m{n}@acme.edu", member_of={ACME: "user"})
        members.append(user)
        async with session_factory(engine)() as session, session.begin():
            await add_usage_events(
                session,
                *(
                    UsageEvent(
                        user_id=user,
                        occurred_at=FIXED_NOW - timedelta(minutes=minutes),
                        credits=Decimal(n * 10 + minutes),
                    )
                    for minutes in range(3)
                ),
            )
    return await add_user(engine, email="root@ug.io", role="super"), members[0]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many pages the fields read themselves, and how many were read ahead."""
    counted = {"fields": 0, "ahead": 0}
    read = usage_event_fields._read_usage_events
    prefetch = usage_event_rules.prefetch_usage_event_pages

    async def counting_read(*args: Any) -> Any:
        counted["fields"] += 1
        return await read(*args)

    async def counting_prefetch(context: Any, user_ids: Any, requests: Any) -> None:
        counted["ahead"] += len(user_ids) * len(requests)
        await prefetch(context, user_ids, requests)

    monkeypatch.setattr(usage_event_fields, "_read_usage_events", counting_read)
    monkeypatch.setattr(usage_event_rules, "prefetch_usage_event_pages", counting_prefetch)
    return counted


QUERY = """query($id: String!, $n: Int!, $hide: Boolean!) { institution(id: $id) {
  members(first: 10) { edges { node { ...Member } } } } }
fragment Member on Membership { user {
  email
  newest: usageEvents(first: $n) { edges { node { credits } } }
  all: usageEvents(first: 5) { edges { node { credits } } }
  hidden: usageEvents(first: 4) @skip(if: $hide) { edges { node { credits } } }
} }"""


ONE_USER = """query($id: Int!) { user(id: $id) {
  usageEvents(first: 1) { edges { node { credits } } } } }"""


async def _members_events(client: httpx.AsyncClient, caller: int, *, hide: bool) -> dict[str, Any]:
    """QUERY's answer (first: 2 through the variable `n`), checked free of errors."""
    variables = {"id": ACME, "n": 2, "hide": hide}
    body = await graphql(client, QUERY, user_id=caller, variables=variables)
    assert "errors" not in body, body
    return body


def _credits(body: dict[str, Any], alias: str) -> list[list[Decimal]]:
    members = body["data"]["institution"]["members"]["edges"]
    pages = [member["node"]["user"][alias]["edges"] for member in members]
    return [[Decimal(edge["node"]["credits"]) for edge in page] for page in pages]


async def test_every_members_pages_are_read_ahead_and_answer_at_once(
    engine: AsyncEngine, settings: Settings, reads: dict[str, int]
) -> None:
    boss, _first = await _members_with_events(engine)
    async with client_of(with_read_path(settings, compiled=False)) as client:
        body = await _members_events(client, boss, hide=True)
    # Two selections (first: 2 through a variable, first: 5), the skipped one not at all.
    assert reads == {"fields": 0, "ahead": 2 * MEMBERS}
    assert _credits(body, "newest") == [[n * 10, n * 10 + 1] for n in range(MEMBERS)]
    assert [len(page) for page in _credits(body, "all")] == [3] * MEMBERS
    assert "hidden" not in body["data"]["institution"]["members"]["edges"][0]["node"]["user"]


async def test_a_field_not_read_ahead_reads_its_own_page(
    engine: AsyncEngine, settings: Settings, reads: dict[str, int]
) -> None:
    boss, first = await _members_with_events(engine)
    async with client_of(with_read_path(settings, compiled=False)) as client:
        body = await _members_events(client, boss, hide=False)
        single = await graphql(client, ONE_USER, user_id=boss, variables={"id": first})
    assert reads["ahead"] == 3 * MEMBERS  # the third selection is not skipped now
    assert [len(page) for page in _credits(body, "hidden")] == [3] * MEMBERS
    # A user read at the root has no page of members above it: its field reads its page.
    assert single["data"]["user"]["usageEvents"]["edges"] == [{"node": {"credits": "0"}}]
    assert reads["fields"] == 1
