"""Usage history in the graph: the same resolver and cache as GET /api/user/usage-history,
plus `timeZone`, our addition: buckets aligned in any IANA zone, DST-correct."""

from __future__ import annotations

from typing import Annotated

import strawberry

from usagegraph.resolvers import usage_history as history
from usagegraph.schema.context import Info
from usagegraph.schema.shape_types import graph_type_of

UsageInterval = strawberry.enum(
    history.Interval, description="Bucket size: calendar days, ISO weeks or months."
)
UsageScope = strawberry.enum(
    history.Scope,
    description="`own`: the caller's usage; `all`: every member's (institution admins only).",
)


UsageBucket = graph_type_of(
    history.UsageBucket, name="UsageBucket", description="Usage in one calendar period."
)
UsageTotals = graph_type_of(
    history.UsageTotals, name="UsageTotals", description="Sums over the whole window."
)
UsageHistory = graph_type_of(
    history.UsageHistory,
    name="UsageHistory",
    description="Bucketed usage of an instance (personal or an institution).",
)


async def resolve_usage_history(
    info: Info,
    instance_id: str,
    window: int | None,
    interval: history.Interval | None,
    scope: history.Scope | None,
    time_zone: str,
    reader_id: int | None = None,
) -> UsageHistory:
    return await history.usage_history_for(
        info.context,
        instance_id=instance_id,
        window=window,
        interval=interval.value if interval else None,
        scope=scope.value if scope else None,
        time_zone=time_zone,
        reader_id=reader_id,
    )


WindowArgument = Annotated[
    int | None,
    strawberry.argument(description="Days: 7, 14, 30, 90 or 180; anything else means 30."),
]
IntervalArgument = Annotated[
    history.Interval | None,
    strawberry.argument(description="Default: daily up to 30 days, weekly beyond."),
]
ScopeArgument = Annotated[
    history.Scope | None,
    strawberry.argument(description="Default own; all is honoured for institution admins."),
]
TimeZoneArgument = Annotated[
    str, strawberry.argument(description="IANA zone to align days, weeks and months in.")
]
