"""The wallet writes: credits, debits, adjustments, reservations and auto-reload settings.

Each runs its `resolvers.wallet_operations` function, which holds every rule (super only;
INSUFFICIENT_CREDITS when fewer credits are available; a settled reservation cannot be settled
again) and writes the ledger in one transaction; the movement it answers is rendered here.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from usagegraph.resolvers import wallet_operations
from usagegraph.resolvers.wallet_ledger import CreditLedgerEntry
from usagegraph.schema.context import Info
from usagegraph.schema.scalars import BigInt
from usagegraph.schema.shape_types import graph_type_of
from usagegraph.schema.wallet import CreditBalance, LedgerEntry
from usagegraph.schema.writes import INPUT, open_write


def _entry(entry: CreditLedgerEntry | None) -> LedgerEntry | None:
    return LedgerEntry.from_result(entry) if entry is not None else None


ReservationStatus = strawberry.enum(
    wallet_operations.ReservationStatus,
    name="ReservationStatus",
    description="held until settled once: captured (charged) or released.",
)


@strawberry.type(description="What a credit, debit or adjustment wrote.")
class WalletMovement:
    entry: LedgerEntry = strawberry.field(description="The ledger entry written.")
    auto_reload: LedgerEntry | None = strawberry.field(
        description="The auto-reload credit this debit triggered, if any."
    )
    wallet: CreditBalance = strawberry.field(description="The wallet afterwards.")

    @classmethod
    def from_result(cls, movement: wallet_operations.WalletMovement) -> WalletMovement:
        return cls(
            entry=LedgerEntry.from_result(movement.entry),
            auto_reload=_entry(movement.auto_reload),
            wallet=movement.wallet,
        )


CreditReservation = graph_type_of(
    wallet_operations.CreditReservation,
    name="CreditReservation",
    description="Credits held for a pending charge.",
    overrides={"id": BigInt},
)


@strawberry.type(description="A reservation after a write, and what the write did to the wallet.")
class ReservationMovement:
    reservation: CreditReservation = strawberry.field(description="The reservation now.")
    entry: LedgerEntry | None = strawberry.field(
        description="The debit a capture wrote (none for 0 captured, a hold or a release)."
    )
    auto_reload: LedgerEntry | None = strawberry.field(
        description="The auto-reload credit a hold triggered, if any."
    )
    wallet: CreditBalance = strawberry.field(description="The wallet afterwards.")

    @classmethod
    def from_result(cls, movement: wallet_operations.ReservationMovement) -> ReservationMovement:
        return cls(
            reservation=movement.reservation,
            entry=_entry(movement.entry),
            auto_reload=_entry(movement.auto_reload),
            wallet=movement.wallet,
        )


@strawberry.input(description="A top-up of a user's wallet.")
class CreditWalletInput:
    user_id: int = strawberry.field(description="Whose wallet (created on first top-up).")
    amount: Decimal = strawberry.field(description="Credits to add (> 0).")
    description: str | None = strawberry.field(default=None, description="Default `Top-up`.")
    reference: str | None = strawberry.field(
        default=None, description="External reference, e.g. a payment id."
    )
    metadata: JSON | None = strawberry.field(default=None, description="Additional data.")


@strawberry.input(description="A debit of a user's wallet.")
class DebitWalletInput:
    user_id: int = strawberry.field(description="Whose wallet.")
    amount: Decimal = strawberry.field(
        description="Credits to subtract (> 0); INSUFFICIENT_CREDITS when not available."
    )
    description: str | None = strawberry.field(default=None, description="Default `Debit`.")
    reference: str | None = strawberry.field(default=None, description="External reference.")
    metadata: JSON | None = strawberry.field(default=None, description="Additional data.")


@strawberry.input(description="A signed correction of a user's wallet.")
class AdjustWalletInput:
    user_id: int = strawberry.field(description="Whose wallet.")
    amount: Decimal = strawberry.field(
        description="Signed credits (not 0); may take available below zero."
    )
    reason: str = strawberry.field(description="Why (required; stored as the description).")
    reference: str | None = strawberry.field(default=None, description="External reference.")
    metadata: JSON | None = strawberry.field(default=None, description="Additional data.")


@strawberry.input(description="Credits to hold for a pending charge.")
class ReserveCreditsInput:
    user_id: int = strawberry.field(description="Whose wallet.")
    amount: Decimal = strawberry.field(
        description="Credits to hold (> 0); INSUFFICIENT_CREDITS when not available."
    )
    description: str | None = strawberry.field(default=None, description="What it is for.")
    expires_at: datetime | None = strawberry.field(
        default=None,
        description="Release it by itself at this time if it is still held (after now); "
        "the owner's reservation_expired alert rules fire then.",
    )


@strawberry.input(description="Charge a held reservation.")
class CaptureReservationInput:
    reservation_id: BigInt = strawberry.field(description="The reservation.")
    amount: Decimal | None = strawberry.field(
        default=None,
        description="Credits to charge, 0 to the amount held (default: all); the rest is released.",
    )


@strawberry.input(description="Auto-reload settings of a wallet.")
class SetAutoReloadInput:
    user_id: int = strawberry.field(description="Whose wallet (created if missing).")
    enabled: bool = strawberry.field(description="Turn auto-reload on or off.")
    threshold: Decimal | None = strawberry.field(
        default=None,
        description="Reload when a debit takes available from at or above this to below it "
        "(>= 0; required to enable); at most a configured number of reloads per period "
        "(by default 5 a rolling day).",
    )
    amount: Decimal | None = strawberry.field(
        default=None, description="Credits each reload adds (> 0; required to enable)."
    )


@strawberry.type(description="The wallet writes.")
class WalletMutations:
    @strawberry.mutation(description="Add credits to a wallet (super only).")
    async def credit_wallet(
        self,
        info: Info,
        input: Annotated[CreditWalletInput, strawberry.argument(description=INPUT)],
    ) -> WalletMovement:
        async with open_write(info) as write:
            movement = await wallet_operations.credit_wallet(
                write.session,
                write.principal,
                write.now,
                user_id=input.user_id,
                amount=input.amount,
                description=input.description,
                reference=input.reference,
                metadata=input.metadata,
            )
        return WalletMovement.from_result(movement)

    @strawberry.mutation(
        description="Subtract credits from a wallet (super only); INSUFFICIENT_CREDITS when "
        "fewer are available. May trigger auto-reload (a limited number per period)."
    )
    async def debit_wallet(
        self,
        info: Info,
        input: Annotated[DebitWalletInput, strawberry.argument(description=INPUT)],
    ) -> WalletMovement:
        async with open_write(info) as write:
            movement = await wallet_operations.debit_wallet(
                write.session,
                write.principal,
                write.now,
                user_id=input.user_id,
                amount=input.amount,
                description=input.description,
                reference=input.reference,
                metadata=input.metadata,
                reload_limit=write.settings.auto_reload,
            )
        return WalletMovement.from_result(movement)

    @strawberry.mutation(description="Correct a wallet by a signed amount, with a reason (super).")
    async def adjust_wallet(
        self,
        info: Info,
        input: Annotated[AdjustWalletInput, strawberry.argument(description=INPUT)],
    ) -> WalletMovement:
        async with open_write(info) as write:
            movement = await wallet_operations.adjust_wallet(
                write.session,
                write.principal,
                write.now,
                user_id=input.user_id,
                amount=input.amount,
                reason=input.reason,
                reference=input.reference,
                metadata=input.metadata,
            )
        return WalletMovement.from_result(movement)

    @strawberry.mutation(
        description="Hold credits for a pending charge (super only); INSUFFICIENT_CREDITS when "
        "fewer are available. May trigger auto-reload (a limited number per period)."
    )
    async def reserve_credits(
        self,
        info: Info,
        input: Annotated[ReserveCreditsInput, strawberry.argument(description=INPUT)],
    ) -> ReservationMovement:
        async with open_write(info) as write:
            movement = await wallet_operations.reserve_credits(
                write.session,
                write.principal,
                write.now,
                user_id=input.user_id,
                amount=input.amount,
                description=input.description,
                reload_limit=write.settings.auto_reload,
                expires_at=input.expires_at,
            )
        return ReservationMovement.from_result(movement)

    @strawberry.mutation(
        description="Charge all or part of a held reservation and release the rest (super "
        "only). A settled reservation cannot be settled again (INVALID_REQUEST)."
    )
    async def capture_reservation(
        self,
        info: Info,
        input: Annotated[CaptureReservationInput, strawberry.argument(description=INPUT)],
    ) -> ReservationMovement:
        async with open_write(info) as write:
            movement = await wallet_operations.capture_reservation(
                write.session,
                write.principal,
                write.now,
                reservation_id=input.reservation_id,
                amount=input.amount,
            )
        return ReservationMovement.from_result(movement)

    @strawberry.mutation(
        description="Release a held reservation without charging (super only). A settled "
        "reservation cannot be settled again (INVALID_REQUEST)."
    )
    async def release_reservation(
        self,
        info: Info,
        reservation_id: Annotated[BigInt, strawberry.argument(description="The reservation.")],
    ) -> ReservationMovement:
        async with open_write(info) as write:
            movement = await wallet_operations.release_reservation(
                write.session,
                write.principal,
                write.now,
                reservation_id=int(reservation_id),
            )
        return ReservationMovement.from_result(movement)

    @strawberry.mutation(description="Configure a wallet's auto-reload (super only).")
    async def set_auto_reload(
        self,
        info: Info,
        input: Annotated[SetAutoReloadInput, strawberry.argument(description=INPUT)],
    ) -> CreditBalance:
        async with open_write(info) as write:
            balance = await wallet_operations.set_auto_reload(
                write.session,
                write.principal,
                write.now,
                user_id=input.user_id,
                enabled=input.enabled,
                threshold=input.threshold,
                amount=input.amount,
            )
        return balance
