"""Usage-history rules: fallbacks, access, scope, windows, calendar buckets (UTC and DST), cache.

Expected numbers are worked out by hand from tests/fixtures/usage_history_data.py (FIXED_NOW =
Wednesday 2026-05-20 15:30 UTC) or from the small Berlin fixture below.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FIXED_NOW
from tests.fixtures.usage_history_data import (
    ACME,
    OTHER,
    UNKNOWN,
    Use,
    add_usage,
    at,
    seed,
    seed_people,
)
from usagegraph.auth.principal import Principal
from usagegraph.auth.resolve import load_user_principal
from usagegraph.cache import MemoryCache
from usagegraph.datasources.usage import UsageSlot
from usagegraph.db.engine import session_factory
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.resolvers.calendar import Period
from usagegraph.resolvers.usage_history import (
    Interval,
    Scope,
    UsageBucket,
    UsageHistory,
    UsageTotals,
    cache_key,
    decode_history,
    effective_interval,
    effective_scope,
    effective_window,
    encode_history,
    fold_slots,
    history_window,
    parse_instance_id,
    plan_query,
    slot_seconds_for,
    usage_history,
)

BERLIN = ZoneInfo("Europe/Berlin")
UTC_ZONE = ZoneInfo("UTC")
# Tuesday 31 March 2026, 12:00 in Berlin (CEST); Berlin went from CET to CEST on Sunday 29 March.
AFTER_DST = datetime(2026, 3, 31, 10, tzinfo=UTC)


def _user(
    user_id: int = 1,
    role: str = "user",
    permissions: frozenset[str] = frozenset(),
    memberships: dict[str, str] | None = None,
) -> Principal:
    return Principal.for_user(user_id, role, permissions, memberships or {})


ADMIN = _user(
    role="admin", permissions=frozenset({"institutions.edit"}), memberships={ACME: "admin"}
)


# --- parameter fallbacks ---


@pytest.mark.parametrize(
    ("requested", "expected"),
    [(7, 7), (14, 14), (30, 30), (90, 90), (180, 180), (None, 30), (8, 30), (0, 30), (-7, 30)],
)
def test_window_falls_back_to_30(requested: int | None, expected: int) -> None:
    assert effective_window(requested) == expected


@pytest.mark.parametrize(
    ("interval", "window", "expected"),
    [
        (None, 7, Interval.DAILY),
        (None, 30, Interval.DAILY),  # daily up to and including 30 days
        (None, 90, Interval.WEEKLY),
        (None, 180, Interval.WEEKLY),
        ("hourly", 14, Interval.DAILY),
        ("hourly", 90, Interval.WEEKLY),
        ("Weekly", 7, Interval.DAILY),  # values are exact
        ("", 180, Interval.WEEKLY),
        ("monthly", 7, Interval.MONTHLY),
        ("daily", 180, Interval.DAILY),
        ("weekly", 7, Interval.WEEKLY),
    ],
)
def test_interval_falls_back_by_window(
    interval: str | None, window: int, expected: Interval
) -> None:
    assert effective_interval(interval, window) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("personal", "personal"),
        (ACME, ACME),
        ("A" * 24, ACME),
        ("0123456789abcdefABCDEF00", "0123456789abcdefabcdef00"),
    ],
)
def test_instance_id_accepts_personal_and_hex_ids(raw: str, expected: str) -> None:
    assert parse_instance_id(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "instanceId is required"),
        ("", "instanceId is required"),
        ("Personal", "instanceId must be 'personal' or a 24-character hexadecimal institution id"),
        ("a" * 23, "instanceId must be 'personal' or a 24-character hexadecimal institution id"),
        ("a" * 25, "instanceId must be 'personal' or a 24-character hexadecimal institution id"),
        ("g" * 24, "instanceId must be 'personal' or a 24-character hexadecimal institution id"),
        (
            " " + "a" * 23,
            "instanceId must be 'personal' or a 24-character hexadecimal institution id",
        ),
    ],
)
def test_missing_or_malformed_instance_id_is_invalid(raw: str | None, message: str) -> None:
    with pytest.raises(UsageGraphError) as caught:
        parse_instance_id(raw)
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("principal", "institution", "requested", "expected"),
    [
        (ADMIN, ACME, "all", Scope.ALL),
        (ADMIN, ACME, "own", Scope.OWN),
        (ADMIN, ACME, None, Scope.OWN),
        (ADMIN, ACME, "ALL", Scope.OWN),
        (ADMIN, None, "all", Scope.OWN),  # personal is always own
        (ADMIN, OTHER, "all", Scope.OWN),  # not their institution
        (_user(role="admin", memberships={ACME: "admin"}), ACME, "all", Scope.OWN),  # no permission
        (_user(memberships={ACME: "admin"}), ACME, "all", Scope.OWN),  # role user
        (_user(role="super"), OTHER, "all", Scope.ALL),
        (_user(role="super"), None, "all", Scope.OWN),
    ],
)
def test_scope_all_only_for_institution_admins(
    principal: Principal, institution: str | None, requested: str | None, expected: Scope
) -> None:
    assert effective_scope(principal, institution, requested) is expected


# --- windows and slots ---


@pytest.mark.parametrize(
    ("window", "first_day"),
    [
        (7, datetime(2026, 5, 14, tzinfo=UTC)),  # 20 May - 6 days
        (14, datetime(2026, 5, 7, tzinfo=UTC)),  # 20 May - 13 days
        (30, datetime(2026, 4, 21, tzinfo=UTC)),  # 20 May - 29 days (April has 30)
        (90, datetime(2026, 2, 20, tzinfo=UTC)),  # day 140 of 2026 - 89 = day 51 = 20 Feb
        (180, datetime(2025, 11, 22, tzinfo=UTC)),  # 140 - 179 = -39 -> day 326 of 2025
    ],
)
def test_window_is_the_last_n_utc_days_including_today(window: int, first_day: datetime) -> None:
    assert history_window(FIXED_NOW, window) == Period(first_day, datetime(2026, 5, 21, tzinfo=UTC))


def test_window_in_a_zone_starts_at_local_midnight_across_dst() -> None:
    # Berlin today is 31 Mar (CEST, +2); 6 days earlier, 25 Mar, was still CET (+1).
    assert history_window(AFTER_DST, 7, BERLIN) == Period(
        datetime(2026, 3, 24, 23, tzinfo=UTC), datetime(2026, 3, 31, 22, tzinfo=UTC)
    )


def test_the_largest_slot_no_boundary_falls_inside() -> None:
    assert (
        slot_seconds_for([datetime(2026, 5, 14, tzinfo=UTC), datetime(2026, 5, 21, tzinfo=UTC)])
        == 86_400
    )
    # New York midnight (04:00 UTC in May): hours
    assert (
        slot_seconds_for([datetime(2026, 5, 14, tzinfo=UTC), datetime(2026, 5, 14, 4, tzinfo=UTC)])
        == 3600
    )
    # Kathmandu midnight (18:15 UTC): quarter hours
    assert slot_seconds_for([datetime(2026, 5, 9, 18, 15, tzinfo=UTC)]) == 900


def _slot(start: datetime, user_id: int, credits: str, messages: int = 1) -> UsageSlot:
    return UsageSlot(
        slot_start=start,
        user_id=user_id,
        institution_id=ACME,
        credits=Decimal(credits),
        messages=messages,
        events=1,
        failed_events=0,
    )


def test_fold_slots_sums_counts_distinct_users_and_keeps_empty_periods() -> None:
    day = [Period(at(5, d), at(5, d + 1)) for d in (18, 19, 20)]
    slots = [
        _slot(at(5, 18, 9), 1, "1.25", 2),
        _slot(at(5, 18, 10), 2, "0.75"),
        _slot(at(5, 18, 11), 1, "1"),
        _slot(at(5, 20, 23, 45), 1, "0.5", 3),
        _slot(at(5, 21), 3, "99"),  # outside every period: ignored
    ]
    buckets, totals = fold_slots(slots, day)
    assert buckets == (
        # 1.25 + 0.75 + 1 = 3; 2 + 1 + 1 = 4 messages; users {1, 2}
        UsageBucket(at(5, 18), at(5, 19), Decimal(3), 4, 2),
        UsageBucket(at(5, 19), at(5, 20), Decimal(0), 0, 0),
        UsageBucket(at(5, 20), at(5, 21), Decimal("0.5"), 3, 1),
    )
    # users: {1, 2} over the window, not 2 + 1
    assert totals == UsageTotals(Decimal("3.5"), 7, 2)


# --- cache key and encoding ---


def _query(principal: Principal, scope: str, zone: ZoneInfo = UTC_ZONE, now: datetime = FIXED_NOW):
    return plan_query(
        principal, now, instance_id=ACME, window=7, interval=None, scope=scope, time_zone=zone
    )


def test_cache_key_separates_callers_scopes_zones_and_days() -> None:
    other_admin = _user(2, "admin", frozenset({"institutions.edit"}), {ACME: "admin"})
    member = _user(3, memberships={ACME: "user"})
    own = cache_key(_query(ADMIN, "own"))
    assert own == "usage-history:v1:" + ACME + ":7:daily:own:1:UTC:2026-05-14T00:00:00+00:00"
    assert cache_key(_query(ADMIN, "all")) == cache_key(_query(other_admin, "all"))
    assert cache_key(_query(ADMIN, "all")).split(":")[5:7] == ["all", "*"]
    assert cache_key(_query(other_admin, "own")) != own
    # A member asking for `all` gets their own key, never the admins' shared one.
    assert cache_key(_query(member, "all")) == cache_key(_query(member, "own"))
    assert cache_key(_query(member, "all")) != cache_key(_query(ADMIN, "all"))
    assert cache_key(_query(ADMIN, "own", BERLIN)) != own
    assert cache_key(_query(ADMIN, "own", now=datetime(2026, 5, 21, 0, 0, 1, tzinfo=UTC))) != own


def test_encoding_round_trips_exactly() -> None:
    history = UsageHistory(
        instance_id=ACME,
        window=7,
        interval=Interval.WEEKLY,
        scope=Scope.ALL,
        currency="eur",
        time_zone="Europe/Berlin",
        start=datetime(2026, 3, 24, 23, tzinfo=UTC),
        end=datetime(2026, 3, 31, 22, tzinfo=UTC),
        buckets=(
            UsageBucket(
                datetime(2026, 3, 22, 23, tzinfo=UTC),
                datetime(2026, 3, 29, 22, tzinfo=UTC),
                Decimal("0.000001"),
                2,
                1,
            ),
        ),
        totals=UsageTotals(Decimal("12345678901234.000001"), 2, 1),
    )
    assert decode_history(encode_history(history)) == history
    assert decode_history(None) is None
    assert decode_history(b"not json") is None
    assert decode_history(b'{"totals": []}') is None


# --- against the database ---


async def _history(
    engine: AsyncEngine, principal: Principal, now: datetime = FIXED_NOW, **params: Any
) -> UsageHistory:
    async with session_factory(engine)() as session:
        return await usage_history(session, principal, now, **params)


async def _principal(engine: AsyncEngine, user_id: int) -> Principal:
    async with session_factory(engine)() as session:
        principal = await load_user_principal(session, user_id)
    assert principal is not None
    return principal


def _credits(history: UsageHistory) -> list[tuple[datetime, Decimal, int, int]]:
    return [(b.start, b.credits, b.messages, b.users) for b in history.buckets]


async def test_week_buckets_start_on_monday_before_the_window(engine: AsyncEngine) -> None:
    people = await seed(engine)
    member = await _principal(engine, people.member)
    history = await _history(engine, member, instance_id=ACME, window=14, interval="weekly")
    assert (history.start, history.end) == (at(5, 7), at(5, 21))
    assert _credits(history) == [
        (at(5, 4), Decimal("0.5"), 1, 1),  # 7 May 00:00 only; 6 May (9) is before the window
        (at(5, 11), Decimal(5), 2, 1),  # 13 May 23:59:59 (4) + 14 May (1)
        (at(5, 18), Decimal("3.25"), 3, 1),  # 18 May failed (0.75, 1) + 20 May (2.5, 2)
    ]
    assert history.totals == UsageTotals(Decimal("8.75"), 6, 1)


async def test_month_buckets_start_on_the_first(engine: AsyncEngine) -> None:
    people = await seed(engine)
    member = await _principal(engine, people.member)
    history = await _history(engine, member, instance_id=ACME, window=90, interval="monthly")
    assert history.interval is Interval.MONTHLY
    assert _credits(history) == [
        (at(2, 1), Decimal(2), 1, 1),  # 20 Feb 00:00; 19 Feb 23:00 (10) is outside
        (at(3, 1), Decimal(0), 0, 0),
        (at(4, 1), Decimal(1), 1, 1),  # 30 Apr 23:59:59
        # 1 May 1 + 6 May 9 + 7 May 0.5 + 13 May 4 + 14 May 1 + 18 May 0.75 + 20 May 2.5
        (at(5, 1), Decimal("18.75"), 8, 1),
    ]
    assert history.totals == UsageTotals(Decimal("21.75"), 10, 1)


async def test_day_buckets_exclude_forgotten_and_count_failed(engine: AsyncEngine) -> None:
    people = await seed(engine)
    admin = await _principal(engine, people.admin)
    history = await _history(engine, admin, instance_id=ACME, window=7, scope="all")
    assert history.scope is Scope.ALL
    assert history.interval is Interval.DAILY
    assert _credits(history) == [
        (at(5, 14), Decimal(1), 1, 1),
        (at(5, 15), Decimal(0), 0, 0),
        (at(5, 16), Decimal(0), 0, 0),
        (at(5, 17), Decimal(0), 0, 0),
        (at(5, 18), Decimal("0.75"), 1, 1),  # failed usage counts
        (at(5, 19), Decimal("1.5"), 1, 1),  # bob only: ada's forgotten 5 credits drop out
        (at(5, 20), Decimal("2.75"), 3, 2),  # ada 2.5 (2 msgs) + admin 0.25 (1 msg)
    ]
    # ada, bob and the admin: 3 distinct users (the bucket counts add up to 5)
    assert history.totals == UsageTotals(Decimal(6), 6, 3)
    assert history.currency == "eur"


async def test_personal_usage_is_the_callers_own_in_their_wallet_currency(
    engine: AsyncEngine,
) -> None:
    people = await seed(engine)
    member = await _principal(engine, people.member)
    history = await _history(engine, member, instance_id="personal", window=7, scope="all")
    assert (history.instance_id, history.scope, history.currency) == ("personal", Scope.OWN, "gbp")
    assert history.buckets[-1] == UsageBucket(at(5, 20), at(5, 21), Decimal(3), 1, 1)
    assert history.totals == UsageTotals(Decimal(3), 1, 1)
    bob = await _principal(engine, people.bob)  # no wallet: usd
    assert (await _history(engine, bob, instance_id="personal")).currency == "usd"


async def test_unknown_and_foreign_institutions_are_the_same_403(engine: AsyncEngine) -> None:
    people = await seed(engine)
    outsider = await _principal(engine, people.outsider)
    root = await _principal(engine, people.super)
    answers = []
    for principal, instance in ((outsider, ACME), (outsider, UNKNOWN), (root, UNKNOWN)):
        with pytest.raises(UsageGraphError) as caught:
            await _history(engine, principal, instance_id=instance)
        answers.append((caught.value.code, caught.value.message))
    assert answers == [(ErrorCode.FORBIDDEN, "You do not have access to this instance")] * 3


async def test_only_signed_in_users_have_a_history(engine: AsyncEngine) -> None:
    await seed(engine)
    for principal, message in (
        (Principal.anonymous(), "Authentication required"),
        (Principal.anonymous(rejection="token expired"), "Invalid or expired token"),
        (Principal.for_institution(ACME), "Authentication required"),
    ):
        with pytest.raises(UsageGraphError) as caught:
            await _history(engine, principal, instance_id=ACME)
        assert (caught.value.code, caught.value.message) == (ErrorCode.UNAUTHORIZED, message)


# --- time zones (DST) ---

# ada's usage in ACME around Berlin's switch to summer time (Sunday 29 March 2026, 02:00 -> 03:00).
BERLIN_USAGE = (
    Use("member", ACME, datetime(2026, 3, 24, 22, 59, tzinfo=UTC), "64"),  # 24 Mar 23:59 CET
    Use("member", ACME, datetime(2026, 3, 24, 23, tzinfo=UTC), "1"),  # 25 Mar 00:00 CET
    Use("member", ACME, datetime(2026, 3, 28, 23, 30, tzinfo=UTC), "2"),  # 29 Mar 00:30 CET
    Use("member", ACME, datetime(2026, 3, 29, 21, 59, tzinfo=UTC), "4"),  # 29 Mar 23:59 CEST
    Use("member", ACME, datetime(2026, 3, 29, 22, tzinfo=UTC), "8"),  # 30 Mar 00:00 CEST
    Use("member", ACME, datetime(2026, 3, 31, 21, 59, tzinfo=UTC), "16"),  # 31 Mar 23:59 CEST
    Use("member", ACME, datetime(2026, 3, 31, 22, tzinfo=UTC), "32"),  # 1 Apr 00:00 CEST
)


async def _berlin_member(engine: AsyncEngine) -> Principal:
    people = await seed_people(engine)
    await add_usage(engine, people, BERLIN_USAGE)
    return await _principal(engine, people.member)


def _utc(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


async def test_berlin_days_follow_dst_with_a_23_hour_day(engine: AsyncEngine) -> None:
    member = await _berlin_member(engine)
    history = await _history(
        engine, member, now=AFTER_DST, instance_id=ACME, window=7, time_zone=BERLIN
    )
    assert history.time_zone == "Europe/Berlin"
    assert [(b.start, b.end, b.credits) for b in history.buckets] == [
        (
            _utc(24, 23),
            _utc(25, 23),
            Decimal(1),
        ),  # 25 Mar; the 64 at 23:59 CET the day before is out
        (_utc(25, 23), _utc(26, 23), Decimal(0)),
        (_utc(26, 23), _utc(27, 23), Decimal(0)),
        (_utc(27, 23), _utc(28, 23), Decimal(0)),
        (_utc(28, 23), _utc(29, 22), Decimal(6)),  # 29 Mar: 23 hours; 2 + 4
        (_utc(29, 22), _utc(30, 22), Decimal(8)),
        (_utc(30, 22), _utc(31, 22), Decimal(16)),  # the 32 at 1 Apr 00:00 is out
    ]
    assert history.totals == UsageTotals(Decimal(31), 5, 1)


async def test_berlin_weeks_start_on_local_mondays(engine: AsyncEngine) -> None:
    member = await _berlin_member(engine)
    history = await _history(
        engine,
        member,
        now=AFTER_DST,
        instance_id=ACME,
        window=14,
        interval="weekly",
        time_zone=BERLIN,
    )
    # window: 18 Mar 00:00 CET = 17 Mar 23:00 UTC .. 1 Apr 00:00 CEST = 31 Mar 22:00 UTC
    assert (history.start, history.end) == (_utc(17, 23), _utc(31, 22))
    assert [(b.start, b.end, b.credits, b.messages) for b in history.buckets] == [
        (_utc(15, 23), _utc(22, 23), Decimal(0), 0),  # Mon 16 Mar
        (_utc(22, 23), _utc(29, 22), Decimal(71), 4),  # Mon 23 Mar, 167 h: 64 + 1 + 2 + 4
        (_utc(29, 22), datetime(2026, 4, 5, 22, tzinfo=UTC), Decimal(24), 2),  # 8 + 16
    ]
    assert history.totals == UsageTotals(Decimal(95), 6, 1)


async def test_cached_payloads_do_not_cross_zones_or_outlive_access(engine: AsyncEngine) -> None:
    member = await _berlin_member(engine)
    cache = MemoryCache()
    berlin = await _history(
        engine, member, now=AFTER_DST, instance_id=ACME, window=7, time_zone=BERLIN, cache=cache
    )
    utc = await _history(engine, member, now=AFTER_DST, instance_id=ACME, window=7, cache=cache)
    assert berlin.totals.credits == Decimal(31)
    # UTC window 25 Mar .. 1 Apr 00:00 UTC: 2 + 4 + 8 + 16 + 32 (the 1 is 24 Mar in UTC)
    assert utc.totals.credits == Decimal(62)
    assert [b.credits for b in utc.buckets] == [0, 0, 0, 2, 12, 0, 48]
    assert len(cache) == 2
    # The same user without the membership any more: refused, though their payload is cached.
    expelled = Principal.for_user(member.user_id or 0, "user", frozenset(), {})
    with pytest.raises(UsageGraphError) as caught:
        await _history(engine, expelled, now=AFTER_DST, instance_id=ACME, window=7, cache=cache)
    assert caught.value.code is ErrorCode.FORBIDDEN
