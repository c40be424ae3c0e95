"""The credit wallet, its append-only ledger, and the user's subscription."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from usagegraph.db.models.base import Base, BigIntPK, utcnow
from usagegraph.db.types import Money, UTCDateTime

LEDGER_TYPES = ("credit", "debit", "adjustment")
RESERVATION_STATUSES = ("held", "captured", "released")


class Wallet(Base):
    """One per user. The row is also the lock for every write that moves its credits."""

    __tablename__ = "wallets"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    # balance equals the signed sum of the ledger; kept here so reads need no scan.
    balance: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    reserved: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # How many entries the ledger holds, kept by the same writer for the same reason: an
    # unfiltered ledger total is read here, not counted (migration 0011).
    entry_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    auto_reload_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_reload_threshold: Mapped[Decimal | None] = mapped_column(Money)
    auto_reload_amount: Mapped[Decimal | None] = mapped_column(Money)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def available(self) -> Decimal:
        """What may still be spent: balance less what reservations hold."""
        return self.balance - self.reserved


class LedgerEntry(Base):
    """An immutable movement of credits. `amount` is positive for credit and debit."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Money)
    balance_after: Mapped[Decimal] = mapped_column(Money)
    description: Mapped[str | None] = mapped_column(String(500))
    reference: Mapped[str | None] = mapped_column(String(255))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_ledger_entries_user_time", "user_id", "created_at", "id"),
        # The same order inside one type, for a page filtered by type (migration 0008).
        Index("ix_ledger_entries_user_type_time", "user_id", "type", "created_at", "id"),
        CheckConstraint("type IN ('credit', 'debit', 'adjustment')", name="type_known"),
    )


def signed_amount(entry_type: str, amount: Decimal) -> Decimal:
    """How an entry moves the balance: debits subtract, adjustments carry their own sign."""
    return -amount if entry_type == "debit" else amount


class Subscription(Base):
    """A user's plan, at most one."""

    __tablename__ = "subscriptions"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    plan: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(32))
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Reservation(Base):
    """Credits set aside for a pending charge: held until captured (all or part) or released.

    While held, `amount` counts in the wallet's `reserved`; settling it (once) removes it
    from there, and a capture appends a debit of `captured_amount` to the ledger.
    """

    __tablename__ = "reservations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16), default="held")
    captured_amount: Mapped[Decimal | None] = mapped_column(Money)
    description: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A held reservation past this time is released by the expiry sweep (migration 0009).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("status IN ('held', 'captured', 'released')", name="status_known"),
        Index("ix_reservations_status_expires_at", "status", "expires_at"),
    )
