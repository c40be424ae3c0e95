"""Monthly billing periods in the graph: the resolver behind GET /v1/billing/usage-history."""

from __future__ import annotations

from datetime import date

import strawberry

from usagegraph.resolvers import billing_periods
from usagegraph.schema.context import Info
from usagegraph.schema.fields import fields_of


@strawberry.type(description="One calendar month of an institution's usage against its plan.")
class BillingPeriod:
    period_start: date = strawberry.field(description="The month's first day.")
    period_end: date = strawberry.field(description="The month's last day.")
    message_count: int = strawberry.field(
        description="Messages that month (forgotten and failed included)."
    )
    plan_limit: int | None = strawberry.field(description="Messages included; null: unlimited.")
    overage_count: int = strawberry.field(description="Messages beyond the plan limit.")


@strawberry.type(description="A page of billing periods, newest first.")
class BillingPeriodPage:
    periods: list[BillingPeriod] = strawberry.field(description="The months of this page.")
    total: int = strawberry.field(description="Months from the current back to the first.")
    limit: int = strawberry.field(description="The page size used.")
    offset: int = strawberry.field(description="Months skipped.")
    has_more: bool = strawberry.field(description="Whether older months follow.")


async def resolve_billing_periods(
    info: Info, institution_id: str, limit: int | None, offset: int | None
) -> BillingPeriodPage:
    context = info.context
    async with context.sessions() as session:
        page = await billing_periods.billing_periods(
            session, context.principal, context.now, institution_id, limit=limit, offset=offset
        )
    return BillingPeriodPage(
        periods=[BillingPeriod(**fields_of(period)) for period in page.periods],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
        has_more=page.has_more,
    )
