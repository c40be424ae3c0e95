"""The demo data generator, on both backends, read back through the ORM models.

Reading through the models is the point: the big tables are written past the ORM types, so
these tests prove the hand-made Money and UTCDateTime conversions agree with the types.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.wallet_invariants import wallets_miscounting_their_ledger
from usagegraph.db.engine import session_factory
from usagegraph.db.models import (
    ClientBucket,
    Institution,
    LedgerEntry,
    Membership,
    Snapshot,
    Subscription,
    UsageEvent,
    User,
    Wallet,
    signed_amount,
)
from usagegraph.demo_data import PHASES, DemoSpec, DemoSummary, generate_demo
from usagegraph.input_ids import BUCKET_ID_PATTERN

NOW = datetime(2026, 5, 20, 15, 42, 17, 123456, tzinfo=UTC)  # a Wednesday, mid-afternoon
SMALL = DemoSpec(users=20, institutions=3, events=2000, days=30, seed=7)
NAMED = ("person", "organisation", "member", "payment", "ticket", "booking")
EXTRA = ("invoice", "document", "event", "course")
ENDPOINTS = (
    "/v1/chat",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/images",
    "/v1/audio/transcriptions",
    "/v1/moderations",
)


async def _all(engine: AsyncEngine, statement: Select[Any]) -> list[Any]:
    """Every ORM object the statement selects, read in a fresh session."""
    async with session_factory(engine)() as session:
        return list((await session.scalars(statement)).all())


async def _count(engine: AsyncEngine, model: type) -> int:
    async with session_factory(engine)() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_small_spec_inserts_what_it_reports(engine: AsyncEngine) -> None:
    summary = await generate_demo(engine, SMALL, now=NOW)

    expected = {
        Institution: (summary.institutions, 3),
        User: (summary.users, 20),
        UsageEvent: (summary.usage_events, 2000),
        Wallet: (summary.wallets, 20),
    }
    for model, (reported, wanted) in expected.items():
        assert reported == wanted
        assert await _count(engine, model) == wanted
    for model, reported in (
        (Membership, summary.memberships),
        (LedgerEntry, summary.ledger_entries),
        (Subscription, summary.subscriptions),
        (ClientBucket, summary.buckets),
        (Snapshot, summary.snapshots),
    ):
        assert await _count(engine, model) == reported
    assert summary.ledger_entries > summary.users  # welcome credits plus debits
    assert sorted(summary.user_ids) == sorted(u.id for u in await _all(engine, select(User)))


async def test_events_fall_in_the_window_and_look_real(engine: AsyncEngine) -> None:
    summary = await generate_demo(engine, SMALL, now=NOW)
    start = NOW - timedelta(days=SMALL.days)
    events = await _all(engine, select(UsageEvent))
    memberships = await _all(engine, select(Membership))
    member_of = defaultdict(set)
    for membership in memberships:
        member_of[membership.user_id].add(membership.institution_id)

    assert len(events) == 2000
    for event in events:
        assert start <= event.occurred_at < NOW
        assert event.occurred_at.tzinfo is not None
        assert Decimal("0.05") <= event.credits <= Decimal(5)
        assert event.credits == event.credits.quantize(Decimal("0.000001"))
        assert 1 <= event.messages <= 5
        assert event.status in ("success", "failed")
        assert event.endpoint in ENDPOINTS
        assert event.institution_id is None or event.institution_id in member_of[event.user_id]
    assert {e.user_id for e in events} <= set(summary.user_ids)
    assert any(e.institution_id is None for e in events)
    assert any(e.institution_id is not None for e in events)
    failed = sum(e.status == "failed" for e in events)
    assert 10 <= failed <= 150  # ~3%
    assert sum(e.messages == 1 for e in events) > 1500
    # Bound in SQL by the ORM types: proves SQLite stores the same text format the types bind.
    async with session_factory(engine)() as session:
        in_window = await session.scalar(
            select(func.count())
            .select_from(UsageEvent)
            .where(UsageEvent.occurred_at >= start, UsageEvent.occurred_at < NOW)
        )
        sql_total = await session.scalar(select(func.sum(UsageEvent.credits)))
    assert in_window == 2000
    assert sql_total == sum(e.credits for e in events)


async def test_ledger_chain_wallets_and_debits_match_usage(engine: AsyncEngine) -> None:
    summary = await generate_demo(engine, SMALL, now=NOW)
    entries = await _all(
        engine,
        select(LedgerEntry).order_by(LedgerEntry.user_id, LedgerEntry.created_at, LedgerEntry.id),
    )
    wallets = {w.user_id: w for w in await _all(engine, select(Wallet))}
    events = await _all(engine, select(UsageEvent).where(UsageEvent.institution_id.is_(None)))

    assert set(wallets) == set(summary.user_ids)
    assert await wallets_miscounting_their_ledger(engine) == []
    balances: dict[int, Decimal] = defaultdict(Decimal)
    last: dict[int, LedgerEntry] = {}
    debits: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for entry in entries:
        balances[entry.user_id] += signed_amount(entry.type, entry.amount)
        assert entry.balance_after == balances[entry.user_id], entry.id
        assert entry.balance_after >= 0
        if entry.type in ("credit", "debit"):
            assert entry.amount > 0
        if entry.type == "debit":
            assert entry.description is not None
            day = entry.description.removeprefix("Usage ")
            debits[(entry.user_id, day)] += entry.amount
        last[entry.user_id] = entry
    for user_id, wallet in wallets.items():
        assert wallet.balance == last[user_id].balance_after
        assert wallet.currency == "usd"

    usage: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for event in events:
        usage[(event.user_id, event.occurred_at.date().isoformat())] += event.credits
    assert debits == usage
    assert sum(debits.values()) == sum(e.credits for e in events) > 0


async def test_roles_memberships_and_emails(engine: AsyncEngine) -> None:
    summary = await generate_demo(engine, SMALL, now=NOW)
    users = await _all(engine, select(User))
    memberships = await _all(engine, select(Membership))

    supers = [u for u in users if u.role == "super"]
    assert [u.id for u in supers] == [summary.super_user_id]
    admin_of = {m.user_id for m in memberships if m.role == "admin"}
    admins = [u for u in users if u.role == "admin"]
    assert admins
    for admin in admins:
        assert admin.permissions == ["institutions.edit"]
        assert admin.id in admin_of
    assert admin_of <= {a.id for a in admins}
    emails = [u.email for u in users]
    assert len({e.lower() for e in emails}) == len(emails)
    shapes = [
        re.fullmatch(r"[a-z0-9]+\.[a-z0-9]+\.([0-9a-f]{4})@demo\.[a-z0-9.-]+", e) for e in emails
    ]
    assert all(shapes), emails
    assert len({shape[1] for shape in shapes if shape}) == 1  # one run tag
    per_user = defaultdict(int)
    for membership in memberships:
        per_user[membership.user_id] += 1
    assert sum(1 for u in users if per_user[u.id] == 1) > len(users) / 3
    for user in users:
        assert user.created_at < NOW - timedelta(days=SMALL.days)
        assert user.last_login_at is None or user.created_at < user.last_login_at <= NOW


async def test_buckets_and_snapshots(engine: AsyncEngine) -> None:
    summary = await generate_demo(engine, SMALL, now=NOW)
    buckets = await _all(engine, select(ClientBucket))
    snapshots = await _all(engine, select(Snapshot).order_by(Snapshot.snapshot_date))

    assert 3 <= len(buckets) <= 6
    assert {b.institution_id for b in buckets} == set(summary.institution_ids)
    for bucket in buckets:
        assert re.fullmatch(BUCKET_ID_PATTERN, bucket.id)
        own = [s for s in snapshots if s.bucket_id == bucket.id]
        assert [s.snapshot_date for s in own] == [
            NOW.date() - timedelta(days=age) for age in range(SMALL.days - 1, -1, -1)
        ]
        for snapshot in own:
            assert snapshot.records["total"] == sum(
                v for k, v in snapshot.records.items() if k != "total"
            )
            assert snapshot.object_count == sum(p["count"] for p in snapshot.by_prefix.values())
            assert snapshot.total_bytes == sum(p["bytes"] for p in snapshot.by_prefix.values())
            assert set(snapshot.records) <= {*NAMED, *EXTRA, "total"}
            assert snapshot.computed_at <= NOW
        assert own[-1].records["total"] > own[0].records["total"]  # grows over time


async def test_weekdays_are_busier_than_weekends(engine: AsyncEngine) -> None:
    await generate_demo(engine, SMALL, now=NOW)
    events = await _all(engine, select(UsageEvent))
    per_day: dict[date, int] = defaultdict(int)
    for event in events:
        per_day[event.occurred_at.date()] += 1
    full_days = [NOW.date() - timedelta(days=n) for n in range(1, SMALL.days)]
    weekday = [per_day[d] for d in full_days if d.weekday() < 5]
    weekend = [per_day[d] for d in full_days if d.weekday() >= 5]
    assert sum(weekday) / len(weekday) > 2 * sum(weekend) / len(weekend)
    by_hour = defaultdict(int)
    for event in events:
        by_hour[event.occurred_at.hour] += 1
    assert sum(by_hour[h] for h in range(9, 17)) > 4 * sum(by_hour[h] for h in range(0, 6))


def _fingerprint(summary: DemoSummary, events: list[UsageEvent]) -> list[tuple]:
    """The run's events with ids replaced by positions, so two runs can be compared."""
    users = {user_id: i for i, user_id in enumerate(summary.user_ids)}
    places = {inst_id: i for i, inst_id in enumerate(summary.institution_ids)}
    return sorted(
        (
            e.occurred_at,
            users[e.user_id],
            places.get(e.institution_id),
            e.credits,
            e.messages,
            e.endpoint,
            e.status,
            e.forgotten,
        )
        for e in events
        if e.user_id in users
    )


