"""Posting GraphQL to the real app, as a given caller."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TEST_JWT_SECRET
from usagegraph.auth.tokens import mint_token


async def graphql(
    client: httpx.AsyncClient,
    query: str,
    *,
    user_id: int | None = None,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole response body (data and errors) of one GraphQL request."""
    headers = {}
    if user_id is not None:
        headers["Authorization"] = f"Bearer {mint_token(user_id, TEST_JWT_SECRET)}"
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]
