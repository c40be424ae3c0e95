"""CORS: off by default; for the listed origins, preflights answered and every answer readable."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import client_of
from usagegraph.settings import Settings, SettingsError

APP_ORIGIN = "https://app.example.com"
OTHER_ORIGIN = "https://evil.example.net"


@pytest.fixture
async def cors_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(dataclasses.replace(settings, cors_origins=(APP_ORIGIN,))) as client:
        yield client


def _preflight(origin: str, headers: str = "authorization, content-type") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": headers,
    }


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    response = await client.options("/graphql", headers=_preflight(APP_ORIGIN))
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers
    answer = await client.post(
        "/graphql", json={"query": "{ viewer { kind } }"}, headers={"Origin": APP_ORIGIN}
    )
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/graphql", "authorization, content-type"),
        ("/api/user/usage-history", "x-access-token"),
        ("/v1/billing/usage-history", "x-api-key"),
        ("/auth/account/usage", "authorization"),
    ],
)
async def test_a_listed_origin_gets_its_preflight_answered(
    cors_client: httpx.AsyncClient, path: str, headers: str
) -> None:
    response = await cors_client.options(path, headers=_preflight(APP_ORIGIN, headers))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in headers.split(", "):
        assert header in allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-max-age"] == "600"


async def test_another_origin_is_refused_and_gets_no_cors_headers(
    cors_client: httpx.AsyncClient,
) -> None:
    response = await cors_client.options("/graphql", headers=_preflight(OTHER_ORIGIN))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    answer = await cors_client.post(
        "/graphql", json={"query": "{ viewer { kind } }"}, headers={"Origin": OTHER_ORIGIN}
    )
    assert "access-control-allow-origin" not in answer.headers


async def test_answers_to_a_listed_origin_are_readable_errors_included(
    cors_client: httpx.AsyncClient,
) -> None:
    answer = await cors_client.post(
        "/graphql", json={"query": "{ viewer { kind } }"}, headers={"Origin": APP_ORIGIN}
    )
    assert answer.json() == {"data": {"viewer": {"kind": "ANONYMOUS"}}}
    assert answer.headers["access-control-allow-origin"] == APP_ORIGIN
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    assert "Origin" in answer.headers["vary"]
    refused = await cors_client.get("/auth/account/usage", headers={"Origin": APP_ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == APP_ORIGIN


@pytest.mark.parametrize(
    "value", ["*", "https://*.example.com", "app.example.com", "https://app.example.com/path"]
)
def test_wildcards_and_non_origins_are_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="USAGEGRAPH_CORS_ORIGINS"):
        Settings.from_env({"USAGEGRAPH_CORS_ORIGINS": value, "HOME": "/tmp"})


def test_origins_are_read_as_a_comma_list() -> None:
    settings = Settings.from_env(
        {"USAGEGRAPH_CORS_ORIGINS": f" {APP_ORIGIN} , http://localhost:5173 ,", "HOME": "/tmp"}
    )
    assert settings.cors_origins == (APP_ORIGIN, "http://localhost:5173")
