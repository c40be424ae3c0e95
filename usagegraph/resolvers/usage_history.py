"""Usage history (CONTRACT.md section 1): one instance's usage in calendar buckets.

The rules live here for REST and GraphQL alike: parameter fallbacks, which instance and scope
the caller may see, the window of the last N days, calendar buckets in a time zone, and the
60-second cache, whose key can never hand one caller's payload to another.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.auth.access import is_institution_admin, is_member
from usagegraph.auth.challenge import authentication_error
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.cache import Cache
from usagegraph.datasources.usage import (
    DAY_SLOT_SECONDS,
    HOUR_SLOT_SECONDS,
    ZONE_SAFE_SLOT_SECONDS,
    UsageFilter,
    UsageSlot,
    in_instance,
    of_user,
    usage_by_slot,
)
from usagegraph.db.models import PERSONAL_INSTANCE, Institution, Wallet
from usagegraph.errors import forbidden, invalid, unauthorized
from usagegraph.money import canonical_money
from usagegraph.resolvers.calendar import (
    UTC_ZONE,
    Granularity,
    Period,
    PeriodLookup,
    period_start,
    periods_covering,
    shift_period,
)
from usagegraph.resolvers.request_context import RequestContext
from usagegraph.shapes import described

WINDOW_CHOICES = (7, 14, 30, 90, 180)
DEFAULT_WINDOW = 30
# Windows up to this many days default to daily buckets; longer ones to weekly.
LONGEST_DAILY_DEFAULT = 30
DEFAULT_CURRENCY = "usd"
CACHE_TTL_SECONDS = 60
# Bump when the cached encoding changes, so old entries in a shared Redis are never decoded.
CACHE_KEY_VERSION = "v1"

_INSTITUTION_ID = re.compile(r"[0-9a-fA-F]{24}")
NO_ACCESS_MESSAGE = "You do not have access to this instance"
NO_TOKEN_MESSAGE = "Authentication required"


class Interval(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"

    @property
    def granularity(self) -> Granularity:
        return _GRANULARITY[self]


_GRANULARITY = {
    Interval.DAILY: Granularity.DAY,
    Interval.WEEKLY: Granularity.WEEK,
    Interval.MONTHLY: Granularity.MONTH,
}


class Scope(StrEnum):
    OWN = "own"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class UsageHistoryQuery:
    """The effective parameters of one request, after fallbacks and access decisions."""

    instance_id: str  # `personal` or a lowercase institution id
    window: int
    interval: Interval
    scope: Scope
    user_id: int  # the caller
    time_zone: ZoneInfo
    period: Period  # the window: [first day 00:00, tomorrow 00:00) in time_zone

    @property
    def institution_id(self) -> str | None:
        return None if self.instance_id == PERSONAL_INSTANCE else self.instance_id


@dataclass(frozen=True, slots=True)
class UsageBucket:
    """Usage in one calendar period; `start` may precede the window (only usage inside counts)."""

    start: datetime = described(
        "The aligned period start (may precede the window; only usage inside counts)."
    )
    end: datetime = described("The period end (exclusive).", surface="graph")
    credits: Decimal = described("Credits spent.")
    messages: int = described("Messages sent.")
    users: int = described("Distinct users.")


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Sums over the whole window; `users` is distinct over the window, not a sum of buckets."""

    credits: Decimal = described("Credits spent.")
    messages: int = described("Messages sent.")
    users: int = described("Distinct users over the window.")


@dataclass(frozen=True, slots=True)
class UsageHistory:
    """Bucketed usage of one instance; REST shows it without the zone and window bounds."""

    instance_id: str = described("`personal` or the institution id.", json_name="instanceId")
    window: int = described(
        "Days of history: 7, 14, 30, 90 or 180.",
        json_schema={"type": "integer", "enum": list(WINDOW_CHOICES)},
    )
    interval: Interval = described("The effective bucket size.")
    scope: Scope = described("The effective scope.")
    currency: str = described("The instance's currency.")
    time_zone: str = described("The IANA zone buckets are aligned in.", surface="graph")
    start: datetime = described("Window start (inclusive).", surface="graph")
    end: datetime = described("Window end (exclusive).", surface="graph")
    buckets: tuple[UsageBucket, ...] = described("Every bucket, ascending.")
    totals: UsageTotals = described("Sums over the window.")


