"""GET /api/v1/clients/{bucket_id}/history (CONTRACT section 5, seed 004) through the app.

Data: tests/fixtures/buckets_data.py. Order of checks: 401, then 400, then 404.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_JWT_SECRET
from tests.fixtures.buckets_data import seed_buckets
from usagegraph.auth.tokens import mint_token

ZEROS = {"person": 0, "organisation": 0, "member": 0, "payment": 0, "ticket": 0, "booking": 0}


def _history(bucket_id: str) -> str:
    return f"/api/v1/clients/{bucket_id}/history"


def _jwt(user_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(user_id, TEST_JWT_SECRET)}"}


def _error(response: httpx.Response, message: str) -> dict[str, str]:
    request_id = response.headers["x-request-id"]
    assert request_id.startswith("req_")
    return {"error": message, "request_id": request_id}


async def test_a_member_reads_the_history_in_the_seed_shape(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await seed_buckets(engine)
    response = await client.get(
        _history("acme-corp"),
        params={"start_date": "2024-01-15", "end_date": "2024-06-30"},
        headers=_jwt(world.member_id),
    )
    assert response.status_code == 200
    assert response.json() == {
        "snapshots": [
            {
                "bucket_id": "acme-corp",
                "snapshot_date": "2024-06-30",
                "records": {**ZEROS, "booking": 3, "total": 125000},  # stored total kept
                "storage": {"object_count": 0, "total_bytes": 0, "by_prefix": {}},
                "computed_at": "2024-01-16T03:04:05.678Z",
            },
            {
                "bucket_id": "acme-corp",
                "snapshot_date": "2024-02-29",
                "records": {**ZEROS, "ticket": 2, "total": 2},
                "storage": {"object_count": 0, "total_bytes": 0, "by_prefix": {}},
                "computed_at": "2024-01-16T03:04:05.678Z",
            },
            {
                "bucket_id": "acme-corp",
                "snapshot_date": "2024-01-15",
                # no stored total: 15000 + 45000 + 7 = 60007
                "records": {
                    **ZEROS,
                    "person": 15000,
                    "payment": 45000,
                    "total": 60007,
                    "invoices": 7,
                },
                "storage": {
                    "object_count": 8500,
                    "total_bytes": 5368709120,
                    "by_prefix": {
                        "avatars/": {"count": 8490, "bytes": 0},
                        "docs/": {"count": 10, "bytes": 2048},
                    },
                },
                "computed_at": "2024-01-16T03:04:05.678Z",
            },
        ],
        "count": 3,
    }


async def test_the_institutions_api_key_in_either_header_and_the_limit(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await seed_buckets(engine)
    for headers in ({"Authorization": f"Bearer {world.acme_key}"}, {"X-API-Key": world.acme_key}):
        response = await client.get(_history("acme-corp"), params={"limit": "2"}, headers=headers)
        assert response.status_code == 200
        body = response.json()
        assert [s["snapshot_date"] for s in body["snapshots"]] == ["2024-12-31", "2024-06-30"]
        assert body["count"] == 2


async def test_default_limit_returns_all_five_newest_first(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await seed_buckets(engine)
    body = (await client.get(_history("acme-corp"), headers=_jwt(world.super_id))).json()
    assert [s["snapshot_date"] for s in body["snapshots"]] == [
        "2024-12-31",
        "2024-06-30",
        "2024-02-29",
        "2024-01-15",
        "2024-01-01",
    ]
    assert body["count"] == 5
    assert body["snapshots"][0]["records"] == {**ZEROS, "total": 0}


async def test_a_range_without_snapshots_is_an_empty_200(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await seed_buckets(engine)
    response = await client.get(
        _history("acme-corp"), params={"start_date": "2025-01-01"}, headers=_jwt(world.member_id)
    )
    assert response.status_code == 200
    assert response.json() == {"snapshots": [], "count": 0}


async def test_no_valid_credential_is_401(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    world = await seed_buckets(engine)
    expired = jwt.encode(
        {"sub": str(world.member_id), "exp": datetime.now(UTC) - timedelta(hours=1)},
        TEST_JWT_SECRET,
        algorithm="HS256",
    )
    for headers in (
        {},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {mint_token(9999, TEST_JWT_SECRET)}"},  # no such user
        {"Authorization": "Bearer ug_live_unknown_key_0123456789"},
        {"X-API-Key": "ug_live_unknown_key_0123456789"},
        {"x-access-token": mint_token(world.member_id, TEST_JWT_SECRET)},  # wrong header here
    ):
        # A malformed bucket id too: the credential is checked first.
        for bucket_id in ("acme-corp", "bad.id"):
            response = await client.get(_history(bucket_id), headers=headers)
            assert response.status_code == 401, headers
            assert response.json() == _error(response, "Unauthorized")


async def test_no_access_and_unknown_bucket_are_the_same_404(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await seed_buckets(engine)
    callers = [
        _jwt(world.outsider_id),
        _jwt(world.loner_id),
        {"X-API-Key": world.other_key},
        {"Authorization": f"Bearer {world.other_key}"},
    ]
    for headers in callers:
        for bucket_id in ("acme-corp", "acme_archive", "no-such-bucket"):
            response = await client.get(_history(bucket_id), headers=headers)
            assert response.status_code == 404
            assert response.json() == _error(response, "Not found")
    # The member's own key cannot reach OTHER's bucket either.
    response = await client.get(_history("other-co"), headers={"X-API-Key": world.acme_key})
    assert response.status_code == 404
    assert response.json() == _error(response, "Not found")


@pytest.mark.parametrize(
    "raw_id",
    ["acme.corp", "a" * 65, "acme%20corp", "acme%2Fcorp", "a/b", "%C3%A9", ""],
)
async def test_malformed_bucket_id_is_400(
    engine: AsyncEngine, client: httpx.AsyncClient, raw_id: str
) -> None:
    world = await seed_buckets(engine)
    response = await client.get(_history(raw_id), headers=_jwt(world.member_id))
    assert response.status_code == 400
    assert response.json() == _error(response, "Invalid bucket_id")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"start_date": "2024-02-30"},
            "Invalid start_date: expected an existing date as YYYY-MM-DD",
        ),
        ({"start_date": "2024-1-5"}, "Invalid start_date: expected an existing date as YYYY-MM-DD"),
        (
            {"start_date": "2024-01-05T00:00:00Z"},
            "Invalid start_date: expected an existing date as YYYY-MM-DD",
        ),
        ({"end_date": "yesterday"}, "Invalid end_date: expected an existing date as YYYY-MM-DD"),
        ({"end_date": ""}, "Invalid end_date: expected an existing date as YYYY-MM-DD"),
        ({"limit": "0"}, "Invalid limit: must be an integer between 1 and 1000"),
        ({"limit": "1001"}, "Invalid limit: must be an integer between 1 and 1000"),
        ({"limit": "ten"}, "Invalid limit: must be an integer"),
        ({"limit": "2.0"}, "Invalid limit: must be an integer"),
        (
            {"start_date": "2024-06-30", "end_date": "2024-01-15"},
            "Invalid date range: start_date is after end_date",
        ),
    ],
)
async def test_bad_query_parameters_are_400_naming_the_parameter(
    engine: AsyncEngine, client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    world = await seed_buckets(engine)
    response = await client.get(_history("acme-corp"), params=params, headers=_jwt(world.member_id))
    assert response.status_code == 400
    assert response.json() == _error(response, message)


async def test_bad_parameters_are_400_even_without_access(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    """400 comes before 404, and says nothing about whether the bucket exists."""
    world = await seed_buckets(engine)
    for bucket_id in ("acme-corp", "no-such-bucket"):
        response = await client.get(
            _history(bucket_id), params={"limit": "0"}, headers=_jwt(world.outsider_id)
        )
        assert response.status_code == 400
        assert response.json() == _error(
            response, "Invalid limit: must be an integer between 1 and 1000"
        )


async def test_control_characters_in_the_bucket_id_get_the_documented_400(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    """Found by the schemathesis run: a newline in the path used to fall through to a 404."""
    world = await seed_buckets(engine)
    response = await client.get(
        "/api/v1/clients/%0A%13/history", headers={"X-API-Key": world.acme_key}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid bucket_id"
