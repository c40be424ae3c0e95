"""The admin usage extract in the graph: the resolver behind POST .../charts/user-stats."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import strawberry

from usagegraph.resolvers import user_stats
from usagegraph.resolvers.calendar import Granularity
from usagegraph.schema.context import Info
from usagegraph.schema.shape_types import graph_type_of


@strawberry.enum(description="The period of each row (UTC days, ISO weeks, months).")
class StatsGranularity(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


WindowSource = strawberry.enum(user_stats.WindowSource, description="How the window was derived.")


@strawberry.input(description="An explicit window: start inclusive, end exclusive.")
class DateRangeInput:
    start: datetime = strawberry.field(description="Inclusive start.")
    end: datetime = strawberry.field(description="Exclusive end.")


@strawberry.input(description="What the extract covers; every filter only narrows.")
class UserStatsInput:
    granularity: StatsGranularity = strawberry.field(
        default=StatsGranularity.DAY, description="The period of each row."
    )
    range: int | None = strawberry.field(
        default=None, description="Negative count of periods to look back, current included."
    )
    daterange: DateRangeInput | None = strawberry.field(
        default=None, description="Explicit window; wins over range."
    )
    accounts: list[int] | None = strawberry.field(default=None, description="Only these users.")
    institutions: list[str] | None = strawberry.field(
        default=None, description="Only these instances (institution ids or `personal`)."
    )
    role: str | None = strawberry.field(
        default=None, description="Only users of this role: user, admin or super."
    )
    usersearch: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of email, fname or lname."
    )


UserStatsRow = graph_type_of(
    user_stats.UserStatsRow,
    name="UserStatsRow",
    description="Usage of one user in one instance during one period.",
)
UserStatsSummary = graph_type_of(
    user_stats.UserStatsSummary,
    name="UserStatsSummary",
    description="Statistics over every matching row (not only those returned).",
)


@strawberry.type(description="The per-user usage extract for admins.")
class UserStatsReport:
    granularity: StatsGranularity = strawberry.field(description="The period of each row.")
    truncated: bool = strawberry.field(description="More than 5000 rows matched.")
    window_source: WindowSource = strawberry.field(description="daterange, range or default.")
    default_days_applied: int | None = strawberry.field(
        description="N of the default window of N days; null otherwise."
    )
    window_start: datetime = strawberry.field(description="Inclusive window start.")
    window_end: datetime = strawberry.field(description="Exclusive window end.")
    rows: list[UserStatsRow] = strawberry.field(description="At most 5000 rows, ordered.")
    summary: UserStatsSummary = strawberry.field(description="Over every matching row.")


def _filters(data: UserStatsInput) -> user_stats.UserStatsFilters:
    return user_stats.UserStatsFilters(
        accounts=frozenset(data.accounts) if data.accounts is not None else None,
        instances=frozenset(data.institutions) if data.institutions is not None else None,
        role=data.role,
        search=data.usersearch,
    )


async def resolve_user_stats(info: Info, data: UserStatsInput) -> UserStatsReport:
    context = info.context
    daterange = (data.daterange.start, data.daterange.end) if data.daterange else None
    report = await user_stats.user_stats(
        context,
        granularity=Granularity(data.granularity.value),
        range_periods=data.range,
        daterange=daterange,
        filters=_filters(data),
    )
    window = report.window
    return UserStatsReport(
        granularity=StatsGranularity(report.granularity.value),
        truncated=report.truncated,
        window_source=window.source,
        default_days_applied=window.default_days,
        window_start=window.start,
        window_end=window.end,
        rows=list(report.rows),
        summary=report.summary,
    )
