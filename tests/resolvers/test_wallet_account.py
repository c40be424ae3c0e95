"""Account rules (seed 003): usage buckets, credit balance and summary of the caller only.

Every expectation is worked out by hand from the fixture at FIXED_NOW = 2026-05-20 15:30 UTC.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FIXED_NOW
from tests.fixtures.contexts import request_context
from tests.fixtures.factories import add_institution, add_institution_admin, add_user
from tests.fixtures.wallet_account_data import (
    ACME,
    Event,
    add_events,
    add_subscription,
    add_wallet,
    at,
    principal_for,
    set_user_times,
)
from usagegraph.auth.principal import Principal
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.resolvers.calendar import Granularity, Period
from usagegraph.resolvers.wallet_account import (
    MAX_USAGE_BUCKETS,
    AccountPeriod,
    CreditBalance,
    SubscriptionDetails,
    UsageStats,
    account_credits,
    account_summary,
    account_usage,
    usage_buckets,
    usage_window,
)


async def _users(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    return {
        "ada": await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"}),
        "bob": await add_user(engine, email="bob@acme.edu", member_of={ACME: "user"}),
        "admin": await add_institution_admin(engine, email="admin@acme.edu", institution_id=ACME),
        "root": await add_user(engine, email="root@example.com", role="super"),
    }


async def _usage(engine: AsyncEngine, user_id: int, **params: object) -> list[UsageStats]:
    principal = await principal_for(engine, user_id)
    return await account_usage(request_context(engine, principal), **params)  # type: ignore[arg-type]


def _zero(user_id: int, period: AccountPeriod, start: datetime, end: datetime) -> UsageStats:
    return UsageStats(user_id, period, 0, 0, 0, Decimal(0), {}, start, end)


# --- pure rules --------------------------------------------------------------------------


def test_window_defaults_to_the_current_month_until_now() -> None:
    assert usage_window(FIXED_NOW, None, None) == Period(at(5, 1, 0), FIXED_NOW)
    assert usage_window(FIXED_NOW, at(4, 2), None) == Period(at(4, 2), FIXED_NOW)
    assert usage_window(FIXED_NOW, None, at(5, 3)) == Period(at(5, 1, 0), at(5, 3))


@pytest.mark.parametrize(("start", "end"), [(at(5, 3), at(5, 3)), (at(5, 4), at(5, 3))])
def test_window_must_start_before_it_ends(start: datetime, end: datetime) -> None:
    with pytest.raises(UsageGraphError) as caught:
        usage_window(FIXED_NOW, start, end)
    assert caught.value.code is ErrorCode.INVALID_REQUEST


def test_default_from_after_a_given_to_is_refused() -> None:
    # to = 2026-04-30 is before the default from (2026-05-01 00:00).
    with pytest.raises(UsageGraphError):
        usage_window(FIXED_NOW, None, at(4, 30))


def test_buckets_are_whole_calendar_periods_overlapping_the_window() -> None:
    window = Period(at(5, 18, 12), at(5, 20, 6))
    assert usage_buckets(window, Granularity.DAY) == [
        Period(at(5, 18, 0), at(5, 19, 0)),
        Period(at(5, 19, 0), at(5, 20, 0)),
        Period(at(5, 20, 0), at(5, 21, 0)),
    ]


def test_bucket_cap_allows_366_days_and_refuses_367() -> None:
    # 2025-01-01 .. 2026-01-02 00:00 = 365 days of 2025 + 1 January 2026 = 366 buckets.
    window = Period(at(1, 1, 0, year=2025), at(1, 2, 0))
    assert MAX_USAGE_BUCKETS == 366
    assert len(usage_buckets(window, Granularity.DAY)) == 366
    # One second more touches a 367th day.
    longer = Period(window.start, at(1, 2, 0, second=1))
    with pytest.raises(UsageGraphError) as caught:
        usage_buckets(longer, Granularity.DAY)
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert "366" in caught.value.message


def test_bucket_cap_stops_early_on_an_absurd_window() -> None:
    window = Period(at(1, 1, 0, year=1), at(12, 31, 0, year=9999))
    with pytest.raises(UsageGraphError):
        usage_buckets(window, Granularity.YEAR)
    # 366 years fit (9634..9999); the last bucket cannot end in year 10000, so it ends at `to`.
    last_years = Period(at(1, 1, 0, year=9634), at(12, 31, 0, year=9999))
    buckets = usage_buckets(last_years, Granularity.YEAR)
    assert len(buckets) == 366
    assert buckets[-1] == Period(at(1, 1, 0, year=9999), at(12, 31, 0, year=9999))


# --- usage on both databases -------------------------------------------------------------


async def test_daily_buckets_are_clipped_to_the_window(engine: AsyncEngine) -> None:
    ids = await _users(engine)
    ada, bob = ids["ada"], ids["bob"]
    await add_events(
        engine,
        Event(ada, at(5, 18, 11, 59), "1"),  # before from: not counted
        Event(ada, at(5, 18, 12, 0), "2.5"),  # bucket 0
        Event(ada, at(5, 18, 23, 59, second=59), "0.25", ACME, "/v1/embed", "failed"),  # b0
        Event(ada, at(5, 19, 0, 0), "1.5", ACME, None, forgotten=True),  # b1, no endpoint
        Event(ada, at(5, 19, 13, 0), "3"),  # bucket 1
        Event(ada, at(5, 20, 5, 59), "4", status="failed"),  # bucket 2
        Event(ada, at(5, 20, 6, 0), "8"),  # at `to`: not counted
        Event(bob, at(5, 19, 12, 0), "100", ACME),  # someone else's
    )
    stats = await _usage(
        engine, ada, period=AccountPeriod.DAILY, start=at(5, 18, 12), end=at(5, 20, 6)
    )
    daily = AccountPeriod.DAILY
    assert stats == [
        # 2.5 + 0.25 = 2.75; one success, one failure
        UsageStats(
            ada, daily, 2, 1, 1, Decimal("2.75"), {"/v1/chat": 1, "/v1/embed": 1},
            at(5, 18, 12), at(5, 19, 0),
        ),
        # 1.5 (forgotten, counted) + 3 = 4.5; the endpoint-less event under "unknown"
        UsageStats(
            ada, daily, 2, 2, 0, Decimal("4.5"), {"/v1/chat": 1, "unknown": 1},
            at(5, 19, 0), at(5, 20, 0),
        ),
        UsageStats(ada, daily, 1, 0, 1, Decimal("4"), {"/v1/chat": 1}, at(5, 20, 0), at(5, 20, 6)),
    ]  # fmt: skip


async def test_default_is_one_monthly_bucket_from_the_first_until_now(engine: AsyncEngine) -> None:
    ids = await _users(engine)
    ada = ids["ada"]
    await add_events(
        engine,
        Event(ada, at(4, 30, 23, 59, second=59), "9"),  # April: not counted
        Event(ada, at(5, 1, 0, 0), "1"),
        Event(ada, at(5, 20, 15, 29, second=59), "2", ACME),
        Event(ada, at(5, 20, 15, 30), "16"),  # at now: not counted
    )
    assert await _usage(engine, ada) == [
        UsageStats(
            ada, AccountPeriod.MONTHLY, 2, 2, 0, Decimal("3"), {"/v1/chat": 2},
            at(5, 1, 0), FIXED_NOW,
        )
    ]  # fmt: skip


async def test_monthly_buckets_include_empty_months(engine: AsyncEngine) -> None:
    ids = await _users(engine)
    ada = ids["ada"]
    await add_events(
        engine,
        Event(ada, at(3, 14, 23, 59), "5"),  # before from
        Event(ada, at(3, 31, 23, 59), "0.5"),
        Event(ada, at(5, 2, 8, 0), "1.25"),
    )
    monthly, chat = AccountPeriod.MONTHLY, {"/v1/chat": 1}
    assert await _usage(engine, ada, start=at(3, 15, 0)) == [
        UsageStats(ada, monthly, 1, 1, 0, Decimal("0.5"), chat, at(3, 15, 0), at(4, 1, 0)),
        _zero(ada, monthly, at(4, 1, 0), at(5, 1, 0)),
        UsageStats(ada, monthly, 1, 1, 0, Decimal("1.25"), chat, at(5, 1, 0), FIXED_NOW),
    ]


async def test_yearly_buckets_split_at_new_year(engine: AsyncEngine) -> None:
    ids = await _users(engine)
    ada = ids["ada"]
    await add_events(
        engine,
        Event(ada, at(12, 14, 23, 59, year=2025), "7"),  # before from
        Event(ada, at(12, 31, 23, 59, year=2025, second=59), "1.25"),
        Event(ada, at(1, 1, 0, 0), "0.75", ACME, "/v1/embed"),
        Event(ada, at(1, 10, 0, 0), "3"),  # at `to`
    )
    yearly = AccountPeriod.YEARLY
    stats = await _usage(
        engine, ada, period=yearly, start=at(12, 15, 0, year=2025), end=at(1, 10, 0)
    )
    assert stats == [
        UsageStats(
            ada, yearly, 1, 1, 0, Decimal("1.25"), {"/v1/chat": 1},
            at(12, 15, 0, year=2025), at(1, 1, 0),
        ),
        UsageStats(
            ada, yearly, 1, 1, 0, Decimal("0.75"), {"/v1/embed": 1}, at(1, 1, 0), at(1, 10, 0)
        ),
    ]  # fmt: skip


@pytest.mark.parametrize("caller", ["admin", "root"])
async def test_admins_and_super_still_see_only_their_own_usage(
    engine: AsyncEngine, caller: str
) -> None:
    ids = await _users(engine)
    me = ids[caller]
    await add_events(
        engine,
        Event(me, at(5, 4), "0.5", ACME),
        Event(me, at(5, 5), "1"),
        Event(ids["bob"], at(5, 4), "100", ACME),  # readable to both, but not their account
        Event(ids["ada"], at(5, 6), "200"),
    )
    # 0.5 + 1 = 1.5 over two events
    assert await _usage(engine, me) == [
        UsageStats(
            me, AccountPeriod.MONTHLY, 2, 2, 0, Decimal("1.5"), {"/v1/chat": 2},
            at(5, 1, 0), FIXED_NOW,
        )
    ]  # fmt: skip


async def test_a_user_without_usage_gets_zero_buckets(engine: AsyncEngine) -> None:
    ids = await _users(engine)
    stats = await _usage(
        engine, ids["ada"], period=AccountPeriod.DAILY, start=at(5, 19, 0), end=at(5, 21, 0)
    )
    assert stats == [
        _zero(ids["ada"], AccountPeriod.DAILY, at(5, 19, 0), at(5, 20, 0)),
        _zero(ids["ada"], AccountPeriod.DAILY, at(5, 20, 0), at(5, 21, 0)),
    ]


@pytest.mark.parametrize(
    "principal", [Principal.anonymous(), Principal.for_institution(ACME)], ids=["anon", "api-key"]
)
async def test_only_an_authenticated_user_has_an_account(
    engine: AsyncEngine, principal: Principal
) -> None:
    for call in (account_usage, account_credits, account_summary):
        with pytest.raises(UsageGraphError) as caught:
            await call(request_context(engine, principal))
        assert caught.value.code is ErrorCode.UNAUTHORIZED


# --- credits -----------------------------------------------------------------------------


async def test_credit_balance_reads_the_wallet(engine: AsyncEngine) -> None:
    ids = await _users(engine)
    await add_wallet(
        engine,
        ids["ada"],
        balance="120.5",
        reserved="20.25",
        updated_at=at(5, 19, 8),
        currency="eur",
        auto_reload=("10", "50"),
    )
    await add_wallet(engine, ids["bob"], balance="999", reserved="0", updated_at=at(5, 1))
    balance = await account_credits(
        request_context(engine, await principal_for(engine, ids["ada"]))
    )
    # available = 120.5 - 20.25 = 100.25
    assert balance == CreditBalance(
        ids["ada"], Decimal("120.5"), Decimal("20.25"), Decimal("100.25"), "eur",
        at(5, 19, 8), True, Decimal("10"), Decimal("50"),
    )  # fmt: skip


async def test_a_user_without_a_wallet_has_an_empty_usd_balance(engine: AsyncEngine) -> None:
    ids = await _users(engine)
    await add_wallet(engine, ids["bob"], balance="999", reserved="1", updated_at=at(5, 1))
    balance = await account_credits(
        request_context(engine, await principal_for(engine, ids["ada"]))
    )
    zero = Decimal(0)
    assert balance == CreditBalance(ids["ada"], zero, zero, zero, "usd", None, False, None, None)


async def test_super_reads_their_own_wallet_not_anothers(engine: AsyncEngine) -> None:
    ids = await _users(engine)
    await add_wallet(engine, ids["ada"], balance="50", reserved="0", updated_at=at(5, 1))
    balance = await account_credits(
        request_context(engine, await principal_for(engine, ids["root"]))
    )
    assert (balance.user_id, balance.balance, balance.last_updated) == (ids["root"], 0, None)


# --- summary -----------------------------------------------------------------------------


async def test_summary_brings_the_account_together(engine: AsyncEngine) -> None:
    ids = await _users(engine)
    ada = ids["ada"]
    await set_user_times(engine, ada, created_at=at(1, 15, 9), last_login_at=at(5, 20, 8))
    await add_wallet(engine, ada, balance="120.5", reserved="20.25", updated_at=at(5, 19, 8))
    await add_subscription(
        engine, ada, plan="pro", status="active", period=(at(5, 1, 0), at(6, 1, 0))
    )
    await add_events(
        engine,
        Event(ada, at(11, 3, year=2025), "4"),  # last year: all-time only
        Event(ada, at(5, 2), "1.5", ACME, "/v1/embed", forgotten=True),  # this month
        Event(ada, at(5, 10), "0.5", status="failed"),  # this month
        Event(ids["bob"], at(5, 3), "50"),  # someone else's
    )
    summary = await account_summary(
        request_context(engine, await principal_for(engine, ada), FIXED_NOW)
    )
    assert summary.user_id == ada
    assert summary.email == "ada@acme.edu"
    assert summary.credit_balance.available == Decimal("100.25")  # 120.5 - 20.25
    assert summary.subscription == SubscriptionDetails("pro", "active", at(5, 1, 0), at(6, 1, 0))
    # this month: 1.5 + 0.5 = 2 credits, 2 events, one failed
    assert summary.usage_this_month == UsageStats(
        ada, AccountPeriod.MONTHLY, 2, 1, 1, Decimal("2"), {"/v1/chat": 1, "/v1/embed": 1},
        at(5, 1, 0), FIXED_NOW,
    )  # fmt: skip
    assert summary.total_requests_all_time == 3  # Nov 2025 + two in May; not Bob's
    assert summary.account_created_at == at(1, 15, 9)
    assert summary.last_login_at == at(5, 20, 8)


async def test_summary_without_subscription_wallet_or_usage(engine: AsyncEngine) -> None:
    ids = await _users(engine)
    bob = ids["bob"]
    await add_subscription(engine, ids["ada"], plan="pro", status="active", period=None)
    await add_events(engine, Event(ids["ada"], at(5, 2)))
    summary = await account_summary(
        request_context(engine, await principal_for(engine, bob), FIXED_NOW)
    )
    assert summary.subscription is None
    assert summary.credit_balance.balance == 0
    assert summary.usage_this_month == _zero(bob, AccountPeriod.MONTHLY, at(5, 1, 0), FIXED_NOW)
    assert summary.total_requests_all_time == 0
    assert summary.last_login_at is None


async def test_summary_at_the_first_instant_of_a_month_has_an_empty_month(
    engine: AsyncEngine,
) -> None:
    ids = await _users(engine)
    ada = ids["ada"]
    await add_events(engine, Event(ada, at(4, 30, 23, 59)))
    summary = await account_summary(
        request_context(engine, await principal_for(engine, ada), at(5, 1, 0))
    )
    assert summary.usage_this_month == _zero(ada, AccountPeriod.MONTHLY, at(5, 1, 0), at(5, 1, 0))
    assert summary.total_requests_all_time == 1
