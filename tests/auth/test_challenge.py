"""Every 401 on every API carries a WWW-Authenticate challenge naming the route's scheme."""

from __future__ import annotations

import httpx
import pytest

BEARER = 'Bearer realm="usagegraph"'
API_KEY = 'ApiKey realm="usagegraph"'
BAD_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"

ROUTES = [
    ("GET", "/api/user/usage-history?instanceId=personal", BEARER),
    ("POST", "/api/admin/histories/charts/user-stats", BEARER),
    ("GET", "/auth/account/credits", BEARER),
    ("GET", "/v1/billing/usage-history", API_KEY),
    ("GET", "/api/v1/clients/bucket-1/history", BEARER),
]


@pytest.mark.parametrize(("method", "path", "scheme"), ROUTES)
async def test_a_401_without_credentials_names_the_scheme(
    client: httpx.AsyncClient, method: str, path: str, scheme: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == scheme


@pytest.mark.parametrize(
    ("method", "path", "headers", "challenge"),
    [
        ("GET", "/api/user/usage-history?instanceId=personal", {"x-access-token": BAD_JWT}, BEARER),
        ("GET", "/auth/account/credits", {"Authorization": f"Bearer {BAD_JWT}"}, BEARER),
        ("GET", "/v1/billing/usage-history", {"X-API-Key": "ug_live_nope"}, API_KEY),
        ("GET", "/api/v1/clients/bucket-1/history", {"X-API-Key": "ug_live_nope"}, BEARER),
        ("POST", "/graphql", {"Authorization": f"Bearer {BAD_JWT}"}, BEARER),
    ],
)
async def test_a_refused_credential_is_an_invalid_token_challenge(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], challenge: str
) -> None:
    body = {"query": "{ viewer { kind } }"} if path == "/graphql" else None
    response = await client.request(method, path, headers=headers, json=body)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'{challenge}, error="invalid_token"'


async def test_a_token_in_the_wrong_header_of_auth_routes_is_told_where_it_goes(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/auth/account/credits", headers={"x-access-token": BAD_JWT})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == (
        "Send the credential in the Authorization (Bearer) header"
    )
    assert response.headers["www-authenticate"] == f'{BEARER}, error="invalid_request"'
