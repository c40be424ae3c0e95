"""The `Subscription` root: live usage and wallet balance over `graphql-transport-ws`.

Each field is its query pushed again after every write that changes it (resolvers/
live_updates.py): the same types, the same rules, the same errors. The websocket, its
authentication and its limits are `schema/live_endpoint.py`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from typing import Annotated

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import Info as StrawberryInfo
from strawberry.types.graphql import OperationType

from usagegraph.resolvers import live_updates
from usagegraph.resolvers.live_context import LiveContext
from usagegraph.schema import alerts, usage_history, wallet

LiveInfo = StrawberryInfo[LiveContext, None]
OVER_HTTP = "Subscriptions run over a websocket (graphql-transport-ws on /graphql), not HTTP"


class SubscriptionsOverWebsocket(SchemaExtension):
    """A subscription sent over HTTP is refused (INVALID_REQUEST) before it runs: Strawberry
    would run it as a query, whose subscription fields resolve to nothing."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if not context.pre_execution_errors and not isinstance(context.context, LiveContext):
            try:
                subscription = context.operation_type is OperationType.SUBSCRIPTION
            except Exception:  # no operation to run: graphql-core's validation says so
                subscription = False
            if subscription:
                context.pre_execution_errors = [GraphQLError(OVER_HTTP)]
        yield


@strawberry.type(
    description="Live updates over a websocket (`graphql-transport-ws` on /graphql, the "
    "credential in `connection_init`). Each field sends its current value first, then the new "
    "value after writes that change it, at most once a second."
)
class Subscription:
    @strawberry.subscription(
        description="Your usage history of one instance (`usageHistory`'s rules: `personal` "
        "or an institution you belong to, else FORBIDDEN before anything is sent; scope `all` "
        "for its admins), pushed after each write that changes it. Read `totals` for the "
        "window's sums."
    )
    async def usage_updated(
        self,
        info: LiveInfo,
        instance_id: Annotated[
            str, strawberry.argument(description="`personal` or an institution id.")
        ],
        window: usage_history.WindowArgument = None,
        scope: usage_history.ScopeArgument = None,
    ) -> AsyncGenerator[usage_history.UsageHistory, None]:
        updates = live_updates.usage_updates(
            info.context,
            instance_id=instance_id,
            window=window,
            scope=scope.value if scope else None,
        )
        async for history in updates:
            yield history  # type: ignore[misc]

    @strawberry.subscription(
        description="Your own wallet's balance and available credits, pushed after each "
        "movement (usage debits, top-ups, adjustments, reservations, auto-reloads). Users "
        "only: an API key has no wallet (UNAUTHORIZED)."
    )
    async def wallet_changed(self, info: LiveInfo) -> AsyncGenerator[wallet.CreditBalance, None]:
        async for balance in live_updates.wallet_updates(info.context):
            yield balance  # type: ignore[misc]

    @strawberry.subscription(
        description="Each alert raised from now on by the rules of an institution you "
        "administer, or (without `institutionId`) of your own wallet: the `alerts` query's "
        "rule, FORBIDDEN for anyone else. Nothing is sent at first; alerts raised together "
        "arrive one message each."
    )
    async def alert_raised(
        self,
        info: LiveInfo,
        institution_id: Annotated[
            str | None,
            strawberry.argument(description="An institution you administer; none: your wallet."),
        ] = None,
    ) -> AsyncGenerator[alerts.Alert, None]:  # type: ignore[valid-type]
        async for alert in live_updates.alert_updates(info.context, institution_id):
            yield alert  # type: ignore[misc]
