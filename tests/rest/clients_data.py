"""Test data for client buckets and snapshots (CONTRACT section 5).

ACME owns buckets `acme-corp` and `acme_archive`; OTHER owns `other-co`.
acme-corp has five snapshots, dated 2024-01-01, 2024-01-15, 2024-02-29, 2024-06-30 and
2024-12-31; the 2024-01-15 one has stored records {person 15000, payment 45000, invoices
7} and no total, so its total is 15000 + 45000 + 7 = 60007; 2024-06-30 stores total 125000
as recorded. acme_archive has one snapshot (2024-03-01); other-co one (2024-01-15).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.rest.billing_data import add_institution, add_key, add_user
from usagegraph.db.engine import session_factory
from usagegraph.db.models import ClientBucket, Snapshot

ACME = "aaaaaaaaaaaaaaaaaaaaaaaa"
OTHER = "bbbbbbbbbbbbbbbbbbbbbbbb"
COMPUTED = datetime(2024, 1, 16, 3, 4, 5, 678000, tzinfo=UTC)


@dataclass(frozen=True)
class BucketWorld:
    acme_key: str
    other_key: str
    member_id: int  # member (role user) of ACME
    outsider_id: int  # admin of OTHER only
    super_id: int
    loner_id: int  # a user with no membership


async def add_snapshot(
    engine: AsyncEngine,
    bucket_id: str,
    day: date,
    records: dict[str, int],
    *,
    object_count: int = 0,
    total_bytes: int = 0,
    by_prefix: dict[str, Any] | None = None,
) -> None:
    async with session_factory(engine)() as session, session.begin():
        session.add(
            Snapshot(
                bucket_id=bucket_id,
                snapshot_date=day,
                records=records,
                object_count=object_count,
                total_bytes=total_bytes,
                by_prefix=by_prefix or {},
                computed_at=COMPUTED,
            )
        )


async def seed_buckets(engine: AsyncEngine) -> BucketWorld:
    created = datetime(2023, 6, 1, tzinfo=UTC)
    await add_institution(engine, ACME, created_at=created, plan_limit=None)
    await add_institution(engine, OTHER, created_at=created, plan_limit=None)
    async with session_factory(engine)() as session, session.begin():
        session.add_all(
            [
                ClientBucket(id="acme-corp", institution_id=ACME),
                ClientBucket(id="acme_archive", institution_id=ACME),
                ClientBucket(id="other-co", institution_id=OTHER),
            ]
        )
    await add_snapshot(engine, "acme-corp", date(2024, 1, 1), {"person": 1})
    await add_snapshot(
        engine,
        "acme-corp",
        date(2024, 1, 15),
        {"person": 15000, "payment": 45000, "invoices": 7},
        object_count=8500,
        total_bytes=5368709120,
        by_prefix={"docs/": {"count": 10, "bytes": 2048}, "avatars/": {"count": 8490}},
    )
    await add_snapshot(engine, "acme-corp", date(2024, 2, 29), {"ticket": 2})
    await add_snapshot(engine, "acme-corp", date(2024, 6, 30), {"booking": 3, "total": 125000})
    await add_snapshot(engine, "acme-corp", date(2024, 12, 31), {})
    await add_snapshot(engine, "acme_archive", date(2024, 3, 1), {"member": 4})
    await add_snapshot(engine, "other-co", date(2024, 1, 15), {"person": 99})
    return BucketWorld(
        acme_key=await add_key(engine, ACME),
        other_key=await add_key(engine, OTHER),
        member_id=await add_user(engine, "member@acme.edu", member_of={ACME: "user"}),
        outsider_id=await add_user(
            engine,
            "admin@other.edu",
            role="admin",
            permissions=["institutions.edit"],
            member_of={OTHER: "admin"},
        ),
        super_id=await add_user(engine, "root@usagegraph.dev", role="super"),
        loner_id=await add_user(engine, "loner@nowhere.org"),
    )
