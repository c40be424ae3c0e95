"""Wallets, subscriptions and ledger pages of many users at once, for the graph's loaders.

The same readable-account rule as `datasources.wallets` applies (own account; super: all),
so a batch keyed by other users' ids silently drops what the caller may not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Select, bindparam, func, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from usagegraph.auth.principal import Principal
from usagegraph.datasources.transactions import dialect_of
from usagegraph.datasources.wallet import (
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
    conditions = ledger_filter_conditions(principal, entry_type, start, end)
    if before is not None:
        conditions.append(older_than(before))
    if dialect_of(session) == "postgresql":
        statement = _newest_per_user_lateral(user_ids, conditions, first + 1)
    else:
        conditions.append(LedgerEntry.user_id.in_(user_ids))
        statement = _newest_per_user_ranked(conditions, first + 1)
    pages: dict[int, list[LedgerEntry]] = {user_id: [] for user_id in user_ids}
    for entry in await session.scalars(statement):
        pages[entry.user_id].append(entry)
    return pages


_NEWEST_FIRST = (LedgerEntry.created_at.desc(), LedgerEntry.id.desc())


def _newest_per_user_lateral(
    user_ids: Sequence[int], conditions: list[Any], limit: int
) -> Select[tuple[LedgerEntry]]:
    """PostgreSQL: per user, a LATERAL subquery that walks the (user, time) index and stops
    after `limit` rows. Ranking every entry of 50 users and joining them back took ~20 ms on
    the demo data set; this takes ~2 ms, whatever the users' history."""
    wanted = select(func.unnest(bindparam("users", sorted(user_ids), type_=ARRAY(BigInteger))))
    users = wanted.subquery("wanted").c[0]
    newest = (
        select(LedgerEntry)
        .where(LedgerEntry.user_id == users, *conditions)
        .order_by(*_NEWEST_FIRST)
        .limit(limit)
        .lateral("newest")
    )
    entry = aliased(LedgerEntry, newest)
    return (
        select(entry)
        .select_from(users.table)
        .join(newest, true())
        .order_by(entry.user_id, entry.created_at.desc(), entry.id.desc())
    )


def _newest_per_user_ranked(conditions: list[Any], limit: int) -> Select[tuple[LedgerEntry]]:
    """SQLite (no LATERAL): rank the matching entries per user and keep the first `limit`."""
    rank = func.row_number().over(partition_by=LedgerEntry.user_id, order_by=_NEWEST_FIRST)
    ranked = select(LedgerEntry.id, rank.label("rank")).where(*conditions).subquery()
    return (
        select(LedgerEntry)
        .join(ranked, LedgerEntry.id == ranked.c.id)
        .where(ranked.c.rank <= limit)
        .order_by(LedgerEntry.user_id, *_NEWEST_FIRST)
    )


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
