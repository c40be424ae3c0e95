"""GET /v1/billing/usage-history (CONTRACT section 3, seed 002) through the real app.

Data and arithmetic: tests/fixtures/billing_data.py (FIXED_NOW = 2026-05-20 15:30 UTC).
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_JWT_SECRET
from tests.fixtures.billing_data import ACME, add_institution, add_key, at, seed_billing
from usagegraph.auth.tokens import mint_token

PATH = "/v1/billing/usage-history"


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _request_id(response: httpx.Response) -> str:
    """The body's meta.request_id, checked against the X-Request-Id header."""
    request_id = response.json()["meta"]["request_id"]
    assert request_id.startswith("req_")
    assert response.headers["x-request-id"] == request_id
    return request_id


def _error(response: httpx.Response, code: str, message: str) -> dict:
    return {
        "error": {"code": code, "message": message},
        "meta": {"request_id": _request_id(response)},
    }


async def test_full_history_in_the_seed_shape(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await seed_billing(engine)
    response = await client.get(PATH, headers=_bearer(world.acme_key))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"

    def month(start: str, end: str, messages: int, over: int) -> dict:
        return {
            "period_start": start,
            "period_end": end,
            "message_count": messages,
            "overage_count": over,
            "plan_limit": 5,
        }

    assert response.json() == {
        "data": [
            month("2026-05-01", "2026-05-31", 6, 1),  # 6 - 5
            month("2026-04-01", "2026-04-30", 0, 0),
            month("2026-03-01", "2026-03-31", 4, 0),
            month("2026-02-01", "2026-02-28", 7, 2),  # 3 + 1 + 2 forgotten + 1 failed = 7
            month("2026-01-01", "2026-01-31", 10, 5),
            month("2025-12-01", "2025-12-31", 0, 0),
            month("2025-11-01", "2025-11-30", 1, 0),  # first usage, before creation
        ],
        "meta": {
            "request_id": _request_id(response),
            "total": 7,
            "limit": 12,
            "offset": 0,
            "has_more": False,
        },
    }


async def test_x_api_key_header_and_a_page(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    world = await seed_billing(engine)
    response = await client.get(
        PATH, params={"limit": "5", "offset": "5"}, headers={"X-API-Key": world.acme_key}
    )
    assert response.status_code == 200
    body = response.json()
    # total 7, offset 5: December and November; 5 + 2 = 7 -> no more.
    assert [m["period_start"] for m in body["data"]] == ["2025-12-01", "2025-11-01"]
    assert body["meta"] | {"request_id": None} == {
        "request_id": None,
        "total": 7,
        "limit": 5,
        "offset": 5,
        "has_more": False,
    }


async def test_has_more_while_months_remain(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    world = await seed_billing(engine)
    response = await client.get(PATH, params={"limit": "2"}, headers=_bearer(world.acme_key))
    body = response.json()
    assert [m["period_start"] for m in body["data"]] == ["2026-05-01", "2026-04-01"]
    assert (body["meta"]["total"], body["meta"]["has_more"]) == (7, True)  # 0 + 2 < 7


async def test_default_limit_is_twelve_and_twenty_four_is_allowed(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    old = "eeeeeeeeeeeeeeeeeeeeeeee"
    await add_institution(engine, old, created_at=at(2024, 1, 1, 0), plan_limit=None)
    key = await add_key(engine, old)
    # 2024-01 .. 2026-05 = 12 + 12 + 5 = 29 months.
    first = (await client.get(PATH, headers=_bearer(key))).json()
    assert len(first["data"]) == 12
    assert first["data"][-1]["period_start"] == "2025-06-01"  # May 2026 minus 11 months
    assert (first["meta"]["total"], first["meta"]["has_more"]) == (29, True)
    widest = (await client.get(PATH, params={"limit": "24"}, headers=_bearer(key))).json()
    assert len(widest["data"]) == 24
    last = (
        await client.get(PATH, params={"limit": "12", "offset": "24"}, headers=_bearer(key))
    ).json()
    # 29 - 24 = 5 months: May .. January 2024.
    assert [m["period_start"] for m in last["data"]] == [
        "2024-05-01",
        "2024-04-01",
        "2024-03-01",
        "2024-02-01",
        "2024-01-01",
    ]
    assert last["meta"]["has_more"] is False
    assert all(m["plan_limit"] is None and m["overage_count"] == 0 for m in last["data"])


async def test_offset_past_the_end_is_an_empty_page(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await seed_billing(engine)
    response = await client.get(PATH, params={"offset": "100"}, headers=_bearer(world.acme_key))
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == []
    assert (body["meta"]["total"], body["meta"]["has_more"]) == (7, False)


async def test_another_institutions_key_sees_only_its_own_months(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await seed_billing(engine)
    body = (await client.get(PATH, headers=_bearer(world.other_key))).json()
    # OTHER: created 2026-04-10, first used 2026-02-15; 100 in Feb and Apr; unlimited.
    assert [(m["period_start"], m["message_count"], m["plan_limit"]) for m in body["data"]] == [
        ("2026-05-01", 0, None),
        ("2026-04-01", 100, None),
        ("2026-03-01", 0, None),
        ("2026-02-01", 100, None),
    ]
    assert body["meta"]["total"] == 4


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit must be an integer between 1 and 24"),
        ({"limit": "25"}, "limit must be an integer between 1 and 24"),
        ({"limit": "-1"}, "limit must be an integer between 1 and 24"),
        ({"limit": "abc"}, "limit must be an integer"),
        ({"limit": "1.5"}, "limit must be an integer"),
        ({"limit": ""}, "limit must be an integer"),
        ({"offset": "-1"}, "offset must be a non-negative integer"),
        ({"offset": "x"}, "offset must be an integer"),
        ({"offset": "1e3"}, "offset must be an integer"),
    ],
)
async def test_bad_paging_is_a_400_naming_the_parameter(
    engine: AsyncEngine, client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    world = await seed_billing(engine)
    response = await client.get(PATH, params=params, headers=_bearer(world.acme_key))
    assert response.status_code == 400
    assert response.json() == _error(response, "INVALID_REQUEST", message)


async def test_a_parameter_given_twice_is_a_400(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await seed_billing(engine)
    response = await client.get(f"{PATH}?limit=2&limit=3", headers=_bearer(world.acme_key))
    assert response.status_code == 400
    assert response.json() == _error(
        response, "INVALID_REQUEST", "limit must be given at most once"
    )


async def test_missing_bad_or_jwt_credentials_are_401(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await seed_billing(engine)
    jwt = mint_token(world.super_id, TEST_JWT_SECRET)  # a valid JWT, even of a super user
    for headers in (
        {},
        _bearer("ug_live_not_a_real_key_0123456789"),
        {"X-API-Key": "nope-nope-nope-nope"},
        _bearer(jwt),
        {"x-access-token": jwt},
        {"Authorization": world.acme_key},  # no Bearer scheme
    ):
        response = await client.get(PATH, params={"limit": "0"}, headers=headers)
        assert response.status_code == 401, headers
        assert response.json() == _error(response, "UNAUTHORIZED", "Invalid or missing API key")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/billing/usage"),
        ("GET", "/v1/"),
        ("GET", "/v1"),
        ("DELETE", "/v1/billing/invoices/42"),
        ("POST", PATH),
        ("PUT", PATH),
    ],
)
async def test_unknown_v1_endpoints_are_404_with_or_without_a_key(
    engine: AsyncEngine, client: httpx.AsyncClient, method: str, path: str
) -> None:
    world = await seed_billing(engine)
    for headers in ({}, _bearer(world.acme_key)):
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 404
        assert response.json() == _error(response, "ENDPOINT_NOT_FOUND", "endpoint not found")


async def test_every_request_gets_its_own_id(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await seed_billing(engine)
    ids = {_request_id(await client.get(PATH, headers=_bearer(world.acme_key))) for _ in range(3)}
    assert len(ids) == 3
    assert ACME not in "".join(ids)


async def test_offset_beyond_64_bits_is_a_400_not_a_crash(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    """Found by the schemathesis run: the echoed offset must fit the JSON encoder. A number
    beyond 64 bits is not an integer by the shared rule (`input_ids.parse_integer`)."""
    world = await seed_billing(engine)
    response = await client.get(
        "/v1/billing/usage-history?offset=18446744073709551616",
        headers={"X-API-Key": world.acme_key},
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "INVALID_REQUEST",
        "message": "offset must be an integer",
    }
