"""SQL of the per-user usage extract: usage filters, and batched lookups of names and caps.

The usage itself is read through `datasources.usage` (scoped by `readable_usage`); the
filters built here only narrow that readable set further. The database folds the days into
periods, drops the empty ones, orders and limits the rows and sums them per (user, instance),
so a report of a long window costs what it returns, not one Python object per day of usage
(181 days of 200 users were 70,000 day rows for a 5,000-row answer). The lookups are keyed
by ids that come out of that scoped usage, so they never reach a user or institution the
caller could not already see. Each lookup is one query per chunk of at most `LOOKUP_CHUNK`
keys (never one per row), which keeps every statement under both databases' bound-parameter
limits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    cast,
    extract,
    false,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Subquery

from usagegraph.auth.principal import Principal
from usagegraph.datasources.usage import (
    DAY_SLOT_SECONDS,
    LOOKUP_CHUNK,
    UsageFilter,
    UsageSource,
    day_sums,
)
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


@dataclass(frozen=True, slots=True)
class PeriodTally:
    """Usage of one user in one instance during one period (a row of the extract)."""

    period_start: datetime
    user_id: int
    institution_id: str | None
    credits: Decimal
    messages: int


@dataclass(frozen=True, slots=True)
class PairTally:
    """A (user, instance) pair's rows of the extract: their credits and how many there are."""

    user_id: int
    institution_id: str | None
    credits: Decimal
    rows: int


# 1970-01-01, day 0 of Unix time, was a Thursday: three days after a Monday.
_UNIX_EPOCH_WEEKDAY = 3


def period_start_of(dialect: str, granularity: str, day: Any) -> ColumnElement[int]:
    """The start (Unix seconds) of the UTC week (from Monday) or month holding `day`, the
    start of a UTC day in Unix seconds, in SQL. `resolvers.calendar` is the rule; the
    datasource tests hold this to it day by day, before 1970 included."""
    if granularity == "week":
        days = day // DAY_SLOT_SECONDS  # exact: a day starts on a multiple of 86400
        # `%` keeps the dividend's sign on both databases: +7, % 7 again for days before 1970.
        weekday = ((days + _UNIX_EPOCH_WEEKDAY) % 7 + 7) % 7
        return day - weekday * DAY_SLOT_SECONDS
    if granularity != "month":
        raise ValueError(f"no SQL period start for {granularity!r}")
    if dialect == "postgresql":
        month = func.date_trunc("month", func.timezone("UTC", func.to_timestamp(day)))
        return cast(extract("epoch", month), BigInteger)
    return cast(func.strftime("%s", day, "unixepoch", "start of month"), Integer)


def period_sums(
    principal: Principal,
    dialect: str,
    *,
    start: datetime,
    end: datetime,
    granularity: str,
    filters: Sequence[UsageFilter],
) -> Subquery:
    """Readable, unforgotten usage in [start, end) per (period, user, instance): columns
    period_start (Unix seconds), user_id, institution_id, credits, messages.

    `granularity` is `day`, `week` (ISO, from Monday) or `month`, in UTC: every such period
    is a union of whole UTC days, so summing day rows is exact. A day is its own period.
    """
    days = day_sums(principal, dialect, start=start, end=end, filters=filters)
    keys = (days.c.user_id, days.c.institution_id)
    if granularity == "day":
        period = days.c.slot.label("period_start")
        return select(period, *keys, days.c.credits, days.c.messages).subquery("period_sums")
    period = period_start_of(dialect, granularity, days.c.slot).label("period_start")
    sums = (func.sum(days.c.credits).label("credits"), func.sum(days.c.messages).label("messages"))
    # Grouped by the output name: the expression's parameters are then bound once.
    grouping = (literal_column("period_start"), *keys)
    return select(period, *keys, *sums).group_by(*grouping).subquery("period_sums")


def _with_usage(sums: Subquery) -> ColumnElement[bool]:
    """A row of the extract has usage: messages (free ones count) or credits."""
    return or_(sums.c.messages != 0, sums.c.credits != 0)


async def pair_tallies(session: AsyncSession, sums: Subquery) -> list[PairTally]:
    """Per (user, instance): the credits of their rows and how many rows they have. What
    the summary and the truncation flag need, whatever the row limit cuts off."""
    rows = await session.execute(
        select(sums.c.user_id, sums.c.institution_id, func.sum(sums.c.credits), func.count())
        .where(_with_usage(sums))
        .group_by(sums.c.user_id, sums.c.institution_id)
    )
    return [
        PairTally(user_id=user_id, institution_id=institution_id, credits=credits, rows=count)
        for user_id, institution_id, credits, count in rows
    ]


async def first_period_tallies(
    session: AsyncSession, sums: Subquery, limit: int
) -> list[PeriodTally]:
    """The first `limit` rows of the extract in its order: periodStart, then user, then
    instance with personal first, then institution id (24 lowercase hex characters, which
    every collation orders as their bytes)."""
    rows = await session.execute(
        select(
            sums.c.period_start,
            sums.c.user_id,
            sums.c.institution_id,
            sums.c.credits,
            sums.c.messages,
        )
        .where(_with_usage(sums))
        .order_by(
            sums.c.period_start,
            sums.c.user_id,
            sums.c.institution_id.is_not(None),
            sums.c.institution_id,
        )
        .limit(limit)
    )
    starts: dict[int, datetime] = {}
    tallies = []
    for start, user_id, institution_id, credits, messages in rows:
        moment = starts.get(start)
        if moment is None:
            moment = starts[start] = datetime.fromtimestamp(int(start), UTC)
        tallies.append(
            PeriodTally(
                period_start=moment,
                user_id=user_id,
                institution_id=institution_id,
                credits=credits,
                messages=int(messages),
            )
        )
    return tallies


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
