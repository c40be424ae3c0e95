"""The per-user usage extract (CONTRACT.md section 2): who may run it, its window, its rows.

One row per (user, instance, period) with non-zero unforgotten usage in the window, plus the
user's lifetime spend in that instance measured against their cap there. The database sums
usage per period, orders the rows and returns only the first ROW_LIMIT of them, with sums
per (user, instance) for the summary (`datasources.user_stats`): every period here (UTC day,
ISO week, month) is a union of whole UTC days, so summing day rows is exact even for a
window that starts mid-day (the window itself is applied to `occurred_at`, not to days).

Rounding is exact: percentages and means are computed as fractions and rounded half-up
(away from zero) to two places, never through a binary float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.auth.access import is_institution_admin, is_super
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.datasources.transactions import dialect_of
from usagegraph.datasources.usage import UsageFilter, lifetime_credits
from usagegraph.datasources.user_stats import (
    InstitutionProfile,
    PairTally,
    PeriodTally,
    by_people,
    by_users,
    first_period_tallies,
    in_instances,
    institution_profiles,
    membership_caps,
    pair_tallies,
    period_sums,
    user_profiles,
)
from usagegraph.db.models import PERSONAL_INSTANCE
from usagegraph.db.models.users import USER_ROLES
from usagegraph.errors import forbidden, invalid, unauthorized
from usagegraph.input_ids import INSTITUTION_ID_PATTERN, is_id
from usagegraph.resolvers.calendar import Granularity, period_start, shift_period
from usagegraph.resolvers.request_context import RequestContext
from usagegraph.shapes import described

ROW_LIMIT = 5000
PERSONAL_INSTANCE_NAME = "Personal"
# The default window of each granularity: the last N days, today included.
DEFAULT_WINDOW_DAYS: dict[Granularity, int] = {
    Granularity.DAY: 30,
    Granularity.WEEK: 84,
    Granularity.MONTH: 365,
}
STATS_GRANULARITIES = tuple(DEFAULT_WINDOW_DAYS)
# Keeps every filter list well under the databases' bound-parameter limits.
MAX_FILTER_IDS = 1000
NOT_USER_IDS = "account ids must be positive integers"
_INSTITUTION_ID = re.compile(INSTITUTION_ID_PATTERN)


class WindowSource(StrEnum):
    """How the window was derived."""

    DATERANGE = "daterange"
    RANGE = "range"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class StatsWindow:
    """The half-open window [start, end) whose usage the rows count."""

    start: datetime
    end: datetime
    source: WindowSource
    # The N of "the last N days" when the window is the default one; None otherwise.
    default_days: int | None


@dataclass(frozen=True, slots=True)
class UserStatsFilters:
    """Narrowing asked for by the caller (None = no narrowing). Never widens visibility.

    `instances` holds institution ids and/or `personal` (the personal instance).
    `search` is matched case-insensitively against email, fname and lname.
    """

    accounts: frozenset[int] | None = None
    instances: frozenset[str] | None = None
    role: str | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True)
class UserStatsRow:
    """Usage of one user in one instance during one period, and their cap standing there.

    The REST names are the seed's; its `user` is the id as a string.
    """

    user_id: int = described("The user.", json_name="user", json_schema={"type": "string"})
    email: str = described("Their email.")
    fname: str | None = described("First name.")
    lname: str | None = described("Last name.")
    institution_id: str | None = described(
        "Null for personal usage.",
        json_name="institution",
        json_schema={
            "anyOf": [{"type": "string", "pattern": INSTITUTION_ID_PATTERN}, {"type": "null"}]
        },
    )
    instance_name: str = described(
        "`Personal` or the institution's name.", json_name="instanceName"
    )
    ai_name: str | None = described("The institution's assistant name.", json_name="aiName")
    period_start: datetime = described("The aligned period start.", json_name="periodStart")
    query_count: int = described("Messages in the period.", json_name="queryCount")
    credits_used: Decimal = described("Credits in the period.", json_name="creditsUsed")
    lifetime_used: Decimal = described(
        "All-time credits in this instance, forgotten usage included.", json_name="lifetimeUsed"
    )
    cap_limit: Decimal | None = described("The cap that applies, if any.", json_name="capLimit")
    cap_used_pct: Decimal | None = described(
        "100 x lifetimeUsed / capLimit, half-up to 2 places.", json_name="capUsedPct"
    )
    at_cap: bool = described("lifetimeUsed >= capLimit.", json_name="atCap")


@dataclass(frozen=True, slots=True)
class UserStatsSummary:
    """Statistics over every matching row, including those past the row limit."""

    mean_credits_per_user_account: Decimal = described(
        "Credits / distinct users, half-up to 2 places.", json_name="meanCreditsPerUserAccount"
    )
    mean_credits_per_user_institution: Decimal = described(
        "Credits / distinct (user, instance) pairs, half-up to 2 places.",
        json_name="meanCreditsPerUserInstitution",
    )
    users_at_cap: int = described("Distinct users at their cap.", json_name="usersAtCap")


@dataclass(frozen=True, slots=True)
class UserStats:
    granularity: Granularity
    window: StatsWindow
    rows: tuple[UserStatsRow, ...]
    truncated: bool  # more than ROW_LIMIT rows matched
    summary: UserStatsSummary


# ---- who may call, and what they see -------------------------------------------------------


def authorize_stats_caller(principal: Principal) -> None:
    """401 without a user; 403 unless the user's role is super or admin."""
    if not principal.is_authenticated:
        raise unauthorized()
    if principal.kind is not CallerKind.USER or principal.role not in ("super", "admin"):
        raise forbidden("Admin access required")


