"""Money stays exact and times stay UTC-aware on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from usagegraph.db.engine import session_factory
from usagegraph.db.models import UsageEvent, User
from usagegraph.money import MoneyPrecisionError, canonical_money, to_money


async def _user(engine: AsyncEngine) -> int:
    async with session_factory(engine)() as session, session.begin():
        user = User(email="m@example.com", role="user", permissions=[])
        session.add(user)
        await session.flush()
        return user.id


async def test_sum_of_tenths_is_exact(engine: AsyncEngine) -> None:
    """Ten events of 0.1 sum to exactly 1 (binary floats would give 0.9999999999999999)."""
    user_id = await _user(engine)
    at = datetime(2026, 5, 1, tzinfo=UTC)
    async with session_factory(engine)() as session, session.begin():
        for _ in range(10):
            session.add(UsageEvent(user_id=user_id, occurred_at=at, credits=Decimal("0.1")))
    async with session_factory(engine)() as session:
        total = await session.scalar(select(func.sum(UsageEvent.credits)))
        one = await session.scalar(select(UsageEvent.credits).limit(1))
    assert total == Decimal("1")
    assert isinstance(one, Decimal)
    assert str(one) == "0.1"


async def test_micro_credits_round_trip(engine: AsyncEngine) -> None:
    user_id = await _user(engine)
    async with session_factory(engine)() as session, session.begin():
        session.add(
            UsageEvent(
                user_id=user_id,
                occurred_at=datetime(2026, 5, 1, tzinfo=UTC),
                credits=Decimal("123456.000001"),
            )
        )
    async with session_factory(engine)() as session:
        assert await session.scalar(select(UsageEvent.credits)) == Decimal("123456.000001")


async def test_times_come_back_aware_in_utc(engine: AsyncEngine) -> None:
    user_id = await _user(engine)
    plus_two = timezone(timedelta(hours=2))
    async with session_factory(engine)() as session, session.begin():
        session.add(
            UsageEvent(
                user_id=user_id,
                occurred_at=datetime(2026, 5, 1, 2, 30, tzinfo=plus_two),
                credits=Decimal(1),
            )
        )
    async with session_factory(engine)() as session:
        occurred = await session.scalar(select(UsageEvent.occurred_at))
    assert occurred == datetime(2026, 5, 1, 0, 30, tzinfo=UTC)
    assert occurred.utcoffset() == timedelta(0)


def test_more_than_six_decimals_is_refused() -> None:
    with pytest.raises(MoneyPrecisionError):
        to_money("0.0000001")


def test_canonical_money_avoids_exponents() -> None:
    assert str(canonical_money(Decimal("100.000000"))) == "100"
    assert str(canonical_money(Decimal("2.500000"))) == "2.5"
