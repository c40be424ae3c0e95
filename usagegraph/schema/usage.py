"""Usage history in the graph: the same resolver and cache as GET /api/user/usage-history,
plus `timeZone`, our addition: buckets aligned in any IANA zone, DST-correct."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import strawberry

from usagegraph.errors import invalid
from usagegraph.resolvers import usage_history as history
from usagegraph.schema.context import Info
from usagegraph.schema.fields import fields_of

UsageInterval = strawberry.enum(
    history.Interval, description="Bucket size: calendar days, ISO weeks or months."
)
UsageScope = strawberry.enum(
    history.Scope,
    description="`own`: the caller's usage; `all`: every member's (institution admins only).",
)


@strawberry.type(description="Usage in one calendar period.")
class UsageBucket:
    start: datetime = strawberry.field(
        description="The aligned period start (may precede the window; only usage inside counts)."
    )
    end: datetime = strawberry.field(description="The period end (exclusive).")
    credits: Decimal = strawberry.field(description="Credits spent.")
    messages: int = strawberry.field(description="Messages sent.")
    users: int = strawberry.field(description="Distinct users.")


@strawberry.type(description="Sums over the whole window.")
class UsageTotals:
    credits: Decimal = strawberry.field(description="Credits spent.")
    messages: int = strawberry.field(description="Messages sent.")
    users: int = strawberry.field(description="Distinct users over the window.")


@strawberry.type(description="Bucketed usage of an instance (personal or an institution).")
class UsageHistory:
    instance_id: str = strawberry.field(description="`personal` or the institution id.")
    window: int = strawberry.field(description="Days of history: 7, 14, 30, 90 or 180.")
    interval: UsageInterval = strawberry.field(description="The effective bucket size.")
    scope: UsageScope = strawberry.field(description="The effective scope.")
    currency: str = strawberry.field(description="The instance's currency.")
    time_zone: str = strawberry.field(description="The IANA zone buckets are aligned in.")
    start: datetime = strawberry.field(description="Window start (inclusive).")
    end: datetime = strawberry.field(description="Window end (exclusive).")
    buckets: list[UsageBucket] = strawberry.field(description="Every bucket, ascending.")
    totals: UsageTotals = strawberry.field(description="Sums over the window.")

    @classmethod
    def from_result(cls, result: history.UsageHistory) -> UsageHistory:
        return cls(
            instance_id=result.instance_id,
            window=result.window,
            interval=result.interval,
            scope=result.scope,
            currency=result.currency,
            time_zone=result.time_zone,
            start=result.start,
            end=result.end,
            buckets=[UsageBucket(**fields_of(b)) for b in result.buckets],
            totals=UsageTotals(**fields_of(result.totals)),
        )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise invalid(f"timeZone {name!r} is not an IANA time zone") from exc


async def resolve_usage_history(
    info: Info,
    instance_id: str,
    window: int | None,
    interval: history.Interval | None,
    scope: history.Scope | None,
    time_zone: str,
) -> UsageHistory:
    context = info.context
    async with context.sessions() as session:
        result = await history.usage_history(
            session,
            context.principal,
            context.now,
            instance_id=instance_id,
            window=window,
            interval=interval.value if interval else None,
            scope=scope.value if scope else None,
            time_zone=_zone(time_zone),
            cache=context.cache,
        )
    return UsageHistory.from_result(result)


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
