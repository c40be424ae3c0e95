"""Monthly billing periods in the graph: the resolver behind GET /v1/billing/usage-history."""

from __future__ import annotations

import strawberry

from usagegraph.resolvers import billing
from usagegraph.schema.context import Info
from usagegraph.schema.shape_types import graph_type_of, shape_fields_of

BillingPeriod = graph_type_of(
    billing.BillingPeriod,
    name="BillingPeriod",
    description="One calendar month of an institution's usage against its plan.",
)


def _has_more(root: billing.BillingPeriodPage) -> bool:
    return root.has_more


@strawberry.type(name="BillingPeriodPage", description="A page of billing periods, newest first.")
class BillingPeriodPage(shape_fields_of(billing.BillingPeriodPage)):
    has_more: bool = strawberry.field(
        description="Whether older months follow.", resolver=_has_more
    )


async def resolve_billing_periods(
    info: Info, institution_id: str, limit: int | None, offset: int | None
) -> BillingPeriodPage:
    return await billing.billing_periods(info.context, institution_id, limit=limit, offset=offset)
