"""Test data for billing periods (CONTRACT section 3), worked out by hand at FIXED_NOW.

FIXED_NOW is 2026-05-20 15:30 UTC. ACME was created 2025-12-15 but its first usage is
2025-11-30 23:59:59, so its history runs May 2026 back to November 2025: 7 months.

ACME's messages per month (plan_limit 5):
- 2025-11: 1                      (the first usage, one second before December)
- 2026-01: 10                     (2026-01-31 23:59:59, one second before February)
- 2026-02: 3 + 1 + 2 + 1 = 7      (02-01 00:00:00 success 3; 02-10 success 1;
                                   02-14 forgotten 2; 02-28 23:59:59 failed 1) -> overage 2
- 2026-03: 4                      (03-01 00:00:00, the first instant of March)
- 2026-05: 6                      (05-20 15:29 success 6) -> overage 1
- 2025-12 and 2026-04: 0
Noise that must never count for ACME: OTHER's 100 messages in February, and the member's
personal usage of 50 messages in February.
OTHER (plan_limit null) was created 2026-04-10 but first used 2026-02-15, so its history
runs May back to February: 4 months, 100 messages in February and 100 in April.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import add_usage_events
from usagegraph.auth.api_keys import create_api_key
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Institution, Membership, UsageEvent, User

ACME = "aaaaaaaaaaaaaaaaaaaaaaaa"
OTHER = "bbbbbbbbbbbbbbbbbbbbbbbb"


def at(
    year: int, month: int, day: int, hour: int = 12, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@dataclass(frozen=True)
class BillingWorld:
    acme_key: str
    other_key: str
    admin_id: int
    member_id: int
    super_id: int
    outsider_id: int


async def add_institution(
    engine: AsyncEngine, institution_id: str, *, created_at: datetime, plan_limit: int | None
) -> None:
    async with session_factory(engine)() as session, session.begin():
        session.add(
            Institution(
                id=institution_id,
                name=institution_id[:4],
                created_at=created_at,
                plan_limit=plan_limit,
            )
        )


async def add_user(
    engine: AsyncEngine,
    email: str,
    *,
    role: str = "user",
    permissions: list[str] | None = None,
    member_of: dict[str, str] | None = None,
) -> int:
    async with session_factory(engine)() as session, session.begin():
        user = User(email=email, role=role, permissions=permissions or [])
        session.add(user)
        await session.flush()
        for institution_id, member_role in (member_of or {}).items():
            session.add(
                Membership(user_id=user.id, institution_id=institution_id, role=member_role)
            )
        return user.id


async def add_usage(
    engine: AsyncEngine,
    user_id: int,
    institution_id: str | None,
    occurred_at: datetime,
    messages: int,
    *,
    status: str = "success",
    forgotten: bool = False,
) -> None:
    async with session_factory(engine)() as session, session.begin():
        await add_usage_events(
            session,
            UsageEvent(
                user_id=user_id,
                institution_id=institution_id,
                occurred_at=occurred_at,
                credits=Decimal("1.5"),
                messages=messages,
                status=status,
                forgotten=forgotten,
            ),
        )


async def add_key(engine: AsyncEngine, institution_id: str) -> str:
    async with session_factory(engine)() as session, session.begin():
        _, key = await create_api_key(session, institution_id)
    return key


async def seed_billing(engine: AsyncEngine) -> BillingWorld:
    await add_institution(engine, ACME, created_at=at(2025, 12, 15), plan_limit=5)
    await add_institution(engine, OTHER, created_at=at(2026, 4, 10), plan_limit=None)
    admin = await add_user(
        engine,
        "admin@acme.edu",
        role="admin",
        permissions=["institutions.edit"],
        member_of={ACME: "admin"},
    )
    member = await add_user(engine, "member@acme.edu", member_of={ACME: "user"})
    outsider = await add_user(
        engine,
        "admin@other.edu",
        role="admin",
        permissions=["institutions.edit"],
        member_of={OTHER: "admin"},
    )
    boss = await add_user(engine, "root@usagegraph.dev", role="super")
    events = [
        (member, ACME, at(2025, 11, 30, 23, 59, 59), 1, "success", False),
        (member, ACME, at(2026, 1, 31, 23, 59, 59), 10, "success", False),
        (member, ACME, at(2026, 2, 1, 0, 0, 0), 3, "success", False),
        (admin, ACME, at(2026, 2, 10), 1, "success", False),
        (member, ACME, at(2026, 2, 14), 2, "success", True),
        (member, ACME, at(2026, 2, 28, 23, 59, 59), 1, "failed", False),
        (member, ACME, at(2026, 3, 1, 0, 0, 0), 4, "success", False),
        (member, ACME, at(2026, 5, 20, 15, 29), 6, "success", False),
        (outsider, OTHER, at(2026, 2, 15), 100, "success", False),
        (outsider, OTHER, at(2026, 4, 15), 100, "success", False),
        (member, None, at(2026, 2, 15), 50, "success", False),
    ]
    for user_id, institution_id, moment, messages, status, forgotten in events:
        await add_usage(
            engine, user_id, institution_id, moment, messages, status=status, forgotten=forgotten
        )
    return BillingWorld(
        acme_key=await add_key(engine, ACME),
        other_key=await add_key(engine, OTHER),
        admin_id=admin,
        member_id=member,
        super_id=boss,
        outsider_id=outsider,
    )