async def test_same_seed_and_now_give_the_same_data_appended(engine: AsyncEngine) -> None:
    first = await generate_demo(engine, SMALL, now=NOW)
    second = await generate_demo(engine, SMALL, now=NOW)
    events = await _all(engine, select(UsageEvent))

    assert len(events) == 4000
    assert set(first.user_ids).isdisjoint(second.user_ids)
    assert min(second.user_ids) > max(first.user_ids)
    assert set(first.institution_ids).isdisjoint(second.institution_ids)
    one, two = _fingerprint(first, events), _fingerprint(second, events)
    assert len(one) == 2000
    assert one == two
    assert sum(f[3] for f in one) == sum(f[3] for f in two)


async def test_a_different_seed_gives_different_data(engine: AsyncEngine) -> None:
    first = await generate_demo(engine, SMALL, now=NOW)
    other = await generate_demo(engine, DemoSpec(**{**_spec_dict(SMALL), "seed": 8}), now=NOW)
    events = await _all(engine, select(UsageEvent))
    assert _fingerprint(first, events) != _fingerprint(other, events)


def _spec_dict(spec: DemoSpec) -> dict[str, int]:
    return {
        "users": spec.users,
        "institutions": spec.institutions,
        "events": spec.events,
        "days": spec.days,
        "seed": spec.seed,
    }


