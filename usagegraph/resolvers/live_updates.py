"""The rules of the live subscriptions: what each pushes, to whom, and when.

Each subscription is the matching query, read again after every commit that may change its
answer: `usageUpdated` is `usageHistory` (resolvers/usage_history.py: the same instance
check, window, scope and totals, without the 60-second cache), `walletChanged` is the
caller's `CreditBalance` (resolvers/wallet_account.wallet_balance). The bus only says that
something changed; the value is read with the subscriber's own principal, so a subscription
can never show more than its query would, and an instance the caller may not read is refused
(FORBIDDEN, as the query) before anything is pushed.

The first message is the current value, sent as soon as the subscription listens; then one
message per burst of writes, at most one per second (`live.feed.coalesced`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from usagegraph.live.channels import (
    Payload,
    alert_channel,
    concerns,
    usage_channel,
    wallet_channel,
)
from usagegraph.live.feed import coalesced
from usagegraph.resolvers.alerts import MAX_LIST, RaisedAlert, list_alerts, owner_of
from usagegraph.resolvers.live_context import LiveContext
from usagegraph.resolvers.usage_history import (
    Scope,
    UsageHistory,
    caller_user_id,
    parse_instance_id,
    usage_history,
)
from usagegraph.resolvers.wallet_account import CreditBalance, account_holder_id, wallet_balance


async def usage_updates(
    live: LiveContext,
    *,
    instance_id: str,
    window: int | None = None,
    scope: str | None = None,
) -> AsyncIterator[UsageHistory]:
    """The caller's usage history of one instance (scope `own`, or `all` for its admins),
    now and after each write that changes it."""
    user_id = caller_user_id(live.principal)
    instance = parse_instance_id(instance_id)
    async with live.bus.subscribe([usage_channel(instance, user_id)]) as feed:
        current = await _usage_now(live, instance, window, scope)
        yield current
        everyone = current.scope is Scope.ALL

        def relevant(_channel: str, note: Payload) -> bool:
            return everyone or concerns(note, user_id)

        async for _turn in coalesced(feed, relevant):
            yield await _usage_now(live, instance, window, scope)


async def _usage_now(
    live: LiveContext, instance: str, window: int | None, scope: str | None
) -> UsageHistory:
    async with live.reading() as context, context.sessions() as session:
        return await usage_history(
            session,
            context.principal,
            context.now,
            instance_id=instance,
            window=window,
            scope=scope,
            cache=None,
        )


async def wallet_updates(live: LiveContext) -> AsyncIterator[CreditBalance]:
    """The caller's own wallet balance, now and after each movement of it."""
    user_id = account_holder_id(live.principal)
    async with live.bus.subscribe([wallet_channel(user_id)]) as feed:
        yield await _balance_now(live, user_id)
        async for _turn in coalesced(feed, lambda _channel, _note: True):
            yield await _balance_now(live, user_id)


async def _balance_now(live: LiveContext, user_id: int) -> CreditBalance:
    async with live.reading() as context:
        return await wallet_balance(context, user_id)


async def alert_updates(
    live: LiveContext, institution_id: str | None
) -> AsyncIterator[RaisedAlert]:
    """Each alert raised from now on by an institution's rules (its admins) or by the
    caller's wallet rules: the `alerts` query's rule (FORBIDDEN before anything is sent),
    read again after each commit that raised one. Unlike the other two, nothing is sent at
    first: an alert is an event, not a value; alerts raised in one burst arrive one by one."""
    institution, user = owner_of(live.principal, institution_id)
    async with live.bus.subscribe([alert_channel(institution, user)]) as feed:
        seen = max((alert.id for alert in await _latest_alerts(live, institution_id)), default=0)
        async for _turn in coalesced(feed, lambda _channel, _note: True):
            raised = [a for a in await _latest_alerts(live, institution_id) if a.id > seen]
            for alert in sorted(raised, key=lambda a: a.id):
                seen = max(seen, alert.id)
                yield alert


async def _latest_alerts(live: LiveContext, institution_id: str | None) -> list[RaisedAlert]:
    async with live.reading() as context, context.sessions() as session:
        return await list_alerts(session, context.principal, institution_id, MAX_LIST)