# --- parameter rules (pure) ---


def effective_window(window: int | None) -> int:
    """One of WINDOW_CHOICES; anything else (or nothing) falls back to 30 days."""
    return window if window in WINDOW_CHOICES else DEFAULT_WINDOW


def effective_interval(interval: str | None, window: int) -> Interval:
    """The requested interval, or daily for windows up to 30 days and weekly beyond."""
    try:
        return Interval(interval) if interval is not None else _default_interval(window)
    except ValueError:
        return _default_interval(window)


def _default_interval(window: int) -> Interval:
    return Interval.DAILY if window <= LONGEST_DAILY_DEFAULT else Interval.WEEKLY


def parse_instance_id(instance_id: str | None) -> str:
    """`personal`, or an institution id in canonical lowercase; 400 when missing or malformed.

    ObjectId hex is case-insensitive, so upper-case ids are accepted and lower-cased.
    """
    if not instance_id:
        raise invalid("instanceId is required")
    if instance_id == PERSONAL_INSTANCE:
        return PERSONAL_INSTANCE
    if not _INSTITUTION_ID.fullmatch(instance_id):
        raise invalid("instanceId must be 'personal' or a 24-character hexadecimal institution id")
    return instance_id.lower()


def effective_scope(
    principal: Principal, institution_id: str | None, requested: str | None
) -> Scope:
    """`all` only for an institution the caller administers; `own` otherwise (and for personal)."""
    honoured = (
        requested == Scope.ALL
        and institution_id is not None
        and is_institution_admin(principal, institution_id)
    )
    return Scope.ALL if honoured else Scope.OWN


def history_window(now: datetime, window: int, zone: ZoneInfo = UTC_ZONE) -> Period:
    """The last `window` days including today, in `zone`: [today - (window-1) days, tomorrow)."""
    today = period_start(now, Granularity.DAY, zone)
    return Period(
        start=shift_period(today, Granularity.DAY, -(window - 1), zone),
        end=shift_period(today, Granularity.DAY, 1, zone),
    )


def plan_query(
    principal: Principal,
    now: datetime,
    *,
    instance_id: str,
    window: int | None,
    interval: str | None,
    scope: str | None,
    time_zone: ZoneInfo = UTC_ZONE,
) -> UsageHistoryQuery:
    """Apply every fallback to a caller already allowed to read `instance_id` (canonical)."""
    if principal.user_id is None:
        raise unauthorized()
    days = effective_window(window)
    institution_id = None if instance_id == PERSONAL_INSTANCE else instance_id
    return UsageHistoryQuery(
        instance_id=instance_id,
        window=days,
        interval=effective_interval(interval, days),
        scope=effective_scope(principal, institution_id, scope),
        user_id=principal.user_id,
        time_zone=time_zone,
        period=history_window(now, days, time_zone),
    )


def cache_key(query: UsageHistoryQuery) -> str:
    """Everything that shapes the payload: two queries share a key only if they share data.

    `own` payloads carry the caller's id; `all` payloads are the same for every admin of the
    institution. The window's first instant is included so a payload never outlives its day.
    """
    audience = str(query.user_id) if query.scope is Scope.OWN else "*"
    return ":".join(
        (
            "usage-history",
            CACHE_KEY_VERSION,
            query.instance_id,
            str(query.window),
            query.interval.value,
            query.scope.value,
            audience,
            str(query.time_zone),
            query.period.start.isoformat(),
        )
    )


# --- folding slots into buckets (pure) ---


def slot_seconds_for(boundaries: Sequence[datetime]) -> int:
    """The largest slot that no boundary falls inside: whole UTC days, else hours (zones with
    whole-hour offsets), else quarter hours, which divide every current zone offset."""
    for seconds in (DAY_SLOT_SECONDS, HOUR_SLOT_SECONDS):
        if all(int(moment.timestamp()) % seconds == 0 for moment in boundaries):
            return seconds
    return ZONE_SAFE_SLOT_SECONDS


