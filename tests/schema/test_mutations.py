"""The write side through /graphql: who may call which mutation, and what comes back."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_JWT_SECRET, client_of
from tests.factories import add_institution, add_user
from tests.resolvers.metering_data import ACME, EDIT, OTHER, ledger, usage_rows
from tests.schema.graph import error_codes, graphql
from usagegraph.auth.api_keys import create_api_key
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import session_factory
from usagegraph.db.models import ClientBucket, Membership
from usagegraph.settings import AutoReloadLimit, Settings

WHEN = "2026-05-20T14:00:00Z"  # 90 minutes before the app's fixed now

RECORD = """
mutation($input: UsageEventInput!) {
  recordUsage(input: $input) {
    status
    event { eventId userId instance credits messages endpoint status overCap occurredAt }
  }
}"""

BATCH = """
mutation($events: [UsageEventInput!]!) {
  recordUsageBatch(events: $events) {
    inserted duplicates refused
    outcomes { index status code message event { eventId credits overCap } }
  }
}"""

CREDIT = """
mutation($input: CreditWalletInput!) {
  creditWallet(input: $input) {
    entry { type amount balanceAfter description reference metadata }
    autoReload { amount }
    wallet { balance reserved available }
  }
}"""

DEBIT = """
mutation($input: DebitWalletInput!) {
  debitWallet(input: $input) {
    entry { type amount balanceAfter }
    autoReload { amount balanceAfter description }
    wallet { balance available }
  }
}"""


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    await add_institution(engine, institution_id=OTHER, name="Other")
    async with session_factory(engine)() as session, session.begin():
        session.add(ClientBucket(id="acme-corp", institution_id=ACME))
    return {
        "super": await add_user(engine, email="root@ug.io", role="super"),
        "admin": await add_user(
            engine,
            email="admin@acme.edu",
            role="admin",
            permissions=EDIT,
            member_of={ACME: "admin"},
        ),
        "ada": await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"}),
        "olga": await add_user(engine, email="olga@other.edu", member_of={OTHER: "user"}),
        "newbie": await add_user(engine, email="newbie@example.com"),
    }


@pytest.fixture
async def acme_key(engine: AsyncEngine, people: dict[str, int]) -> str:
    async with session_factory(engine)() as session, session.begin():
        _row, key = await create_api_key(session, ACME, "metering")
    return key


async def with_key(
    client: httpx.AsyncClient,
    query: str,
    key: str,
    variables: dict[str, Any],
    header: str = "Authorization",
    expected_status: int = 200,
) -> dict[str, Any]:
    value = f"Bearer {key}" if header == "Authorization" else key
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers={header: value}
    )
    assert response.status_code == expected_status, response.text
    return response.json()


def usage(user_id: int, instance: str = ACME, credits: str = "1.5", **extra: Any) -> dict[str, Any]:
    return {
        "userId": user_id,
        "instance": instance,
        "occurredAt": WHEN,
        "credits": credits,
        **extra,
    }


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


# --- the ledger ----------------------------------------------------------------------------


async def test_super_credits_and_debits_with_exact_decimals(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    root, ada = people["super"], people["ada"]
    credit = {"userId": ada, "amount": "10.1", "reference": "pay_1", "metadata": {"card": "visa"}}
    body = await graphql(client, CREDIT, user_id=root, variables={"input": credit})
    assert body["data"]["creditWallet"] == {
        "entry": {
            "type": "CREDIT",
            "amount": "10.1",
            "balanceAfter": "10.1",
            "description": "Top-up",
            "reference": "pay_1",
            "metadata": {"card": "visa"},
        },
        "autoReload": None,
        "wallet": {"balance": "10.1", "reserved": "0", "available": "10.1"},
    }
    body = await graphql(
        client, DEBIT, user_id=root, variables={"input": {"userId": ada, "amount": "0.2"}}
    )
    # 10.1 - 0.2 = 9.9 exactly (no binary float anywhere)
    assert body["data"]["debitWallet"]["wallet"] == {"balance": "9.9", "available": "9.9"}
    body = await graphql(
        client, DEBIT, user_id=root, variables={"input": {"userId": ada, "amount": "9.91"}}
    )
    assert error_codes(body) == ["INSUFFICIENT_CREDITS"]
    assert len(await ledger(engine, ada)) == 2


@pytest.fixture
async def one_reload_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app allowing one automatic reload per wallet a day."""
    limit = AutoReloadLimit(max_reloads=1, period_seconds=86400)
    async with client_of(dataclasses.replace(settings, auto_reload=limit)) as http:
        yield http


