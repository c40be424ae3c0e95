"""Builders for the account tests (seed 003): usage events, wallets, ledgers, subscriptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import add_usage_events
from usagegraph.auth.principal import Principal
from usagegraph.auth.resolve import load_user_principal
from usagegraph.db.engine import session_factory
from usagegraph.db.models import LedgerEntry, Subscription, UsageEvent, User, Wallet

ACME = "a" * 24
OTHER = "b" * 24


def at(
    month: int, day: int, hour: int = 12, minute: int = 0, *, year: int = 2026, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@dataclass(frozen=True)
class Event:
    """One usage event; defaults: personal, 1 credit, success, not forgotten, /v1/chat."""

    user_id: int
    occurred_at: datetime
    credits: str = "1"
    institution_id: str | None = None
    endpoint: str | None = "/v1/chat"
    status: str = "success"
    forgotten: bool = False
    messages: int = 1


async def add_events(engine: AsyncEngine, *events: Event) -> None:
    async with session_factory(engine)() as session, session.begin():
        for event in events:
            await add_usage_events(
                session,
                UsageEvent(
                    user_id=event.user_id,
                    institution_id=event.institution_id,
                    occurred_at=event.occurred_at,
                    credits=Decimal(event.credits),
                    messages=event.messages,
                    endpoint=event.endpoint,
                    status=event.status,
                    forgotten=event.forgotten,
                ),
            )


async def add_wallet(
    engine: AsyncEngine,
    user_id: int,
    *,
    balance: str,
    reserved: str,
    updated_at: datetime,
    currency: str = "usd",
    auto_reload: tuple[str, str] | None = None,
) -> None:
    """A wallet; `auto_reload` = (threshold, amount) turns auto-reload on."""
    async with session_factory(engine)() as session, session.begin():
        session.add(
            Wallet(
                user_id=user_id,
                currency=currency,
                balance=Decimal(balance),
                reserved=Decimal(reserved),
                auto_reload_enabled=auto_reload is not None,
                auto_reload_threshold=Decimal(auto_reload[0]) if auto_reload else None,
                auto_reload_amount=Decimal(auto_reload[1]) if auto_reload else None,
                updated_at=updated_at,
            )
        )


@dataclass(frozen=True)
class Entry:
    """One ledger entry, with its balance_after written out by hand."""

    user_id: int
    type: str
    amount: str
    balance_after: str
    created_at: datetime
    description: str | None = None
    reference: str | None = None
    metadata: dict[str, Any] | None = None


async def add_entries(engine: AsyncEngine, *entries: Entry) -> list[int]:
    """Inserts in the order given; returns the ids (ascending in insertion order)."""
    ids: list[int] = []
    async with session_factory(engine)() as session, session.begin():
        for entry in entries:
            row = LedgerEntry(
                user_id=entry.user_id,
                type=entry.type,
                amount=Decimal(entry.amount),
                balance_after=Decimal(entry.balance_after),
                description=entry.description,
                reference=entry.reference,
                metadata_=entry.metadata or {},
                created_at=entry.created_at,
            )
            session.add(row)
            await session.flush()
            ids.append(row.id)
    return ids


async def add_subscription(
    engine: AsyncEngine,
    user_id: int,
    *,
    plan: str,
    status: str,
    period: tuple[datetime, datetime] | None,
) -> None:
    async with session_factory(engine)() as session, session.begin():
        session.add(
            Subscription(
                user_id=user_id,
                plan=plan,
                status=status,
                current_period_start=period[0] if period else None,
                current_period_end=period[1] if period else None,
            )
        )


async def set_user_times(
    engine: AsyncEngine, user_id: int, *, created_at: datetime, last_login_at: datetime | None
) -> None:
    async with session_factory(engine)() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(created_at=created_at, last_login_at=last_login_at)
        )


async def principal_for(engine: AsyncEngine, user_id: int) -> Principal:
    async with session_factory(engine)() as session:
        principal = await load_user_principal(session, user_id)
    assert principal is not None
    return principal
