"""Billing periods (CONTRACT section 3): months, counts, overage and paging, worked by hand.

The data and its arithmetic are described in tests/fixtures/billing_data.py.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FIXED_NOW
from tests.fixtures.billing_data import ACME, OTHER, add_institution, at, seed_billing
from tests.fixtures.contexts import request_context
from usagegraph.auth.principal import Principal
from usagegraph.auth.resolve import load_user_principal
from usagegraph.db.engine import session_factory
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.resolvers.billing import (
    BillingPeriod,
    BillingPeriodPage,
    billing_periods,
    first_moment,
    month_boundaries,
    month_count,
    overage,
    page_bounds,
)

# -- pure rules ---------------------------------------------------------------------------


def test_page_defaults_are_twelve_months_from_the_newest() -> None:
    assert page_bounds(None, None) == (12, 0)
    assert page_bounds(1, 0) == (1, 0)
    assert page_bounds(24, 500) == (24, 500)


@pytest.mark.parametrize(
    ("limit", "offset", "message"),
    [
        (0, 0, "limit must be an integer between 1 and 24"),
        (25, 0, "limit must be an integer between 1 and 24"),
        (-3, 0, "limit must be an integer between 1 and 24"),
        (12, -1, "offset must be a non-negative integer"),
    ],
)
def test_out_of_range_paging_is_refused(limit: int, offset: int, message: str) -> None:
    with pytest.raises(UsageGraphError) as caught:
        page_bounds(limit, offset)
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("messages", "plan_limit", "expected"),
    [(7, 5, 2), (5, 5, 0), (3, 5, 0), (3, 0, 3), (6102, 5000, 1102), (9999, None, 0)],
)
def test_overage_is_messages_above_the_limit_and_zero_when_unlimited(
    messages: int, plan_limit: int | None, expected: int
) -> None:
    assert overage(messages, plan_limit) == expected


def test_month_count_runs_from_the_first_month_through_the_current_one() -> None:
    # Nov, Dec 2025, Jan, Feb, Mar, Apr, May 2026 = 7.
    assert month_count(at(2025, 11, 30, 23, 59, 59), FIXED_NOW) == 7
    assert month_count(at(2026, 5, 1, 0, 0, 0), FIXED_NOW) == 1
    # 2024-01 .. 2026-05: 12 + 12 + 5 = 29.
    assert month_count(at(2024, 1, 31), FIXED_NOW) == 29
    # A first moment after now still lists the current month.
    assert month_count(at(2026, 7, 1), FIXED_NOW) == 1


def test_history_starts_at_creation_or_first_usage_whichever_is_earlier() -> None:
    created, used = at(2025, 12, 15), at(2025, 11, 30)
    assert first_moment(created, used) == used
    assert first_moment(created, at(2026, 1, 2)) == created
    assert first_moment(created, None) == created


def test_month_boundaries_cover_exactly_the_page() -> None:
    # offset 5, 2 months back from May 2026: months 5 (Dec) and 6 (Nov), plus Jan's start.
    assert month_boundaries(FIXED_NOW, 5, 2) == [
        at(2025, 11, 1, 0),
        at(2025, 12, 1, 0),
        at(2026, 1, 1, 0),
    ]


# -- against the database -----------------------------------------------------------------


def _key(institution_id: str) -> Principal:
    return Principal.for_institution(institution_id)


async def _page(engine: AsyncEngine, principal: Principal, institution_id: str, **paging: int):
    return await billing_periods(request_context(engine, principal), institution_id, **paging)


async def _user(engine: AsyncEngine, user_id: int) -> Principal:
    async with session_factory(engine)() as session:
        principal = await load_user_principal(session, user_id)
    assert principal is not None
    return principal


def _period(start: date, end: date, messages: int, limit: int | None, over: int) -> BillingPeriod:
    return BillingPeriod(
        period_start=start,
        period_end=end,
        message_count=messages,
        plan_limit=limit,
        overage_count=over,
    )


ACME_MONTHS = [
    _period(date(2026, 5, 1), date(2026, 5, 31), 6, 5, 1),
    _period(date(2026, 4, 1), date(2026, 4, 30), 0, 5, 0),
    _period(date(2026, 3, 1), date(2026, 3, 31), 4, 5, 0),
    _period(date(2026, 2, 1), date(2026, 2, 28), 7, 5, 2),
    _period(date(2026, 1, 1), date(2026, 1, 31), 10, 5, 5),
    _period(date(2025, 12, 1), date(2025, 12, 31), 0, 5, 0),
    _period(date(2025, 11, 1), date(2025, 11, 30), 1, 5, 0),
]


async def test_whole_history_newest_first_with_counts_including_forgotten_and_failed(
    engine: AsyncEngine,
) -> None:
    await seed_billing(engine)
    page = await _page(engine, _key(ACME), ACME)
    assert page == BillingPeriodPage(periods=tuple(ACME_MONTHS), total=7, limit=12, offset=0)
    assert page.has_more is False


async def test_last_page_holds_the_two_oldest_months(engine: AsyncEngine) -> None:
    await seed_billing(engine)
    page = await _page(engine, _key(ACME), ACME, limit=5, offset=5)
    # total 7, offset 5 -> months 5 and 6: December and November; 5 + 2 = 7, nothing more.
    assert [p.period_start for p in page.periods] == [date(2025, 12, 1), date(2025, 11, 1)]
    assert (page.total, page.limit, page.offset, page.has_more) == (7, 5, 5, False)


async def test_first_page_says_there_is_more(engine: AsyncEngine) -> None:
    await seed_billing(engine)
    page = await _page(engine, _key(ACME), ACME, limit=3, offset=2)
    # Months 2, 3, 4: March, February, January; 2 + 3 = 5 < 7.
    assert page.periods == tuple(ACME_MONTHS[2:5])
    assert page.has_more is True


async def test_offset_past_the_history_is_an_empty_page(engine: AsyncEngine) -> None:
    await seed_billing(engine)
    page = await _page(engine, _key(ACME), ACME, limit=12, offset=7)
    assert (page.periods, page.total, page.has_more) == ((), 7, False)


async def test_unlimited_plan_has_no_overage_and_history_starts_at_first_usage(
    engine: AsyncEngine,
) -> None:
    await seed_billing(engine)
    page = await _page(engine, _key(OTHER), OTHER)
    # Created 2026-04-10, first used 2026-02-15: May, Apr, Mar, Feb.
    assert page.periods == (
        _period(date(2026, 5, 1), date(2026, 5, 31), 0, None, 0),
        _period(date(2026, 4, 1), date(2026, 4, 30), 100, None, 0),
        _period(date(2026, 3, 1), date(2026, 3, 31), 0, None, 0),
        _period(date(2026, 2, 1), date(2026, 2, 28), 100, None, 0),
    )
    assert page.total == 4


async def test_institution_without_usage_has_only_its_creation_months(
    engine: AsyncEngine,
) -> None:
    fresh = "cccccccccccccccccccccccc"
    await add_institution(engine, fresh, created_at=at(2026, 4, 30, 23, 59, 59), plan_limit=0)
    page = await _page(engine, _key(fresh), fresh)
    assert page.periods == (
        _period(date(2026, 5, 1), date(2026, 5, 31), 0, 0, 0),
        _period(date(2026, 4, 1), date(2026, 4, 30), 0, 0, 0),
    )


async def test_administrators_and_super_read_billing_members_and_outsiders_do_not(
    engine: AsyncEngine,
) -> None:
    world = await seed_billing(engine)
    admin, boss, member, outsider = [
        await _user(engine, user_id)
        for user_id in (world.admin_id, world.super_id, world.member_id, world.outsider_id)
    ]
    for reader in (admin, boss):
        assert (await _page(engine, reader, ACME)).periods == tuple(ACME_MONTHS)
    for stranger in (member, outsider, _key(OTHER), Principal.anonymous()):
        with pytest.raises(UsageGraphError) as caught:
            await _page(engine, stranger, ACME)
        assert caught.value.code is ErrorCode.NOT_FOUND
        assert caught.value.message == "Institution not found"


async def test_unknown_institution_reads_like_a_forbidden_one(engine: AsyncEngine) -> None:
    with pytest.raises(UsageGraphError) as caught:
        await _page(engine, Principal.for_institution("d" * 24), "d" * 24)
    assert (caught.value.code, caught.value.message) == (
        ErrorCode.NOT_FOUND,
        "Institution not found",
    )


async def test_cost_follows_the_page_not_the_history(engine: AsyncEngine) -> None:
    """Two statements for any page (facts + the page's months), one for an empty page."""
    await seed_billing(engine)
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])  # (conn, cursor, statement, parameters, ...)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await _page(engine, _key(ACME), ACME, limit=1, offset=0)
        one_month = list(statements)
        statements.clear()
        await _page(engine, _key(ACME), ACME, limit=24, offset=0)
        whole = list(statements)
        statements.clear()
        await _page(engine, _key(ACME), ACME, limit=24, offset=40)
        empty = list(statements)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert len(one_month) == 2
    assert len(whole) == 2
    assert len(empty) == 1
    # The months query holds one CASE branch per month of the page: 1, then all 7.
    assert one_month[1].count("WHEN") == 1
    assert whole[1].count("WHEN") == 7
