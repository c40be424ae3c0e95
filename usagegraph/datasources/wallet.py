"""Account reads: the wallet, its ledger, the subscription and the account holder.

Like `datasources.usage`, every query starts from what the caller may read
(`readable_account`) and only then narrows to the requested user, so a resolver that asks
for someone else's account gets nothing rather than their rows. The ledger is paginated in
SQL (LIMIT/OFFSET with a COUNT here; keyset pages for the graph in `wallet_batches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from usagegraph.auth.access import is_super
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.datasources.usage import readable_usage
from usagegraph.db.models import LedgerEntry, Subscription, UsageTotal, User, Wallet


def readable_account(
    principal: Principal, owner: InstrumentedAttribute[int]
) -> ColumnElement[bool]:
    """Account rows (keyed by `owner`, a user id column) the caller may read.

    A user reads their own; super reads every account; API keys and anonymous callers read
    none (an institution's key never opens a person's wallet).
    """
    if is_super(principal):
        return true()
    if principal.kind is not CallerKind.USER or principal.user_id is None:
        return false()
    return owner == principal.user_id


async def account_holder(session: AsyncSession, principal: Principal, user_id: int) -> User | None:
    """The user row behind an account, when the caller may read that account."""
    statement = select(User).where(readable_account(principal, User.id), User.id == user_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def wallet_of(session: AsyncSession, principal: Principal, user_id: int) -> Wallet | None:
    """The user's wallet, or None when they have none (or the caller may not read it)."""
    statement = select(Wallet).where(
        readable_account(principal, Wallet.user_id), Wallet.user_id == user_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def subscription_of(
    session: AsyncSession, principal: Principal, user_id: int
) -> Subscription | None:
    """The user's subscription (at most one per user), whatever its status."""
    statement = select(Subscription).where(
        readable_account(principal, Subscription.user_id), Subscription.user_id == user_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def usage_event_count(session: AsyncSession, principal: Principal, user_id: int) -> int:
    """All of a user's usage events ever, in every instance, forgotten and failed included.

    Starts from `readable_usage`, so it can only count events the caller may read; summed
    from the lifetime totals (a row per instance), not counted over the events.
    """
    statement = select(func.coalesce(func.sum(UsageTotal.events), 0)).where(
        readable_usage(principal, UsageTotal), UsageTotal.user_id == user_id
    )
    return int((await session.execute(statement)).scalar_one())


@dataclass(frozen=True, slots=True)
class LedgerQuery:
    """Which of a user's ledger entries to read: optional type and created_at window."""

    user_id: int
    entry_type: str | None = None
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class LedgerPosition:
    """A keyset cursor: an entry's place in the newest-first order (created_at, id)."""

    created_at: datetime
    id: int


def ledger_filter_conditions(
    principal: Principal,
    entry_type: str | None,
    start: datetime | None,
    end: datetime | None,
) -> list[ColumnElement[bool]]:
    """Readable entries of an optional type inside an optional [start, end) window."""
    conditions = [readable_account(principal, LedgerEntry.user_id)]
    if entry_type is not None:
        conditions.append(LedgerEntry.type == entry_type)
    if start is not None:
        conditions.append(LedgerEntry.created_at >= start)
    if end is not None:
        conditions.append(LedgerEntry.created_at < end)
    return conditions


def total_is_kept(entry_type: str | None, start: datetime | None, end: datetime | None) -> bool:
    """Whether a ledger total counts every entry (no type, no window): the wallet row keeps
    that number (`Wallet.entry_count`, moved with the balance), so it is read, not counted.
    A user without a wallet row has no entries."""
    return entry_type is None and start is None and end is None


def kept_ledger_totals(principal: Principal, user_ids: Sequence[int]) -> Select[tuple[int, int]]:
    """(user id, entries) of these users' ledgers, as far as the caller may read them: the
    same `readable_account` rule as the entries themselves."""
    return select(Wallet.user_id, Wallet.entry_count).where(
        readable_account(principal, Wallet.user_id), Wallet.user_id.in_(user_ids)
    )


def _ledger_conditions(principal: Principal, query: LedgerQuery) -> list[ColumnElement[bool]]:
    return [
        *ledger_filter_conditions(principal, query.entry_type, query.start, query.end),
        LedgerEntry.user_id == query.user_id,
    ]


def older_than(position: LedgerPosition) -> ColumnElement[bool]:
    """Entries after `position` in newest-first order (portable row-value comparison)."""
    return or_(
        LedgerEntry.created_at < position.created_at,
        and_(LedgerEntry.created_at == position.created_at, LedgerEntry.id < position.id),
    )


def _ledger_page_statement(
    principal: Principal,
    query: LedgerQuery,
    *,
    limit: int,
    offset: int,
) -> Select[tuple[LedgerEntry]]:
    statement = select(LedgerEntry).where(*_ledger_conditions(principal, query))
    return (
        statement.order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
        .limit(limit)
        .offset(offset)
    )


async def ledger_entries(
    session: AsyncSession,
    principal: Principal,
    query: LedgerQuery,
    *,
    limit: int,
    offset: int = 0,
) -> list[LedgerEntry]:
    """One page of matching entries, newest first (created_at desc, then id desc)."""
    statement = _ledger_page_statement(principal, query, limit=limit, offset=offset)
    return list((await session.execute(statement)).scalars())


async def count_ledger_entries(
    session: AsyncSession, principal: Principal, query: LedgerQuery
) -> int:
    """How many entries match the query (for `total`), ignoring any page."""
    if total_is_kept(query.entry_type, query.start, query.end):
        kept = await session.execute(kept_ledger_totals(principal, [query.user_id]))
        return next((int(count) for _, count in kept), 0)
    statement = (
        select(func.count()).select_from(LedgerEntry).where(*_ledger_conditions(principal, query))
    )
    return int((await session.execute(statement)).scalar_one())
