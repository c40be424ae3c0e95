"""A small usage fixture for usage-history tests (REST and resolver), with hand-checkable dates.

"Now" is FIXED_NOW = Wednesday 2026-05-20 15:30 UTC. Windows (UTC, end = 21 May 00:00):
  7 days  -> from Thu 14 May      14 days  -> from Thu 7 May      30 days -> from Tue 21 Apr
  90 days -> from Fri 20 Feb      180 days -> from Sat 22 Nov 2025

The member ("ada") spends in ACME (currency eur) at the edges of those windows; see USAGE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_JWT_SECRET
from tests.factories import add_usage_events, add_user
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Institution, UsageEvent, Wallet

ACME = "a" * 24  # currency eur
OTHER = "b" * 24  # currency usd
UNKNOWN = "c" * 24  # no such institution


def at(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


@dataclass(frozen=True)
class People:
    member: int  # "ada": a plain member of ACME, wallet currency gbp
    bob: int  # another plain member of ACME, no wallet
    admin: int  # role admin with institutions.edit, member (admin) of ACME
    weak_admin: int  # role admin WITHOUT institutions.edit, member (admin) of ACME
    outsider: int  # member of OTHER only
    super: int  # role super, member of nothing


@dataclass(frozen=True)
class Use:
    who: str  # a People field name
    institution: str | None  # None = personal
    when: datetime
    credits: str
    messages: int = 1
    status: str = "success"
    forgotten: bool = False


USAGE: tuple[Use, ...] = (
    # ada in ACME
    Use("member", ACME, at(2, 19, 23), "10"),  # 1 h before the 90-day window: out
    Use("member", ACME, at(2, 20), "2"),  # first instant of the 90-day window
    Use("member", ACME, at(4, 30, 23, 59, 59), "1"),  # last second of April
    Use("member", ACME, at(5, 1), "1"),  # first instant of May
    Use("member", ACME, at(5, 6, 12), "9"),  # week of 4 May, before the 14-day window
    Use("member", ACME, at(5, 7), "0.5"),  # first instant of the 14-day window
    Use("member", ACME, at(5, 13, 23, 59, 59), "4"),  # last second before the 7-day window
    Use("member", ACME, at(5, 14), "1"),  # first instant of the 7-day window
    Use("member", ACME, at(5, 18), "0.75", status="failed"),  # Monday 00:00; failed counts
    Use("member", ACME, at(5, 19, 12), "5", messages=3, forgotten=True),  # never reported
    Use("member", ACME, at(5, 20, 10), "2.5", messages=2),  # today
    Use("member", ACME, at(5, 21), "100"),  # tomorrow 00:00: after every window
    # others
    Use("bob", ACME, at(5, 19, 9), "1.5"),
    Use("admin", ACME, at(5, 20, 8), "0.25"),
    Use("member", None, at(5, 20, 9), "3"),  # ada's personal usage
    Use("outsider", OTHER, at(5, 20, 9), "7"),
)


async def add_institution(engine: AsyncEngine, institution_id: str, currency: str) -> None:
    async with session_factory(engine)() as session, session.begin():
        session.add(Institution(id=institution_id, name=institution_id[:4], currency=currency))


async def add_usage(engine: AsyncEngine, people: People, uses: tuple[Use, ...]) -> None:
    async with session_factory(engine)() as session, session.begin():
        for use in uses:
            await add_usage_events(
                session,
                UsageEvent(
                    user_id=getattr(people, use.who),
                    institution_id=use.institution,
                    occurred_at=use.when,
                    credits=Decimal(use.credits),
                    messages=use.messages,
                    status=use.status,
                    forgotten=use.forgotten,
                ),
            )


async def seed_people(engine: AsyncEngine) -> People:
    """The institutions and people, without usage."""
    await add_institution(engine, ACME, "eur")
    await add_institution(engine, OTHER, "usd")
    people = People(
        member=await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"}),
        bob=await add_user(engine, email="bob@acme.edu", member_of={ACME: "user"}),
        admin=await add_user(
            engine,
            email="admin@acme.edu",
            role="admin",
            permissions=["institutions.edit"],
            member_of={ACME: "admin"},
        ),
        weak_admin=await add_user(
            engine, email="weak@acme.edu", role="admin", member_of={ACME: "admin"}
        ),
        outsider=await add_user(engine, email="o@other.edu", member_of={OTHER: "user"}),
        super=await add_user(engine, email="root@example.com", role="super"),
    )
    async with session_factory(engine)() as session, session.begin():
        session.add(Wallet(user_id=people.member, currency="gbp"))
    return people


async def seed(engine: AsyncEngine) -> People:
    """People plus USAGE."""
    people = await seed_people(engine)
    await add_usage(engine, people, USAGE)
    return people


def token_headers(user_id: int) -> dict[str, str]:
    return {"x-access-token": mint_token(user_id, TEST_JWT_SECRET)}
