"""The rules of moving credits: top-ups, debits, adjustments, reservations and auto-reload.

Invariants, kept under the wallet's row lock in one transaction per operation:
- every ledger entry carries `balance_after`, and the balance equals the signed sum of the
  ledger (debits subtract, credits add, adjustments carry their sign);
- `available = balance - reserved` never goes below zero through a debit or a reservation
  (`INSUFFICIENT_CREDITS`, nothing written); an adjustment may take it below zero;
- auto-reload: a debit or reservation that takes `available` from at or above the threshold
  to below it appends one `credit` of the reload amount ("Auto-reload") in the same
  transaction. Nothing else triggers it, so one crossing reloads once: while `available`
  stays below the threshold further debits do not reload again; it must first rise to the
  threshold or above (a top-up, a release, a positive adjustment, or a reload large enough)
  and then be crossed again. The reload does not fund the debit that triggered it: a debit
  needs the credits available before it.
- a wallet receives at most `AutoReloadLimit.max_reloads` automatic reloads in any rolling
  `period` (USAGEGRAPH_AUTO_RELOAD_*): a reload smaller than the distance to the threshold
  would otherwise be crossed again and again, minting credits with every debit of a burst.
  The reloads of the period are counted from the ledger under the wallet's lock, in the
  transaction that decides, so concurrent writers cannot exceed the limit. A crossing past
  the limit reloads nothing; debits then fail with INSUFFICIENT_CREDITS once the credits
  run out, as without auto-reload.

Moving credits is for super only (wallet operations create or remove money; no payment
provider stands behind them here). Usage in the personal instance debits through `spend`
from `resolvers.metering`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph import money_range
from usagegraph.auth.access import is_super
from usagegraph.auth.principal import Principal
from usagegraph.datasources.outbox import enqueue
from usagegraph.datasources.transactions import run_write
from usagegraph.datasources.wallet_writes import (
    LedgerBook,
    Posting,
    add_reservation,
    credits_since,
    expired_reservations,
    locked_wallet,
    reservation_for_update,
    reservation_owner,
)
from usagegraph.db.models import Reservation, User, Wallet
from usagegraph.errors import (
    ErrorCode,
    UsageGraphError,
    forbidden,
    invalid,
    not_found,
    unauthorized,
)
from usagegraph.input_ids import is_id
from usagegraph.observability.metrics import count_refused_debit
from usagegraph.resolvers import alerts
from usagegraph.resolvers.wallet_account import CreditBalance, credit_balance
from usagegraph.resolvers.wallet_ledger import CreditLedgerEntry, LedgerType
from usagegraph.settings import AutoReloadLimit
from usagegraph.shapes import described

log = logging.getLogger(__name__)
MAX_TEXT = 500
MAX_REFERENCE = 255
AUTO_RELOAD_DESCRIPTION = "Auto-reload"
TOP_UP_DESCRIPTION = "Top-up"
DEBIT_DESCRIPTION = "Debit"
CAPTURE_DESCRIPTION = "Reservation capture"
DEFAULT_RELOAD_LIMIT = AutoReloadLimit()


class ReservationStatus(StrEnum):
    HELD = "held"
    CAPTURED = "captured"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class WalletMovement:
    """What one credit/debit/adjustment wrote: its entry, a reload it caused, the wallet after."""

    entry: CreditLedgerEntry
    auto_reload: CreditLedgerEntry | None
    wallet: CreditBalance


@dataclass(frozen=True, slots=True)
class CreditReservation:
    """Credits held for a pending charge; settled once, by a capture or a release."""

    id: int = described("The reservation's id.", graph_name="reservation_id")
    user_id: int = described("Whose wallet it holds credits of.")
    amount: Decimal = described("Credits held.")
    status: ReservationStatus = described("held, captured or released.")
    # Set by a capture (0 ≤ captured ≤ amount).
    captured_amount: Decimal | None = described("What the capture charged; null unless captured.")
    description: str | None = described("What it is for.")
    created_at: datetime = described("When it was made.")
    settled_at: datetime | None = described("When it was captured or released.")
    expires_at: datetime | None = described(
        "When it is released by itself if still held (null: never)."
    )


@dataclass(frozen=True, slots=True)
class ReservationMovement:
    """A reservation after a write, the capture's debit entry (if any), a reload, the wallet."""

    reservation: CreditReservation
    entry: CreditLedgerEntry | None
    auto_reload: CreditLedgerEntry | None
    wallet: CreditBalance


# --- pure rules ----------------------------------------------------------------------------


