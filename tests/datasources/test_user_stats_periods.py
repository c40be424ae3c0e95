"""The user-stats extract folds UTC days into weeks and months in SQL: each database must
find the same period start as `resolvers.calendar`, the rule, for every day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import BigInteger, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from usagegraph.datasources.user_stats import period_start_of
from usagegraph.resolvers.calendar import Granularity, period_start

# Around the Unix epoch (negative days: `%` keeps the dividend's sign), a leap February,
# a year's turn mid-week, and days of the demo data's years.
_SPANS = (
    (datetime(1969, 11, 20, tzinfo=UTC), 90),
    (datetime(2024, 1, 20, tzinfo=UTC), 60),
    (datetime(2026, 12, 1, tzinfo=UTC), 70),
)
_DAYS = [start + timedelta(days=n) for start, length in _SPANS for n in range(length)]


@pytest.mark.parametrize("granularity", [Granularity.WEEK, Granularity.MONTH])
async def test_sql_period_starts_follow_the_calendar(
    engine: AsyncEngine, granularity: Granularity
) -> None:
    dialect = engine.dialect.name
    days = [int(day.timestamp()) for day in _DAYS]
    columns = [
        period_start_of(dialect, granularity.value, literal(day, BigInteger)) for day in days
    ]
    async with engine.connect() as connection:
        found = list((await connection.execute(select(*columns))).one())
    expected = [int(period_start(day, granularity).timestamp()) for day in _DAYS]
    assert found == expected
