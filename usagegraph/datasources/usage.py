"""Usage reads: every query starts from what the caller may read, then narrows.

`readable_usage` is the only place that turns a Principal into a WHERE clause over usage
events, so a resolver that forgets a check still cannot return another tenant's rows.
Aggregation happens in SQL per time slot; resolvers fold slots into calendar buckets in
Python, which keeps any time zone exact (all zone offsets are multiples of 15 minutes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    cast,
    extract,
    false,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.auth.access import administered_institutions, is_super
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.db.models import UsageEvent

DAY_SLOT_SECONDS = 86_400
# The finest offset step of any time zone: slots this size never straddle a local boundary.
ZONE_SAFE_SLOT_SECONDS = 900


def readable_usage(principal: Principal) -> ColumnElement[bool]:
    """Usage the caller may read: their own, plus all usage of institutions they administer.

    Super reads everything; an institution's API key reads that institution's usage.
    """
    if is_super(principal):
        return true()
    if principal.kind is CallerKind.INSTITUTION and principal.institution_id:
        return UsageEvent.institution_id == principal.institution_id
    if principal.kind is not CallerKind.USER or principal.user_id is None:
        return false()
    administered = administered_institutions(principal)
    own = UsageEvent.user_id == principal.user_id
    return or_(own, UsageEvent.institution_id.in_(administered)) if administered else own


def _slot_number(dialect: str, seconds: int) -> ColumnElement[int]:
    """Whole `seconds`-long slots since the Unix epoch, computed by the database."""
    if dialect == "postgresql":
        epoch = extract("epoch", UsageEvent.occurred_at)
        return cast(func.floor(epoch.op("/")(seconds)), BigInteger)
    epoch_text = func.strftime("%s", UsageEvent.occurred_at)
    return cast(epoch_text, Integer).op("/")(seconds)  # SQLite: integer division floors


@dataclass(frozen=True, slots=True)
class UsageSlot:
    """Usage of one user in one instance during one slot (optionally per endpoint)."""

    slot_start: datetime
    user_id: int
    institution_id: str | None
    credits: Decimal
    messages: int
    events: int
    failed_events: int
    endpoint: str | None = None


async def usage_by_slot(
    session: AsyncSession,
    principal: Principal,
    *,
    start: datetime,
    end: datetime,
    slot_seconds: int,
    filters: Sequence[ColumnElement[bool]] = (),
    include_forgotten: bool,
    by_endpoint: bool = False,
) -> list[UsageSlot]:
    """Readable usage in [start, end), summed per slot, user and instance."""
    slot = _slot_number(session.bind.dialect.name, slot_seconds).label("slot")
    group = [slot, UsageEvent.user_id, UsageEvent.institution_id]
    if by_endpoint:
        group.append(UsageEvent.endpoint)
    statement = (
        select(
            *group,
            func.sum(UsageEvent.credits).label("credits"),
            func.sum(UsageEvent.messages).label("messages"),
            func.count().label("events"),
            func.sum(cast(UsageEvent.status == "failed", Integer)).label("failed"),
        )
        .where(
            readable_usage(principal),
            UsageEvent.occurred_at >= start,
            UsageEvent.occurred_at < end,
            *filters,
        )
        .group_by(*group)
    )
    if not include_forgotten:
        statement = statement.where(UsageEvent.forgotten.is_(False))
    rows = await session.execute(statement)
    return [
        UsageSlot(
            slot_start=datetime.fromtimestamp(row.slot * slot_seconds, UTC),
            user_id=row.user_id,
            institution_id=row.institution_id,
            credits=row.credits if row.credits is not None else Decimal(0),
            messages=int(row.messages or 0),
            events=int(row.events),
            failed_events=int(row.failed or 0),
            endpoint=row.endpoint if by_endpoint else None,
        )
        for row in rows
    ]


async def lifetime_credits(
    session: AsyncSession,
    principal: Principal,
    filters: Sequence[ColumnElement[bool]] = (),
) -> dict[tuple[int, str | None], Decimal]:
    """All-time credits per (user, instance), forgotten usage included (it still costs)."""
    statement = (
        select(
            UsageEvent.user_id,
            UsageEvent.institution_id,
            func.sum(UsageEvent.credits).label("credits"),
        )
        .where(readable_usage(principal), *filters)
        .group_by(UsageEvent.user_id, UsageEvent.institution_id)
    )
    rows = await session.execute(statement)
    return {(row.user_id, row.institution_id): row.credits for row in rows}