def require_wallet_operator(principal: Principal) -> None:
    """Only super moves credits by hand or configures auto-reload."""
    if not principal.is_authenticated:
        raise unauthorized()
    if not is_super(principal):
        raise forbidden("only super users may move credits or configure wallets")


def positive(amount: Decimal, name: str = "amount") -> Decimal:
    value = money_range.amount(amount, name)
    if value <= 0:
        raise invalid(f"{name} must be greater than 0")
    return value


def non_zero(amount: Decimal, name: str = "amount") -> Decimal:
    value = money_range.amount(amount, name)
    if value == 0:
        raise invalid(f"{name} must not be 0")
    return value


def optional_text(value: str | None, name: str, limit: int = MAX_TEXT) -> str | None:
    if value is not None and len(value) > limit:
        raise invalid(f"{name} is longer than {limit} characters")
    return value


def metadata_object(metadata: object) -> dict[str, Any] | None:
    """Entry metadata is a JSON object (or absent)."""
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("metadata must be a JSON object")
    return metadata


def available(wallet: Wallet | None) -> Decimal:
    return Decimal(0) if wallet is None else wallet.balance - wallet.reserved


def insufficient(needed: Decimal, wallet: Wallet | None) -> UsageGraphError:
    return UsageGraphError(
        ErrorCode.INSUFFICIENT_CREDITS,
        f"Insufficient credits: {needed} needed, {available(wallet)} available",
    )


def auto_reload_due(wallet: Wallet, available_before: Decimal) -> bool:
    """The crossing rule: available went from >= threshold to < threshold just now."""
    return reload_crossing(wallet, available_before, available(wallet))


def reload_crossing(wallet: Wallet, available_before: Decimal, available_after: Decimal) -> bool:
    """Whether a movement from `available_before` to `available_after` reloads the wallet."""
    threshold = wallet.auto_reload_threshold
    amount = wallet.auto_reload_amount
    if not wallet.auto_reload_enabled or threshold is None or amount is None or amount <= 0:
        return False
    return available_before >= threshold > available_after


async def open_book(
    session: AsyncSession, now: datetime, wallets: dict[int, Wallet], limit: AutoReloadLimit
) -> LedgerBook:
    """A book over wallets this transaction has locked, knowing how many automatic reloads
    each may still receive under `limit` (one count, only for wallets with auto-reload on)."""
    reloading = [user_id for user_id, wallet in wallets.items() if wallet.auto_reload_enabled]
    recent = await credits_since(session, reloading, now - limit.period, AUTO_RELOAD_DESCRIPTION)
    book = LedgerBook(session, now, wallets)
    book.reloads_left = {
        user_id: max(0, limit.max_reloads - recent.get(user_id, 0)) for user_id in reloading
    }
    return book


def maybe_auto_reload(
    book: LedgerBook, wallet: Wallet, available_before: Decimal
) -> Posting | None:
    """Append the reload credit when this movement crossed the threshold downwards and the
    wallet has not used up its reloads of the period."""
    if not auto_reload_due(wallet, available_before):
        return None
    if book.reloads_left.get(wallet.user_id, 0) <= 0:
        return None
    book.reloads_left[wallet.user_id] -= 1
    assert wallet.auto_reload_amount is not None
    posting = book.post(
        wallet,
        "credit",
        wallet.auto_reload_amount,
        description=AUTO_RELOAD_DESCRIPTION,
        metadata={"auto_reload": True, "threshold": str(wallet.auto_reload_threshold)},
    )
    posting.auto_reload = True
    return posting


