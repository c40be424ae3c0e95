"""The caller's own account (seed 003): usage per calendar period, credit balance, summary.

"Own account only": every function here reads the account of the authenticated user and
nobody else's, whatever their role. Usage counts every event of that user in every instance
(personal and institutions), failed and forgotten included: forgotten usage only leaves the
two reporting endpoints, it still cost credits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.auth.access import owns_account
from usagegraph.auth.challenge import INVALID_TOKEN_MESSAGE, authentication_error
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.datasources.usage import DAY_SLOT_SECONDS, UsageSlot, of_user, usage_by_slot
from usagegraph.datasources.wallet import (
    account_holder,
    usage_event_count,
)
from usagegraph.db.models import Subscription, Wallet
from usagegraph.errors import forbidden, invalid, unauthorized
from usagegraph.resolvers.calendar import (
    Granularity,
    Period,
    PeriodLookup,
    period_start,
    shift_period,
)
from usagegraph.resolvers.request_context import RequestContext
from usagegraph.shapes import described

# Requests that carry no endpoint are counted under this key of `requests_by_endpoint`.
UNKNOWN_ENDPOINT = "unknown"
# The most buckets one usage request may ask for (a leap year of days): bounded work.
MAX_USAGE_BUCKETS = 366
DEFAULT_CURRENCY = "usd"


class AccountPeriod(StrEnum):
    """The `period` of account usage: how wide each bucket is."""

    DAILY = "daily"
    MONTHLY = "monthly"
    YEARLY = "yearly"

    @property
    def granularity(self) -> Granularity:
        return _GRANULARITY[self]


_GRANULARITY = {
    AccountPeriod.DAILY: Granularity.DAY,
    AccountPeriod.MONTHLY: Granularity.MONTH,
    AccountPeriod.YEARLY: Granularity.YEAR,
}


@dataclass(frozen=True, slots=True)
class UsageStats:
    """The user's usage during [period_start, period_end) (a bucket clipped to the window)."""

    user_id: int = described("The account's user id.")
    period: AccountPeriod = described("daily, monthly or yearly.")
    total_requests: int = described("Usage events in the period.")
    successful_requests: int = described("Events with status success.")
    failed_requests: int = described("Events with status failed.")
    credits_consumed: Decimal = described("Credits of all those events.")
    # Keys sorted.
    requests_by_endpoint: dict[str, int] = described(
        "{endpoint: event count}; events without an endpoint count as `unknown`."
    )
    period_start: datetime = described("Start, clipped to the window.")
    period_end: datetime = described("End, clipped to the window.")


@dataclass(frozen=True, slots=True)
class CreditBalance:
    """The wallet as the seed shows it. A user without a wallet gets an empty, usd one."""

    user_id: int = described("The wallet's owner.")
    balance: Decimal = described("Total balance.")
    reserved: Decimal = described("Credits held by open reservations.")
    available: Decimal = described("balance minus reserved.")
    currency: str = described("Currency code, e.g. `usd`.")
    last_updated: datetime | None = described(
        "When the wallet last changed; null without a wallet."
    )
    auto_reload_enabled: bool = described("Whether auto-reload is on.")
    auto_reload_threshold: Decimal | None = described(
        "Auto-reload tops up when available falls below this."
    )
    auto_reload_amount: Decimal | None = described("The top-up amount.")


@dataclass(frozen=True, slots=True)
class SubscriptionDetails:
    """The user's one subscription, whatever its status (the seed leaves the shape open)."""

    plan: str = described("Plan name.")
    status: str = described("Status, e.g. `active`.")
    current_period_start: datetime | None = described("Period start.")
    current_period_end: datetime | None = described("Period end.")


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """GET /auth/account/summary: the account at a glance (REST only)."""

    user_id: int = described("The account holder.")
    email: str = described("Their email address.")
    credit_balance: CreditBalance = described("The wallet.")
    subscription: SubscriptionDetails | None = described("The plan, if any.")
    usage_this_month: UsageStats = described("Usage from the start of this UTC month to now.")
    total_requests_all_time: int = described("Every event, every instance, forgotten included.")
    account_created_at: datetime = described("When the account was created.")
    last_login_at: datetime | None = described("The last sign-in, if any.")


