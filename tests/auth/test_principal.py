"""The caller is resolved from the database on every request, through the real app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_JWT_SECRET
from tests.fixtures.factories import add_institution, add_user
from usagegraph.auth.api_keys import create_api_key
from usagegraph.auth.credentials import presented_credential
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import session_factory

VIEWER = {"query": "{ viewer { kind userId role email } }"}


async def _viewer(client: httpx.AsyncClient, headers: dict[str, str]) -> dict:
    response = await client.post("/graphql", json=VIEWER, headers=headers)
    assert response.status_code == 200
    return response.json()["data"]["viewer"]


async def test_valid_token_identifies_the_user_with_role_from_the_database(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    user_id = await add_user(engine, email="ada@acme.edu", role="admin")
    token = mint_token(user_id, TEST_JWT_SECRET)
    viewer = await _viewer(client, {"Authorization": f"Bearer {token}"})
    assert viewer == {"kind": "USER", "userId": user_id, "role": "admin", "email": "ada@acme.edu"}


async def test_role_claims_in_the_token_are_ignored(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    user_id = await add_user(engine, email="u@acme.edu", role="user")
    token = jwt.encode(
        {
            "sub": str(user_id),
            "role": "super",
            "iat": datetime.now(UTC),
            "exp": datetime.now(UTC) + timedelta(hours=1),
        },
        TEST_JWT_SECRET,
        algorithm="HS256",
    )
    viewer = await _viewer(client, {"Authorization": f"Bearer {token}"})
    assert viewer["role"] == "user"


BAD_TOKENS = pytest.mark.parametrize(
    "token",
    [
        jwt.encode({"sub": "1", "exp": datetime.now(UTC) - timedelta(hours=1)}, TEST_JWT_SECRET),
        jwt.encode({"sub": "1", "exp": datetime.now(UTC) + timedelta(hours=1)}, "x" * 40),
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwiZXhwIjo0MTAyNDQ0ODAwfQ.",
        "garbage",
        # correctly signed, but living 10^30 seconds, or for an unknown time (no iat)
        jwt.encode({"sub": "1", "iat": datetime.now(UTC), "exp": 1e30}, TEST_JWT_SECRET),
        jwt.encode({"sub": "1", "exp": datetime.now(UTC) + timedelta(hours=1)}, TEST_JWT_SECRET),
        # well formed and signed, for a user who does not exist
        mint_token(999, TEST_JWT_SECRET),
    ],
    ids=["expired", "wrong-key", "alg-none", "malformed", "exp-1e30", "no-iat", "unknown-user"],
)
INVALID_TOKEN_BODY = {
    "errors": [{"message": "Invalid or expired token", "extensions": {"code": "UNAUTHORIZED"}}]
}


async def _refused(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    response = await client.post("/graphql", json=VIEWER, headers=headers)
    assert response.status_code == 401, response.text
    return response


@BAD_TOKENS
async def test_a_bad_token_on_graphql_is_401_with_a_challenge(
    engine: AsyncEngine, client: httpx.AsyncClient, token: str
) -> None:
    await add_user(engine, email="one@acme.edu")
    response = await _refused(client, {"Authorization": f"Bearer {token}"})
    assert response.json() == INVALID_TOKEN_BODY
    assert (
        response.headers["www-authenticate"] == 'Bearer realm="usagegraph", error="invalid_token"'
    )


async def test_no_credential_on_graphql_stays_anonymous(client: httpx.AsyncClient) -> None:
    viewer = await _viewer(client, {})
    assert viewer == {"kind": "ANONYMOUS", "userId": None, "role": None, "email": None}


async def test_graphql_names_its_header_to_a_token_sent_as_x_access_token(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    """x-access-token is for /api/...; /graphql takes Authorization: Bearer (or X-API-Key)."""
    user_id = await add_user(engine, email="a@acme.edu")
    response = await _refused(client, {"x-access-token": mint_token(user_id, TEST_JWT_SECRET)})
    assert response.json()["errors"][0] == {
        "message": "Send the credential in the Authorization (Bearer) or X-API-Key header",
        "extensions": {"code": "UNAUTHORIZED"},
    }
    assert response.headers["www-authenticate"] == (
        'Bearer realm="usagegraph", error="invalid_request"'
    )


async def test_graphql_accepts_an_institutions_api_key(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await add_institution(engine, institution_id="a" * 24, name="Acme")
    async with session_factory(engine)() as session, session.begin():
        _row, key = await create_api_key(session, "a" * 24)
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        viewer = await _viewer(client, headers)
        assert viewer["kind"] == "INSTITUTION"
    for unknown in ({"X-API-Key": key + "x"}, {"Authorization": f"Bearer {key}x"}):
        assert (await _refused(client, unknown)).json() == INVALID_TOKEN_BODY


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/api/user/usage-history", {"x-access-token": "a.b.c"}, (True, "a.b.c")),
        ("/api/user/usage-history", {"authorization": "Bearer a.b.c"}, None),
        ("/auth/account/credits", {"authorization": "Bearer a.b.c"}, (True, "a.b.c")),
        ("/v1/billing/usage-history", {"authorization": "Bearer key123"}, (False, "key123")),
        ("/v1/billing/usage-history", {"x-api-key": "key123"}, (False, "key123")),
        ("/v1/billing/usage-history", {"x-access-token": "a.b.c"}, None),
        ("/api/v1/clients/acme/history", {"authorization": "Bearer a.b.c"}, (True, "a.b.c")),
        ("/api/v1/clients/acme/history", {"authorization": "Bearer key123"}, (False, "key123")),
        ("/api/v1/clients/acme/history", {"x-api-key": "key123"}, (False, "key123")),
        ("/healthz", {"authorization": "Bearer a.b.c"}, None),
    ],
)
def test_each_route_reads_its_documented_header(
    path: str, headers: dict[str, str], expected: tuple[bool, str] | None
) -> None:
    credential = presented_credential(path, headers)
    got = None if credential is None else (credential.is_jwt, credential.value)
    assert got == expected
