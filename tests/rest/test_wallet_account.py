"""GET /auth/account/{usage,credits,ledger,summary} (seed 003) through the real app.

FIXED_NOW = 2026-05-20 15:30 UTC. Every body below is written out by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_JWT_SECRET
from tests.fixtures.factories import add_institution, add_user
from tests.fixtures.wallet_account_data import (
    ACME,
    Entry,
    Event,
    add_entries,
    add_events,
    add_subscription,
    add_wallet,
    at,
    set_user_times,
)
from usagegraph.auth.tokens import mint_token

ENDPOINTS = ("usage", "credits", "ledger", "summary")


async def _get(
    client: httpx.AsyncClient,
    endpoint: str,
    user_id: int | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    headers = dict(headers or {})
    if user_id is not None:
        headers["Authorization"] = f"Bearer {mint_token(user_id, TEST_JWT_SECRET)}"
    return await client.get(f"/auth/account/{endpoint}", params=params, headers=headers)


def _coded(response: httpx.Response, code: str, message: str) -> dict[str, Any]:
    """The coded envelope, with the request id the response's header carries."""
    request_id = response.headers["x-request-id"]
    assert request_id.startswith("req_")
    return {"error": {"code": code, "message": message}, "meta": {"request_id": request_id}}


async def _users(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    return {
        "ada": await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"}),
        "bob": await add_user(engine, email="bob@acme.edu", member_of={ACME: "user"}),
        "root": await add_user(engine, email="root@example.com", role="super"),
    }


# --- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_without_a_token_every_endpoint_is_401(
    engine: AsyncEngine, client: httpx.AsyncClient, endpoint: str
) -> None:
    response = await _get(client, endpoint)
    assert response.status_code == 401
    assert response.json() == _coded(response, "UNAUTHORIZED", "A Bearer token is required")


def _expired_token(user_id: int) -> str:
    past = datetime.now(UTC) - timedelta(hours=2)
    claims = {"sub": str(user_id), "iat": past, "exp": past + timedelta(hours=1)}
    return jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "expired",
        "wrong-secret",
        "unknown-user",
    ],
)
async def test_an_invalid_token_is_401(
    engine: AsyncEngine, client: httpx.AsyncClient, token: str
) -> None:
    ids = await _users(engine)
    value = {
        "not-a-jwt": "abc.def.ghi",
        "expired": _expired_token(ids["ada"]),
        "wrong-secret": mint_token(ids["ada"], "another-secret-that-is-long-enough-0123456789"),
        "unknown-user": mint_token(999_999, TEST_JWT_SECRET),
    }[token]
    response = await _get(client, "credits", headers={"Authorization": f"Bearer {value}"})
    assert response.status_code == 401
    assert response.json() == _coded(response, "UNAUTHORIZED", "Invalid or expired token")