def account_holder_id(principal: Principal) -> int:
    """The user whose account this is: the caller, who must be an authenticated user."""
    if principal.kind is CallerKind.USER and principal.user_id is not None:
        return principal.user_id
    raise authentication_error(principal, "A Bearer token is required")


def require_account(principal: Principal, user_id: int) -> None:
    """Only the account holder (or super) reads an account's usage, balance, plan and ledger."""
    if not owns_account(principal, user_id):
        raise forbidden("only the account holder may read this account")


# --- usage -------------------------------------------------------------------------------


def usage_window(now: datetime, start: datetime | None, end: datetime | None) -> Period:
    """[from, to) with the seed's defaults: the start of the current UTC month, and now."""
    window = Period(
        start=start if start is not None else period_start(now, Granularity.MONTH),
        end=end if end is not None else now,
    )
    if window.start >= window.end:
        raise invalid("'from' must be earlier than 'to'")
    return window


def _next_start(current: datetime, granularity: Granularity, fallback: datetime) -> datetime:
    """The following period's start, or `fallback` past the calendar's end (year 9999)."""
    try:
        return shift_period(current, granularity, 1)
    except (ValueError, OverflowError):
        return fallback


def usage_buckets(window: Period, granularity: Granularity) -> list[Period]:
    """Unclipped calendar periods overlapping the window, ascending, at most MAX_USAGE_BUCKETS.

    Counting stops as soon as the cap is passed, so an absurd window costs nothing.
    """
    buckets: list[Period] = []
    current = period_start(window.start, granularity)
    while current < window.end:
        if len(buckets) == MAX_USAGE_BUCKETS:
            raise invalid(
                f"The range from 'from' to 'to' spans more than {MAX_USAGE_BUCKETS} "
                f"{granularity.value} periods; narrow it or choose a longer period"
            )
        following = _next_start(current, granularity, window.end)
        buckets.append(Period(current, following))
        current = following
    return buckets


@dataclass(slots=True)
class _Tally:
    events: int = 0
    failed: int = 0
    credits: Decimal = Decimal(0)
    by_endpoint: dict[str, int] = field(default_factory=dict)

    def add(self, slot: UsageSlot) -> None:
        self.events += slot.events
        self.failed += slot.failed_events
        self.credits += slot.credits
        key = slot.endpoint if slot.endpoint is not None else UNKNOWN_ENDPOINT
        self.by_endpoint[key] = self.by_endpoint.get(key, 0) + slot.events


def fold_usage(
    slots: Sequence[UsageSlot],
    buckets: list[Period],
    window: Period,
    *,
    user_id: int,
    period: AccountPeriod,
) -> list[UsageStats]:
    """Day slots summed into their buckets; every bucket appears, clipped to the window."""
    lookup = PeriodLookup(buckets)
    tallies = [_Tally() for _ in buckets]
    for slot in slots:
        index = lookup.index(slot.slot_start)
        if index is not None:
            tallies[index].add(slot)
    return [
        UsageStats(
            user_id=user_id,
            period=period,
            total_requests=tally.events,
            successful_requests=tally.events - tally.failed,
            failed_requests=tally.failed,
            credits_consumed=tally.credits,
            requests_by_endpoint=dict(sorted(tally.by_endpoint.items())),
            period_start=max(bucket.start, window.start),
            period_end=min(bucket.end, window.end),
        )
        for bucket, tally in zip(buckets, tallies, strict=True)
    ]


async def _usage_stats(
    session: AsyncSession,
    principal: Principal,
    user_id: int,
    period: AccountPeriod,
    window: Period,
) -> list[UsageStats]:
    buckets = usage_buckets(window, period.granularity)
    # UTC days tile months and years exactly, so one day slot serves every period.
    slots = await usage_by_slot(
        session,
        principal,
        start=window.start,
        end=window.end,
        slot_seconds=DAY_SLOT_SECONDS,
        # Own account only: readable_usage would also admit institutions the caller
        # administers (or everything, for super); this narrows to the caller's own events.
        filters=[of_user(user_id)],
        include_forgotten=True,
        by_endpoint=True,
    )
    return fold_usage(slots, buckets, window, user_id=user_id, period=period)


