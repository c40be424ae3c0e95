"""`alertRaised`: each alert of an institution's rules reaches its admins, each alert of a
wallet's rules its owner, over graphql-transport-ws; nobody else hears either (both
backends: in-process notes on SQLite, LISTEN/NOTIFY on PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.live.served import LiveSocket, bearer, served
from tests.live.world import ACME, build_world, graphql, record, top_up
from usagegraph.settings import Settings

ALERT_RAISED = """subscription($institutionId: String) {
  alertRaised(institutionId: $institutionId) {
    kind institutionId userId subject subjectUserId value threshold eventId
  }
}"""
CREATE_RULE = """mutation($input: CreateAlertRuleInput!) {
  createAlertRule(input: $input) { ruleId }
}"""


def _alert(message: dict[str, Any]) -> dict[str, Any]:
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    return message["payload"]["data"]["alertRaised"]


async def test_an_institution_rules_alert_reaches_its_admin_and_no_one_else(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    async with (
        served(settings) as address,
        LiveSocket.open(address) as admin,
        LiveSocket.open(address) as outsider,
        LiveSocket.open(address) as member,
    ):
        await graphql(
            address,
            world.token(world.admin),
            CREATE_RULE,
            {
                "input": {
                    "institutionId": ACME,
                    "kind": "institution_period_usage",
                    "threshold": "5",
                }
            },
        )
        await admin.init(bearer(world.token(world.admin)))
        await admin.subscribe(ALERT_RAISED, {"institutionId": ACME})
        for socket, user in ((outsider, world.outsider), (member, world.member)):
            await socket.init(bearer(world.token(user)))
            await socket.subscribe(ALERT_RAISED, {"institutionId": ACME})
            refused = await socket.receive()
            assert refused["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
            assert (await socket.receive())["type"] == "complete"
        # An alert is an event: nothing is sent when subscribing.
        assert await admin.quiet(0.5) == []
        await record(address, world, world.member, ACME, "3")  # 3 of 5: under the line
        assert await admin.quiet(1.2) == []
        await record(address, world, world.member, ACME, "2.5")  # 5.5: crosses it
        alert = _alert(await admin.receive())
        assert (alert["kind"], alert["institutionId"], alert["subject"][:7]) == (
            "institution_period_usage",
            ACME,
            "period:",
        )
        assert (Decimal(alert["value"]), Decimal(alert["threshold"])) == (
            Decimal("5.5"),
            Decimal(5),
        )
        await record(address, world, world.member, ACME, "1")  # still past it: no new alert
        assert await admin.quiet(1.5) == []
        assert await outsider.quiet(0.1) == []
        assert await member.quiet(0.1) == []


async def test_a_wallet_rules_alert_reaches_only_its_owner(
    engine: AsyncEngine, settings: Settings
) -> None:
    world = await build_world(engine)
    async with (
        served(settings) as address,
        LiveSocket.open(address) as owner,
        LiveSocket.open(address) as admin,
    ):
        await graphql(
            address,
            world.token(world.member),
            CREATE_RULE,
            {"input": {"kind": "wallet_low_balance", "threshold": "5"}},
        )
        await top_up(address, world, world.member, "10")
        await owner.init(bearer(world.token(world.member)))
        await owner.subscribe(ALERT_RAISED)
        # The admin's own wallet: another channel, however close their institutions are.
        await admin.init(bearer(world.token(world.admin)))
        await admin.subscribe(ALERT_RAISED)
        await record(address, world, world.member, "personal", "6")  # 10 - 6 = 4 < 5
        alert = _alert(await owner.receive())
        assert (alert["kind"], alert["userId"], alert["subject"]) == (
            "wallet_low_balance",
            world.member,
            "wallet",
        )
        assert Decimal(alert["value"]) == Decimal(4)
        assert await admin.quiet(1.0) == []