def fold_slots(
    slots: Sequence[UsageSlot], periods: list[Period]
) -> tuple[tuple[UsageBucket, ...], UsageTotals]:
    """Sum slots into their periods (every period appears, zeros included) and into totals."""
    lookup = PeriodLookup(periods)
    credits = [Decimal(0)] * len(periods)
    messages = [0] * len(periods)
    users: list[set[int]] = [set() for _ in periods]
    for slot in slots:
        index = lookup.index(slot.slot_start)
        if index is None:  # outside every period: the query's window excludes it anyway
            continue
        credits[index] += slot.credits
        messages[index] += slot.messages
        users[index].add(slot.user_id)
    buckets = tuple(
        UsageBucket(
            start=period.start,
            end=period.end,
            credits=canonical_money(credits[i]),
            messages=messages[i],
            users=len(users[i]),
        )
        for i, period in enumerate(periods)
    )
    totals = UsageTotals(
        credits=canonical_money(sum(credits, Decimal(0))),
        messages=sum(messages),
        users=len(set().union(*users)),
    )
    return buckets, totals


# --- database reads ---


def caller_user_id(principal: Principal) -> int:
    """Only a signed-in user has usage history; 401 for everyone else."""
    if principal.kind is not CallerKind.USER or principal.user_id is None:
        raise authentication_error(principal, NO_TOKEN_MESSAGE)
    return principal.user_id


async def _readable_institution(
    session: AsyncSession, principal: Principal, institution_id: str
) -> Institution:
    """The institution, if the caller is a member (super: any); one 403 for unknown or not."""
    if not is_member(principal, institution_id):
        raise forbidden(NO_ACCESS_MESSAGE)
    institution = await session.get(Institution, institution_id)
    if institution is None:
        raise forbidden(NO_ACCESS_MESSAGE)
    return institution


async def _currency(session: AsyncSession, user_id: int, institution: Institution | None) -> str:
    """The institution's currency; for personal usage, the caller's wallet's; else usd."""
    if institution is not None:
        return institution.currency or DEFAULT_CURRENCY
    currency = await session.scalar(select(Wallet.currency).where(Wallet.user_id == user_id))
    return currency or DEFAULT_CURRENCY


def _instance_filters(query: UsageHistoryQuery) -> list[UsageFilter]:
    """Narrow the readable usage to this instance and, for `own`, to the caller."""
    filters = [in_instance(query.institution_id)]
    if query.scope is Scope.OWN:
        filters.append(of_user(query.user_id))
    return filters


async def compute_usage_history(
    session: AsyncSession, principal: Principal, query: UsageHistoryQuery, currency: str
) -> UsageHistory:
    """Read the slots of the window (forgotten usage excluded) and fold them into buckets."""
    zone = query.time_zone
    periods = periods_covering(
        query.period.start, query.period.end, query.interval.granularity, zone
    )
    boundaries = [query.period.start, query.period.end, *(p.start for p in periods)]
    slot_seconds = slot_seconds_for(boundaries)
    window_slots = (query.period.end - query.period.start).total_seconds() / slot_seconds
    slots = await usage_by_slot(
        session,
        principal,
        start=query.period.start,
        end=query.period.end,
        slot_seconds=slot_seconds,
        filters=_instance_filters(query),
        include_forgotten=False,
        # Summed per bucket by the database when buckets hold several slots (weeks, months,
        # days in a zone); one slot per bucket needs no regrouping.
        period_starts=[p.start for p in periods] if window_slots > len(periods) else (),
    )
    buckets, totals = fold_slots(slots, periods)
    return UsageHistory(
        instance_id=query.instance_id,
        window=query.window,
        interval=query.interval,
        scope=query.scope,
        currency=currency,
        time_zone=str(zone),
        start=query.period.start,
        end=query.period.end,
        buckets=buckets,
        totals=totals,
    )


