"""Small builders for test rows, so each test states only what matters to it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from usagegraph.datasources.usage_rollups import UsageFact, add_usage
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Institution, Membership, UsageEvent, User


async def add_user(
    engine: AsyncEngine,
    *,
    email: str,
    role: str = "user",
    permissions: list[str] | None = None,
    member_of: dict[str, str] | None = None,
) -> int:
    """A user, optionally a member of institutions ({institution id: role there})."""
    async with session_factory(engine)() as session, session.begin():
        user = User(email=email, role=role, permissions=permissions or [])
        session.add(user)
        await session.flush()
        for institution_id, member_role in (member_of or {}).items():
            session.add(
                Membership(user_id=user.id, institution_id=institution_id, role=member_role)
            )
        return user.id


async def add_institution(engine: AsyncEngine, *, institution_id: str, name: str) -> str:
    async with session_factory(engine)() as session, session.begin():
        session.add(Institution(id=institution_id, name=name))
    return institution_id


async def add_usage_events(session: AsyncSession, *events: UsageEvent) -> None:
    """Add usage events as every writer does: counted in the rollups, in the same transaction."""
    session.add_all(events)
    await session.flush()
    await add_usage(
        session,
        [
            UsageFact.of_row({column: getattr(event, column) for column in _FACT_FIELDS})
            for event in events
        ],
    )


_FACT_FIELDS = (
    "user_id",
    "institution_id",
    "occurred_at",
    "credits",
    "messages",
    "status",
    "endpoint",
    "forgotten",
)
