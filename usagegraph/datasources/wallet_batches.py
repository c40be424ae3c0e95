"""Wallets, subscriptions and ledger pages of many users at once, for the graph's loaders.

The same readable-account rule as `datasources.wallets` applies (own account; super: all),
so a batch keyed by other users' ids silently drops what the caller may not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.auth.principal import Principal
from usagegraph.datasources.wallets import (
    LedgerPosition,
    ledger_filter_conditions,
    older_than,
    readable_account,
)
from usagegraph.db.models import LedgerEntry, Subscription, Wallet


async def _rows_by_user(
    session: AsyncSession,
    principal: Principal,
    model: type[Wallet] | type[Subscription],
    user_ids: Sequence[int],
) -> dict[int, Any]:
    """The one-per-user rows of `model` for these users, as far as the caller may read."""
    rows = await session.scalars(
        select(model).where(readable_account(principal, model.user_id), model.user_id.in_(user_ids))
    )
    return {row.user_id: row for row in rows}


async def wallets_of_users(
    session: AsyncSession, principal: Principal, user_ids: Sequence[int]
) -> dict[int, Wallet]:
    return await _rows_by_user(session, principal, Wallet, user_ids)


async def subscriptions_of_users(
    session: AsyncSession, principal: Principal, user_ids: Sequence[int]
) -> dict[int, Subscription]:
    return await _rows_by_user(session, principal, Subscription, user_ids)


async def ledger_pages(
    session: AsyncSession,
    principal: Principal,
    user_ids: Sequence[int],
    *,
    entry_type: str | None,
    start: datetime | None,
    end: datetime | None,
    first: int,
    before: LedgerPosition | None,
) -> dict[int, list[LedgerEntry]]:
    """Up to `first + 1` newest entries of each user (older than `before`), in one statement."""
    conditions = [
        *ledger_filter_conditions(principal, entry_type, start, end),
        LedgerEntry.user_id.in_(user_ids),
    ]
    if before is not None:
        conditions.append(older_than(before))
    rank = (
        func.row_number()
        .over(
            partition_by=LedgerEntry.user_id,
            order_by=(LedgerEntry.created_at.desc(), LedgerEntry.id.desc()),
        )
        .label("rank")
    )
    ranked = select(LedgerEntry.id, rank).where(*conditions).subquery()
    statement = (
        select(LedgerEntry)
        .join(ranked, LedgerEntry.id == ranked.c.id)
        .where(ranked.c.rank <= first + 1)
        .order_by(LedgerEntry.user_id, LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
    )
    pages: dict[int, list[LedgerEntry]] = {user_id: [] for user_id in user_ids}
    for entry in await session.scalars(statement):
        pages[entry.user_id].append(entry)
    return pages


async def ledger_counts(
    session: AsyncSession,
    principal: Principal,
    user_ids: Sequence[int],
    *,
    entry_type: str | None,
    start: datetime | None,
    end: datetime | None,
) -> dict[int, int]:
    rows = await session.execute(
        select(LedgerEntry.user_id, func.count())
        .where(
            *ledger_filter_conditions(principal, entry_type, start, end),
            LedgerEntry.user_id.in_(user_ids),
        )
        .group_by(LedgerEntry.user_id)
    )
    counts = dict.fromkeys(user_ids, 0)
    counts.update({user_id: count for user_id, count in rows})
    return counts


async def ledger_entries_by_id(
    session: AsyncSession, principal: Principal, ids: Sequence[int]
) -> dict[int, LedgerEntry]:
    rows = await session.scalars(
        select(LedgerEntry).where(
            readable_account(principal, LedgerEntry.user_id), LedgerEntry.id.in_(ids)
        )
    )
    return {entry.id: entry for entry in rows}
