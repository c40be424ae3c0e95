"""The exact inputs of issue 11, section 4 ("Inputs that still reach a 500 or INTERNAL"),
each answered with its route's documented 4xx now, on both databases."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.input_rules.test_money import stored_sums_within_bounds
from tests.input_rules.world import (
    ACME,
    RECENT,
    World,
    access_token,
    api_key_header,
    assert_refused,
    bearer,
    global_id,
    money_values,
    post_graphql,
    scalar,
    token_with_subject,
)

USER_STATS = "/api/admin/histories/charts/user-stats"
LIMIT = "9223372036854.775807"

# --- invalid UTF-8 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"query":"{ viewer { kind } }\xff"}',
        '{"query":"{ viewer { kind } }"}'.encode("utf-16"),  # not UTF-8 at all
        b"\xff\xfe\xfd",
    ],
)
async def test_a_graphql_body_that_is_not_utf8_is_a_400(
    client: httpx.AsyncClient, world: World, body: bytes
) -> None:
    headers = {**bearer(world.super_id), "content-type": "application/json"}
    response = await client.post("/graphql", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "message": "The request body is not valid UTF-8",
                "extensions": {"code": "INVALID_REQUEST"},
            }
        ]
    }


async def test_a_graphql_query_string_that_is_not_utf8_is_a_400(
    client: httpx.AsyncClient, world: World
) -> None:
    """Decoded with replacement, `%FF` reached the resolver as U+FFFD: a value never sent."""
    response = await client.get(
        "/graphql?query=%7B%20institution(id:%20%22a%FF%22)%20%7B%20name%20%7D%20%7D",
        headers=bearer(world.super_id),
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "message": "The query string is not valid UTF-8",
            "extensions": {"code": "INVALID_REQUEST"},
        }
    ]


async def test_a_lone_surrogate_in_graphql_variables_is_a_400(
    client: httpx.AsyncClient, world: World
) -> None:
    """Valid JSON to the standard library, but no database can store it (INTERNAL before)."""
    body = (
        b'{"query":"query($i: String!) { institution(id: $i) { name } }",'
        b'"variables":{"i":"\\ud800"}}'
    )
    headers = {**bearer(world.super_id), "content-type": "application/json"}
    response = await client.post("/graphql", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == {"code": "INVALID_REQUEST"}


# --- year-edge dates --------------------------------------------------------------------------

EDGE_MOMENTS = ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"]


@pytest.mark.parametrize("moment", EDGE_MOMENTS)
@pytest.mark.parametrize("side", ["start", "end"])
async def test_rest_user_stats_refuses_a_year_edge_daterange(
    client: httpx.AsyncClient, world: World, moment: str, side: str
) -> None:
    daterange = {"start": "2026-01-01", "end": "2026-06-01", side: moment}
    response = await client.post(
        USER_STATS, json={"daterange": daterange}, headers=access_token(world.super_id)
    )
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "message": "daterange start and end must lie between 1970-01-01T00:00:00Z and "
        "9998-12-31T23:59:59Z",
    }


@pytest.mark.parametrize("moment", EDGE_MOMENTS)
async def test_graphql_user_stats_refuses_a_year_edge_daterange(
    client: httpx.AsyncClient, world: World, moment: str
) -> None:
    query = (
        "query($s: DateTime!) { userStats(input: {daterange: "
        '{start: $s, end: "2026-06-01T00:00:00Z"}}) { windowStart } }'
    )
    response = await post_graphql(client, query, bearer(world.super_id), {"s": moment})
    assert_refused(response)
    assert "DateTime values must lie between" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+05:00", "0001-01-01T00:00:00Z"])
async def test_record_usage_in_the_year_1_is_refused_and_never_stored(
    engine: AsyncEngine, client: httpx.AsyncClient, world: World, moment: str
) -> None:
    """Year 1 in UTC was stored as -infinity on PostgreSQL; with +05:00 it was INTERNAL."""
    before = await scalar(engine, "SELECT count(*) FROM usage_events")
    event = {"userId": world.ada_id, "instance": ACME, "occurredAt": moment, "credits": "1"}
    response = await post_graphql(
        client,
        "mutation($e: UsageEventInput!) { recordUsage(input: $e) { status } }",
        api_key_header(world.api_key),
        {"e": event},
    )
    assert_refused(response)
    assert await scalar(engine, "SELECT count(*) FROM usage_events") == before


@pytest.mark.parametrize("moment", EDGE_MOMENTS)
async def test_account_usage_refuses_a_year_edge_window(
    client: httpx.AsyncClient, world: World, moment: str
) -> None:
    response = await client.get(
        "/auth/account/usage", params={"from": moment}, headers=bearer(world.ada_id)
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "INVALID_REQUEST",
        "message": "'from' must lie between 1970-01-01T00:00:00Z and 9998-12-31T23:59:59Z",
    }


# --- ids beyond 64 bits, and other scripts' digits ----------------------------------------


@pytest.mark.parametrize("key", ["99999999999999999999", "٣"])
async def test_node_of_a_user_id_that_is_not_an_id_is_null(
    client: httpx.AsyncClient, world: World, key: str
) -> None:
    query = "query($id: ID!) { node(id: $id) { id } }"
    variables = {"id": global_id("User", key)}
    response = await post_graphql(client, query, bearer(world.super_id), variables)
    assert response.json() == {"data": {"node": None}}


@pytest.mark.parametrize(
    "subject",
    [
        "9" * 40,  # a correctly signed token: HTTP 500 before
        "٣",  # Arabic-Indic three: read as user 3 (Ada) before
    ],
)
async def test_a_token_whose_subject_is_not_an_id_is_an_invalid_token(
    client: httpx.AsyncClient, world: World, subject: str
) -> None:
    token = token_with_subject(subject)
    rest = await client.get("/auth/account/credits", headers={"Authorization": f"Bearer {token}"})
    assert rest.status_code == 401
    assert rest.json()["error"] == {"code": "UNAUTHORIZED", "message": "Invalid or expired token"}
    legacy = await client.get(
        "/api/user/usage-history?instanceId=personal", headers={"x-access-token": token}
    )
    assert legacy.status_code == 401
    graph = await post_graphql(
        client, "{ viewer { kind userId } }", {"Authorization": f"Bearer {token}"}
    )
    assert graph.status_code == 401  # a refused credential on /graphql, like any other
    assert graph.json()["errors"][0]["extensions"] == {"code": "UNAUTHORIZED"}


# --- money beyond what is stored -----------------------------------------------------------


async def test_top_ups_stop_at_the_largest_balance_stored(
    engine: AsyncEngine, client: httpx.AsyncClient, world: World
) -> None:
    """Ten top-ups of 10^12 (the largest single amount): the tenth would pass what SQLite's
    micro-units hold (NUMERIC(20, 6) on PostgreSQL overflowed at the hundredth)."""
    query = (
        'mutation($u: Int!) { creditWallet(input: {userId: $u, amount: "1000000000000"}) '
        "{ wallet { balance } } }"
    )
    answers = [
        (await post_graphql(client, query, bearer(world.super_id), {"u": world.ada_id})).json()
        for _ in range(10)
    ]
    assert all("errors" not in answer for answer in answers[:9])
    assert answers[8]["data"]["creditWallet"]["wallet"]["balance"] == "9000000001000"
    assert answers[9] == {
        "data": None,
        "errors": [
            {
                "message": f"amount would take the balance of user 3 past {LIMIT}, the largest "
                "amount stored",
                "locations": [{"line": 1, "column": 22}],
                "path": ["creditWallet"],
                "extensions": {"code": "INVALID_REQUEST"},
            }
        ],
    }
    assert await money_values(engine, "wallets", "balance") == [Decimal("9000000001000")]
    entries = await scalar(engine, "SELECT count(*) FROM ledger_entries WHERE type = 'credit'")
    assert entries == 10  # the world's top-up and nine of these


async def test_a_batch_whose_sum_would_overflow_refuses_only_the_events_past_it(
    engine: AsyncEngine, client: httpx.AsyncClient, world: World
) -> None:
    """100 events of 10^12 credits each: every one valid, their sum past what is stored."""
    events = [
        {"userId": world.ada_id, "instance": ACME, "occurredAt": RECENT, "credits": "1e12"}
    ] * 100
    response = await post_graphql(
        client,
        "mutation($e: [UsageEventInput!]!) { recordUsageBatch(events: $e) "
        "{ inserted refused outcomes { code message } } }",
        api_key_header(world.api_key),
        {"e": events},
    )
    result = response.json()["data"]["recordUsageBatch"]
    assert (result["inserted"], result["refused"]) == (9, 91)
    refusal = result["outcomes"][9]
    assert refusal == {
        "code": "INVALID_REQUEST",
        "message": f"credits would take the lifetime usage of user 3 in {ACME} past {LIMIT}, "
        "the largest amount stored",
    }
    await stored_sums_within_bounds(engine)
    totals = await money_values(engine, "usage_totals", "credits")
    assert totals == [Decimal("9000000000003")]  # the world's 3 credits and nine of these


async def test_one_usage_event_past_the_largest_sum_writes_nothing(
    engine: AsyncEngine, client: httpx.AsyncClient, world: World
) -> None:
    record = "mutation($e: UsageEventInput!) { recordUsage(input: $e) { status } }"
    event = {"userId": world.ada_id, "instance": ACME, "occurredAt": RECENT, "credits": "1e12"}
    for _ in range(9):
        await post_graphql(client, record, api_key_header(world.api_key), {"e": event})
    events_before = await scalar(engine, "SELECT count(*) FROM usage_events")
    response = await post_graphql(client, record, api_key_header(world.api_key), {"e": event})
    assert_refused(response)
    assert await scalar(engine, "SELECT count(*) FROM usage_events") == events_before
    await stored_sums_within_bounds(engine)


async def test_an_adjustment_below_the_smallest_balance_stored_is_refused(
    client: httpx.AsyncClient, world: World
) -> None:
    query = (
        'mutation($u: Int!) { adjustWallet(input: {userId: $u, amount: "-1e12", reason: "x"}) '
        "{ wallet { balance } } }"
    )
    answers = [
        await post_graphql(client, query, bearer(world.super_id), {"u": world.ada_id})
        for _ in range(10)
    ]
    assert answers[8].json()["data"]["adjustWallet"]["wallet"]["balance"] == "-8999999999000"
    assert_refused(answers[9])
