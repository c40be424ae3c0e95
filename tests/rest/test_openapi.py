"""The OpenAPI document: valid 3.1, served as exported, and covering the five APIs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from openapi_spec_validator import validate

from usagegraph.rest.openapi import openapi_document

EXPORTED = Path(__file__).parents[2] / "openapi.json"
REGENERATE = "usagegraph export-openapi --output openapi.json"


def test_document_is_valid_openapi_3_1() -> None:
    validate(openapi_document())


def test_exported_document_matches_the_code() -> None:
    assert json.loads(EXPORTED.read_text()) == openapi_document(), f"run: {REGENERATE}"


def test_document_describes_every_documented_route() -> None:
    assert set(openapi_document()["paths"]) == {
        "/api/user/usage-history",
        "/api/admin/histories/charts/user-stats",
        "/v1/billing/usage-history",
        "/v1/events",
        "/auth/account/usage",
        "/auth/account/credits",
        "/auth/account/ledger",
        "/auth/account/summary",
        "/api/v1/clients/{bucket_id}/history",
    }


async def test_server_serves_the_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == openapi_document()
