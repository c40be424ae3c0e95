"""SQL of the per-user usage extract: usage filters, and batched lookups of names and caps.

The usage itself is read through `datasources.usage` (scoped by `readable_usage`); the
filters built here only narrow that readable set further. The lookups are keyed by ids that
come out of that scoped usage, so they never reach a user or institution the caller could not
already see. Each lookup is one query per chunk of at most `LOOKUP_CHUNK` keys (never one
per row), which keeps every statement under both databases' bound-parameter limits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import TypeVar

from sqlalchemy import ColumnElement, false, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.datasources.usage import LOOKUP_CHUNK, UsageFilter, UsageSource
from usagegraph.db.models import Institution, Membership, User

_Key = TypeVar("_Key")


def _chunks(keys: Iterable[_Key], size: int = LOOKUP_CHUNK) -> Iterator[list[_Key]]:
    iterator = iter(keys)
    while chunk := list(islice(iterator, size)):
        yield chunk


@dataclass(frozen=True, slots=True)
class UserProfile:
    """What a row shows about its user."""

    email: str
    fname: str | None
    lname: str | None


@dataclass(frozen=True, slots=True)
class InstitutionProfile:
    """What a row shows about its institution, and the cap its members get by default."""

    name: str
    ai_name: str | None
    default_cap: Decimal | None


def in_instances(institution_ids: Collection[str], *, personal: bool) -> UsageFilter:
    """Usage in these institutions, plus personal usage when `personal` is set."""
    ids = sorted(institution_ids)

    def condition(source: UsageSource) -> ColumnElement[bool]:
        conditions: list[ColumnElement[bool]] = []
        if ids:
            conditions.append(source.institution_id.in_(ids))
        if personal:
            conditions.append(source.institution_id.is_(None))
        return or_(*conditions) if conditions else false()

    return condition


def by_users(user_ids: Collection[int]) -> UsageFilter:
    """Usage of these users only."""
    ids = sorted(user_ids)
    return lambda source: source.user_id.in_(ids)


def by_people(*, role: str | None, search: str | None) -> UsageFilter:
    """Usage of users with this role and/or whose email, fname or lname contains `search`.

    The match is case-insensitive through SQL lower() (on SQLite that folds ASCII letters
    only). LIKE wildcards in `search` are escaped: `%` and `_` match themselves.
    """
    people = select(User.id)
    if role is not None:
        people = people.where(User.role == role)
    if search is not None:
        term = search.lower()
        people = people.where(
            or_(
                *(
                    func.lower(func.coalesce(column, "")).contains(term, autoescape=True)
                    for column in (User.email, User.fname, User.lname)
                )
            )
        )
    return lambda source: source.user_id.in_(people)


async def user_profiles(session: AsyncSession, user_ids: Collection[int]) -> dict[int, UserProfile]:
    """Email and names of these users."""
    profiles: dict[int, UserProfile] = {}
    for chunk in _chunks(sorted(user_ids)):
        rows = await session.execute(
            select(User.id, User.email, User.fname, User.lname).where(User.id.in_(chunk))
        )
        for row in rows:
            profiles[row.id] = UserProfile(email=row.email, fname=row.fname, lname=row.lname)
    return profiles


async def institution_profiles(
    session: AsyncSession, institution_ids: Collection[str]
) -> dict[str, InstitutionProfile]:
    """Name, AI name and default member cap of these institutions."""
    profiles: dict[str, InstitutionProfile] = {}
    for chunk in _chunks(sorted(institution_ids)):
        rows = await session.execute(
            select(
                Institution.id, Institution.name, Institution.ai_name, Institution.default_cap
            ).where(Institution.id.in_(chunk))
        )
        for row in rows:
            profiles[row.id] = InstitutionProfile(
                name=row.name, ai_name=row.ai_name, default_cap=row.default_cap
            )
    return profiles


async def membership_caps(
    session: AsyncSession, pairs: Collection[tuple[int, str]]
) -> dict[tuple[int, str], Decimal]:
    """The cap_limit of each (user, institution) membership that sets one."""
    caps: dict[tuple[int, str], Decimal] = {}
    for chunk in _chunks(sorted(pairs)):
        rows = await session.execute(
            select(Membership.user_id, Membership.institution_id, Membership.cap_limit).where(
                tuple_(Membership.user_id, Membership.institution_id).in_(chunk),
                Membership.cap_limit.is_not(None),
            )
        )
        for row in rows:
            caps[(row.user_id, row.institution_id)] = row.cap_limit
    return caps