async def test_the_reload_limit_comes_from_the_settings(
    one_reload_client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    """Debits, reservations and personal usage all apply the configured limit (the default
    of 5 a day would have reloaded at each of the three crossings)."""
    client, root, ada = one_reload_client, people["super"], people["ada"]
    credit = {"input": {"userId": ada, "amount": "20"}}
    await graphql(client, CREDIT, user_id=root, variables=credit)
    enable = """mutation($input: SetAutoReloadInput!) { setAutoReload(input: $input) { userId } }"""
    await graphql(
        client,
        enable,
        user_id=root,
        variables={"input": {"userId": ada, "enabled": True, "threshold": "10", "amount": "5"}},
    )
    debit = {"input": {"userId": ada, "amount": "11"}}
    first = await graphql(client, DEBIT, user_id=root, variables=debit)  # 20 -> 9, reload: 14
    assert first["data"]["debitWallet"]["autoReload"]["balanceAfter"] == "14"
    reserve = """mutation($input: ReserveCreditsInput!) {
      reserveCredits(input: $input) { autoReload { amount } wallet { available } }
    }"""
    held = await graphql(  # 14 -> 9: crossed, the day's reload is used
        client, reserve, user_id=root, variables={"input": {"userId": ada, "amount": "5"}}
    )
    assert held["data"]["reserveCredits"] == {"autoReload": None, "wallet": {"available": "9"}}
    top_up = {"input": {"userId": ada, "amount": "5"}}
    await graphql(client, CREDIT, user_id=root, variables=top_up)  # 9 -> 14
    spent = await graphql(  # 14 -> 9: crossed again, still no reload
        client, RECORD, user_id=root, variables={"input": usage(ada, "personal", credits="5")}
    )
    assert spent["data"]["recordUsage"]["status"] == "INSERTED"
    entries = await ledger(engine, ada)
    assert [e.description for e in entries].count("Auto-reload") == 1
    # 20 + 5 credited, 5 reloaded, 11 and 5 debited; 5 more held
    assert entries[-1].balance_after == Decimal(14)


async def test_auto_reload_and_reservations_through_the_graph(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    root, ada = people["super"], people["ada"]
    await graphql(
        client, CREDIT, user_id=root, variables={"input": {"userId": ada, "amount": "20"}}
    )
    settings = """mutation($input: SetAutoReloadInput!) {
      setAutoReload(input: $input) { autoReloadEnabled autoReloadThreshold autoReloadAmount }
    }"""
    body = await graphql(
        client,
        settings,
        user_id=root,
        variables={"input": {"userId": ada, "enabled": True, "threshold": "5", "amount": "10"}},
    )
    assert body["data"]["setAutoReload"] == {
        "autoReloadEnabled": True,
        "autoReloadThreshold": "5",
        "autoReloadAmount": "10",
    }
    body = await graphql(
        client, DEBIT, user_id=root, variables={"input": {"userId": ada, "amount": "16"}}
    )
    # 20 - 16 = 4 < 5: one reload of 10 -> 14
    assert body["data"]["debitWallet"]["autoReload"] == {
        "amount": "10",
        "balanceAfter": "14",
        "description": "Auto-reload",
    }
    reserve = """mutation($input: ReserveCreditsInput!) {
      reserveCredits(input: $input) {
        reservation { reservationId amount status }
        wallet { balance reserved available }
      }
    }"""
    body = await graphql(
        client, reserve, user_id=root, variables={"input": {"userId": ada, "amount": "4"}}
    )
    held = body["data"]["reserveCredits"]
    assert held["wallet"] == {"balance": "14", "reserved": "4", "available": "10"}
    capture = """mutation($input: CaptureReservationInput!) {
      captureReservation(input: $input) {
        reservation { status capturedAmount }
        entry { type amount reference }
        wallet { balance reserved }
      }
    }"""
    rid = held["reservation"]["reservationId"]
    variables = {"input": {"reservationId": rid, "amount": "1.5"}}
    body = await graphql(client, capture, user_id=root, variables=variables)
    assert body["data"]["captureReservation"] == {
        "reservation": {"status": "CAPTURED", "capturedAmount": "1.5"},
        "entry": {"type": "DEBIT", "amount": "1.5", "reference": f"reservation:{rid}"},
        "wallet": {"balance": "12.5", "reserved": "0"},
    }
    body = await graphql(client, capture, user_id=root, variables=variables)
    assert error_codes(body) == ["INVALID_REQUEST"]


# --- administration ------------------------------------------------------------------------


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


async def test_an_admin_manages_members_caps_and_keys(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    admin = people["admin"]
    # the admin also runs a third institution, where newbie is a member: someone they may add
    third = await add_institution(engine, institution_id="c" * 24, name="Third")
    async with session_factory(engine)() as session, session.begin():
        session.add_all(
            [
                Membership(user_id=admin, institution_id=third, role="admin"),
                Membership(user_id=people["newbie"], institution_id=third, role="user"),
            ]
        )
    add = """mutation($input: AddMemberInput!) {
      addMember(input: $input) { role capLimit effectiveCap user { email } }
    }"""
    body = await graphql(
        client,
        add,
        user_id=admin,
        variables={
            "input": {"institutionId": ACME, "email": "newbie@example.com", "capLimit": "7"}
        },
    )
    assert body["data"]["addMember"] == {
        "role": "user",
        "capLimit": "7",
        "effectiveCap": "7",
        "user": {"email": "newbie@example.com"},
    }
    update = (
        """mutation($input: UpdateMemberInput!) { updateMember(input: $input) { role capLimit } }"""
    )
    body = await graphql(
        client,
        update,
        user_id=admin,
        variables={"input": {"institutionId": ACME, "userId": people["newbie"], "capLimit": None}},
    )
    assert body["data"]["updateMember"] == {"role": "user", "capLimit": None}
    caps = """mutation($input: UpdateInstitutionCapsInput!) {
      updateInstitutionCaps(input: $input) { institutionId defaultCap enforceCaps }
    }"""
    body = await graphql(
        client,
        caps,
        user_id=admin,
        variables={"input": {"institutionId": ACME, "defaultCap": "100", "enforceCaps": True}},
    )
    assert body["data"]["updateInstitutionCaps"] == {
        "institutionId": ACME,
        "defaultCap": "100",
        "enforceCaps": True,
    }
    body = await graphql(
        client,
        caps,
        user_id=admin,
        variables={"input": {"institutionId": OTHER, "enforceCaps": True}},
    )
    assert error_codes(body) == ["FORBIDDEN"]
    body = await graphql(
        client, caps, user_id=people["ada"], variables={"input": {"institutionId": ACME}}
    )
    assert error_codes(body) == ["FORBIDDEN"]


async def test_a_created_key_records_usage_and_stops_when_revoked(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    create = """mutation($input: CreateApiKeyInput!) {
      createApiKey(input: $input) { key apiKey { apiKeyId institutionId name revokedAt } }
    }"""
    body = await graphql(
        client,
        create,
        user_id=people["admin"],
        variables={"input": {"institutionId": ACME, "name": "etl"}},
    )
    created = body["data"]["createApiKey"]
    assert created["apiKey"]["institutionId"] == ACME
    key = created["key"]
    body = await with_key(client, RECORD, key, {"input": usage(people["ada"])})
    assert body["data"]["recordUsage"]["status"] == "INSERTED"
    revoke = "mutation($id: Int!) { revokeApiKey(apiKeyId: $id) { revokedAt } }"
    body = await graphql(
        client, revoke, user_id=people["admin"], variables={"id": created["apiKey"]["apiKeyId"]}
    )
    assert body["data"]["revokeApiKey"]["revokedAt"] is not None
    # A revoked key is a refused credential: 401, not an anonymous caller.
    body = await with_key(client, RECORD, key, {"input": usage(people["ada"])}, expected_status=401)
    assert error_codes(body) == ["UNAUTHORIZED"]


async def test_the_institutions_key_records_a_snapshot(
    client: httpx.AsyncClient, people: dict[str, int], acme_key: str
) -> None:
    record = """mutation($input: RecordSnapshotInput!) {
      recordSnapshot(input: $input) {
        bucketId snapshotDate records computedAt
        storage { objectCount totalBytes byPrefix { prefix count bytes } }
      }
    }"""
    variables = {
        "input": {
            "bucketId": "acme-corp",
            "snapshotDate": "2026-05-01",
            "records": {"person": 15000, "payment": 45000},
            "storage": {
                "objectCount": 8500,
                "totalBytes": 5368709120,
                "byPrefix": [{"prefix": "docs/", "count": 10, "bytes": 2048}],
            },
        }
    }
    body = await with_key(client, record, acme_key, variables)
    snapshot = body["data"]["recordSnapshot"]
    assert snapshot["records"]["total"] == 60000
    assert snapshot["storage"]["totalBytes"] == 5368709120
    assert snapshot["computedAt"] == "2026-05-20T15:30:00+00:00"
    body = await graphql(client, record, user_id=people["olga"], variables=variables)
    assert error_codes(body) == ["FORBIDDEN"]


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


async def test_add_member_answers_alike_for_a_stranger_and_an_unknown_email(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    """An institution admin probing emails learns nothing: the same status and the very same
    body for an address with an account outside their institutions and one without."""
    add = """mutation($input: AddMemberInput!) { addMember(input: $input) { role } }"""
    token = mint_token(people["admin"], TEST_JWT_SECRET)
    answers = []
    for email in ("newbie@example.com", "olga@other.edu", "nobody@example.com"):
        response = await client.post(
            "/graphql",
            json={"query": add, "variables": {"input": {"institutionId": ACME, "email": email}}},
            headers={"Authorization": f"Bearer {token}"},
        )
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1] == answers[2]
    status, body = answers[0]
    assert status == 200
    assert error_codes(body) == ["NOT_FOUND"]
    assert body["errors"][0]["message"] == "no user you may add has that email address"
    assert body["data"] is None
    # super still adds by email
    body = await graphql(
        client,
        add,
        user_id=people["super"],
        variables={"input": {"institutionId": ACME, "email": "newbie@example.com"}},
    )
    assert body["data"]["addMember"] == {"role": "user"}