async def test_the_x_access_token_header_does_not_open_auth_routes(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    ids = await _users(engine)
    token = mint_token(ids["ada"], TEST_JWT_SECRET)
    response = await _get(client, "summary", headers={"x-access-token": token})
    assert response.status_code == 401


async def test_401_comes_before_parameter_checks(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    response = await _get(client, "usage", params={"period": "weekly"})
    assert response.status_code == 401


# --- usage -------------------------------------------------------------------------------


async def test_daily_usage_is_clipped_to_from_and_to(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    ids = await _users(engine)
    ada, bob = ids["ada"], ids["bob"]
    await add_events(
        engine,
        Event(ada, at(5, 18, 11, 59), "1"),  # before from
        Event(ada, at(5, 18, 12, 0), "2.5"),
        Event(ada, at(5, 18, 20, 0), "0.25", ACME, "/v1/embed", "failed"),
        Event(ada, at(5, 19, 9, 0), "1.5", ACME, None, forgotten=True),
        Event(ada, at(5, 20, 5, 59), "4", status="failed"),
        Event(ada, at(5, 20, 6, 0), "8"),  # at `to`
        Event(bob, at(5, 19, 12, 0), "100", ACME),
    )
    response = await _get(
        client,
        "usage",
        ada,
        {"period": "daily", "from": "2026-05-18T12:00:00Z", "to": "2026-05-20T06:00:00Z"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "data": [
            {
                "user_id": ada,
                "period": "daily",
                "total_requests": 2,
                "successful_requests": 1,
                "failed_requests": 1,
                "credits_consumed": 2.75,  # 2.5 + 0.25
                "requests_by_endpoint": {"/v1/chat": 1, "/v1/embed": 1},
                "period_start": "2026-05-18T12:00:00.000Z",
                "period_end": "2026-05-19T00:00:00.000Z",
            },
            {
                "user_id": ada,
                "period": "daily",
                "total_requests": 1,
                "successful_requests": 1,
                "failed_requests": 0,
                "credits_consumed": 1.5,  # forgotten, still counted
                "requests_by_endpoint": {"unknown": 1},
                "period_start": "2026-05-19T00:00:00.000Z",
                "period_end": "2026-05-20T00:00:00.000Z",
            },
            {
                "user_id": ada,
                "period": "daily",
                "total_requests": 1,
                "successful_requests": 0,
                "failed_requests": 1,
                "credits_consumed": 4,
                "requests_by_endpoint": {"/v1/chat": 1},
                "period_start": "2026-05-20T00:00:00.000Z",
                "period_end": "2026-05-20T06:00:00.000Z",
            },
        ]
    }
    # Money is a JSON number, not a string.
    assert '"credits_consumed":2.75' in response.text


async def test_default_usage_is_this_month_until_now(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    ids = await _users(engine)
    ada = ids["ada"]
    await add_events(
        engine,
        Event(ada, at(4, 30, 23, 59), "9"),
        Event(ada, at(5, 1, 0, 0), "0.1"),
        Event(ada, at(5, 20, 15, 29), "0.2", ACME),
        Event(ada, at(5, 20, 15, 30), "5"),  # at now
    )
    response = await _get(client, "usage", ada)
    assert response.json() == {
        "data": [
            {
                "user_id": ada,
                "period": "monthly",
                "total_requests": 2,
                "successful_requests": 2,
                "failed_requests": 0,
                "credits_consumed": 0.3,  # 0.1 + 0.2, exact
                "requests_by_endpoint": {"/v1/chat": 2},
                "period_start": "2026-05-01T00:00:00.000Z",
                "period_end": "2026-05-20T15:30:00.000Z",
            }
        ]
    }
    assert '"credits_consumed":0.3,' in response.text


async def test_yearly_usage_across_new_year_with_dates_and_offsets(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    ids = await _users(engine)
    ada = ids["ada"]
    await add_events(
        engine,
        Event(ada, at(12, 31, 23, 0, year=2025), "1"),
        Event(ada, at(1, 1, 0, 30), "2"),
    )
    # from = 2025-12-31 22:00+02:00 = 2025-12-31 20:00 UTC; to is a bare date: 00:00 UTC.
    response = await _get(
        client,
        "usage",
        ada,
        {"period": "yearly", "from": "2025-12-31T22:00:00+02:00", "to": "2026-01-02"},
    )
    body = response.json()["data"]
    assert [
        (b["period_start"], b["period_end"], b["total_requests"], b["credits_consumed"])
        for b in body
    ] == [
        ("2025-12-31T20:00:00.000Z", "2026-01-01T00:00:00.000Z", 1, 1),
        ("2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z", 1, 2),
    ]


async def test_super_sees_only_their_own_usage(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    ids = await _users(engine)
    await add_events(
        engine, Event(ids["ada"], at(5, 3), "7"), Event(ids["root"], at(5, 4), "0.5", ACME)
    )
    response = await _get(client, "usage", ids["root"])
    (stats,) = response.json()["data"]
    assert (stats["user_id"], stats["total_requests"], stats["credits_consumed"]) == (
        ids["root"],
        1,
        0.5,
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"period": "weekly"}, "'period' must be one of daily, monthly, yearly"),
        ({"from": "2024-02-30"}, "'from' must be an ISO 8601 date or date-time"),
        ({"to": "yesterday"}, "'to' must be an ISO 8601 date or date-time"),
        ({"from": "2026-05-20T15:30:00Z"}, "'from' must be earlier than 'to'"),  # = now
        (
            {"from": "2026-05-10T00:00:00Z", "to": "2026-05-09T00:00:00Z"},
            "'from' must be earlier than 'to'",
        ),
        (
            # 2025-01-01 .. 2026-01-02 00:00:01 touches 367 days
            {"period": "daily", "from": "2025-01-01", "to": "2026-01-02T00:00:01Z"},
            "The range from 'from' to 'to' spans more than 366 day periods; "
            "narrow it or choose a longer period",
        ),
    ],
)
async def test_bad_usage_parameters_are_400(
    engine: AsyncEngine, client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    ids = await _users(engine)
    response = await _get(client, "usage", ids["ada"], params)
    assert response.status_code == 400
    assert response.json() == _coded(response, "INVALID_REQUEST", message)


async def test_366_daily_buckets_are_allowed(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    ids = await _users(engine)
    response = await _get(
        client, "usage", ids["ada"], {"period": "daily", "from": "2025-01-01", "to": "2026-01-02"}
    )
    assert response.status_code == 200
    assert len(response.json()["data"]) == 366


# --- credits -----------------------------------------------------------------------------


async def test_credits_render_the_wallet(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    ids = await _users(engine)
    await add_wallet(
        engine,
        ids["ada"],
        balance="120.5",
        reserved="20.25",
        updated_at=at(5, 19, 8),
        auto_reload=("10", "50"),
    )
    response = await _get(client, "credits", ids["ada"])
    assert response.status_code == 200
    assert response.json() == {
        "user_id": ids["ada"],
        "balance": 120.5,
        "reserved": 20.25,
        "available": 100.25,  # 120.5 - 20.25
        "currency": "usd",
        "last_updated": "2026-05-19T08:00:00.000Z",
        "auto_reload_enabled": True,
        "auto_reload_threshold": 10,
        "auto_reload_amount": 50,
    }


async def test_credits_without_a_wallet(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    ids = await _users(engine)
    await add_wallet(engine, ids["bob"], balance="5", reserved="0", updated_at=at(5, 1))
    response = await _get(client, "credits", ids["ada"])
    assert response.json() == {
        "user_id": ids["ada"],
        "balance": 0,
        "reserved": 0,
        "available": 0,
        "currency": "usd",
        "last_updated": None,
        "auto_reload_enabled": False,
        "auto_reload_threshold": None,
        "auto_reload_amount": None,
    }


# --- ledger ------------------------------------------------------------------------------


async def _ledger(engine: AsyncEngine, ada: int, bob: int) -> list[int]:
    """Seven entries of Ada's (balance_after by hand) and one of Bob's."""
    return await add_entries(
        engine,
        Entry(ada, "credit", "100", "100", at(5, 1, 9), "Top-up", "pay_1", {"source": "card"}),
        Entry(ada, "debit", "2.5", "97.5", at(5, 2, 10), "Usage"),
        Entry(ada, "debit", "1.25", "96.25", at(5, 3, 10)),
        Entry(ada, "adjustment", "-0.25", "96", at(5, 4, 10), "Rounding"),
        Entry(ada, "credit", "50", "146", at(5, 5, 10)),
        Entry(ada, "debit", "6", "140", at(5, 6, 10)),
        Entry(ada, "adjustment", "10", "150", at(5, 7, 10)),
        Entry(bob, "credit", "999", "999", at(5, 3, 12)),
    )


async def test_ledger_pages_of_three(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    ids = await _users(engine)
    entry_ids = await _ledger(engine, ids["ada"], ids["bob"])
    bodies = [
        (await _get(client, "ledger", ids["ada"], {"limit": "3", "offset": str(o)})).json()
        for o in (0, 3, 6)
    ]
    # newest first: entries 7 6 5 | 4 3 2 | 1
    assert [[e["id"] for e in b["data"]] for b in bodies] == [
        [entry_ids[6], entry_ids[5], entry_ids[4]],
        [entry_ids[3], entry_ids[2], entry_ids[1]],
        [entry_ids[0]],
    ]
    assert [(b["total"], b["limit"], b["offset"], b["has_more"]) for b in bodies] == [
        (7, 3, 0, True),
        (7, 3, 3, True),
        (7, 3, 6, False),
    ]
    assert bodies[2]["data"] == [
        {
            "id": entry_ids[0],
            "user_id": ids["ada"],
            "type": "credit",
            "amount": 100,
            "balance_after": 100,
            "description": "Top-up",
            "reference": "pay_1",
            "metadata": {"source": "card"},
            "created_at": "2026-05-01T09:00:00.000Z",
        }
    ]


async def test_ledger_defaults_and_signed_adjustments(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    ids = await _users(engine)
    entry_ids = await _ledger(engine, ids["ada"], ids["bob"])
    body = (await _get(client, "ledger", ids["ada"], {"type": "adjustment"})).json()
    assert (body["total"], body["limit"], body["offset"], body["has_more"]) == (2, 50, 0, False)
    assert [(e["id"], e["amount"], e["balance_after"], e["metadata"]) for e in body["data"]] == [
        (entry_ids[6], 10, 150, {}),
        (entry_ids[3], -0.25, 96, {}),
    ]
    assert body["data"][1]["reference"] is None


async def test_ledger_window_filters_created_at(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    ids = await _users(engine)
    entry_ids = await _ledger(engine, ids["ada"], ids["bob"])
    # [05-02 10:00, 05-04 10:00): entries 2 and 3; Bob's 05-03 entry is not Ada's.
    body = (
        await _get(
            client,
            "ledger",
            ids["ada"],
            {"type": "debit", "from": "2026-05-02T10:00:00Z", "to": "2026-05-04T10:00:00Z"},
        )
    ).json()
    assert [e["id"] for e in body["data"]] == [entry_ids[2], entry_ids[1]]
    assert body["total"] == 2


async def test_super_reads_their_own_empty_ledger(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    ids = await _users(engine)
    await _ledger(engine, ids["ada"], ids["bob"])
    body = (await _get(client, "ledger", ids["root"])).json()
    assert body == {"data": [], "total": 0, "limit": 50, "offset": 0, "has_more": False}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "101"}, "'limit' must be an integer from 1 to 100"),
        ({"limit": "0"}, "'limit' must be an integer from 1 to 100"),
        ({"limit": "abc"}, "'limit' must be an integer"),
        ({"limit": "2.5"}, "'limit' must be an integer"),
        ({"offset": "-1"}, "'offset' must be an integer from 0 to 9223372036854775807"),
        ({"offset": "1e3"}, "'offset' must be an integer"),
        ({"offset": "99999999999999999999"}, "'offset' must be an integer"),
        ({"type": "refund"}, "'type' must be one of credit, debit, adjustment"),
        ({"from": "2026-13-01"}, "'from' must be an ISO 8601 date or date-time"),
        ({"from": "2026-05-04", "to": "2026-05-04"}, "'from' must be earlier than 'to'"),
    ],
)
async def test_bad_ledger_parameters_are_400(
    engine: AsyncEngine, client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    ids = await _users(engine)
    response = await _get(client, "ledger", ids["ada"], params)
    assert response.status_code == 400
    assert response.json() == _coded(response, "INVALID_REQUEST", message)


# --- summary -----------------------------------------------------------------------------


async def test_summary_of_an_account(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    ids = await _users(engine)
    ada = ids["ada"]
    await set_user_times(engine, ada, created_at=at(1, 15, 9), last_login_at=at(5, 20, 8))
    await add_wallet(engine, ada, balance="42", reserved="2", updated_at=at(5, 19, 8))
    await add_subscription(
        engine, ada, plan="pro", status="active", period=(at(5, 1, 0), at(6, 1, 0))
    )
    await add_events(
        engine,
        Event(ada, at(11, 3, year=2025), "4"),  # all-time only
        Event(ada, at(5, 2), "1.5", ACME, "/v1/embed", forgotten=True),
        Event(ada, at(5, 10), "0.5", status="failed"),
        Event(ids["bob"], at(5, 3), "50"),
    )
    response = await _get(client, "summary", ada)
    assert response.status_code == 200
    assert response.json() == {
        "user_id": ada,
        "email": "ada@acme.edu",
        "credit_balance": {
            "user_id": ada,
            "balance": 42,
            "reserved": 2,
            "available": 40,
            "currency": "usd",
            "last_updated": "2026-05-19T08:00:00.000Z",
            "auto_reload_enabled": False,
            "auto_reload_threshold": None,
            "auto_reload_amount": None,
        },
        "subscription": {
            "plan": "pro",
            "status": "active",
            "current_period_start": "2026-05-01T00:00:00.000Z",
            "current_period_end": "2026-06-01T00:00:00.000Z",
        },
        "usage_this_month": {
            "user_id": ada,
            "period": "monthly",
            "total_requests": 2,
            "successful_requests": 1,
            "failed_requests": 1,
            "credits_consumed": 2,  # 1.5 + 0.5
            "requests_by_endpoint": {"/v1/chat": 1, "/v1/embed": 1},
            "period_start": "2026-05-01T00:00:00.000Z",
            "period_end": "2026-05-20T15:30:00.000Z",
        },
        "total_requests_all_time": 3,  # Nov 2025 + two in May; not Bob's
        "account_created_at": "2026-01-15T09:00:00.000Z",
        "last_login_at": "2026-05-20T08:00:00.000Z",
    }


async def test_summary_without_a_subscription(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    ids = await _users(engine)
    await add_subscription(engine, ids["ada"], plan="pro", status="active", period=None)
    body = (await _get(client, "summary", ids["bob"])).json()
    assert body["subscription"] is None
    assert body["last_login_at"] is None
    assert body["total_requests_all_time"] == 0
    assert body["usage_this_month"]["total_requests"] == 0
