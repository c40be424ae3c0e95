"""The usage writes through /graphql: who may record usage, batches, idempotency and forgetting."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_JWT_SECRET
from tests.fixtures.usage_recording_data import ACME, OTHER, ledger, usage_rows
from tests.schema.graph import error_codes, graphql
from tests.schema.mutations_data import (
    BATCH,
    CREDIT,
    DEBIT,
    RECORD,
    WHEN,
    add_acme_key,
    add_people,
    usage,
    with_key,
)
from usagegraph.auth.tokens import mint_token


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    return await add_people(engine)


@pytest.fixture
async def acme_key(engine: AsyncEngine, people: dict[str, int]) -> str:
    return await add_acme_key(engine)


# --- authorization -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["ada", "admin"])
async def test_users_may_not_record_usage_or_move_credits(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int], who: str
) -> None:
    caller = people[who]
    body = await graphql(client, RECORD, user_id=caller, variables={"input": usage(people["ada"])})
    assert error_codes(body) == ["FORBIDDEN"]
    assert body["data"] is None
    body = await graphql(
        client, BATCH, user_id=caller, variables={"events": [usage(people["ada"])]}
    )
    assert error_codes(body) == ["FORBIDDEN"]
    for query, name in ((CREDIT, "creditWallet"), (DEBIT, "debitWallet")):
        body = await graphql(
            client, query, user_id=caller, variables={"input": {"userId": caller, "amount": "5"}}
        )
        assert error_codes(body) == ["FORBIDDEN"], name
    assert await usage_rows(engine) == []
    assert await ledger(engine, caller) == []


async def test_anonymous_callers_are_unauthorized(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    body = await graphql(client, RECORD, variables={"input": usage(people["ada"])})
    assert error_codes(body) == ["UNAUTHORIZED"]


async def test_an_api_key_records_usage_for_its_members(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int], acme_key: str
) -> None:
    variables = {"input": usage(people["ada"], messages=2, endpoint="/v1/chat", status="FAILED")}
    body = await with_key(client, RECORD, acme_key, variables, header="X-API-Key")
    assert "errors" not in body, body
    payload = body["data"]["recordUsage"]
    (row,) = await usage_rows(engine)
    assert payload == {
        "status": "INSERTED",
        "event": {
            "eventId": row.id,
            "userId": people["ada"],
            "instance": ACME,
            "credits": "1.5",
            "messages": 2,
            "endpoint": "/v1/chat",
            "status": "failed",
            "overCap": False,
            "occurredAt": "2026-05-20T14:00:00+00:00",
        },
    }


async def test_an_api_key_cannot_record_usage_for_another_institutions_member(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int], acme_key: str
) -> None:
    for variables in (
        {"input": usage(people["olga"], OTHER)},
        {"input": usage(people["olga"], ACME)},  # not a member of Acme either
    ):
        body = await with_key(client, RECORD, acme_key, variables)
        assert error_codes(body) == ["FORBIDDEN"]
        assert "olga" not in str(body)
    body = await with_key(
        client, BATCH, acme_key, {"events": [usage(people["olga"], OTHER), usage(people["ada"])]}
    )
    result = body["data"]["recordUsageBatch"]
    assert [(o["status"], o["code"]) for o in result["outcomes"]] == [
        ("REFUSED", "FORBIDDEN"),
        ("INSERTED", None),
    ]
    assert [row.user_id for row in await usage_rows(engine)] == [people["ada"]]


async def test_the_token_of_a_user_is_no_api_key(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    """A JWT sent as X-API-Key is not a key: refused (401), never acting as its user."""
    token = mint_token(people["super"], TEST_JWT_SECRET)
    body = await with_key(
        client,
        RECORD,
        token,
        {"input": usage(people["ada"])},
        header="X-API-Key",
        expected_status=401,
    )
    assert error_codes(body) == ["UNAUTHORIZED"]


# --- usage batches -------------------------------------------------------------------------


async def test_batch_answers_per_event_through_the_graph(
    client: httpx.AsyncClient, people: dict[str, int], acme_key: str
) -> None:
    ada = people["ada"]
    events = [
        usage(ada, idempotencyKey="k1"),
        usage(ada, idempotencyKey="k1"),
        usage(ada, credits="-1"),
        usage(ada, credits="0"),
    ]
    body = await with_key(client, BATCH, acme_key, {"events": events})
    result = body["data"]["recordUsageBatch"]
    assert (result["inserted"], result["duplicates"], result["refused"]) == (2, 1, 1)
    first, duplicate, invalid, zero = result["outcomes"]
    assert duplicate["status"] == "DUPLICATE"
    assert duplicate["event"] == first["event"]
    assert (invalid["status"], invalid["code"], invalid["event"]) == (
        "REFUSED",
        "INVALID_REQUEST",
        None,
    )
    assert invalid["message"] == "credits must not be negative"
    assert zero["event"]["credits"] == "0"


async def test_a_batch_over_1000_events_is_an_invalid_request(
    client: httpx.AsyncClient, people: dict[str, int], acme_key: str
) -> None:
    body = await with_key(client, BATCH, acme_key, {"events": [usage(people["ada"])] * 1001})
    assert error_codes(body) == ["INVALID_REQUEST"]


async def test_a_key_reused_with_another_payload_is_refused_in_a_batch_and_alone(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int], acme_key: str
) -> None:
    ada = people["ada"]
    events = [
        usage(ada, idempotencyKey="k1"),
        usage(ada, idempotencyKey="k1", credits="1.50"),  # 1.5 respelled: the same event
        usage(ada, idempotencyKey="k1", credits="2"),
    ]
    body = await with_key(client, BATCH, acme_key, {"events": events})
    outcomes = body["data"]["recordUsageBatch"]["outcomes"]
    assert [(o["status"], o["code"]) for o in outcomes] == [
        ("INSERTED", None),
        ("DUPLICATE", None),
        ("REFUSED", "IDEMPOTENCY_KEY_REUSED"),
    ]
    assert outcomes[2]["message"].startswith("idempotencyKey 'k1' was already used")
    alone = await with_key(
        client, RECORD, acme_key, {"input": usage(ada, idempotencyKey="k1", messages=3)}
    )
    assert error_codes(alone) == ["IDEMPOTENCY_KEY_REUSED"]
    assert len(await usage_rows(engine)) == 1


async def test_inline_arguments_and_defaults_parse_like_variables(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int], acme_key: str
) -> None:
    query = f"""mutation {{
      recordUsageBatch(events: [
        {{userId: {people["ada"]}, instance: "{ACME}", occurredAt: "{WHEN}", credits: "0.5"}},
        {{userId: {people["ada"]}, instance: "{ACME}", occurredAt: "{WHEN}", credits: 2,
          messages: 0, status: FAILED, endpoint: "/v1/x", idempotencyKey: "inline"}}
      ]) {{ inserted outcomes {{ event {{ credits messages status endpoint }} }} }}
    }}"""
    body = await with_key(client, query, acme_key, {})
    result = body["data"]["recordUsageBatch"]
    assert result["inserted"] == 2
    assert [o["event"] for o in result["outcomes"]] == [
        {"credits": "0.5", "messages": 1, "status": "success", "endpoint": None},
        {"credits": "2", "messages": 0, "status": "failed", "endpoint": "/v1/x"},
    ]
    assert [row.credits for row in await usage_rows(engine)] == [Decimal("0.5"), Decimal(2)]


# --- forgetting usage ----------------------------------------------------------------------


async def test_a_user_forgets_only_their_own_usage(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int], acme_key: str
) -> None:
    ada = people["ada"]
    body = await with_key(client, RECORD, acme_key, {"input": usage(ada)})
    event_id = body["data"]["recordUsage"]["event"]["eventId"]
    forget = """mutation($input: ForgetUsageInput!) {
      forgetUsage(input: $input) { userId forgottenCount forgottenIds }
    }"""
    body = await graphql(
        client, forget, user_id=people["olga"], variables={"input": {"ids": [event_id]}}
    )
    assert body["data"]["forgetUsage"] == {
        "userId": people["olga"],
        "forgottenCount": 0,
        "forgottenIds": [],
    }
    body = await graphql(
        client,
        forget,
        user_id=people["olga"],
        variables={"input": {"ids": [event_id], "userId": ada}},
    )
    assert error_codes(body) == ["FORBIDDEN"]
    body = await graphql(client, forget, user_id=ada, variables={"input": {"ids": [event_id]}})
    assert body["data"]["forgetUsage"]["forgottenIds"] == [event_id]
    assert [row.forgotten for row in await usage_rows(engine)] == [True]
