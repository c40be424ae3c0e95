"""Calendar periods: days, ISO weeks, months and years, aligned in a time zone.

Every API buckets time the same way: a day starts at local midnight, a week on Monday, a
month on its first day, a year on 1 January. Boundaries are computed on local dates and
converted back to UTC instants, so a day across a DST change lasts 23 or 25 hours.
All returned datetimes are aware and in UTC.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

UTC_ZONE = ZoneInfo("UTC")


class Granularity(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open calendar period [start, end)."""

    start: datetime
    end: datetime


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _first_day(day: date, granularity: Granularity) -> date:
    if granularity is Granularity.WEEK:
        return day - timedelta(days=day.weekday())
    if granularity is Granularity.MONTH:
        return day.replace(day=1)
    if granularity is Granularity.YEAR:
        return day.replace(month=1, day=1)
    return day


def _add(day: date, granularity: Granularity, count: int) -> date:
    """Move a period's first day by `count` periods."""
    if granularity is Granularity.DAY:
        return day + timedelta(days=count)
    if granularity is Granularity.WEEK:
        return day + timedelta(weeks=count)
    months = day.month - 1 + count * (12 if granularity is Granularity.YEAR else 1)
    return day.replace(year=day.year + months // 12, month=months % 12 + 1, day=1)


def local_date(moment: datetime, zone: ZoneInfo = UTC_ZONE) -> date:
    return moment.astimezone(zone).date()


def period_start(moment: datetime, granularity: Granularity, zone: ZoneInfo = UTC_ZONE) -> datetime:
    """The start of the period containing `moment`."""
    return _local_midnight(_first_day(local_date(moment, zone), granularity), zone)


def shift_period(
    start: datetime, granularity: Granularity, count: int, zone: ZoneInfo = UTC_ZONE
) -> datetime:
    """The start of the period `count` periods after (or, negative, before) `start`'s."""
    first = _first_day(local_date(start, zone), granularity)
    return _local_midnight(_add(first, granularity, count), zone)


def periods_covering(
    start: datetime, end: datetime, granularity: Granularity, zone: ZoneInfo = UTC_ZONE
) -> list[Period]:
    """Every period overlapping [start, end), ascending; the first may begin before `start`."""
    periods: list[Period] = []
    current = period_start(start, granularity, zone)
    while current < end:
        following = shift_period(current, granularity, 1, zone)
        periods.append(Period(current, following))
        current = following
    return periods


class PeriodLookup:
    """Finds which of ascending, contiguous periods holds a moment, in O(log n)."""

    def __init__(self, periods: list[Period]) -> None:
        self.periods = periods
        self._starts = [period.start for period in periods]

    def index(self, moment: datetime) -> int | None:
        """The index of the period holding `moment`, or None when it lies outside them all."""
        if not self.periods or moment < self._starts[0] or moment >= self.periods[-1].end:
            return None
        return bisect.bisect_right(self._starts, moment) - 1
