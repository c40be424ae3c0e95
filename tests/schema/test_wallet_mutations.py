"""The wallet writes through /graphql: credits, debits, auto-reload and reservations."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import client_of
from tests.fixtures.usage_recording_data import ledger
from tests.schema.graph import error_codes, graphql
from tests.schema.mutations_data import CREDIT, DEBIT, RECORD, add_people, usage
from usagegraph.settings import AutoReloadLimit, Settings


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    return await add_people(engine)


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