async def usage_history(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    instance_id: str | None,
    window: int | None = None,
    interval: str | None = None,
    scope: str | None = None,
    time_zone: ZoneInfo = UTC_ZONE,
    cache: Cache | None = None,
) -> UsageHistory:
    """The caller's (or, for an admin with scope `all`, the institution's) usage history.

    401 without a signed-in user, 400 for a missing or malformed instanceId, 403 for an
    institution that is unknown or not the caller's. Access is checked on every call, before
    the cache, so a cached payload never outlives the caller's right to see it.
    """
    user_id = caller_user_id(principal)
    instance = parse_instance_id(instance_id)
    institution = None
    if instance != PERSONAL_INSTANCE:
        institution = await _readable_institution(session, principal, instance)
    query = plan_query(
        principal,
        now,
        instance_id=instance,
        window=window,
        interval=interval,
        scope=scope,
        time_zone=time_zone,
    )
    key = cache_key(query)
    if cache is not None and (cached := decode_history(await cache.get(key))) is not None:
        return cached
    currency = await _currency(session, user_id, institution)
    history = await compute_usage_history(session, principal, query, currency)
    if cache is not None:
        await cache.set(key, encode_history(history), CACHE_TTL_SECONDS)
    return history


async def usage_history_for(
    context: RequestContext,
    *,
    instance_id: str | None,
    window: int | None = None,
    interval: str | None = None,
    scope: str | None = None,
    time_zone: str = "UTC",
    reader_id: int | None = None,
) -> UsageHistory:
    """The one call both APIs make. `time_zone` is an IANA name (the graph's addition; REST
    reads UTC). `reader_id` is the user whose history the graph's `User.usageHistory` reads:
    a user's history is read as that user, so anyone else (super included) is FORBIDDEN."""
    if reader_id is not None and context.principal.user_id != reader_id:
        raise forbidden("usage history is read as yourself")
    zone = _zone(time_zone)
    # Two reads (the currency, the usage) that need no transaction: on the request's read
    # connection, which the graph's `viewer { user }` has usually opened already.
    async with context.read_session() as session:
        return await usage_history(
            session,
            context.principal,
            context.now,
            instance_id=instance_id,
            window=window,
            interval=interval,
            scope=scope,
            time_zone=zone,
            cache=context.cache,
        )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise invalid(f"timeZone {name!r} is not an IANA time zone") from exc


# --- cache encoding ---


def encode_history(history: UsageHistory) -> bytes:
    """A compact JSON form; Decimals travel as strings so they stay exact."""
    return orjson.dumps(
        {
            "instance_id": history.instance_id,
            "window": history.window,
            "interval": history.interval.value,
            "scope": history.scope.value,
            "currency": history.currency,
            "time_zone": history.time_zone,
            "start": history.start.isoformat(),
            "end": history.end.isoformat(),
            "buckets": [
                [b.start.isoformat(), b.end.isoformat(), str(b.credits), b.messages, b.users]
                for b in history.buckets
            ],
            "totals": [str(history.totals.credits), history.totals.messages, history.totals.users],
        }
    )


def decode_history(raw: bytes | None) -> UsageHistory | None:
    """The cached history, or None when absent or unreadable (then it is recomputed)."""
    if raw is None:
        return None
    try:
        data: dict[str, Any] = orjson.loads(raw)
        credits, messages, users = data["totals"]
        return UsageHistory(
            instance_id=data["instance_id"],
            window=data["window"],
            interval=Interval(data["interval"]),
            scope=Scope(data["scope"]),
            currency=data["currency"],
            time_zone=data["time_zone"],
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            buckets=tuple(
                UsageBucket(
                    start=datetime.fromisoformat(start),
                    end=datetime.fromisoformat(end),
                    credits=Decimal(bucket_credits),
                    messages=bucket_messages,
                    users=bucket_users,
                )
                for start, end, bucket_credits, bucket_messages, bucket_users in data["buckets"]
            ),
            totals=UsageTotals(credits=Decimal(credits), messages=messages, users=users),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ArithmeticError):
        return None
