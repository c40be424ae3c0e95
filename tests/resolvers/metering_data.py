"""Builders and checks shared by the metering, wallet, administration and concurrency tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.conftest import FIXED_NOW
from tests.factories import add_usage_events
from usagegraph.auth.principal import Principal
from usagegraph.auth.resolve import load_user_principal
from usagegraph.db.engine import session_factory
from usagegraph.db.models import (
    Institution,
    LedgerEntry,
    Membership,
    Reservation,
    UsageEvent,
    UsageIdempotencyKey,
    Wallet,
    signed_amount,
)
from usagegraph.resolvers.metering import UsageEventInput

T = TypeVar("T")
ACME = "a" * 24
OTHER = "b" * 24
NOW = FIXED_NOW
EDIT = ["institutions.edit"]
API_ACME = Principal.for_institution(ACME)
API_OTHER = Principal.for_institution(OTHER)
ANONYMOUS = Principal.anonymous()


async def principal(engine: AsyncEngine, user_id: int) -> Principal:
    """The principal the middleware would build for this user (roles read from the DB)."""
    async with session_factory(engine)() as session:
        found = await load_user_principal(session, user_id)
    assert found is not None
    return found


async def run(engine: AsyncEngine, call: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run a resolver call on a fresh session, as a request would."""
    async with session_factory(engine)() as session:
        return await call(session)


def event(
    user_id: int,
    instance: str = "personal",
    credits: str = "1",
    *,
    key: str | None = None,
    minutes_ago: int = 60,
    **extra: Any,
) -> UsageEventInput:
    return UsageEventInput(
        user_id=user_id,
        instance=instance,
        occurred_at=NOW - timedelta(minutes=minutes_ago),
        credits=Decimal(credits),
        idempotency_key=key,
        **extra,
    )


async def set_caps(
    engine: AsyncEngine,
    institution_id: str,
    *,
    default_cap: str | None = None,
    enforce: bool = False,
    member_caps: dict[int, str] | None = None,
) -> None:
    async with session_factory(engine)() as session, session.begin():
        institution = await session.get(Institution, institution_id)
        assert institution is not None
        institution.default_cap = Decimal(default_cap) if default_cap is not None else None
        institution.enforce_caps = enforce
        for user_id, cap in (member_caps or {}).items():
            membership = await session.get(Membership, (user_id, institution_id))
            assert membership is not None
            membership.cap_limit = Decimal(cap)


async def add_usage(
    engine: AsyncEngine,
    user_id: int,
    institution_id: str | None,
    credits: str,
    *,
    forgotten: bool = False,
) -> int:
    """Historical usage written directly (as an import would: no wallet movement)."""
    async with session_factory(engine)() as session, session.begin():
        row = UsageEvent(
            user_id=user_id,
            institution_id=institution_id,
            occurred_at=NOW - timedelta(days=3),
            credits=Decimal(credits),
            forgotten=forgotten,
        )
        await add_usage_events(session, row)
        return row.id


async def wallet(engine: AsyncEngine, user_id: int) -> Wallet | None:
    async with session_factory(engine)() as session:
        return await session.get(Wallet, user_id)


async def ledger(engine: AsyncEngine, user_id: int) -> list[LedgerEntry]:
    """The user's entries in the order they were written."""
    async with session_factory(engine)() as session:
        rows = await session.scalars(
            select(LedgerEntry).where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id)
        )
        return list(rows)


async def usage_rows(engine: AsyncEngine, user_id: int | None = None) -> list[UsageEvent]:
    async with session_factory(engine)() as session:
        statement = select(UsageEvent).order_by(UsageEvent.id)
        if user_id is not None:
            statement = statement.where(UsageEvent.user_id == user_id)
        return list(await session.scalars(statement))


async def count_rows(engine: AsyncEngine, model: Any) -> int:
    async with session_factory(engine)() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def key_rows(engine: AsyncEngine) -> list[UsageIdempotencyKey]:
    async with session_factory(engine)() as session:
        return list(await session.scalars(select(UsageIdempotencyKey)))


async def reservation(engine: AsyncEngine, reservation_id: int) -> Reservation | None:
    async with session_factory(engine)() as session:
        return await session.get(Reservation, reservation_id)


def assert_chain(entries: list[LedgerEntry], opening: Decimal = Decimal(0)) -> Decimal:
    """Every entry's balance_after is the previous one moved by its signed amount; and
    entries never go back in time. Returns the closing balance."""
    balance = opening
    previous: datetime | None = None
    for entry in entries:
        balance += signed_amount(entry.type, entry.amount)
        assert entry.balance_after == balance, f"entry {entry.id} breaks the chain"
        if previous is not None:
            assert entry.created_at >= previous, f"entry {entry.id} is dated before its predecessor"
        previous = entry.created_at
    return balance
