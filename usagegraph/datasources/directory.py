"""Users, institutions and memberships: the directory, read only where the caller may.

Each `readable_*` clause is the single statement of who sees which rows; every query here
starts from it, so a resolver that forgets a check returns nothing it should not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, false, func, or_, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.auth.access import administered_institutions, is_super
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.datasources.column_rows import joined_row, labelled_columns
from usagegraph.datasources.pages import (
    Joined,
    Ordered,
    page_per_parent_statements,
    read_column_pages,
)
from usagegraph.datasources.transactions import dialect_of
from usagegraph.db.models import Institution, Membership, User

# A user's or a membership's columns, named like the model's attributes (column_rows.py).
UserRow = Row[Any]
MembershipRow = Row[Any]


def readable_institutions(principal: Principal) -> ColumnElement[bool]:
    """Members see their institutions; super sees all; an API key sees its own."""
    if is_super(principal):
        return true()
    if principal.kind is CallerKind.INSTITUTION and principal.institution_id:
        return Institution.id == principal.institution_id
    if principal.kind is CallerKind.USER and principal.memberships:
        return Institution.id.in_(sorted(principal.memberships))
    return false()


def readable_users(principal: Principal) -> ColumnElement[bool]:
    """Oneself, and the members of institutions one administers (super: everyone)."""
    if is_super(principal):
        return true()
    if principal.kind is not CallerKind.USER or principal.user_id is None:
        return false()
    administered = administered_institutions(principal)
    own = User.id == principal.user_id
    if not administered:
        return own
    members = select(Membership.user_id).where(Membership.institution_id.in_(administered))
    return or_(own, User.id.in_(members))


def readable_memberships(principal: Principal) -> ColumnElement[bool]:
    """One's own memberships, and every membership of institutions one administers."""
    if is_super(principal):
        return true()
    if principal.kind is not CallerKind.USER or principal.user_id is None:
        return false()
    administered = administered_institutions(principal)
    own = Membership.user_id == principal.user_id
    return or_(own, Membership.institution_id.in_(administered)) if administered else own


async def users_by_id(
    session: AsyncSession, principal: Principal, ids: Sequence[int]
) -> dict[int, UserRow]:
    """Users by id, as rows of columns (a batch is only copied into answers)."""
    rows = await session.execute(
        select(*labelled_columns(User)).where(readable_users(principal), User.id.in_(ids))
    )
    return {user.id: user for user in rows}


async def institutions_by_id(
    session: AsyncSession, principal: Principal, ids: Sequence[str]
) -> dict[str, Institution]:
    rows = await session.scalars(
        select(Institution).where(readable_institutions(principal), Institution.id.in_(ids))
    )
    return {institution.id: institution for institution in rows}


async def memberships_of_users(
    session: AsyncSession, principal: Principal, user_ids: Sequence[int]
) -> dict[int, list[Membership]]:
    rows = await session.scalars(
        select(Membership)
        .where(readable_memberships(principal), Membership.user_id.in_(user_ids))
        .order_by(Membership.user_id, Membership.institution_id)
    )
    found: dict[int, list[Membership]] = {user_id: [] for user_id in user_ids}
    for membership in rows:
        found[membership.user_id].append(membership)
    return found


async def memberships_by_key(
    session: AsyncSession, principal: Principal, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], Membership]:
    rows = await session.scalars(
        select(Membership).where(
            readable_memberships(principal),
            tuple_(Membership.user_id, Membership.institution_id).in_(keys),
        )
    )
    return {(m.user_id, m.institution_id): m for m in rows}


@dataclass(frozen=True, slots=True)
class MemberPages:
    """Each institution's page of members, and the members' users when they came with it
    (a super caller's pages)."""

    pages: dict[str, list[MembershipRow]]
    users: list[UserRow]


async def member_pages(
    session: AsyncSession,
    principal: Principal,
    institution_ids: Sequence[str],
    *,
    first: int,
    after_user_id: int | None,
) -> MemberPages:
    """Up to `first + 1` members of each institution after a cursor, in one statement, as
    rows of columns; for a caller who reads every user (super), each with its user.

    The extra row tells the caller whether a next page exists. The users come with the page
    because a member list is nearly always read with them (`members { user { email } }`),
    and a second batch keyed by the page costs a round trip and a statement. Only where
    `readable_users` is no condition at all: joined per page row, an administrator's
    condition (members of the institutions they administer) reads every membership of those
    institutions, whatever the page (tests/datasources/test_page_plans.py); their users are
    read by the user loader's batch instead.
    """
    conditions = [readable_memberships(principal)]
    if after_user_id is not None:
        conditions.append(Membership.user_id > after_user_id)
    # Who may read which user is `readable_users`, here as everywhere; whether to join is
    # only a question of cost (for super the condition is no condition at all).
    with_users = is_super(principal)
    users = Joined(User, by="user_id", condition=readable_users(principal), prefix=_USER)
    statements = page_per_parent_statements(
        dialect_of(session),
        Membership,
        Membership.institution_id,
        institution_ids,
        conditions,
        MEMBERS_BY_USER,
        first + 1,
        columns=True,
        joined=users if with_users else None,
    )
    found = MemberPages(pages={i: [] for i in institution_ids}, users=[])
    for membership in await read_column_pages(session, statements):
        found.pages[membership.institution_id].append(membership)
        user = joined_row(membership, User, _USER) if with_users else None
        if user is not None:
            found.users.append(user)
    return found


_USER = "user__"


# Served by ix_memberships_institution_user (migration 0006).
MEMBERS_BY_USER = (Ordered("user_id"),)


async def member_counts(
    session: AsyncSession, principal: Principal, institution_ids: Sequence[str]
) -> dict[str, int]:
    rows = await session.execute(
        select(Membership.institution_id, func.count())
        .where(readable_memberships(principal), Membership.institution_id.in_(institution_ids))
        .group_by(Membership.institution_id)
    )
    counts = dict.fromkeys(institution_ids, 0)
    counts.update({institution_id: count for institution_id, count in rows})
    return counts


async def institution_page(
    session: AsyncSession, principal: Principal, *, first: int, after_id: str | None
) -> list[Institution]:
    """The caller's institutions ordered by id, `first + 1` of them."""
    statement = select(Institution).where(readable_institutions(principal))
    if after_id is not None:
        statement = statement.where(Institution.id > after_id)
    rows = await session.scalars(statement.order_by(Institution.id).limit(first + 1))
    return list(rows)


async def institution_count(session: AsyncSession, principal: Principal) -> int:
    """How many institutions the caller sees (asked only when a query selects the total)."""
    total = await session.scalar(
        select(func.count()).select_from(Institution).where(readable_institutions(principal))
    )
    return int(total or 0)