def spend(
    book: LedgerBook,
    wallet: Wallet | None,
    amount: Decimal,
    *,
    description: str,
    reference: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[Posting, Posting | None]:
    """Debit `amount` if it is available (else INSUFFICIENT_CREDITS), then maybe reload.

    A reload the debit triggers is checked against the largest balance stored before
    anything is posted: in a usage batch a refused event must leave the book untouched.
    """
    if wallet is None or available(wallet) < amount:
        raise insufficient(amount, wallet)
    before = available(wallet)
    if reload_crossing(wallet, before, before - amount):
        assert wallet.auto_reload_amount is not None
        money_range.stored_sum(
            wallet.balance - amount + wallet.auto_reload_amount,
            "amount",
            f"the balance of user {wallet.user_id} after its auto-reload",
        )
    debit = book.post(
        wallet, "debit", amount, description=description, reference=reference, metadata=metadata
    )
    return debit, maybe_auto_reload(book, wallet, before)


def ledger_entry_of(posting: Posting) -> CreditLedgerEntry:
    assert posting.id is not None, "the book must be written first"
    return CreditLedgerEntry(
        id=posting.id,
        user_id=posting.user_id,
        type=LedgerType(posting.type),
        amount=posting.amount,
        balance_after=posting.balance_after,
        description=posting.description,
        reference=posting.reference,
        metadata=dict(posting.metadata),
        created_at=posting.created_at,
    )


def reservation_of(row: Reservation) -> CreditReservation:
    return CreditReservation(
        id=row.id,
        user_id=row.user_id,
        amount=row.amount,
        status=ReservationStatus(row.status),
        captured_amount=row.captured_amount,
        description=row.description,
        created_at=row.created_at,
        settled_at=row.settled_at,
        expires_at=row.expires_at,
    )


# --- operations ----------------------------------------------------------------------------


async def _require_user(session: AsyncSession, user_id: int) -> None:
    if not is_id(user_id) or await session.get(User, user_id) is None:
        raise not_found(f"user {user_id} does not exist")


Apply = Callable[[LedgerBook, Wallet | None], tuple[Posting, Posting | None]]


async def _movement(
    session: AsyncSession,
    now: datetime,
    user_id: int,
    *,
    create: bool,
    apply: Apply,
    reload_limit: AutoReloadLimit | None = None,
) -> WalletMovement:
    """Lock the wallet, let `apply(book, wallet)` post, write, and describe the result.
    Only a movement that may reload (a debit) passes `reload_limit`; without it the book
    allows no reload and costs no count."""

    async def work(session: AsyncSession) -> WalletMovement:
        await _require_user(session, user_id)
        wallet = await locked_wallet(session, user_id, now, create=create)
        wallets = {user_id: wallet} if wallet else {}
        if reload_limit is None:
            book = LedgerBook(session, now, wallets)
        else:
            book = await open_book(session, now, wallets, reload_limit)
        before = alerts.available_of(wallets)
        entry, reload = apply(book, wallet)
        await book.write()
        await alerts.after_wallet_moves(session, now, book, before)
        return WalletMovement(
            entry=ledger_entry_of(entry),
            auto_reload=ledger_entry_of(reload) if reload else None,
            wallet=credit_balance(user_id, wallet),
        )

    return await run_write(session, work)


def _posting(
    entry_type: str,
    amount: Decimal,
    description: str,
    reference: str | None,
    metadata: dict[str, Any] | None,
) -> Callable[[LedgerBook, Wallet | None], tuple[Posting, None]]:
    """Post one entry as given to a wallet created first (credits and adjustments)."""

    def apply(book: LedgerBook, wallet: Wallet | None) -> tuple[Posting, None]:
        assert wallet is not None  # created first
        posting = book.post(
            wallet,
            entry_type,
            amount,
            description=description,
            reference=reference,
            metadata=metadata,
        )
        return posting, None

    return apply


async def credit_wallet(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    user_id: int,
    amount: Decimal,
    description: str | None = None,
    reference: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> WalletMovement:
    """A top-up: adds `amount` (> 0). Creates the user's wallet on first use."""
    require_wallet_operator(principal)
    amount = positive(amount)
    description = optional_text(description, "description") or TOP_UP_DESCRIPTION
    reference = optional_text(reference, "reference", MAX_REFERENCE)
    metadata = metadata_object(metadata)

    apply = _posting("credit", amount, description, reference, metadata)
    return await _movement(session, now, user_id, create=True, apply=apply)


async def debit_wallet(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    user_id: int,
    amount: Decimal,
    description: str | None = None,
    reference: str | None = None,
    metadata: dict[str, Any] | None = None,
    reload_limit: AutoReloadLimit = DEFAULT_RELOAD_LIMIT,
) -> WalletMovement:
    """Subtract `amount` (> 0) if available; INSUFFICIENT_CREDITS otherwise (nothing written).
    May reload, within `reload_limit` (the deployment's setting)."""
    require_wallet_operator(principal)
    amount = positive(amount)
    description = optional_text(description, "description") or DEBIT_DESCRIPTION
    reference = optional_text(reference, "reference", MAX_REFERENCE)
    metadata = metadata_object(metadata)

    def apply(book: LedgerBook, wallet: Wallet | None) -> tuple[Posting, Posting | None]:
        return spend(
            book,
            wallet,
            amount,
            description=description,
            reference=reference,
            metadata=metadata,
        )

    try:
        return await _movement(
            session, now, user_id, create=False, apply=apply, reload_limit=reload_limit
        )
    except UsageGraphError as error:
        _count_if_insufficient(error, "debit")
        raise


async def adjust_wallet(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    user_id: int,
    amount: Decimal,
    reason: str,
    reference: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> WalletMovement:
    """A signed correction with a reason; may take `available` below zero, never reloads."""
    require_wallet_operator(principal)
    amount = non_zero(amount)
    reason = (reason or "").strip()
    if not reason:
        raise invalid("reason is required for an adjustment")
    optional_text(reason, "reason")
    reference = optional_text(reference, "reference", MAX_REFERENCE)
    metadata = metadata_object(metadata)

    apply = _posting("adjustment", amount, reason, reference, metadata)
    return await _movement(session, now, user_id, create=True, apply=apply)


async def set_auto_reload(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    user_id: int,
    enabled: bool,
    threshold: Decimal | None,
    amount: Decimal | None,
) -> CreditBalance:
    """Configure auto-reload. Enabling needs a threshold (>= 0) and an amount (> 0).

    Changing the setting never reloads by itself: only a later crossing does.
    """
    require_wallet_operator(principal)
    if threshold is not None:
        threshold = money_range.amount(threshold, "threshold")
        if threshold < 0:
            raise invalid("threshold must not be negative")
    if amount is not None:
        amount = positive(amount)
    if enabled and (threshold is None or amount is None):
        raise invalid("enabling auto-reload needs both a threshold and an amount")

    async def work(session: AsyncSession) -> CreditBalance:
        await _require_user(session, user_id)
        wallet = await locked_wallet(session, user_id, now, create=True)
        assert wallet is not None
        wallet.auto_reload_enabled = enabled
        wallet.auto_reload_threshold = threshold
        wallet.auto_reload_amount = amount
        LedgerBook(session, now, {}).touch(wallet)
        await session.flush()
        return credit_balance(user_id, wallet)

    return await run_write(session, work)


# --- reservations --------------------------------------------------------------------------


async def reserve_credits(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    user_id: int,
    amount: Decimal,
    description: str | None = None,
    reload_limit: AutoReloadLimit = DEFAULT_RELOAD_LIMIT,
    expires_at: datetime | None = None,
) -> ReservationMovement:
    """Hold `amount` (> 0) of the available credits; INSUFFICIENT_CREDITS if not available.

    Holding lowers `available`, so it may trigger auto-reload like a debit does (within
    `reload_limit`). With `expires_at` (after now), a reservation still held then is released
    by `expire_reservations`.
    """
    require_wallet_operator(principal)
    amount = positive(amount)
    description = optional_text(description, "description")
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
        raise invalid("expiresAt must be a time with an offset, after now")

    async def work(session: AsyncSession) -> ReservationMovement:
        await _require_user(session, user_id)
        wallet = await locked_wallet(session, user_id, now)
        if wallet is None or available(wallet) < amount:
            raise insufficient(amount, wallet)
        book = await open_book(session, now, {user_id: wallet}, reload_limit)
        before = available(wallet)
        book.hold(wallet, amount)
        reload = maybe_auto_reload(book, wallet, before)
        row = await add_reservation(session, user_id, amount, description, book.moment(wallet))
        row.expires_at = expires_at
        await book.write()
        await alerts.after_wallet_moves(session, now, book, {user_id: before})
        return ReservationMovement(
            reservation=reservation_of(row),
            entry=None,
            auto_reload=ledger_entry_of(reload) if reload else None,
            wallet=credit_balance(user_id, wallet),
        )

    try:
        return await run_write(session, work)
    except UsageGraphError as error:
        _count_if_insufficient(error, "reservation")
        raise


def _count_if_insufficient(error: UsageGraphError, operation: str) -> None:
    """Refused debits are a metric (usage counts its own, per event, in usage_recording)."""
    if error.code is ErrorCode.INSUFFICIENT_CREDITS:
        count_refused_debit(operation)


async def _held_reservation(
    session: AsyncSession, now: datetime, reservation_id: int
) -> tuple[Reservation, Wallet, LedgerBook]:
    """Lock the reservation's wallet, then read the reservation; it must still be held.

    Settling twice is an INVALID_REQUEST that names the state it is already in.
    """
    owner = await reservation_owner(session, reservation_id)
    if owner is None:
        raise not_found(f"reservation {reservation_id} does not exist")
    wallet = await locked_wallet(session, owner, now)
    row = await reservation_for_update(session, reservation_id)
    if row is None or wallet is None:
        raise not_found(f"reservation {reservation_id} does not exist")
    if row.status != ReservationStatus.HELD:
        raise invalid(f"reservation {reservation_id} is already {row.status}")
    return row, wallet, LedgerBook(session, now, {owner: wallet})


async def capture_reservation(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    reservation_id: int,
    amount: Decimal | None = None,
) -> ReservationMovement:
    """Charge all (default) or part of a held reservation; the rest is released.

    Appends a debit of the captured amount (none when 0 is captured). The credits were held,
    so a capture never fails for lack of funds and never lowers `available`.
    """
    require_wallet_operator(principal)
    if amount is not None:
        amount = money_range.amount(amount, "amount")
        if amount < 0:
            raise invalid("amount must not be negative")

    async def work(session: AsyncSession) -> ReservationMovement:
        row, wallet, book = await _held_reservation(session, now, reservation_id)
        before = alerts.available_of(book.wallets)
        captured = row.amount if amount is None else amount
        if captured > row.amount:
            raise invalid(f"amount must not exceed the {row.amount} held")
        book.unhold(wallet, row.amount)
        entry = None
        if captured > 0:
            entry = book.post(
                wallet,
                "debit",
                captured,
                description=row.description or CAPTURE_DESCRIPTION,
                reference=f"reservation:{row.id}",
                metadata={"reservation_id": row.id},
            )
        row.status = ReservationStatus.CAPTURED.value
        row.captured_amount = captured
        row.settled_at = book.moment(wallet)
        await book.write()
        await alerts.after_wallet_moves(session, now, book, before)
        return ReservationMovement(
            reservation=reservation_of(row),
            entry=ledger_entry_of(entry) if entry else None,
            auto_reload=None,
            wallet=credit_balance(wallet.user_id, wallet),
        )

    return await run_write(session, work)


async def release_reservation(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    reservation_id: int,
) -> ReservationMovement:
    """Free a held reservation without charging anything."""
    require_wallet_operator(principal)

    async def work(session: AsyncSession) -> ReservationMovement:
        row, wallet, book = await _held_reservation(session, now, reservation_id)
        before = alerts.available_of(book.wallets)
        book.unhold(wallet, row.amount)
        row.status = ReservationStatus.RELEASED.value
        row.settled_at = book.moment(wallet)
        await book.write()
        await alerts.after_wallet_moves(session, now, book, before)
        return ReservationMovement(
            reservation=reservation_of(row),
            entry=None,
            auto_reload=None,
            wallet=credit_balance(wallet.user_id, wallet),
        )

    return await run_write(session, work)


async def expire_reservations(session: AsyncSession, now: datetime, *, limit: int = 100) -> int:
    """Release held reservations whose `expires_at` has passed, each in its own write under
    its wallet's lock (settled once: one already settled meanwhile is left alone). Each
    writes `reservation.expired` to the outbox and fires the owner's `reservation_expired`
    rules in that transaction. How many were released. Run by `serve` and `worker`."""
    due = await expired_reservations(session, now, limit)
    await session.rollback()  # end the read's transaction: each release is a write of its own
    released = 0
    for reservation_id in due:

        async def work(session: AsyncSession, reservation_id: int = reservation_id) -> bool:
            owner = await reservation_owner(session, reservation_id)
            if owner is None:
                return False
            wallet = await locked_wallet(session, owner, now)
            row = await reservation_for_update(session, reservation_id)
            if wallet is None or row is None or row.status != ReservationStatus.HELD:
                return False
            if row.expires_at is None or row.expires_at > now:
                return False
            book = LedgerBook(session, now, {owner: wallet})
            before = alerts.available_of(book.wallets)
            book.unhold(wallet, row.amount)
            row.status = ReservationStatus.RELEASED.value
            row.settled_at = book.moment(wallet)
            await book.write()
            await enqueue(
                session,
                now,
                "reservation.expired",
                {"reservation_id": row.id, "user_id": owner, "amount": row.amount},
                user_id=owner,
            )
            await alerts.reservation_expired(session, now, owner, row.id, row.amount)
            await alerts.after_wallet_moves(session, now, book, before)
            return True

        if await run_write(session, work):
            released += 1
    return released


EXPIRY_SWEEP_SECONDS = 30.0


async def keep_expiring_reservations(
    sessions: Callable[[], Any],
    clock: Callable[[], datetime],
    stop: asyncio.Event,
    seconds: float = EXPIRY_SWEEP_SECONDS,
) -> None:
    """Release expired reservations every `seconds` until `stop` (every `serve` worker and
    `usagegraph worker` run one: each release re-checks under the wallet's lock, so
    several sweepers release a reservation once)."""
    while True:
        # Waits first: a process that lives less than `seconds` (a test app) never sweeps.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        if stop.is_set():
            return
        try:
            async with sessions() as session:
                await expire_reservations(session, clock())
        except Exception:  # an outage must not end the sweep
            log.exception("reservation expiry sweep failed")
