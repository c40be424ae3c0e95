"""A small world every input-rule test throws its edge values at, and how to call the app.

ACME has a super user (1), an admin (2) and a member, Ada (3; user 3 exists, so a token whose
`sub` is "٣" would find someone if Arabic-Indic digits were read as ids), an API key, a
bucket with one snapshot, Ada's wallet (1000 credits, 10 of them held by a reservation), and
a few usage events and ledger entries (so every list has a cursor to forge).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import jwt
from hypothesis import HealthCheck, settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_JWT_SECRET
from tests.fixtures.factories import add_institution, add_user
from usagegraph.auth.api_keys import create_api_key
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import session_factory
from usagegraph.db.models import ClientBucket, Snapshot

ACME = "65f1c0ffee0000000000000a"
BUCKET = "acme-corp"
SNAPSHOT_DAY = date(2026, 5, 1)
EDIT = ["institutions.edit"]
RECENT = "2026-05-20T14:00:00Z"  # 90 minutes before the app's fixed now


@dataclass(frozen=True)
class World:
    super_id: int
    admin_id: int
    ada_id: int
    api_key: str
    reservation_id: int


async def build_world(engine: AsyncEngine, client: httpx.AsyncClient) -> World:
    """The world above, written through the real app where the app can write it."""
    await add_institution(engine, institution_id=ACME, name="Acme")
    super_id = await add_user(engine, email="root@ug.io", role="super")
    admin_id = await add_user(
        engine, email="admin@acme.edu", role="admin", permissions=EDIT, member_of={ACME: "admin"}
    )
    ada_id = await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"})
    assert (super_id, admin_id, ada_id) == (1, 2, 3)
    async with session_factory(engine)() as session, session.begin():
        _, api_key = await create_api_key(session, ACME, "tests")
        session.add(ClientBucket(id=BUCKET, institution_id=ACME))
        session.add(
            Snapshot(
                bucket_id=BUCKET,
                snapshot_date=SNAPSHOT_DAY,
                records={"person": 1},
                object_count=1,
                total_bytes=1,
                by_prefix={},
                computed_at=datetime(2026, 5, 2, tzinfo=UTC),
            )
        )
    await graphql_ok(
        client,
        'mutation($u: Int!) { creditWallet(input: {userId: $u, amount: "1000"}) { __typename } }',
        bearer(super_id),
        {"u": ada_id},
    )
    held = await graphql_ok(
        client,
        'mutation($u: Int!) { reserveCredits(input: {userId: $u, amount: "10"}) '
        "{ reservation { reservationId } } }",
        bearer(super_id),
        {"u": ada_id},
    )
    for credits in ("1", "2"):
        event = {"userId": ada_id, "instance": ACME, "occurredAt": RECENT, "credits": credits}
        await graphql_ok(
            client,
            "mutation($e: UsageEventInput!) { recordUsage(input: $e) { status } }",
            api_key_header(api_key),
            {"e": event},
        )
    reservation_id = int(held["reserveCredits"]["reservation"]["reservationId"])
    return World(super_id, admin_id, ada_id, api_key, reservation_id)


# --- credentials ---------------------------------------------------------------------------


def bearer(user_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(user_id, TEST_JWT_SECRET)}"}


def access_token(user_id: int) -> dict[str, str]:
    return {"x-access-token": mint_token(user_id, TEST_JWT_SECRET)}


def api_key_header(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def token_with_subject(subject: Any) -> str:
    """A correctly signed, unexpired token whose `sub` is whatever the test says."""
    now = int(time.time())
    claims = {"sub": subject, "iat": now, "exp": now + 3600}
    return jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")


# --- GraphQL -------------------------------------------------------------------------------


async def post_graphql(
    client: httpx.AsyncClient,
    query: str,
    headers: dict[str, str],
    variables: dict[str, Any] | None = None,
) -> httpx.Response:
    return await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )


async def graphql_ok(
    client: httpx.AsyncClient,
    query: str,
    headers: dict[str, str],
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The data of a request that must succeed (setting up the world)."""
    body = (await post_graphql(client, query, headers, variables)).json()
    assert "errors" not in body, body
    return body["data"]


def global_id(type_name: str, key: str) -> str:
    return base64.b64encode(f"{type_name}:{key}".encode()).decode()


def cursor(*key: Any) -> str:
    """A cursor in the form the graph issues (base64 of a JSON array), holding any key."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


# --- answers -------------------------------------------------------------------------------


def graphql_codes(response: httpx.Response) -> list[str | None]:
    """The codes of a GraphQL answer's errors, after checking it is a GraphQL answer at all:
    JSON, 200 or a 4xx refusal (401 for a refused credential), never a 5xx."""
    assert response.status_code in (200, 400, 401), (response.status_code, response.text)
    body = response.json()
    return [(error.get("extensions") or {}).get("code") for error in body.get("errors") or []]


def assert_no_crash(response: httpx.Response) -> list[str | None]:
    """A GraphQL answer whose every error carries a code, none of them INTERNAL."""
    codes = graphql_codes(response)
    assert None not in codes, response.text
    assert "INTERNAL" not in codes, response.text
    return codes


def assert_refused(response: httpx.Response, code: str = "INVALID_REQUEST") -> None:
    codes = assert_no_crash(response)
    assert codes, response.text
    assert set(codes) == {code}, response.text


def assert_rest_answer(response: httpx.Response, envelope: str) -> None:
    """A documented REST answer: never a 5xx, and a 4xx in the route's error envelope
    (`legacy`: seeds 000/001, `coded`: /v1 and /auth/account, `clients`: seed 004)."""
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code < 400:
        return
    body = response.json()
    if envelope == "legacy":
        assert body["success"] is False, body
        assert isinstance(body["message"], str), body
    elif envelope == "coded":
        assert set(body) == {"error", "meta"}, body
        assert body["error"]["code"], body
    else:
        assert set(body) == {"error", "request_id"}, body
        assert isinstance(body["error"], str), body


# --- the database ---------------------------------------------------------------------------


async def scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as connection:
        return (await connection.execute(text(sql))).scalar()


async def money_values(engine: AsyncEngine, table: str, column: str) -> list[Decimal]:
    """Every stored value of a money column, as Decimals (SQLite keeps micro-units)."""
    async with engine.connect() as connection:
        rows = (await connection.execute(text(f"SELECT {column} FROM {table}"))).scalars()
        values = [Decimal(value) for value in rows if value is not None]
    if engine.dialect.name == "sqlite":
        return [value.scaleb(-6) for value in values]
    return values


# --- property tests ------------------------------------------------------------------------

# Every example of a property test shares the test's world; hypothesis keeps no example
# database (the worlds differ per run).
property_test = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


async def call_every_entry_point(
    entry_points: Mapping[str, Callable[[httpx.AsyncClient, World, Any], Awaitable[None]]],
    client: httpx.AsyncClient,
    world: World,
    value: Any,
    label: str,
) -> None:
    """Send `value` to every entry point; a failure names the entry point and the value."""
    for name, call in entry_points.items():
        try:
            await call(client, world, value)
        except AssertionError as exc:
            raise AssertionError(f"{name} with {label!r}: {exc}") from None