def visible_institutions(principal: Principal) -> frozenset[str] | None:
    """The institutions whose rows the caller sees; None = every row, personal ones included.

    A non-super admin sees only institutions they administer (possibly none), never personal
    usage, not even their own.
    """
    if is_super(principal):
        return None
    return frozenset(i for i in principal.memberships if is_institution_admin(principal, i))


# ---- the window ----------------------------------------------------------------------------


def stats_window(
    now: datetime,
    granularity: Granularity,
    range_periods: int | None = None,
    daterange: tuple[datetime, datetime] | None = None,
) -> StatsWindow:
    """The window: `daterange` if given, else the last -`range_periods` periods, else default.

    `range` counts whole periods ending with the current one (-7 days = today and the six
    days before); the default is the last N days including today. Both end at the start of
    the next period. Raises INVALID_REQUEST for a bad granularity, range or daterange.
    """
    if granularity not in STATS_GRANULARITIES:
        raise invalid("granularity must be one of day, week, month")
    if range_periods is not None and range_periods >= 0:
        raise invalid("range must be a negative integer")
    if daterange is not None:
        start, end = daterange
        if end <= start:
            raise invalid("daterange end must be after its start")
        return StatsWindow(start, end, WindowSource.DATERANGE, None)
    if range_periods is not None:
        current = period_start(now, granularity)
        try:
            start = shift_period(current, granularity, range_periods + 1)
        except (OverflowError, ValueError) as exc:
            raise invalid("range reaches too far into the past") from exc
        end = shift_period(current, granularity, 1)
        return StatsWindow(start, end, WindowSource.RANGE, None)
    days = DEFAULT_WINDOW_DAYS[granularity]
    today = period_start(now, Granularity.DAY)
    start = today - timedelta(days=days - 1)
    return StatsWindow(start, today + timedelta(days=1), WindowSource.DEFAULT, days)


# ---- filters -------------------------------------------------------------------------------


def validate_filters(filters: UserStatsFilters) -> None:
    """INVALID_REQUEST for ids that cannot exist, unknown roles, or overlong id lists."""
    if filters.accounts is not None:
        if len(filters.accounts) > MAX_FILTER_IDS:
            raise invalid(f"account may list at most {MAX_FILTER_IDS} ids")
        if not all(is_id(user_id) for user_id in filters.accounts):
            raise invalid(NOT_USER_IDS)
    if filters.instances is not None:
        if len(filters.instances) > MAX_FILTER_IDS:
            raise invalid(f"institution may list at most {MAX_FILTER_IDS} ids")
        if any(i != PERSONAL_INSTANCE and not _INSTITUTION_ID.match(i) for i in filters.instances):
            raise invalid("institution ids must be 24 lowercase hex characters or 'personal'")
    if filters.role is not None and filters.role not in USER_ROLES:
        raise invalid("role must be one of user, admin, super")
    if filters.search is not None and "\x00" in filters.search:
        # PostgreSQL cannot hold U+0000 in text: refuse it rather than fail the statement.
        raise invalid("usersearch may not contain the NUL character (U+0000)")


