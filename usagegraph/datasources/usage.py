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
    and_,
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
from usagegraph.db.models import PERSONAL_INSTANCE, UsageEvent

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


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events of a user to list: an optional instance and [start, end) window."""

    instance: str | None = None  # `personal`, an institution id, or None for every instance
    start: datetime | None = None
    end: datetime | None = None

    def conditions(self, principal: Principal) -> list[ColumnElement[bool]]:
        conditions = [readable_usage(principal)]
        if self.instance == PERSONAL_INSTANCE:
            conditions.append(UsageEvent.institution_id.is_(None))
        elif self.instance is not None:
            conditions.append(UsageEvent.institution_id == self.instance)
        if self.start is not None:
            conditions.append(UsageEvent.occurred_at >= self.start)
        if self.end is not None:
            conditions.append(UsageEvent.occurred_at < self.end)
        return conditions


async def usage_event_pages(
    session: AsyncSession,
    principal: Principal,
    user_ids: Sequence[int],
    event_filter: EventFilter,
    *,
    first: int,
    before: tuple[datetime, int] | None,
) -> dict[int, list[UsageEvent]]:
    """Up to `first + 1` newest readable events of each user (older than `before`)."""
    conditions = [*event_filter.conditions(principal), UsageEvent.user_id.in_(user_ids)]
    if before is not None:
        occurred_at, event_id = before
        conditions.append(
            or_(
                UsageEvent.occurred_at < occurred_at,
                and_(UsageEvent.occurred_at == occurred_at, UsageEvent.id < event_id),
            )
        )
    rank = (
        func.row_number()
        .over(
            partition_by=UsageEvent.user_id,
            order_by=(UsageEvent.occurred_at.desc(), UsageEvent.id.desc()),
        )
        .label("rank")
    )
    ranked = select(UsageEvent.id, rank).where(*conditions).subquery()
    statement = (
        select(UsageEvent)
        .join(ranked, UsageEvent.id == ranked.c.id)
        .where(ranked.c.rank <= first + 1)
        .order_by(UsageEvent.user_id, UsageEvent.occurred_at.desc(), UsageEvent.id.desc())
    )
    pages: dict[int, list[UsageEvent]] = {user_id: [] for user_id in user_ids}
    for event in await session.scalars(statement):
        pages[event.user_id].append(event)
    return pages


async def usage_event_counts(
    session: AsyncSession,
    principal: Principal,
    user_ids: Sequence[int],
    event_filter: EventFilter,
) -> dict[int, int]:
    rows = await session.execute(
        select(UsageEvent.user_id, func.count())
        .where(*event_filter.conditions(principal), UsageEvent.user_id.in_(user_ids))
        .group_by(UsageEvent.user_id)
    )
    counts = dict.fromkeys(user_ids, 0)
    counts.update({user_id: count for user_id, count in rows})
    return counts


async def usage_events_by_id(
    session: AsyncSession, principal: Principal, ids: Sequence[int]
) -> dict[int, UsageEvent]:
    rows = await session.scalars(
        select(UsageEvent).where(readable_usage(principal), UsageEvent.id.in_(ids))
    )
    return {event.id: event for event in rows}
