"""Alert rules through /graphql: each kind fires once per crossing, re-arms when the value
goes back, and writes its outbox event in the write's own transaction; other tenants see
nothing of them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FIXED_NOW
from tests.fixtures.usage_recording_data import ACME, API_ACME, event
from tests.schema.graph import error_codes, graphql
from tests.schema.mutations_data import BATCH, CREDIT, DEBIT, add_acme_key, add_people, usage
from tests.schema.mutations_data import with_key as post_with_key
from usagegraph.datasources.outbox import queued_events
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Membership, OutboxEvent, Wallet
from usagegraph.resolvers import wallet_operations
from usagegraph.resolvers.usage_recording import record_usage_batch

CREATE_RULE = """mutation($input: CreateAlertRuleInput!) {
  createAlertRule(input: $input) { ruleId kind institutionId userId threshold enabled }
}"""
ALERTS = """query($institutionId: String) {
  alerts(institutionId: $institutionId) { kind subject subjectUserId value threshold eventId }
}"""
RULES = """query($institutionId: String) { alertRules(institutionId: $institutionId) { ruleId } }"""


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    return await add_people(engine)


async def _events(engine: AsyncEngine) -> list[tuple[str, str | None, int | None]]:
    async with session_factory(engine)() as session:
        rows = await session.execute(
            select(OutboxEvent.type, OutboxEvent.institution_id, OutboxEvent.user_id).order_by(
                OutboxEvent.id
            )
        )
        return [tuple(row) for row in rows]


async def _record(client: httpx.AsyncClient, key: str, *events: dict[str, Any]) -> None:
    body = await post_with_key(client, BATCH, key, {"events": list(events)})
    assert body["data"]["recordUsageBatch"]["refused"] == 0, body


async def test_member_cap_percent_fires_once_per_crossing_and_reaching_the_cap_is_an_event(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    admin, ada = people["admin"], people["ada"]
    async with session_factory(engine)() as session, session.begin():
        await session.execute(
            update(Membership).where(Membership.user_id == ada).values(cap_limit=10)
        )
    body = await graphql(
        client,
        CREATE_RULE,
        user_id=admin,
        variables={
            "input": {"institutionId": ACME, "kind": "member_cap_percent", "threshold": "80"}
        },
    )
    rule = body["data"]["createAlertRule"]
    assert (rule["kind"], rule["threshold"]) == ("member_cap_percent", "80")
    key = await add_acme_key(engine)
    await _record(client, key, usage(ada, credits="7"))  # 70 %: nothing
    assert (await graphql(client, ALERTS, user_id=admin, variables={"institutionId": ACME}))[
        "data"
    ]["alerts"] == []
    await _record(client, key, usage(ada, credits="1"), usage(ada, credits="0.5"))  # 85 %
    await _record(client, key, usage(ada, credits="1"))  # 95 %: still beyond, no new alert
    await _record(client, key, usage(ada, credits="0.5"))  # 100 %: the cap is reached
    alerts = (await graphql(client, ALERTS, user_id=admin, variables={"institutionId": ACME}))[
        "data"
    ]["alerts"]
    assert [(a["kind"], a["subject"], a["subjectUserId"], a["value"]) for a in alerts] == [
        ("member_cap_percent", f"member:{ada}", ada, "85")
    ]
    events = await _events(engine)
    assert [e for e in events if e[0] != "api_key.created"] == [
        ("alert.raised", ACME, None),
        ("usage.cap_reached", ACME, None),
    ]
    # Raising the cap takes her back under the line: the next write re-arms, a later one
    # that crosses again fires again.
    async with session_factory(engine)() as session, session.begin():
        await session.execute(
            update(Membership).where(Membership.user_id == ada).values(cap_limit=100)
        )
    await _record(client, key, usage(ada, credits="1"))  # 11 %: re-armed
    async with session_factory(engine)() as session, session.begin():
        await session.execute(
            update(Membership).where(Membership.user_id == ada).values(cap_limit=12)
        )
    await _record(client, key, usage(ada, credits="0.5"))  # 11.5 of 12: 95.8 %
    alerts = (await graphql(client, ALERTS, user_id=admin, variables={"institutionId": ACME}))[
        "data"
    ]["alerts"]
    assert len(alerts) == 2


async def test_institution_period_usage_fires_once_per_period(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    admin, ada = people["admin"], people["ada"]
    variables = {
        "input": {"institutionId": ACME, "kind": "institution_period_usage", "threshold": "5"}
    }
    await graphql(client, CREATE_RULE, user_id=admin, variables=variables)
    key = await add_acme_key(engine)
    await _record(client, key, usage(ada, credits="4"))
    await _record(client, key, usage(ada, credits="1"))  # 5 in May: fires
    await _record(client, key, usage(ada, credits="3"))  # still beyond: nothing
    # April's usage (backdated inside the window) is another period, its own crossing
    await _record(client, key, usage(ada, credits="6", occurredAt="2026-04-30T10:00:00Z"))
    alerts = (await graphql(client, ALERTS, user_id=admin, variables={"institutionId": ACME}))[
        "data"
    ]["alerts"]
    assert sorted((a["subject"], a["value"]) for a in alerts) == [
        ("period:2026-04", "6"),
        ("period:2026-05", "5"),
    ]


async def test_a_user_watches_their_own_wallet(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    root, ada = people["super"], people["ada"]
    for kind, threshold in (("wallet_low_balance", "10"), ("auto_reload", None)):
        body = await graphql(
            client,
            CREATE_RULE,
            user_id=ada,
            variables={"input": {"kind": kind, "threshold": threshold}},
        )
        assert body["data"]["createAlertRule"]["userId"] == ada
    credit = {"input": {"userId": ada, "amount": "20"}}
    await graphql(client, CREDIT, user_id=root, variables=credit)
    debit = {"input": {"userId": ada, "amount": "5"}}
    await graphql(client, DEBIT, user_id=root, variables=debit)  # 15
    await graphql(client, DEBIT, user_id=root, variables=debit)  # 10: not below
    await graphql(client, DEBIT, user_id=root, variables=debit)  # 5: fires
    await graphql(client, DEBIT, user_id=root, variables={"input": {"userId": ada, "amount": "1"}})
    alerts = (await graphql(client, ALERTS, user_id=ada))["data"]["alerts"]
    assert [(a["kind"], a["value"]) for a in alerts] == [("wallet_low_balance", "5")]
    await graphql(client, CREDIT, user_id=root, variables=credit)  # 24: re-armed
    await graphql(client, DEBIT, user_id=root, variables={"input": {"userId": ada, "amount": "20"}})
    alerts = (await graphql(client, ALERTS, user_id=ada))["data"]["alerts"]
    assert [(a["kind"], a["value"]) for a in alerts] == [
        ("wallet_low_balance", "4"),
        ("wallet_low_balance", "5"),
    ]
    # The wallet's events are the user's, never an institution's
    assert {e for e in await _events(engine) if e[0] == "alert.raised"} == {
        ("alert.raised", None, ada)
    }


async def test_auto_reload_is_an_event_and_fires_its_rule(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    root, ada = people["super"], people["ada"]
    await graphql(client, CREATE_RULE, user_id=ada, variables={"input": {"kind": "auto_reload"}})
    setting = (
        """mutation($input: SetAutoReloadInput!) { setAutoReload(input: $input) { balance } }"""
    )
    body = await graphql(
        client,
        setting,
        user_id=root,
        variables={"input": {"userId": ada, "enabled": True, "threshold": "5", "amount": "50"}},
    )
    assert "errors" not in body, body
    await graphql(client, CREDIT, user_id=root, variables={"input": {"userId": ada, "amount": "6"}})
    await graphql(client, DEBIT, user_id=root, variables={"input": {"userId": ada, "amount": "2"}})
    types = [e[0] for e in await _events(engine)]
    assert types == ["wallet.auto_reloaded", "wallet.low_balance", "alert.raised"]
    alerts = (await graphql(client, ALERTS, user_id=ada))["data"]["alerts"]
    assert [(a["kind"], a["value"]) for a in alerts] == [("auto_reload", "50")]


async def test_rules_are_refused_when_they_make_no_sense(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    admin = people["admin"]
    for variables in (
        {"institutionId": ACME, "kind": "wallet_low_balance", "threshold": "1"},
        {"institutionId": ACME, "kind": "member_cap_percent"},
        {"institutionId": ACME, "kind": "member_cap_percent", "threshold": "0"},
        {"kind": "member_cap_percent", "threshold": "80"},
        {"kind": "auto_reload", "threshold": "80"},
        {"kind": "nonsense"},
    ):
        body = await graphql(client, CREATE_RULE, user_id=admin, variables={"input": variables})
        assert error_codes(body) == ["INVALID_REQUEST"], variables


async def test_another_tenant_reads_and_manages_none_of_an_institutions_rules(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    admin, ada, olga = people["admin"], people["ada"], people["olga"]
    variables = {
        "input": {"institutionId": ACME, "kind": "institution_period_usage", "threshold": "1"}
    }
    rule = (await graphql(client, CREATE_RULE, user_id=admin, variables=variables))["data"][
        "createAlertRule"
    ]
    # a member who is no admin, and a member of another institution
    for intruder in (ada, olga):
        for query in (RULES, ALERTS):
            body = await graphql(client, query, user_id=intruder, variables={"institutionId": ACME})
            assert error_codes(body) == ["FORBIDDEN"]
        body = await graphql(client, CREATE_RULE, user_id=intruder, variables=variables)
        assert error_codes(body) == ["FORBIDDEN"]
        delete = "mutation($id: Int!) { deleteAlertRule(ruleId: $id) { deleted } }"
        body = await graphql(client, delete, user_id=intruder, variables={"id": rule["ruleId"]})
        assert error_codes(body) == ["NOT_FOUND"]
        # their own list is their own wallet's: empty
        assert (await graphql(client, RULES, user_id=intruder))["data"]["alertRules"] == []
    body = await graphql(client, RULES, variables={"institutionId": ACME})
    assert error_codes(body) == ["UNAUTHORIZED"]


async def test_an_expired_reservation_is_released_and_fires_its_rule(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    root, ada = people["super"], people["ada"]
    await graphql(
        client, CREATE_RULE, user_id=ada, variables={"input": {"kind": "reservation_expired"}}
    )
    await graphql(client, CREDIT, user_id=root, variables={"input": {"userId": ada, "amount": "9"}})
    reserve = """mutation($input: ReserveCreditsInput!) {
      reserveCredits(input: $input) { reservation { reservationId expiresAt } wallet { available } }
    }"""
    expiry = (FIXED_NOW + timedelta(minutes=5)).isoformat()
    body = await graphql(
        client,
        reserve,
        user_id=root,
        variables={"input": {"userId": ada, "amount": "4", "expiresAt": expiry}},
    )
    held = body["data"]["reserveCredits"]
    assert held["wallet"]["available"] == "5"
    past = {"input": {"userId": ada, "amount": "1", "expiresAt": FIXED_NOW.isoformat()}}
    assert error_codes(await graphql(client, reserve, user_id=root, variables=past)) == [
        "INVALID_REQUEST"
    ]
    async with session_factory(engine)() as session:
        assert await wallet_operations.expire_reservations(session, FIXED_NOW) == 0
        later = FIXED_NOW + timedelta(minutes=6)
        assert await wallet_operations.expire_reservations(session, later) == 1
        assert await wallet_operations.expire_reservations(session, later) == 0  # once
        wallet = await session.get(Wallet, ada)
        assert wallet is not None
        assert wallet.reserved == 0
    alerts = (await graphql(client, ALERTS, user_id=ada))["data"]["alerts"]
    reservation_id = held["reservation"]["reservationId"]
    assert [(a["kind"], a["subject"], a["value"]) for a in alerts] == [
        ("reservation_expired", f"reservation:{reservation_id}", "4")
    ]
    assert [e[0] for e in await _events(engine)][-2:] == ["reservation.expired", "alert.raised"]


async def test_the_write_lists_the_events_it_queued_for_live_notifications(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    """`queued_events(session)` after a committed write: the hook for pushing `alertRaised`
    (and the other events) once the transaction is in."""
    variables = {
        "input": {"institutionId": ACME, "kind": "institution_period_usage", "threshold": "2"}
    }
    await graphql(client, CREATE_RULE, user_id=people["admin"], variables=variables)
    async with session_factory(engine)() as session:
        await record_usage_batch(session, API_ACME, FIXED_NOW, [event(people["ada"], ACME, "3")])
        queued = queued_events(session)
    assert [(e.type, e.institution_id, e.data["kind"]) for e in queued] == [
        ("alert.raised", ACME, "institution_period_usage")
    ]
