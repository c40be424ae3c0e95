"""Alert rules and alerts in the graph: the queries and mutations (`resolvers.alerts` holds
every rule: institution admins manage their institution's rules, users their wallet's)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import strawberry

from usagegraph.resolvers import alerts
from usagegraph.schema.context import Info
from usagegraph.schema.shape_types import graph_type_of
from usagegraph.schema.writes import INPUT, open_write

AlertRule = graph_type_of(
    alerts.AlertRuleInfo,
    name="AlertRule",
    description="A line to watch; it fires once per crossing (see docs/api-reference.md).",
)
Alert = graph_type_of(alerts.RaisedAlert, name="Alert", description="One firing of a rule.")

INSTITUTION_OR_OWN = "An institution you administer; omitted: your own wallet's rules and alerts."


@strawberry.input(description="A new alert rule.")
class CreateAlertRuleInput:
    kind: str = strawberry.field(
        description="member_cap_percent or institution_period_usage (with institutionId); "
        "wallet_low_balance, auto_reload or reservation_expired (your wallet)."
    )
    institution_id: str | None = strawberry.field(default=None, description=INSTITUTION_OR_OWN)
    threshold: Decimal | None = strawberry.field(
        default=None,
        description="member_cap_percent: a percentage of the cap (e.g. 80); "
        "institution_period_usage and wallet_low_balance: credits; others: none.",
    )


@strawberry.type(description="Whether a rule was deleted.")
class DeleteAlertRulePayload:
    deleted: bool = strawberry.field(description="true once it is gone.")


@strawberry.type(description="Alert rules and alerts.")
class AlertQueries:
    @strawberry.field(
        description="Alert rules of an institution you administer, or of your own wallet."
    )
    async def alert_rules(
        self,
        info: Info,
        institution_id: Annotated[
            str | None, strawberry.argument(description=INSTITUTION_OR_OWN)
        ] = None,
    ) -> list[AlertRule]:  # type: ignore[valid-type]
        context = info.context
        async with context.read_session() as session:
            return await alerts.list_rules(session, context.principal, institution_id)

    @strawberry.field(description="The latest alerts raised, newest first.")
    async def alerts(
        self,
        info: Info,
        institution_id: Annotated[
            str | None, strawberry.argument(description=INSTITUTION_OR_OWN)
        ] = None,
        first: Annotated[int, strawberry.argument(description="How many (1 to 100).")] = 20,
    ) -> list[Alert]:  # type: ignore[valid-type]
        context = info.context
        async with context.read_session() as session:
            return await alerts.list_alerts(session, context.principal, institution_id, first)


@strawberry.type(description="The alert rule writes.")
class AlertMutations:
    @strawberry.mutation(
        description="Create an alert rule for an institution (its admins) or your own wallet."
    )
    async def create_alert_rule(
        self,
        info: Info,
        input: Annotated[CreateAlertRuleInput, strawberry.argument(description=INPUT)],
    ) -> AlertRule:  # type: ignore[valid-type]
        async with open_write(info) as write:
            return await alerts.create_rule(
                write.session,
                write.principal,
                write.now,
                kind=input.kind,
                threshold=input.threshold,
                institution_id=input.institution_id,
            )

    @strawberry.mutation(
        description="Delete an alert rule you manage (NOT_FOUND for any other id)."
    )
    async def delete_alert_rule(
        self,
        info: Info,
        rule_id: Annotated[int, strawberry.argument(description="The rule's id.")],
    ) -> DeleteAlertRulePayload:
        async with open_write(info) as write:
            deleted = await alerts.delete_rule(
                write.session, write.principal, write.now, rule_id=rule_id
            )
        return DeleteAlertRulePayload(deleted=deleted)
