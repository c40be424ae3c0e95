"""Bucket snapshots (CONTRACT section 5): records completed, ranges, limits and access.

Data: tests/fixtures/buckets_data.py.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.buckets_data import ACME, COMPUTED, OTHER, seed_buckets
from tests.fixtures.contexts import request_context
from usagegraph.auth.principal import Principal
from usagegraph.auth.resolve import load_user_principal
from usagegraph.db.engine import session_factory
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.resolvers.buckets import (
    BucketSnapshot,
    PrefixStorage,
    SnapshotStorage,
    bucket_snapshots,
    complete_records,
    effective_limit,
    snapshots_by_bucket,
    validate_bucket_id,
    validate_range,
)

ZEROS = {"person": 0, "organisation": 0, "member": 0, "payment": 0, "ticket": 0, "booking": 0}

# -- pure rules ---------------------------------------------------------------------------


def test_records_always_hold_the_six_collections_and_a_total() -> None:
    assert complete_records({}) == {**ZEROS, "total": 0}
    assert list(complete_records({"zeta": 1, "alpha": 2, "person": 3})) == [
        "person",
        "organisation",
        "member",
        "payment",
        "ticket",
        "booking",
        "total",
        "alpha",
        "zeta",
    ]


def test_a_missing_total_is_the_sum_of_every_other_count() -> None:
    # 15000 + 45000 + 7 (an extra collection counts too) = 60007
    records = complete_records({"person": 15000, "payment": 45000, "invoices": 7})
    assert records == {**ZEROS, "person": 15000, "payment": 45000, "total": 60007, "invoices": 7}


def test_a_stored_total_is_kept_as_recorded() -> None:
    assert complete_records({"booking": 3, "total": 125000})["total"] == 125000
    assert complete_records({"person": 5, "total": 0})["total"] == 0


@pytest.mark.parametrize("bucket_id", ["acme-corp", "A_1", "x", "a" * 64])
def test_good_bucket_ids(bucket_id: str) -> None:
    assert validate_bucket_id(bucket_id) == bucket_id


@pytest.mark.parametrize("bucket_id", ["", "a" * 65, "acme.corp", "a b", "a/b", "acme-corp\n", "é"])
def test_bad_bucket_ids(bucket_id: str) -> None:
    with pytest.raises(UsageGraphError) as caught:
        validate_bucket_id(bucket_id)
    assert (caught.value.code, caught.value.message) == (
        ErrorCode.INVALID_REQUEST,
        "Invalid bucket_id",
    )


def test_limit_defaults_to_100_and_is_refused_outside_1_to_1000() -> None:
    assert effective_limit(None) == 100
    assert effective_limit(1) == 1
    assert effective_limit(1000) == 1000
    for bad in (0, -5, 1001):
        with pytest.raises(UsageGraphError) as caught:
            effective_limit(bad)
        assert caught.value.message == "Invalid limit: must be an integer between 1 and 1000"


def test_start_after_end_is_refused_but_equal_days_are_fine() -> None:
    validate_range(date(2024, 1, 15), date(2024, 1, 15))
    validate_range(None, date(2024, 1, 15))
    with pytest.raises(UsageGraphError) as caught:
        validate_range(date(2024, 1, 16), date(2024, 1, 15))
    assert caught.value.message == "Invalid date range: start_date is after end_date"


# -- against the database -----------------------------------------------------------------


async def _snapshots(
    engine: AsyncEngine, principal: Principal, bucket_id: str, **filters: object
) -> tuple[BucketSnapshot, ...]:
    return await bucket_snapshots(request_context(engine, principal), bucket_id, **filters)


async def _user(engine: AsyncEngine, user_id: int) -> Principal:
    async with session_factory(engine)() as session:
        principal = await load_user_principal(session, user_id)
    assert principal is not None
    return principal


async def test_newest_first_with_records_completed_and_storage(engine: AsyncEngine) -> None:
    await seed_buckets(engine)
    found = await _snapshots(engine, Principal.for_institution(ACME), "acme-corp")
    assert [s.snapshot_date for s in found] == [
        date(2024, 12, 31),
        date(2024, 6, 30),
        date(2024, 2, 29),
        date(2024, 1, 15),
        date(2024, 1, 1),
    ]
    assert found[3] == BucketSnapshot(
        bucket_id="acme-corp",
        snapshot_date=date(2024, 1, 15),
        records={**ZEROS, "person": 15000, "payment": 45000, "total": 60007, "invoices": 7},
        storage=SnapshotStorage(
            object_count=8500,
            total_bytes=5368709120,
            by_prefix={
                "avatars/": PrefixStorage(count=8490, bytes=0),  # bytes absent -> 0
                "docs/": PrefixStorage(count=10, bytes=2048),
            },
        ),
        computed_at=COMPUTED,
    )
    assert found[0].records == {**ZEROS, "total": 0}
    assert found[1].records["total"] == 125000


async def test_dates_are_inclusive_and_the_limit_keeps_the_newest(engine: AsyncEngine) -> None:
    await seed_buckets(engine)
    key = Principal.for_institution(ACME)
    # [2024-01-15, 2024-06-30] holds 06-30, 02-29 and 01-15 (both ends included).
    inside = await _snapshots(
        engine, key, "acme-corp", start_date=date(2024, 1, 15), end_date=date(2024, 6, 30)
    )
    assert [s.snapshot_date for s in inside] == [
        date(2024, 6, 30),
        date(2024, 2, 29),
        date(2024, 1, 15),
    ]
    newest_two = await _snapshots(engine, key, "acme-corp", start_date=date(2024, 1, 2), limit=2)
    assert [s.snapshot_date for s in newest_two] == [date(2024, 12, 31), date(2024, 6, 30)]
    up_to = await _snapshots(engine, key, "acme-corp", end_date=date(2024, 1, 1))
    assert [s.snapshot_date for s in up_to] == [date(2024, 1, 1)]
    nothing = await _snapshots(engine, key, "acme-corp", start_date=date(2025, 1, 1))
    assert nothing == ()


async def test_members_super_and_the_institutions_key_read_the_bucket(
    engine: AsyncEngine,
) -> None:
    world = await seed_buckets(engine)
    for reader in (
        await _user(engine, world.member_id),
        await _user(engine, world.super_id),
        Principal.for_institution(ACME),
    ):
        found = await _snapshots(engine, reader, "acme-corp")
        assert len(found) == 5


async def test_no_access_is_answered_exactly_like_an_unknown_bucket(engine: AsyncEngine) -> None:
    world = await seed_buckets(engine)
    strangers = [
        await _user(engine, world.outsider_id),
        await _user(engine, world.loner_id),
        Principal.for_institution(OTHER),
        Principal.anonymous(),
    ]
    for stranger in strangers:
        for bucket_id in ("acme-corp", "no-such-bucket"):
            with pytest.raises(UsageGraphError) as caught:
                await _snapshots(engine, stranger, bucket_id)
            assert (caught.value.code, caught.value.message) == (ErrorCode.NOT_FOUND, "Not found")


async def test_many_buckets_in_one_batch_with_a_limit_per_bucket(engine: AsyncEngine) -> None:
    world = await seed_buckets(engine)
    member = await _user(engine, world.member_id)
    found = await snapshots_by_bucket(
        request_context(engine, member), ["acme-corp", "acme_archive", "other-co"], limit=2
    )
    assert {bucket: [s.snapshot_date for s in rows] for bucket, rows in found.items()} == {
        "acme-corp": [date(2024, 12, 31), date(2024, 6, 30)],
        "acme_archive": [date(2024, 3, 1)],
        "other-co": [],  # OTHER's bucket: not readable by an ACME member
    }
