"""The caller's credit ledger: filtered, newest first, paginated in SQL.

Offset pages with a total serve seed 003's `/auth/account/ledger`; the graph's keyset pages
(batched across users) live in `datasources.wallet_batches`. Both read through the same
readable-account rule, so a caller sees their own entries only (super: anyone's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from functools import partial
from typing import Any

from usagegraph.datasources.loaders import LedgerCountKey, LedgerPageKey
from usagegraph.datasources.wallet import (
    LedgerPosition,
    LedgerQuery,
    count_ledger_entries,
    ledger_entries,
)
from usagegraph.datasources.wallet_batches import EntryRow
from usagegraph.db.models import LedgerEntry
from usagegraph.errors import invalid
from usagegraph.input_ids import MAX_ID as MAX_BIGINT
from usagegraph.resolvers.request_context import RequestContext
from usagegraph.resolvers.wallet_account import account_holder_id, require_account
from usagegraph.shapes import described

DEFAULT_LEDGER_LIMIT = 50
MAX_LEDGER_LIMIT = 100
# The largest OFFSET both databases take.
MAX_LEDGER_OFFSET = MAX_BIGINT


class LedgerType(StrEnum):
    """credit adds `amount`, debit subtracts it, adjustment carries its own sign."""

    CREDIT = "credit"
    DEBIT = "debit"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    """Optional type and created_at window [start, end)."""

    entry_type: LedgerType | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class CreditLedgerEntry:
    """An immutable movement of credits."""

    id: int = described("The entry's id.")
    user_id: int = described("The wallet's owner.")
    type: LedgerType = described("credit, debit or adjustment.")
    amount: Decimal = described("Positive for credit and debit; an adjustment carries its sign.")
    balance_after: Decimal = described("The balance after this entry.")
    description: str | None = described("What it was for.")
    reference: str | None = described("External reference, e.g. a payment.")
    metadata: dict[str, Any] = described("Additional data.")
    created_at: datetime = described("When it was written.")


@dataclass(frozen=True, slots=True)
class LedgerPage:
    """One offset page; `total` counts every entry matching the filter."""

    entries: tuple[CreditLedgerEntry, ...] = described(
        "The entries of this page, newest first.", json_name="data"
    )
    total: int = described("Entries matching the filter.")
    limit: int = described("The page size used.")
    offset: int = described("Entries skipped.")
    has_more: bool = described("Whether more entries follow.")


def validate_filter(ledger_filter: LedgerFilter) -> None:
    if (
        ledger_filter.start is not None
        and ledger_filter.end is not None
        and ledger_filter.start >= ledger_filter.end
    ):
        raise invalid("'from' must be earlier than 'to'")


def validate_limit(limit: int, name: str = "limit") -> None:
    if not 1 <= limit <= MAX_LEDGER_LIMIT:
        raise invalid(f"'{name}' must be an integer from 1 to {MAX_LEDGER_LIMIT}")


def validate_offset(offset: int) -> None:
    if not 0 <= offset <= MAX_LEDGER_OFFSET:
        raise invalid(f"'offset' must be an integer from 0 to {MAX_LEDGER_OFFSET}")


def _query(user_id: int, ledger_filter: LedgerFilter) -> LedgerQuery:
    entry_type = ledger_filter.entry_type
    return LedgerQuery(
        user_id=user_id,
        entry_type=entry_type.value if entry_type is not None else None,
        start=ledger_filter.start,
        end=ledger_filter.end,
    )


def ledger_entry(row: LedgerEntry | EntryRow) -> CreditLedgerEntry:
    return CreditLedgerEntry(
        id=row.id,
        user_id=row.user_id,
        type=LedgerType(row.type),
        amount=row.amount,
        balance_after=row.balance_after,
        description=row.description,
        reference=row.reference,
        metadata=dict(row.metadata_ or {}),
        created_at=row.created_at,
    )


async def account_ledger(
    context: RequestContext,
    *,
    ledger_filter: LedgerFilter | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> LedgerPage:
    """One page of the caller's ledger, newest first (created_at, then id, descending)."""
    principal = context.principal
    user_id = account_holder_id(principal)
    ledger_filter = ledger_filter or LedgerFilter()
    limit = DEFAULT_LEDGER_LIMIT if limit is None else limit
    offset = 0 if offset is None else offset
    validate_filter(ledger_filter)
    validate_limit(limit)
    validate_offset(offset)
    query = _query(user_id, ledger_filter)
    async with context.read_session() as session:
        total = await count_ledger_entries(session, principal, query)
        rows = await ledger_entries(session, principal, query, limit=limit, offset=offset)
    entries = tuple(ledger_entry(row) for row in rows)
    return LedgerPage(
        entries=entries,
        total=total,
        limit=limit,
        offset=offset,
        has_more=offset + len(entries) < total,
    )


# --- the graph's keyset pages, batched across users ----------------------------------------


async def ledger_keyset_page(
    context: RequestContext,
    user_id: int,
    ledger_filter: LedgerFilter,
    *,
    size: int,
    before: tuple[datetime, int] | tuple[None, None],
) -> tuple[list[CreditLedgerEntry], Callable[[], Awaitable[int]]]:
    """`size + 1` entries of the user older than `before` (time, id), and how to count those
    that match (awaited only when the query asks for the total):
    their own account, or super. One batch for every user of the query."""
    require_account(context.principal, user_id)
    validate_filter(ledger_filter)
    entry_type = ledger_filter.entry_type.value if ledger_filter.entry_type else None
    before_created_at, before_id = before
    position = (
        LedgerPosition(created_at=before_created_at, id=before_id)
        if before_created_at is not None and before_id is not None
        else None
    )
    count_key = LedgerCountKey(
        user_id=user_id, entry_type=entry_type, start=ledger_filter.start, end=ledger_filter.end
    )
    page_key = LedgerPageKey(
        user_id=user_id,
        entry_type=entry_type,
        start=ledger_filter.start,
        end=ledger_filter.end,
        first=size,
        before=position,
    )
    loaders = context.loaders
    rows = await loaders.ledger_page.load(page_key)
    return [ledger_entry(row) for row in rows], partial(loaders.ledger_count.load, count_key)


async def ledger_entries_by_id(
    context: RequestContext, entry_ids: Sequence[int]
) -> list[CreditLedgerEntry | None]:
    """Ledger entries by id (the graph's `node`), each only if the caller may read it."""
    rows = await context.loaders.ledger_entry.load_many(entry_ids)
    return [ledger_entry(row) if row else None for row in rows]
