"""Small builders for test rows, so each test states only what matters to it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from usagegraph.db.engine import session_factory
from usagegraph.db.models import Institution, Membership, User


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
