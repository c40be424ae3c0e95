"""The small world of the subscription tests: an institution, its member and admin, an
outsider, a super user, the institution's API key; written through a real server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_JWT_SECRET
from tests.fixtures.factories import add_institution, add_institution_admin, add_user
from usagegraph.auth.api_keys import create_api_key
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import session_factory
from usagegraph.db.models import ApiKey

ACME = "65f1c0ffee0000000000000a"
GLOBEX = "65f1c0ffee0000000000000b"
RECORD = "mutation($e: UsageEventInput!) { recordUsage(input: $e) { status } }"
TOP_UP = (
    "mutation($u: Int!, $a: Decimal!) { creditWallet(input: {userId: $u, amount: $a}) "
    "{ wallet { balance } } }"
)


@dataclass
class LiveWorld:
    member: int
    admin: int
    outsider: int
    super_user: int
    key: str  # Acme's API key

    def token(self, user_id: int, ttl: int = 3600) -> str:
        return mint_token(user_id, TEST_JWT_SECRET, ttl_seconds=ttl)


async def build_world(engine: AsyncEngine) -> LiveWorld:
    await add_institution(engine, institution_id=ACME, name="Acme")
    await add_institution(engine, institution_id=GLOBEX, name="Globex")
    member = await add_user(engine, email="member@acme.test", member_of={ACME: "user"})
    admin = await add_institution_admin(engine, email="admin@acme.test", institution_id=ACME)
    outsider = await add_user(engine, email="outsider@globex.test", member_of={GLOBEX: "user"})
    super_user = await add_user(engine, email="root@example.test", role="super")
    async with session_factory(engine)() as session, session.begin():
        _row, key = await create_api_key(session, ACME)
    return LiveWorld(member, admin, outsider, super_user, key)


async def revoke_keys(engine: AsyncEngine) -> None:
    async with session_factory(engine)() as session, session.begin():
        await session.execute(update(ApiKey).values(revoked_at=datetime.now(UTC)))


async def graphql(
    address: str, token: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http:
        response = await http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
    body = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body
    return body["data"]


def usage_event(user_id: int, instance: str, credits: str = "2.5") -> dict[str, Any]:
    return {
        "userId": user_id,
        "instance": instance,
        "occurredAt": datetime.now(UTC).isoformat(),
        "credits": credits,
        "messages": 1,
    }


async def record(address: str, world: LiveWorld, user_id: int, instance: str, credits: str = "2.5"):
    """Record one usage event as the super user (one transaction, one commit)."""
    await graphql(
        address,
        world.token(world.super_user),
        RECORD,
        {"e": usage_event(user_id, instance, credits)},
    )


async def top_up(address: str, world: LiveWorld, user_id: int, amount: str) -> None:
    await graphql(address, world.token(world.super_user), TOP_UP, {"u": user_id, "a": amount})


def totals(message: dict[str, Any]) -> dict[str, Any]:
    """The totals of a `next` message of usageUpdated."""
    assert message["type"] == "next", message
    return message["payload"]["data"]["usageUpdated"]["totals"]


def as_decimal(value: Any) -> Decimal:
    return Decimal(str(value))
