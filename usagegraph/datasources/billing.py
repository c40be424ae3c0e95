"""Billing reads: an institution's billing facts and its messages per calendar month.

Every query starts from what the caller may read (`readable_billing` over institutions,
`readable_usage` over usage events), then narrows to the institutions asked, so a resolver
that forgets a check still cannot return another tenant's months. Each read serves a loader
batch (every institution of a query's list in one statement) and is one indexed query whose
cost follows the requested page of each institution, never its whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, case, false, func, literal_column, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.auth.access import is_institution_admin, is_super
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.datasources.usage import readable_usage
from usagegraph.db.models import Institution, UsageEvent, UsageRollupDay


def readable_billing(principal: Principal) -> ColumnElement[bool]:
    """Institutions whose billing the caller may read.

    Super reads all; an API key reads its own institution; a user reads the institutions
    they administer (billing is an administrator's view, not a member's).
    """
    if is_super(principal):
        return true()
    if principal.kind is CallerKind.INSTITUTION and principal.institution_id:
        return Institution.id == principal.institution_id
    if principal.kind is not CallerKind.USER:
        return false()
    administered = sorted(i for i in principal.memberships if is_institution_admin(principal, i))
    return Institution.id.in_(administered) if administered else false()


@dataclass(frozen=True, slots=True)
class BillingFacts:
    """What the billing months of one institution are derived from."""

    created_at: datetime
    plan_limit: int | None
    # The earliest usage event (forgotten and failed included), None without any usage.
    first_usage_at: datetime | None


async def billing_facts_of(
    session: AsyncSession, principal: Principal, institution_ids: Sequence[str]
) -> dict[str, BillingFacts]:
    """The creation, plan limit and first usage of each readable institution (a loader batch:
    one statement for any number of institutions); unreadable or unknown ones are left out.

    The first usage is a correlated MIN over the (institution_id, occurred_at) index, which
    both databases answer from the index's first entry of each institution.
    """
    first_usage = (
        select(func.min(UsageEvent.occurred_at))
        .where(UsageEvent.institution_id == Institution.id, readable_usage(principal))
        .scalar_subquery()
    )
    rows = await session.execute(
        select(
            Institution.id,
            Institution.created_at,
            Institution.plan_limit,
            first_usage.label("first"),
        )
        .where(readable_billing(principal))
        .where(Institution.id.in_(institution_ids))
    )
    return {
        row.id: BillingFacts(
            created_at=row.created_at, plan_limit=row.plan_limit, first_usage_at=row.first
        )
        for row in rows
    }


async def messages_by_month_of(
    session: AsyncSession,
    principal: Principal,
    institution_ids: Sequence[str],
    boundaries: Sequence[datetime],
) -> dict[str, list[int]]:
    """Messages of each institution in each slice [boundaries[i], boundaries[i + 1]), in order
    (a loader batch: the institutions whose pages cover the same months, in one statement).

    `boundaries` are ascending (n + 1 instants for n months). Forgotten and failed usage
    count: a billing period is money. One range scan per institution over the page's months
    only (the (institution_id, slot_start) index); each day is given its slice by a CASE on
    the slice ends. Read from the UTC day rollups: month boundaries are UTC midnights, so
    whole days tile every slice exactly.
    """
    if len(boundaries) < 2:
        return {institution_id: [] for institution_id in institution_ids}
    ends = [int(end.timestamp()) for end in boundaries[1:]]
    day = UsageRollupDay
    slice_index = case(*((day.slot_start < end, index) for index, end in enumerate(ends))).label(
        "slice"
    )
    rows = await session.execute(
        select(day.institution_id, slice_index, func.sum(day.messages).label("messages"))
        .where(
            readable_usage(principal, day),
            day.institution_id.in_(institution_ids),
            day.slot_start >= int(boundaries[0].timestamp()),
            day.slot_start < ends[-1],
        )
        # By the output name: the CASE's parameters are then bound once, on any driver.
        .group_by(day.institution_id, literal_column(slice_index.name))
    )
    counts = {institution_id: [0] * len(ends) for institution_id in institution_ids}
    for row in rows:
        counts[row.institution_id][int(row.slice)] = int(row.messages or 0)
    return counts
