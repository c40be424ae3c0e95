"""SQL of the administrative writes: memberships and caps, API keys, snapshots.

Rows that a decision depends on are read `FOR UPDATE` (PostgreSQL; SQLite's write
transaction already excludes other writers), and inserts that two requests could race on are
upserts, so the primary key settles the race instead of a check-then-insert.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.datasources.transactions import dialect_of
from usagegraph.db.models import ApiKey, ClientBucket, Institution, Membership, Snapshot, User


def _insert(session: AsyncSession) -> Any:
    return (postgresql if dialect_of(session) == "postgresql" else sqlite).insert


async def user_by_email(session: AsyncSession, email: str) -> tuple[User, list[str]] | None:
    """The user with this email, whatever its case, and the institutions they belong to
    (one statement, whether or not there is such a user)."""
    statement = (
        select(User, Membership.institution_id)
        .outerjoin(Membership, Membership.user_id == User.id)
        .where(func.lower(User.email) == email.lower())
    )
    rows = (await session.execute(statement)).all()
    if not rows:
        return None
    return rows[0][0], sorted(institution for _, institution in rows if institution is not None)


async def institution_for_update(session: AsyncSession, institution_id: str) -> Institution | None:
    statement = (
        select(Institution)
        .where(Institution.id == institution_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return await session.scalar(statement)


async def membership_for_update(
    session: AsyncSession, user_id: int, institution_id: str
) -> Membership | None:
    statement = (
        select(Membership)
        .where(Membership.user_id == user_id, Membership.institution_id == institution_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return await session.scalar(statement)


async def insert_membership(session: AsyncSession, values: dict[str, Any]) -> Membership | None:
    """Add a membership; None when the user is already a member (the key decides)."""
    insert = _insert(session)
    statement = insert(Membership).values(values).on_conflict_do_nothing().returning(Membership)
    return await session.scalar(statement)


async def delete_membership(session: AsyncSession, user_id: int, institution_id: str) -> bool:
    statement = delete(Membership).where(
        Membership.user_id == user_id, Membership.institution_id == institution_id
    )
    result = await session.execute(statement)
    return bool(result.rowcount)


async def api_key_for_update(session: AsyncSession, api_key_id: int) -> ApiKey | None:
    statement = (
        select(ApiKey)
        .where(ApiKey.id == api_key_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return await session.scalar(statement)


async def bucket(session: AsyncSession, bucket_id: str) -> ClientBucket | None:
    return await session.get(ClientBucket, bucket_id)


async def upsert_snapshot(
    session: AsyncSession,
    bucket_id: str,
    snapshot_date: date,
    values: dict[str, Any],
) -> Snapshot:
    """Insert the bucket's snapshot of that day, or replace the one already there."""
    insert = _insert(session)
    statement = insert(Snapshot).values(bucket_id=bucket_id, snapshot_date=snapshot_date, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[Snapshot.bucket_id, Snapshot.snapshot_date],
        set_={name: statement.excluded[name] for name in values},
    ).returning(Snapshot)
    row = await session.scalar(statement.execution_options(populate_existing=True))
    assert row is not None
    return row