async def test_runs_append_and_orm_inserts_still_work(engine: AsyncEngine) -> None:
    first = await generate_demo(engine, SMALL, now=NOW)
    second = await generate_demo(engine, SMALL, now=NOW)
    assert await _count(engine, User) == 40
    assert await _count(engine, LedgerEntry) == first.ledger_entries + second.ledger_entries
    assert len({b.id for b in await _all(engine, select(ClientBucket))}) == (
        first.buckets + second.buckets
    )

    async with session_factory(engine)() as session:
        user = User(email="new.person@example.org", fname="New", lname="Person")
        session.add(user)
        await session.flush()
        event = UsageEvent(user_id=user.id, occurred_at=NOW, credits=Decimal("1.5"))
        entry = LedgerEntry(
            user_id=user.id, type="credit", amount=Decimal(10), balance_after=Decimal(10)
        )
        session.add_all([event, entry])
        await session.commit()
    assert user.id > max(second.user_ids)
    assert event.id > 4000
    assert entry.id > first.ledger_entries + second.ledger_entries


async def test_a_failure_leaves_nothing_behind(engine: AsyncEngine) -> None:
    def explode(phase: str, done: int, total: int) -> None:
        if phase == "ledger_entries" and done == total:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        await generate_demo(engine, SMALL, explode, now=NOW)
    for model in (Institution, User, Membership, UsageEvent, LedgerEntry, Snapshot):
        assert await _count(engine, model) == 0, model.__name__


async def test_progress_reaches_every_total(engine: AsyncEngine) -> None:
    seen: dict[str, tuple[int, int]] = {}

    def record(phase: str, done: int, total: int) -> None:
        assert 0 <= done <= total
        seen[phase] = (done, total)

    summary = await generate_demo(engine, SMALL, record, now=NOW)
    assert tuple(seen) == PHASES
    assert seen["usage_events"] == (2000, 2000)
    assert seen["ledger_entries"] == (summary.ledger_entries, summary.ledger_entries)
    assert all(done == total for done, total in seen.values())


@pytest.mark.parametrize("bad", [{"users": 0}, {"days": 0}, {"events": -1}])
def test_impossible_specs_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        DemoSpec(**bad).validate()
