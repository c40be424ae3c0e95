"""What the mutation tests share: the people and API key they act as, the documents several
of them send, and posting with an API key."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import add_institution, add_user
from tests.fixtures.usage_recording_data import ACME, EDIT, OTHER
from usagegraph.auth.api_keys import create_api_key
from usagegraph.db.engine import session_factory
from usagegraph.db.models import ClientBucket

WHEN = "2026-05-20T14:00:00Z"  # 90 minutes before the app's fixed now

RECORD = """
mutation($input: UsageEventInput!) {
  recordUsage(input: $input) {
    status
    event { eventId userId instance credits messages endpoint status overCap occurredAt }
  }
}"""

BATCH = """
mutation($events: [UsageEventInput!]!) {
  recordUsageBatch(events: $events) {
    inserted duplicates refused
    outcomes { index status code message event { eventId credits overCap } }
  }
}"""

CREDIT = """
mutation($input: CreditWalletInput!) {
  creditWallet(input: $input) {
    entry { type amount balanceAfter description reference metadata }
    autoReload { amount }
    wallet { balance reserved available }
  }
}"""

DEBIT = """
mutation($input: DebitWalletInput!) {
  debitWallet(input: $input) {
    entry { type amount balanceAfter }
    autoReload { amount balanceAfter description }
    wallet { balance available }
  }
}"""


async def add_people(engine: AsyncEngine) -> dict[str, int]:
    """Acme (with the bucket acme-corp) and Other, and their users by name."""
    await add_institution(engine, institution_id=ACME, name="Acme")
    await add_institution(engine, institution_id=OTHER, name="Other")
    async with session_factory(engine)() as session, session.begin():
        session.add(ClientBucket(id="acme-corp", institution_id=ACME))
    return {
        "super": await add_user(engine, email="root@ug.io", role="super"),
        "admin": await add_user(
            engine,
            email="admin@acme.edu",
            role="admin",
            permissions=EDIT,
            member_of={ACME: "admin"},
        ),
        "ada": await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"}),
        "olga": await add_user(engine, email="olga@other.edu", member_of={OTHER: "user"}),
        "newbie": await add_user(engine, email="newbie@example.com"),
    }


async def add_acme_key(engine: AsyncEngine) -> str:
    """An API key of Acme (add the people first)."""
    async with session_factory(engine)() as session, session.begin():
        _row, key = await create_api_key(session, ACME, "metering")
    return key


async def with_key(
    client: httpx.AsyncClient,
    query: str,
    key: str,
    variables: dict[str, Any],
    header: str = "Authorization",
    expected_status: int = 200,
) -> dict[str, Any]:
    value = f"Bearer {key}" if header == "Authorization" else key
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers={header: value}
    )
    assert response.status_code == expected_status, response.text
    return response.json()


def usage(user_id: int, instance: str = ACME, credits: str = "1.5", **extra: Any) -> dict[str, Any]:
    return {
        "userId": user_id,
        "instance": instance,
        "occurredAt": WHEN,
        "credits": credits,
        **extra,
    }
