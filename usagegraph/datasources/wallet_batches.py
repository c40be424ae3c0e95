"""Wallets, subscriptions and ledger pages of many users at once, for the graph's loaders.

The same readable-account rule as `datasources.wallets` applies (own account; super: all),
so a batch keyed by other users' ids silently drops what the caller may not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.auth.principal import Principal
from usagegraph.datasources.pages import newest_first, page_per_parent_statements, read_column_pages
from usagegraph.datasources.transactions import dialect_of
from usagegraph.datasources.wallet import (
    LedgerPosition,
    kept_ledger_totals,
    ledger_filter_conditions,
    older_than,
    readable_account,
    total_is_kept,
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
) -> dict[int, list[EntryRow]]:
    """Up to `first + 1` newest entries of each user (older than `before`), in one statement
    whose every user's page stops after its rows (`datasources.pages`); rows of columns, not
    ORM objects (a nested read copies hundreds of them into its answer)."""
    conditions = ledger_filter_conditions(principal, entry_type, start, end)
    if before is not None:
        conditions.append(older_than(before))
    statements = page_per_parent_statements(
        dialect_of(session),
        LedgerEntry,
        LedgerEntry.user_id,
        user_ids,
        conditions,
        LEDGER_NEWEST_FIRST,
        first + 1,
        columns=True,
    )
    pages: dict[int, list[EntryRow]] = {user_id: [] for user_id in user_ids}
    for entry in await read_column_pages(session, statements):
        pages[entry.user_id].append(entry)
    return pages


# A ledger entry read as plain columns named like the model's attributes (`pages`, columns).
EntryRow = Row[Any]

# Served by ix_ledger_entries_user_time (user_id, created_at, id), read backwards; a page of
# one type by ix_ledger_entries_user_type_time (user_id, type, created_at, id) (migration 0008).
LEDGER_NEWEST_FIRST = newest_first("created_at", "id")


async def ledger_counts(
    session: AsyncSession,
    principal: Principal,
    user_ids: Sequence[int],
    *,
    entry_type: str | None,
    start: datetime | None,
    end: datetime | None,
) -> dict[int, int]:
    if total_is_kept(entry_type, start, end):
        rows = await session.execute(kept_ledger_totals(principal, user_ids))
    else:
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
