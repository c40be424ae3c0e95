"""Billing reads: an institution's billing facts and its messages per calendar month.

Every query starts from what the caller may read (`readable_billing` over institutions,
`readable_usage` over usage events), then narrows to one institution, so a resolver that
forgets a check still cannot return another tenant's months. Each read is one indexed
query whose cost follows the requested page, never the institution's whole history.
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


async def billing_facts(
    session: AsyncSession, principal: Principal, institution_id: str
) -> BillingFacts | None:
    """The institution's creation, plan limit and first usage; None when not readable.

    One query: the first usage is a correlated MIN over the (institution_id, occurred_at)
    index, which both databases answer from the index's first entry.
    """
    first_usage = (
        select(func.min(UsageEvent.occurred_at))
        .where(UsageEvent.institution_id == Institution.id, readable_usage(principal))
        .scalar_subquery()
    )
    row = (
        await session.execute(
            select(Institution.created_at, Institution.plan_limit, first_usage.label("first"))
            .where(readable_billing(principal))
            .where(Institution.id == institution_id)
        )
    ).one_or_none()
    if row is None:
        return None
    return BillingFacts(
        created_at=row.created_at, plan_limit=row.plan_limit, first_usage_at=row.first
    )


async def messages_by_month(
    session: AsyncSession,
    principal: Principal,
    institution_id: str,
    boundaries: Sequence[datetime],
) -> list[int]:
    """Messages of the institution in each slice [boundaries[i], boundaries[i + 1]), in order.

    `boundaries` are ascending (n + 1 instants for n months). Forgotten and failed usage
    count: a billing period is money. One range scan over the page's months only; each day
    is given its slice by a CASE on the slice ends. Read from the UTC day rollups: month
    boundaries are UTC midnights, so whole days tile every slice exactly.
    """
    if len(boundaries) < 2:
        return []
    ends = [int(end.timestamp()) for end in boundaries[1:]]
    day = UsageRollupDay
    slice_index = case(*((day.slot_start < end, index) for index, end in enumerate(ends))).label(
        "slice"
    )
    rows = await session.execute(
        select(slice_index, func.sum(day.messages).label("messages"))
        .where(
            readable_usage(principal, day),
            day.institution_id == institution_id,
            day.slot_start >= int(boundaries[0].timestamp()),
            day.slot_start < ends[-1],
        )
        # By the output name: the CASE's parameters are then bound once, on any driver.
        .group_by(literal_column(slice_index.name))
    )
    counts = [0] * len(ends)
    for row in rows:
        counts[int(row.slice)] = int(row.messages or 0)
    return counts
