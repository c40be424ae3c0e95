"""The rules of the user-stats extract, with numbers worked out by hand.

Data: tests/fixtures/user_stats_data.py. Now is Wed 2026-05-20 15:30 UTC throughout.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FIXED_NOW
from tests.fixtures.contexts import request_context
from tests.fixtures.user_stats_data import (
    ACME,
    ADA,
    BETA,
    BOB,
    BULK_FIRST_DAY,
    BULK_LAST_DAY,
    CLERK,
    CY,
    DAN,
    DEAN,
    PAT,
    SUPER,
    add_institutions,
    add_people,
    add_usage,
    at,
    seed_bulk,
    seed_campus,
)
from usagegraph.auth.principal import Principal
from usagegraph.auth.resolve import load_user_principal
from usagegraph.db.engine import session_factory
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.resolvers.calendar import Granularity
from usagegraph.resolvers.user_stats import (
    ROW_LIMIT,
    UserStats,
    UserStatsFilters,
    WindowSource,
    authorize_stats_caller,
    cap_used_pct,
    mean,
    round_half_up,
    stats_window,
    user_stats,
    validate_filters,
)

D = Decimal


async def _stats(engine: AsyncEngine, caller: int, **kwargs: object) -> UserStats:
    async with session_factory(engine)() as session:
        principal = await load_user_principal(session, caller)
        assert principal is not None
    return await user_stats(request_context(engine, principal), **kwargs)  # type: ignore[arg-type]


def _rows(stats: UserStats) -> list[tuple[object, ...]]:
    """(period day, user, instance, queryCount, credits) per row, in the returned order."""
    return [
        (r.period_start, r.user_id, r.institution_id, r.query_count, r.credits_used)
        for r in stats.rows
    ]


def _code(excinfo: pytest.ExceptionInfo[UsageGraphError]) -> ErrorCode:
    return excinfo.value.code


# ---- windows (pure) ------------------------------------------------------------------------


def test_range_of_days_is_today_and_the_six_before() -> None:
    window = stats_window(FIXED_NOW, Granularity.DAY, -7)
    assert (window.start, window.end) == (at(5, 14, 0), at(5, 21, 0))
    assert (window.source, window.default_days) == (WindowSource.RANGE, None)


def test_range_of_weeks_ends_next_monday() -> None:
    # Current ISO week starts Mon 05-18; six weeks before it: 04-06. Next Monday: 05-25.
    window = stats_window(FIXED_NOW, Granularity.WEEK, -7)
    assert (window.start, window.end) == (at(4, 6, 0), at(5, 25, 0))


def test_range_of_months_ends_on_the_first_of_next_month() -> None:
    window = stats_window(FIXED_NOW, Granularity.MONTH, -3)  # March, April, May
    assert (window.start, window.end) == (at(3, 1, 0), at(6, 1, 0))


def test_range_of_one_period_is_the_current_one() -> None:
    window = stats_window(FIXED_NOW, Granularity.DAY, -1)
    assert (window.start, window.end) == (at(5, 20, 0), at(5, 21, 0))


@pytest.mark.parametrize(
    ("granularity", "days", "start"),
    [
        (Granularity.DAY, 30, at(4, 21, 0)),  # 05-20 minus 29 days
        (Granularity.WEEK, 84, at(2, 26, 0)),  # 05-20 minus 83 days (20 in May, 30, 31, 2)
        (Granularity.MONTH, 365, datetime(2025, 5, 21, tzinfo=UTC)),  # minus 364 days
    ],
)
def test_default_window_is_the_last_n_days_including_today(
    granularity: Granularity, days: int, start: datetime
) -> None:
    window = stats_window(FIXED_NOW, granularity)
    assert (window.start, window.end) == (start, at(5, 21, 0))
    assert (window.source, window.default_days) == (WindowSource.DEFAULT, days)


def test_daterange_wins_over_range() -> None:
    start, end = at(5, 1, 5, 31), at(5, 3, 7)
    window = stats_window(FIXED_NOW, Granularity.DAY, -7, (start, end))
    assert (window.start, window.end, window.source) == (start, end, WindowSource.DATERANGE)
    assert window.default_days is None


@pytest.mark.parametrize(
    ("granularity", "range_periods", "daterange"),
    [
        (Granularity.DAY, 0, None),
        (Granularity.DAY, 3, None),
        (Granularity.DAY, -(10**12), None),  # before year 1
        (Granularity.MONTH, -100_000, None),
        (Granularity.YEAR, None, None),
        (Granularity.DAY, None, (at(5, 2), at(5, 2))),  # end == start
        (Granularity.DAY, None, (at(5, 2), at(5, 1))),
        (Granularity.DAY, 5, (at(5, 1), at(5, 2))),  # a bad range is bad even under daterange
    ],
)
def test_bad_windows_are_invalid_requests(
    granularity: Granularity,
    range_periods: int | None,
    daterange: tuple[datetime, datetime] | None,
) -> None:
    with pytest.raises(UsageGraphError) as excinfo:
        stats_window(FIXED_NOW, granularity, range_periods, daterange)
    assert _code(excinfo) is ErrorCode.INVALID_REQUEST


# ---- numbers (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "cap", "pct"),
    [
        ("2", "3", "66.67"),  # 66.666…
        ("1", "8", "12.5"),
        ("0.12345", "1", "12.35"),  # exactly 12.345: half-up (banker's would give 12.34)
        ("0.0000049", "1", "0"),  # 0.00049 %
        ("3", "3", "100"),
        ("9", "3", "300"),
        ("1", None, None),
        ("0", "0", None),  # a zero cap has no meaningful percentage
    ],
)
def test_cap_used_pct(lifetime: str, cap: str | None, pct: str | None) -> None:
    result = cap_used_pct(D(lifetime), D(cap) if cap is not None else None)
    assert result == (D(pct) if pct is not None else None)


def test_half_up_rounds_halves_away_from_zero() -> None:
    assert round_half_up(-1005, 1000) == D("-1.01")
    assert round_half_up(1005, -1000) == D("-1.01")
    assert round_half_up(2675, 1000) == D("2.68")  # float round() gives 2.67
    assert round_half_up(26749999999, 10**10) == D("2.67")
    assert round_half_up(1, 3) == D("0.33")
    assert round_half_up(2, 3) == D("0.67")


def test_mean_is_zero_without_rows() -> None:
    assert mean(D(0), 0) == 0
    assert mean(D("10"), 3) == D("3.33")


# ---- callers and filters (pure) ------------------------------------------------------------


def _user(role: str, permissions: frozenset[str] = frozenset()) -> Principal:
    return Principal.for_user(7, role, permissions, {ACME: "admin"})


def test_only_super_and_admin_may_call() -> None:
    authorize_stats_caller(_user("super"))
    authorize_stats_caller(_user("admin"))  # even without institutions.edit (sees nothing)
    with pytest.raises(UsageGraphError) as excinfo:
        authorize_stats_caller(_user("user"))
    assert _code(excinfo) is ErrorCode.FORBIDDEN
    with pytest.raises(UsageGraphError) as excinfo:
        authorize_stats_caller(Principal.for_institution(ACME))
    assert _code(excinfo) is ErrorCode.FORBIDDEN
    with pytest.raises(UsageGraphError) as excinfo:
        authorize_stats_caller(Principal.anonymous("invalid token"))
    assert _code(excinfo) is ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize(
    "filters",
    [
        UserStatsFilters(accounts=frozenset({0})),
        UserStatsFilters(accounts=frozenset({2**63})),
        UserStatsFilters(accounts=frozenset(range(1, 1002))),
        UserStatsFilters(instances=frozenset({"ABCDEF"})),
        UserStatsFilters(instances=frozenset({"A" * 24})),  # ids are lowercase hex
        UserStatsFilters(instances=frozenset({"g" * 24})),
        UserStatsFilters(role="owner"),
    ],
)
def test_malformed_filters_are_invalid_requests(filters: UserStatsFilters) -> None:
    with pytest.raises(UsageGraphError) as excinfo:
        validate_filters(filters)
    assert _code(excinfo) is ErrorCode.INVALID_REQUEST


def test_wellformed_filters_pass() -> None:
    validate_filters(
        UserStatsFilters(
            accounts=frozenset({1, 2**63 - 1}),
            instances=frozenset({ACME, "personal"}),
            role="super",
            search="x",
        )
    )


# ---- rows from the database ----------------------------------------------------------------

# Super, range -7 day: window [05-14, 05-21). Excluded: bob BETA 05-13 23:59:59 (before),
# ada's forgotten 05-19 (no 05-19 row at all), everything before 05-14.
SUPER_WEEK_ROWS = [
    (at(5, 14, 0), BOB, ACME, 1, D("0.5")),
    (at(5, 15, 0), BOB, BETA, 3, D("2.5")),
    (at(5, 16, 0), ADA, None, 1, D("3")),
    (at(5, 17, 0), CY, ACME, 1, D("0.12345")),
    (at(5, 18, 0), DEAN, None, 1, D("1")),
    (at(5, 20, 0), ADA, ACME, 2, D("0.5")),  # failed usage counts: 2 messages
    (at(5, 20, 0), BOB, None, 1, D("0.25")),  # personal first ...
    (at(5, 20, 0), BOB, ACME, 1, D("0.5")),  # ... then institutions by id
    (at(5, 20, 0), BOB, BETA, 1, D("0.5")),
    (at(5, 20, 0), DAN, ACME, 2, D("1.5")),  # 1 + 0.5 on the same day; user 100 after 10
]


async def test_super_sees_every_row_in_order(engine: AsyncEngine) -> None:
    await seed_campus(engine)
    stats = await _stats(engine, SUPER, range_periods=-7)
    assert _rows(stats) == SUPER_WEEK_ROWS
    assert stats.truncated is False


async def test_rows_carry_names_lifetime_and_caps(engine: AsyncEngine) -> None:
    await seed_campus(engine)
    stats = await _stats(engine, SUPER, range_periods=-7)
    names = {(r.user_id, r.email, r.fname, r.lname) for r in stats.rows}
    assert names == {
        (ADA, "ada@acme.edu", "Ada", "Lovelace"),
        (BOB, "bob@beta.edu", "Bob", "Builder"),
        (CY, "cy@acme.edu", "Cy", "Young"),
        (DAN, "dan@acme.edu", "Dan", "Brown"),
        (DEAN, "dean@acme.edu", "Dean", "Smith"),
    }
    facts = [
        (
            r.user_id,
            r.institution_id,
            r.instance_name,
            r.ai_name,
            r.lifetime_used,
            r.cap_limit,
            r.cap_used_pct,
            r.at_cap,
        )
        for r in stats.rows
    ]
    assert facts == [
        # membership cap 8 beats the default 3; lifetime 0.5 + 0.5 = 1 -> 12.5 %
        (BOB, ACME, "Acme U", "Pria", D(1), D(8), D("12.5"), False),
        # BETA has no default cap: lifetime 4 + 2.5 + 0.5 = 7 (05-13 counts for lifetime)
        (BOB, BETA, "Beta College", None, D(7), None, None, False),
        (ADA, None, "Personal", None, D(3), None, None, False),
        # 100 x 0.12345 / 1 = 12.345 exactly -> 12.35 half-up
        (CY, ACME, "Acme U", "Pria", D("0.12345"), D(1), D("12.35"), False),
        (DEAN, None, "Personal", None, D(1), None, None, False),
        # lifetime 1 + 0.5 (forgotten, still costs) + 0.5 = 2 of the default 3 -> 66.67 %
        (ADA, ACME, "Acme U", "Pria", D(2), D(3), D("66.67"), False),
        (BOB, None, "Personal", None, D("0.25"), None, None, False),
        (BOB, ACME, "Acme U", "Pria", D(1), D(8), D("12.5"), False),
        (BOB, BETA, "Beta College", None, D(7), None, None, False),
        # 1.5 + 1 + 0.5 = 3 of 3: at cap
        (DAN, ACME, "Acme U", "Pria", D(3), D(3), D(100), True),
    ]


async def test_summary_covers_the_matching_set(engine: AsyncEngine) -> None:
    await seed_campus(engine)
    stats = await _stats(engine, SUPER, range_periods=-7)
    # credits 0.5 + 2.5 + 3 + 0.12345 + 1 + 0.5 + 0.25 + 0.5 + 0.5 + 1.5 = 10.37345
    # users {10, 9, 12, 2, 100} = 5 -> 2.07469 -> 2.07
    # pairs (10,A) (10,B) (9,p) (12,A) (2,p) (9,A) (10,p) (100,A) = 8 -> 1.29668125 -> 1.30
    assert stats.summary.mean_credits_per_user_account == D("2.07")
    assert stats.summary.mean_credits_per_user_institution == D("1.30")
    assert stats.summary.users_at_cap == 1  # dan


async def test_admin_sees_only_administered_institutions_and_no_personal_rows(
    engine: AsyncEngine,
) -> None:
    await seed_campus(engine)
    stats = await _stats(engine, DEAN, range_periods=-7)
    # No BETA rows, no personal rows (not even dean's own 05-18 one).
    assert _rows(stats) == [row for row in SUPER_WEEK_ROWS if row[2] == ACME]
    # credits 0.5 + 0.12345 + 0.5 + 0.5 + 1.5 = 3.12345 over 4 users and 4 pairs -> 0.78
    assert stats.summary.mean_credits_per_user_account == D("0.78")
    assert stats.summary.mean_credits_per_user_institution == D("0.78")


@pytest.mark.parametrize("instances", [frozenset({BETA}), frozenset({"personal"})])
async def test_admin_filters_never_widen_what_they_see(
    engine: AsyncEngine, instances: frozenset[str]
) -> None:
    await seed_campus(engine)
    stats = await _stats(
        engine, DEAN, range_periods=-7, filters=UserStatsFilters(instances=instances)
    )
    assert stats.rows == ()


async def test_admin_without_institutions_edit_gets_no_rows(engine: AsyncEngine) -> None:
    await seed_campus(engine)
    stats = await _stats(engine, CLERK, range_periods=-7)
    assert stats.rows == ()
    assert (
        stats.summary.mean_credits_per_user_account,
        stats.summary.mean_credits_per_user_institution,
        stats.summary.users_at_cap,
    ) == (0, 0, 0)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (UserStatsFilters(accounts=frozenset({ADA, DAN})), [2, 5, 9]),
        (UserStatsFilters(instances=frozenset({BETA})), [1, 8]),
        (UserStatsFilters(instances=frozenset({"personal"})), [2, 4, 6]),
        (UserStatsFilters(instances=frozenset({"personal", BETA})), [1, 2, 4, 6, 8]),
        (UserStatsFilters(role="admin"), [0, 1, 4, 6, 7, 8]),  # bob and dean
        (UserStatsFilters(role="super"), []),
        (UserStatsFilters(search="LOVE"), [2, 5]),  # ada's lname, any case
        (UserStatsFilters(search="acme.EDU"), [2, 3, 4, 5, 9]),  # ada, cy, dean, dan
        (UserStatsFilters(search="%"), []),  # a literal %, not a wildcard
        (UserStatsFilters(search="b_b"), []),  # a literal _
        (UserStatsFilters(accounts=frozenset({BOB}), instances=frozenset({ACME})), [0, 7]),
        (UserStatsFilters(role="admin", search="builder"), [0, 1, 6, 7, 8]),
    ],
)
async def test_filters_narrow_the_rows(
    engine: AsyncEngine, filters: UserStatsFilters, expected: list[int]
) -> None:
    """`expected` are indexes into SUPER_WEEK_ROWS."""
    await seed_campus(engine)
    stats = await _stats(engine, SUPER, range_periods=-7, filters=filters)
    assert _rows(stats) == [SUPER_WEEK_ROWS[i] for i in expected]


async def test_weeks_start_on_monday_and_count_only_the_window(engine: AsyncEngine) -> None:
    await seed_campus(engine)
    stats = await _stats(engine, SUPER, granularity=Granularity.WEEK, filters=None)
    assert stats.window.start == at(2, 26, 0)
    assert _rows(stats) == [
        # pat: Thu 02-26 00:00 is in the window, Wed 02-25 23:59:59 is not (same ISO week)
        (at(2, 23, 0), PAT, ACME, 1, D("2")),
        (at(3, 30, 0), ADA, ACME, 1, D("1")),  # Wed 04-01 -> Mon 03-30
        (at(5, 4, 0), DAN, ACME, 1, D("1.5")),  # Sun 05-10 -> Mon 05-04
        (at(5, 11, 0), ADA, None, 1, D("3")),  # Sat 05-16
        (at(5, 11, 0), BOB, ACME, 1, D("0.5")),  # Thu 05-14
        (at(5, 11, 0), BOB, BETA, 4, D("6.5")),  # Wed 05-13 4/1 + Fri 05-15 2.5/3
        (at(5, 11, 0), CY, ACME, 1, D("0.12345")),  # Sun 05-17
        (at(5, 18, 0), DEAN, None, 1, D("1")),
        (at(5, 18, 0), ADA, ACME, 2, D("0.5")),  # 05-19 forgotten left out
        (at(5, 18, 0), BOB, None, 1, D("0.25")),
        (at(5, 18, 0), BOB, ACME, 1, D("0.5")),
        (at(5, 18, 0), BOB, BETA, 1, D("0.5")),
        (at(5, 18, 0), DAN, ACME, 2, D("1.5")),
    ]
    # pat: lifetime 7 + 2 = 9 against the default 3 -> 300 %, at cap; dan at cap too.
    assert (stats.rows[0].lifetime_used, stats.rows[0].cap_used_pct) == (D(9), D(300))
    assert stats.summary.users_at_cap == 2


async def test_months_split_at_the_first(engine: AsyncEngine) -> None:
    await add_institutions(engine)
    await add_people(engine)
    await add_usage(
        engine,
        (
            (ADA, ACME, at(4, 30, 23, 59, 59), "1", 1, "success", False),
            (ADA, ACME, at(5, 1, 0, 0), "2", 1, "success", False),
            (ADA, ACME, at(5, 31, 23, 59, 59), "4", 1, "success", False),
        ),
    )
    # daterange starts mid-April: April's row starts 04-01, before the window.
    stats = await _stats(
        engine,
        SUPER,
        granularity=Granularity.MONTH,
        daterange=(at(4, 15, 6), at(6, 1, 0)),
    )
    assert _rows(stats) == [
        (at(4, 1, 0), ADA, ACME, 1, D("1")),
        (at(5, 1, 0), ADA, ACME, 2, D("6")),
    ]
    assert stats.window.source is WindowSource.DATERANGE


async def test_usage_outside_a_midday_daterange_is_left_out(engine: AsyncEngine) -> None:
    await add_institutions(engine)
    await add_people(engine)
    await add_usage(
        engine,
        (
            (ADA, ACME, at(5, 1, 5, 59), "1", 1, "success", False),
            (ADA, ACME, at(5, 1, 6, 0), "2", 1, "success", False),
            (ADA, ACME, at(5, 2, 6, 59), "4", 1, "success", False),
            (ADA, ACME, at(5, 2, 7, 0), "8", 1, "success", False),
        ),
    )
    stats = await _stats(engine, SUPER, daterange=(at(5, 1, 6), at(5, 2, 7)))
    assert _rows(stats) == [
        (at(5, 1, 0), ADA, ACME, 1, D("2")),
        (at(5, 2, 0), ADA, ACME, 1, D("4")),
    ]
    assert stats.rows[0].lifetime_used == D(15)  # 1 + 2 + 4 + 8: lifetime ignores the window


async def test_zero_usage_makes_no_row_but_free_messages_do(engine: AsyncEngine) -> None:
    await add_institutions(engine)
    await add_people(engine)
    await add_usage(
        engine,
        (
            (ADA, ACME, at(5, 19), "0", 0, "success", False),  # nothing at all
            (ADA, ACME, at(5, 20), "0", 3, "success", False),  # free, but 3 messages
        ),
    )
    stats = await _stats(engine, SUPER, range_periods=-7)
    assert _rows(stats) == [(at(5, 20, 0), ADA, ACME, 3, D(0))]


async def test_a_former_member_is_held_to_the_default_cap(engine: AsyncEngine) -> None:
    await add_institutions(engine)
    await add_people(engine)  # SUPER is no member of ACME
    await add_usage(engine, ((SUPER, ACME, at(5, 20), "1.5", 1, "success", False),))
    stats = await _stats(engine, SUPER, range_periods=-1)
    row = stats.rows[0]
    assert (row.cap_limit, row.cap_used_pct, row.at_cap) == (D(3), D(50), False)


# ---- the row limit -------------------------------------------------------------------------

BULK_WINDOW = (datetime(2019, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


async def test_exactly_the_row_limit_is_not_truncated(engine: AsyncEngine) -> None:
    await seed_bulk(engine, extra_rows=0)  # 2 users x 2500 days = 5000 rows
    stats = await _stats(engine, SUPER, daterange=BULK_WINDOW)
    assert len(stats.rows) == ROW_LIMIT == 5000
    assert stats.truncated is False


async def test_one_row_past_the_limit_truncates_but_the_summary_counts_it(
    engine: AsyncEngine,
) -> None:
    await seed_bulk(engine, extra_rows=1)  # + cy on the last day = 5001 rows
    stats = await _stats(engine, SUPER, daterange=BULK_WINDOW)
    assert stats.truncated is True
    assert len(stats.rows) == 5000
    first, last = stats.rows[0], stats.rows[-1]
    assert (first.period_start.date(), first.user_id) == (BULK_FIRST_DAY, ADA)
    # The last day's rows are ada, bob, cy: cy's is the one cut off.
    assert (last.period_start.date(), last.user_id) == (BULK_LAST_DAY, BOB)
    assert CY not in {row.user_id for row in stats.rows}
    # 5001 credits over 3 users and 3 pairs = 1667; all three are at cap
    # (ada 2500 >= 3, bob 2500 >= 8, cy 1 >= 1), cy only in the cut-off row.
    assert stats.summary.mean_credits_per_user_account == D(1667)
    assert stats.summary.mean_credits_per_user_institution == D(1667)
    assert stats.summary.users_at_cap == 3


# ---- cost ----------------------------------------------------------------------------------


async def _statements_of_one_run(engine: AsyncEngine, **kwargs: object) -> int:
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    async with session_factory(engine)() as session:
        principal = await load_user_principal(session, SUPER)
        assert principal is not None
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            await user_stats(request_context(engine, principal), **kwargs)  # type: ignore[arg-type]
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)
    return len(statements)


async def test_lookups_are_batched_not_per_row(engine: AsyncEngine) -> None:
    await seed_bulk(engine, extra_rows=1)
    # sums per (user, instance), institutions, lifetime credits, membership caps, the first
    # 5000 rows, their users: 6 statements for 5001 matching rows, as for 10.
    assert await _statements_of_one_run(engine, daterange=BULK_WINDOW) == 6


async def test_nothing_matching_costs_one_statement(engine: AsyncEngine) -> None:
    await seed_campus(engine)
    assert (
        await _statements_of_one_run(
            engine, range_periods=-7, filters=UserStatsFilters(role="super")
        )
        == 1
    )
