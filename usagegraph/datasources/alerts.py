"""SQL of alert rules: the rules that watch a write, their per-subject state, the alerts
raised, and the scoped lists the graph reads.

The rule rows are the lock of period-usage detection: writers that may cross an
institution's line lock its rules (in id order) after writing their usage and before reading
the total, so each sees every total committed before it and exactly one sees the crossing.
The state row then records that the rule fired, so a crossing fires once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.db.models import Alert, AlertRule, AlertState, UsageRollupDay


async def institution_rules(
    session: AsyncSession, institution_ids: Collection[str], kinds: Collection[str], *, lock: bool
) -> list[AlertRule]:
    """Enabled rules of these kinds of these institutions, in id order (locked if asked)."""
    if not institution_ids:
        return []
    statement = (
        select(AlertRule)
        .where(
            AlertRule.institution_id.in_(sorted(institution_ids)),
            AlertRule.kind.in_(sorted(kinds)),
            AlertRule.enabled.is_(True),
        )
        .order_by(AlertRule.id)
        .execution_options(populate_existing=True)
    )
    if lock:
        statement = statement.with_for_update()
    return list(await session.scalars(statement))


async def user_rules(
    session: AsyncSession, user_ids: Collection[int], kinds: Collection[str]
) -> list[AlertRule]:
    """Enabled wallet rules of these users (their wallets are locked by the caller)."""
    if not user_ids:
        return []
    statement = (
        select(AlertRule)
        .where(
            AlertRule.user_id.in_(sorted(user_ids)),
            AlertRule.kind.in_(sorted(kinds)),
            AlertRule.enabled.is_(True),
        )
        .order_by(AlertRule.id)
    )
    return list(await session.scalars(statement))


async def states(
    session: AsyncSession, keys: Collection[tuple[int, str]]
) -> dict[tuple[int, str], AlertState]:
    """The state rows of these (rule, subject) pairs; missing pairs are armed."""
    if not keys:
        return {}
    rule_ids = sorted({rule for rule, _ in keys})
    statement = (
        select(AlertState)
        .where(AlertState.rule_id.in_(rule_ids))
        .execution_options(populate_existing=True)
    )
    rows = await session.scalars(statement)
    return {(row.rule_id, row.subject): row for row in rows if (row.rule_id, row.subject) in keys}


async def institution_period_credits(
    session: AsyncSession, institution_id: str, start: datetime, end: datetime
) -> Decimal:
    """Credits used in the institution in [start, end) (whole UTC days of the day rollup:
    a billing period is a calendar month). Read after the caller locked the rules."""
    total = await session.scalar(
        select(func.sum(UsageRollupDay.credits)).where(
            UsageRollupDay.institution_id == institution_id,
            UsageRollupDay.slot_start >= int(start.timestamp()),
            UsageRollupDay.slot_start < int(end.timestamp()),
        )
    )
    return total or Decimal(0)


async def insert_alert(session: AsyncSession, values: dict[str, Any]) -> Alert:
    alert = Alert(**values)
    session.add(alert)
    await session.flush()
    return alert


async def rule_by_id(session: AsyncSession, rule_id: int) -> AlertRule | None:
    return await session.get(AlertRule, rule_id)


async def add_rule(session: AsyncSession, values: dict[str, Any]) -> AlertRule:
    rule = AlertRule(**values)
    session.add(rule)
    await session.flush()
    return rule


async def delete_rule(session: AsyncSession, rule_id: int) -> None:
    await session.execute(delete(AlertRule).where(AlertRule.id == rule_id))


async def rules_of(
    session: AsyncSession, *, institution_id: str | None = None, user_id: int | None = None
) -> Sequence[AlertRule]:
    """One owner's rules (an institution's or a user's), by id."""
    owner = (
        AlertRule.institution_id == institution_id
        if institution_id is not None
        else AlertRule.user_id == user_id
    )
    return list(await session.scalars(select(AlertRule).where(owner).order_by(AlertRule.id)))


async def alerts_of(
    session: AsyncSession,
    *,
    institution_id: str | None = None,
    user_id: int | None = None,
    limit: int,
) -> Sequence[Alert]:
    """One owner's latest alerts, newest first."""
    owner = (
        Alert.institution_id == institution_id
        if institution_id is not None
        else Alert.user_id == user_id
    )
    statement = select(Alert).where(owner).order_by(Alert.id.desc()).limit(limit)
    return list(await session.scalars(statement))
