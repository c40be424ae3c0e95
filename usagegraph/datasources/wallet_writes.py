"""The one place that moves wallet balances and appends ledger entries.

The wallet row is the lock for every credit movement: a writer locks it
(`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already made the
transaction the only writer), reads balance and reserved, decides, then appends entries and
updates the row in the same transaction. Several wallets are always locked in user-id order,
so two writers cannot deadlock on them.

No balance or reserved sum may pass what the databases store (`money_range.MAX_STORED`): a
movement that would is refused (INVALID_REQUEST) before it changes anything.

`LedgerBook` keeps the locked wallets of one transaction and the entries to append; the rules
(what may be debited, when auto-reload fires) live in `resolvers.wallet_operations`, which
calls `post`, `hold` and `unhold` here and `write` once at the end, so a batch of a thousand
debits is one multi-row INSERT, not a thousand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from usagegraph import money_range
from usagegraph.datasources.bulk_inserts import insert_returning_ids
from usagegraph.datasources.transactions import dialect_of
from usagegraph.db.models import LedgerEntry, Reservation, Wallet, signed_amount
from usagegraph.live.changes import note_change
from usagegraph.live.channels import wallet_channel

DEFAULT_CURRENCY = "usd"


async def lock_wallets(session: AsyncSession, user_ids: Iterable[int]) -> dict[int, Wallet]:
    """Lock the existing wallets of these users, in user-id order, and return them fresh."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    statement = (
        select(Wallet)
        .where(Wallet.user_id.in_(ids))
        .order_by(Wallet.user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {wallet.user_id: wallet for wallet in await session.scalars(statement)}


async def ensure_wallet(session: AsyncSession, user_id: int, now: datetime) -> None:
    """Create the user's empty wallet unless it exists (a concurrent creator wins quietly)."""
    values = {
        "user_id": user_id,
        "currency": DEFAULT_CURRENCY,
        "balance": Decimal(0),
        "reserved": Decimal(0),
        "auto_reload_enabled": False,
        "updated_at": now,
    }
    dialect = postgresql if dialect_of(session) == "postgresql" else sqlite
    statement = dialect.insert(Wallet).values(values).on_conflict_do_nothing()
    await session.execute(statement)


async def locked_wallet(
    session: AsyncSession, user_id: int, now: datetime, *, create: bool = False
) -> Wallet | None:
    """The user's wallet, locked for this transaction; created empty first when `create`."""
    if create:
        await ensure_wallet(session, user_id, now)
    return (await lock_wallets(session, [user_id])).get(user_id)


@dataclass(slots=True)
class Posting:
    """A ledger entry appended in this transaction; `id` is known once the book is written."""

    user_id: int
    type: str
    amount: Decimal
    balance_after: Decimal
    description: str | None
    reference: str | None
    metadata: dict[str, Any]
    created_at: datetime
    id: int | None = None
    # Posted by auto-reload (not a credit someone sent): what `wallet.auto_reloaded` reports.
    auto_reload: bool = False


@dataclass(slots=True)
class LedgerBook:
    """The wallets one transaction has locked and the entries it appends to them.

    Every movement goes through here so balance, reserved and balance_after never disagree:
    `post` changes the balance and records the entry with the balance it leaves.
    """

    session: AsyncSession
    now: datetime
    wallets: dict[int, Wallet]
    postings: list[Posting] = field(default_factory=list)
    # Automatic reloads each wallet may still receive in this transaction (its limit less
    # those of the rolling period, read under the lock); a wallet not listed gets none.
    reloads_left: dict[int, int] = field(default_factory=dict)

    def moment(self, wallet: Wallet) -> datetime:
        """When a movement happens: now, but never before the wallet's previous movement.

        Writers take `now` before they wait for the lock, so without this a later entry
        could carry an earlier time and sort before its predecessor in the ledger.
        """
        last = wallet.updated_at
        return self.now if last is None or last <= self.now else last

    def touch(self, wallet: Wallet) -> datetime:
        """Stamp the wallet with this movement's time and return it.

        Flagged as modified even when unchanged, so the model's `onupdate` (the wall clock)
        never replaces the time of the request's clock.
        """
        moment = self.moment(wallet)
        wallet.updated_at = moment
        flag_modified(wallet, "updated_at")
        # Every movement of a wallet passes here: announce it (after commit) to `walletChanged`.
        note_change(self.session, wallet_channel(wallet.user_id), wallet.user_id)
        return moment

    def post(
        self,
        wallet: Wallet,
        entry_type: str,
        amount: Decimal,
        *,
        description: str | None,
        reference: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Posting:
        """Append one entry and move the balance by it (debit subtracts, adjustment signed);
        the wallet counts it (`Wallet.entry_count`)."""
        balance = wallet.balance + signed_amount(entry_type, amount)
        money_range.stored_sum(balance, "amount", f"the balance of user {wallet.user_id}")
        moment = self.touch(wallet)
        wallet.balance = balance
        wallet.entry_count += 1
        posting = Posting(
            user_id=wallet.user_id,
            type=entry_type,
            amount=amount,
            balance_after=wallet.balance,
            description=description,
            reference=reference,
            metadata=dict(metadata or {}),
            created_at=moment,
        )
        self.postings.append(posting)
        return posting

    def hold(self, wallet: Wallet, amount: Decimal) -> None:
        """Set `amount` aside (a reservation): it leaves `available`, not the balance."""
        reserved = wallet.reserved + amount
        money_range.stored_sum(reserved, "amount", f"the reserved credits of user {wallet.user_id}")
        wallet.reserved = reserved
        self.touch(wallet)

    def unhold(self, wallet: Wallet, amount: Decimal) -> None:
        """Give back what a reservation held."""
        wallet.reserved = wallet.reserved - amount
        self.touch(wallet)

    async def write(self) -> list[Posting]:
        """Insert the pending entries in one statement and flush the wallet rows."""
        pending = [posting for posting in self.postings if posting.id is None]
        if pending:
            rows = [
                {
                    "user_id": p.user_id,
                    "type": p.type,
                    "amount": p.amount,
                    "balance_after": p.balance_after,
                    "description": p.description,
                    "reference": p.reference,
                    "metadata_": p.metadata,
                    "created_at": p.created_at,
                }
                for p in pending
            ]
            ids = await insert_returning_ids(self.session, LedgerEntry, rows)
            for posting, entry_id in zip(pending, ids, strict=True):
                posting.id = entry_id
        await self.session.flush()
        return pending


async def credits_since(
    session: AsyncSession, user_ids: Iterable[int], since: datetime, description: str
) -> dict[int, int]:
    """How many credits with this description each user's ledger received after `since`
    (the automatic reloads of a rolling period). Read with the wallets locked, so no
    concurrent writer can add one between this count and the decision it informs."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    statement = (
        select(LedgerEntry.user_id, func.count())
        .where(
            LedgerEntry.user_id.in_(ids),
            LedgerEntry.type == "credit",
            LedgerEntry.description == description,
            LedgerEntry.created_at > since,
        )
        .group_by(LedgerEntry.user_id)
    )
    return {user_id: count for user_id, count in await session.execute(statement)}


async def add_reservation(
    session: AsyncSession,
    user_id: int,
    amount: Decimal,
    description: str | None,
    now: datetime,
) -> Reservation:
    """A new held reservation (the caller holds the wallet lock and has moved `reserved`)."""
    reservation = Reservation(
        user_id=user_id, amount=amount, status="held", description=description, created_at=now
    )
    session.add(reservation)
    await session.flush()
    return reservation


async def reservation_owner(session: AsyncSession, reservation_id: int) -> int | None:
    """Whose wallet a reservation draws on (read before locking that wallet)."""
    return await session.scalar(select(Reservation.user_id).where(Reservation.id == reservation_id))


async def reservation_for_update(session: AsyncSession, reservation_id: int) -> Reservation | None:
    """The reservation as it stands now; call with its wallet locked, which guards it."""
    statement = (
        select(Reservation)
        .where(Reservation.id == reservation_id)
        .execution_options(populate_existing=True)
    )
    return await session.scalar(statement)


async def expired_reservations(session: AsyncSession, now: datetime, limit: int) -> list[int]:
    """Ids of held reservations whose expiry has passed, oldest expiry first (read without
    locks: the caller settles each under its wallet's lock, checking again)."""
    statement = (
        select(Reservation.id)
        .where(Reservation.status == "held", Reservation.expires_at <= now)
        .order_by(Reservation.expires_at, Reservation.id)
        .limit(limit)
    )
    return list(await session.scalars(statement))
