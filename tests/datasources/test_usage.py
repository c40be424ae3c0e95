"""Usage reads: slot sums are exact on both databases and never leave the readable set."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import (
    add_institution,
    add_institution_admin,
    add_usage_events,
    add_user,
)
from usagegraph.auth.resolve import load_user_principal
from usagegraph.datasources.usage import (
    DAY_SLOT_SECONDS,
    ZONE_SAFE_SLOT_SECONDS,
    lifetime_credits,
    usage_by_slot,
)
from usagegraph.db.engine import session_factory
from usagegraph.db.models import UsageEvent

ACME = "a" * 24
OTHER = "b" * 24


def _at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, 5, day, hour, minute, tzinfo=UTC)


async def _seed(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    await add_institution(engine, institution_id=OTHER, name="Other")
    ids = {
        "admin": await add_institution_admin(engine, email="admin@acme.edu", institution_id=ACME),
        "member": await add_user(engine, email="m@acme.edu", member_of={ACME: "user"}),
        "outsider": await add_user(engine, email="o@other.edu", member_of={OTHER: "user"}),
    }
    events = [
        (ids["member"], ACME, _at(1, 23, 59), "1.25", 2, "success", False),
        (ids["member"], ACME, _at(2, 0, 0), "0.75", 1, "failed", False),
        (ids["member"], ACME, _at(2, 0, 10), "5", 1, "success", True),  # forgotten
        (ids["member"], None, _at(2), "3", 1, "success", False),  # personal
        (ids["outsider"], OTHER, _at(2), "7", 1, "success", False),
        (ids["admin"], ACME, _at(3), "0.5", 4, "success", False),
    ]
    async with session_factory(engine)() as session, session.begin():
        for user_id, institution_id, at, credits, messages, status, forgotten in events:
            await add_usage_events(
                session,
                UsageEvent(
                    user_id=user_id,
                    institution_id=institution_id,
                    occurred_at=at,
                    credits=Decimal(credits),
                    messages=messages,
                    status=status,
                    forgotten=forgotten,
                ),
            )
    return ids


async def test_admin_reads_the_institution_and_their_own_but_not_others(
    engine: AsyncEngine,
) -> None:
    ids = await _seed(engine)
    async with session_factory(engine)() as session:
        admin = await load_user_principal(session, ids["admin"])
        assert admin is not None
        slots = await usage_by_slot(
            session,
            admin,
            start=_at(1, 0),
            end=_at(4, 0),
            slot_seconds=DAY_SLOT_SECONDS,
            include_forgotten=False,
        )
    seen = sorted(
        (s.slot_start.day, s.user_id, s.institution_id, s.credits, s.messages, s.failed_events)
        for s in slots
    )
    assert seen == [
        (1, ids["member"], ACME, Decimal("1.25"), 2, 0),
        (2, ids["member"], ACME, Decimal("0.75"), 1, 1),
        (3, ids["admin"], ACME, Decimal("0.5"), 4, 0),
    ]


async def test_member_reads_only_their_own_usage(engine: AsyncEngine) -> None:
    ids = await _seed(engine)
    async with session_factory(engine)() as session:
        member = await load_user_principal(session, ids["member"])
        assert member is not None
        slots = await usage_by_slot(
            session,
            member,
            start=_at(1, 0),
            end=_at(4, 0),
            slot_seconds=DAY_SLOT_SECONDS,
            include_forgotten=True,
        )
    assert {s.user_id for s in slots} == {ids["member"]}
    assert sum(s.credits for s in slots) == Decimal("10")  # 1.25 + 0.75 + 5 + 3


async def test_quarter_hour_slots_split_at_their_boundaries(engine: AsyncEngine) -> None:
    ids = await _seed(engine)
    async with session_factory(engine)() as session:
        member = await load_user_principal(session, ids["member"])
        assert member is not None
        slots = await usage_by_slot(
            session,
            member,
            start=_at(1, 23, 45),
            end=_at(2, 0, 15),
            slot_seconds=ZONE_SAFE_SLOT_SECONDS,
            include_forgotten=False,
        )
    assert sorted((s.slot_start, s.credits) for s in slots) == [
        (_at(1, 23, 45), Decimal("1.25")),
        (_at(2, 0, 0), Decimal("0.75")),
    ]


async def test_lifetime_credits_include_forgotten_usage_and_skip_unreadable_pairs(
    engine: AsyncEngine,
) -> None:
    ids = await _seed(engine)
    async with session_factory(engine)() as session:
        admin = await load_user_principal(session, ids["admin"])
        assert admin is not None
        asked = {
            (ids["member"], ACME),
            (ids["admin"], ACME),
            (ids["member"], None),  # the member's personal usage: not the admin's to read
            (ids["outsider"], OTHER),  # another institution
        }
        lifetime = await lifetime_credits(session, admin, asked)
    assert lifetime == {
        (ids["member"], ACME): Decimal("7"),  # 1.25 + 0.75 + 5 (forgotten)
        (ids["admin"], ACME): Decimal("0.5"),
    }