def _instance_scope(
    visible: frozenset[str] | None, asked: frozenset[str] | None
) -> UsageFilter | None:
    """The instances to read: what is visible, narrowed by the filter (None = all)."""
    if visible is not None:
        institutions = visible if asked is None else visible & asked
        return in_instances(institutions, personal=False)
    if asked is None:
        return None
    return in_instances(asked - {PERSONAL_INSTANCE}, personal=PERSONAL_INSTANCE in asked)


def _usage_filters(principal: Principal, filters: UserStatsFilters) -> list[UsageFilter]:
    """The caller's visibility and their filters, as narrowings of usage."""
    conditions: list[UsageFilter] = []
    instances = _instance_scope(visible_institutions(principal), filters.instances)
    if instances is not None:
        conditions.append(instances)
    if filters.accounts is not None:
        conditions.append(by_users(filters.accounts))
    if filters.role is not None or filters.search is not None:
        conditions.append(by_people(role=filters.role, search=filters.search))
    return conditions


# ---- numbers -------------------------------------------------------------------------------


def round_half_up(numerator: int, denominator: int, places: int = 2) -> Decimal:
    """numerator/denominator rounded to `places` decimals, halves away from zero, exactly.

    Integer arithmetic only (no Fraction, no float): it runs once per row of a 5,000-row
    extract, where constructing Fractions was a visible share of the time.
    """
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    scaled = abs(numerator) * 10**places
    magnitude = (2 * scaled + denominator) // (2 * denominator)
    return Decimal(magnitude if numerator >= 0 else -magnitude).scaleb(-places)


def cap_used_pct(lifetime: Decimal, cap: Decimal | None) -> Decimal | None:
    """100·lifetime/cap rounded half-up to 2 places; None without a cap or with a zero cap."""
    if cap is None or cap == 0:
        return None
    lifetime_n, lifetime_d = lifetime.as_integer_ratio()
    cap_n, cap_d = cap.as_integer_ratio()
    return round_half_up(100 * lifetime_n * cap_d, lifetime_d * cap_n)


def is_at_cap(lifetime: Decimal, cap: Decimal | None) -> bool:
    return cap is not None and lifetime >= cap


def mean(total: Decimal, count: int) -> Decimal:
    """total/count rounded half-up to 2 places; 0 when there is nothing to average."""
    if count == 0:
        return Decimal(0)
    total_n, total_d = total.as_integer_ratio()
    return round_half_up(total_n, total_d * count)


# ---- cap standings and rows ---------------------------------------------------------------

_Pair = tuple[int, str | None]  # (user, institution or None)


@dataclass(frozen=True, slots=True)
class _CapStanding:
    """A (user, instance) pair's all-time spend against its cap."""

    lifetime: Decimal
    cap: Decimal | None
    # Worked out once per pair; a pair has a row in every period it was active.
    used_pct: Decimal | None

    @classmethod
    def of(cls, lifetime: Decimal, cap: Decimal | None) -> _CapStanding:
        return cls(lifetime=lifetime, cap=cap, used_pct=cap_used_pct(lifetime, cap))

    @property
    def at_cap(self) -> bool:
        return is_at_cap(self.lifetime, self.cap)


def _cap_limit(
    user_id: int,
    institution_id: str | None,
    institutions: dict[str, InstitutionProfile],
    member_caps: dict[tuple[int, str], Decimal],
) -> Decimal | None:
    """The membership's cap, else the institution's default; personal usage has none."""
    if institution_id is None:
        return None
    own = member_caps.get((user_id, institution_id))
    if own is not None:
        return own
    profile = institutions.get(institution_id)
    return profile.default_cap if profile is not None else None


async def _cap_standings(
    session: AsyncSession,
    principal: Principal,
    pairs: set[_Pair],
    institutions: dict[str, InstitutionProfile],
) -> dict[_Pair, _CapStanding]:
    """Lifetime spend and cap of every pair: one lifetime query, one membership-cap query."""
    if not pairs:
        return {}
    lifetime = await lifetime_credits(session, principal, pairs)
    member_caps = await membership_caps(session, {(u, i) for u, i in pairs if i is not None})
    return {
        (u, i): _CapStanding.of(
            lifetime.get((u, i), Decimal(0)), _cap_limit(u, i, institutions, member_caps)
        )
        for u, i in pairs
    }


