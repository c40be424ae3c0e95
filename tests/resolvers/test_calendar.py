"""Calendar periods: aligned to midnight, Monday, the 1st and 1 January, DST-correct."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from usagegraph.resolvers.calendar import (
    Granularity,
    PeriodLookup,
    period_start,
    periods_covering,
    shift_period,
)

MOMENT = datetime(2026, 5, 13, 15, 42, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("granularity", "expected"),
    [
        (Granularity.DAY, datetime(2026, 5, 13, tzinfo=UTC)),
        (Granularity.WEEK, datetime(2026, 5, 11, tzinfo=UTC)),  # Monday
        (Granularity.MONTH, datetime(2026, 5, 1, tzinfo=UTC)),
        (Granularity.YEAR, datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_period_start_aligns_in_utc(granularity: Granularity, expected: datetime) -> None:
    assert period_start(MOMENT, granularity) == expected


def test_shift_period_crosses_year_ends_by_months() -> None:
    start = datetime(2026, 2, 1, tzinfo=UTC)
    assert shift_period(start, Granularity.MONTH, -2) == datetime(2025, 12, 1, tzinfo=UTC)
    assert shift_period(start, Granularity.MONTH, 11) == datetime(2027, 1, 1, tzinfo=UTC)


def test_periods_covering_includes_the_partial_first_period() -> None:
    periods = periods_covering(
        datetime(2026, 5, 13, 12, tzinfo=UTC), datetime(2026, 5, 26, tzinfo=UTC), Granularity.WEEK
    )
    assert [p.start.day for p in periods] == [11, 18, 25]
    assert periods[-1].end == datetime(2026, 6, 1, tzinfo=UTC)


def test_days_across_dst_changes_last_23_and_25_hours() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    spring = periods_covering(
        datetime(2026, 3, 28, 23, tzinfo=UTC),
        datetime(2026, 3, 30, tzinfo=UTC),
        Granularity.DAY,
        berlin,
    )
    autumn = periods_covering(
        datetime(2026, 10, 24, 22, tzinfo=UTC),
        datetime(2026, 10, 26, tzinfo=UTC),
        Granularity.DAY,
        berlin,
    )
    assert spring[0].end - spring[0].start == timedelta(hours=23)  # 29 March 2026
    assert spring[0].start == datetime(2026, 3, 28, 23, tzinfo=UTC)
    assert autumn[0].end - autumn[0].start == timedelta(hours=25)  # 25 October 2026


def test_lookup_finds_the_holding_period_and_nothing_outside() -> None:
    periods = periods_covering(MOMENT, MOMENT + timedelta(days=3), Granularity.DAY)
    lookup = PeriodLookup(periods)
    assert lookup.index(datetime(2026, 5, 14, 23, 59, tzinfo=UTC)) == 1
    assert lookup.index(datetime(2026, 5, 13, tzinfo=UTC)) == 0
    assert lookup.index(datetime(2026, 5, 12, 23, 59, tzinfo=UTC)) is None
    assert lookup.index(periods[-1].end) is None
