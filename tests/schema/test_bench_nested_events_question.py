"""The question `./scripts/bench peer` asks usagegraph (issue 14: 5 institutions x 20 members x
usageEvents(first: 5)) is valid against the schema and answers exactly 5 x 20 x 5 events, so
its side-by-side numbers with PostGraphile compare the same amount of work. The data set has
one more institution, one more member each and one more event each than the pages take, so
every page is cut by its `first`, not by the data running out."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.scenarios import (
    EVENTS_PER_MEMBER,
    INSTITUTIONS,
    INSTITUTIONS_MEMBERS_EVENTS,
    MEMBERS,
    institutions_members_events,
)
from tests.conftest import FIXED_NOW
from tests.fixtures.factories import add_usage_events, add_user
from tests.schema.graph import graphql
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Institution, Membership, UsageEvent, User


async def _seed(engine: AsyncEngine) -> None:
    """INSTITUTIONS + 1 institutions of MEMBERS + 1 members with EVENTS_PER_MEMBER + 1 events."""
    async with session_factory(engine)() as session, session.begin():
        for i in range(INSTITUTIONS + 1):
            institution_id = f"{i:024x}"
            session.add(Institution(id=institution_id, name=f"Institution {i}"))
            users = [User(email=f"m{i}-{n}@example.edu") for n in range(MEMBERS + 1)]
            session.add_all(users)
            await session.flush()
            session.add_all(
                Membership(user_id=u.id, institution_id=institution_id, role="user") for u in users
            )
            await add_usage_events(
                session,
                *(
                    UsageEvent(
                        user_id=u.id,
                        institution_id=institution_id,
                        credits=Decimal("0.25"),
                        occurred_at=FIXED_NOW - timedelta(minutes=minutes),
                    )
                    for u in users
                    for minutes in range(1, EVENTS_PER_MEMBER + 2)
                ),
            )


def _counts(body: dict[str, Any]) -> list[list[int]]:
    """Events per member, per institution."""
    return [
        [
            len(member["node"]["user"]["usageEvents"]["edges"])
            for member in institution["node"]["members"]["edges"]
        ]
        for institution in body["data"]["institutions"]["edges"]
    ]


async def test_the_bench_question_answers_five_institutions_twenty_members_five_events(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await _seed(engine)
    caller = await add_user(engine, email="super@example.edu", role="super")
    body = await graphql(client, INSTITUTIONS_MEMBERS_EVENTS, user_id=caller)
    assert "errors" not in body, body["errors"]
    assert _counts(body) == [[EVENTS_PER_MEMBER] * MEMBERS] * INSTITUTIONS
    scenario = institutions_members_events("unused token")
    assert scenario.expect is not None
    assert scenario.expect(body) is None
    assert scenario.describe is not None
    assert scenario.describe(body) == "5 institutions, 100 members, 500 events"


def test_the_bench_refuses_an_answer_with_fewer_events() -> None:
    """A server that returns less is not compared: the check names what it got."""
    member = {"node": {"role": "user", "user": {"usageEvents": {"edges": []}}}}
    institution = {"node": {"members": {"edges": [member] * MEMBERS}}}
    body = {"data": {"institutions": {"edges": [institution] * INSTITUTIONS}}}
    scenario = institutions_members_events("unused token")
    assert scenario.expect is not None
    assert (
        scenario.expect(body) == "(institutions, members, events) = (5, 100, 0), want (5, 100, 500)"
    )