def _instance_names(
    institution_id: str | None, institutions: dict[str, InstitutionProfile]
) -> tuple[str, str | None]:
    """(instanceName, aiName): "Personal" and None for the personal instance."""
    if institution_id is None:
        return PERSONAL_INSTANCE_NAME, None
    profile = institutions[institution_id]
    return profile.name, profile.ai_name


def _summary(pairs: list[PairTally], standings: dict[_Pair, _CapStanding]) -> UserStatsSummary:
    total = sum((pair.credits for pair in pairs), Decimal(0))
    users = {pair.user_id for pair in pairs}
    return UserStatsSummary(
        mean_credits_per_user_account=mean(total, len(users)),
        mean_credits_per_user_institution=mean(total, len(pairs)),
        users_at_cap=len({user_id for (user_id, _), s in standings.items() if s.at_cap}),
    )


async def _rows(
    session: AsyncSession,
    tallies: list[PeriodTally],
    standings: dict[_Pair, _CapStanding],
    institutions: dict[str, InstitutionProfile],
) -> tuple[UserStatsRow, ...]:
    """The rows of `tallies`, with one query for all their users' names."""
    people = await user_profiles(session, {tally.user_id for tally in tallies})
    rows = []
    for tally in tallies:
        user_id, institution_id = tally.user_id, tally.institution_id
        person = people[user_id]
        instance_name, ai_name = _instance_names(institution_id, institutions)
        standing = standings[(user_id, institution_id)]
        rows.append(
            UserStatsRow(
                user_id=user_id,
                email=person.email,
                fname=person.fname,
                lname=person.lname,
                institution_id=institution_id,
                instance_name=instance_name,
                ai_name=ai_name,
                period_start=tally.period_start,
                query_count=tally.messages,
                credits_used=tally.credits,
                lifetime_used=standing.lifetime,
                cap_limit=standing.cap,
                cap_used_pct=standing.used_pct,
                at_cap=standing.at_cap,
            )
        )
    return tuple(rows)


# ---- the resolver --------------------------------------------------------------------------


async def user_stats(
    context: RequestContext,
    *,
    granularity: Granularity = Granularity.DAY,
    range_periods: int | None = None,
    daterange: tuple[datetime, datetime] | None = None,
    filters: UserStatsFilters | None = None,
) -> UserStats:
    """The extract for this caller: at most ROW_LIMIT rows, a summary over all that matched."""
    async with context.read_session() as session:
        return await _user_stats(
            session,
            context.principal,
            context.now,
            granularity=granularity,
            range_periods=range_periods,
            daterange=daterange,
            filters=filters,
        )


async def _user_stats(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    granularity: Granularity,
    range_periods: int | None,
    daterange: tuple[datetime, datetime] | None,
    filters: UserStatsFilters | None,
) -> UserStats:
    """The extract, read in one session.

    Queries: sums per (user, instance), institutions, lifetime credits, membership caps, the
    first ROW_LIMIT rows and their users -- each once (chunked by LOOKUP_CHUNK keys), whatever
    the row count; only the first when nothing matched.
    """
    authorize_stats_caller(principal)
    window = stats_window(now, granularity, range_periods, daterange)
    filters = filters or UserStatsFilters()
    validate_filters(filters)
    sums = period_sums(
        principal,
        dialect_of(session),
        start=window.start,
        end=window.end,
        granularity=granularity.value,
        filters=_usage_filters(principal, filters),
    )
    pairs = await pair_tallies(session, sums)
    if not pairs:
        return UserStats(granularity, window, (), truncated=False, summary=_summary([], {}))
    institutions = await institution_profiles(
        session, {p.institution_id for p in pairs if p.institution_id is not None}
    )
    standings = await _cap_standings(
        session, principal, {(p.user_id, p.institution_id) for p in pairs}, institutions
    )
    tallies = await first_period_tallies(session, sums, ROW_LIMIT)
    return UserStats(
        granularity=granularity,
        window=window,
        rows=await _rows(session, tallies, standings, institutions),
        truncated=sum(pair.rows for pair in pairs) > ROW_LIMIT,
        summary=_summary(pairs, standings),
    )