async def account_usage(
    context: RequestContext,
    *,
    period: AccountPeriod = AccountPeriod.MONTHLY,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[UsageStats]:
    """The caller's usage per calendar period overlapping [start, end), ascending."""
    user_id = account_holder_id(context.principal)
    return await user_usage(context, user_id, period=period, start=start, end=end)


async def user_usage(
    context: RequestContext,
    user_id: int,
    *,
    period: AccountPeriod = AccountPeriod.MONTHLY,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[UsageStats]:
    """A user's usage per period (the graph's `User.usage`): their own account, or super."""
    require_account(context.principal, user_id)
    window = usage_window(context.now, start, end)
    async with context.read_session() as session:
        return await _usage_stats(session, context.principal, user_id, period, window)


def _empty_usage(user_id: int, period: AccountPeriod, moment: datetime) -> UsageStats:
    return UsageStats(
        user_id=user_id,
        period=period,
        total_requests=0,
        successful_requests=0,
        failed_requests=0,
        credits_consumed=Decimal(0),
        requests_by_endpoint={},
        period_start=moment,
        period_end=moment,
    )


async def usage_this_month(
    session: AsyncSession, principal: Principal, now: datetime, user_id: int
) -> UsageStats:
    """One monthly UsageStats for [start of the current month, now); empty at 00:00 on the 1st."""
    month_start = period_start(now, Granularity.MONTH)
    if month_start >= now:
        return _empty_usage(user_id, AccountPeriod.MONTHLY, now)
    window = Period(month_start, now)
    (stats,) = await _usage_stats(session, principal, user_id, AccountPeriod.MONTHLY, window)
    return stats


# --- credits -----------------------------------------------------------------------------


def credit_balance(user_id: int, wallet: Wallet | None) -> CreditBalance:
    """The seed's CreditBalance of a wallet; no wallet reads as an empty usd wallet."""
    if wallet is None:
        return CreditBalance(
            user_id=user_id,
            balance=Decimal(0),
            reserved=Decimal(0),
            available=Decimal(0),
            currency=DEFAULT_CURRENCY,
            last_updated=None,
            auto_reload_enabled=False,
            auto_reload_threshold=None,
            auto_reload_amount=None,
        )
    return CreditBalance(
        user_id=user_id,
        balance=wallet.balance,
        reserved=wallet.reserved,
        available=wallet.balance - wallet.reserved,
        currency=wallet.currency or DEFAULT_CURRENCY,
        last_updated=wallet.updated_at,
        auto_reload_enabled=bool(wallet.auto_reload_enabled),
        auto_reload_threshold=wallet.auto_reload_threshold,
        auto_reload_amount=wallet.auto_reload_amount,
    )


async def wallet_balance(context: RequestContext, user_id: int) -> CreditBalance:
    """A user's balance: their own account, or super. Read through the request's loader, so
    a page of users costs one query."""
    require_account(context.principal, user_id)
    return credit_balance(user_id, await context.loaders.wallet.load(user_id))


async def account_credits(context: RequestContext) -> CreditBalance:
    """The caller's credit balance."""
    return await wallet_balance(context, account_holder_id(context.principal))


# --- summary -----------------------------------------------------------------------------


def subscription_details(subscription: Subscription | None) -> SubscriptionDetails | None:
    """The subscription as the APIs show it; None when the user has none."""
    if subscription is None:
        return None
    return SubscriptionDetails(
        plan=subscription.plan,
        status=subscription.status,
        current_period_start=subscription.current_period_start,
        current_period_end=subscription.current_period_end,
    )


async def plan_subscription(context: RequestContext, user_id: int) -> SubscriptionDetails | None:
    """A user's plan, if any: their own account, or super."""
    require_account(context.principal, user_id)
    return subscription_details(await context.loaders.subscription.load(user_id))


async def account_summary(context: RequestContext) -> AccountSummary:
    """Balance, subscription, this month's usage and lifetime request count of the caller."""
    principal = context.principal
    user_id = account_holder_id(principal)
    async with context.read_session() as session:
        user = await account_holder(session, principal, user_id)
        if user is None:  # deleted since the token was checked
            raise unauthorized(INVALID_TOKEN_MESSAGE)
        this_month = await usage_this_month(session, principal, context.now, user_id)
        total_requests = await usage_event_count(session, principal, user_id)
    return AccountSummary(
        user_id=user_id,
        email=user.email,
        credit_balance=await wallet_balance(context, user_id),
        subscription=await plan_subscription(context, user_id),
        usage_this_month=this_month,
        total_requests_all_time=total_requests,
        account_created_at=user.created_at,
        last_login_at=user.last_login_at,
    )
