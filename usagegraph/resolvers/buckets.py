"""Snapshots of a client bucket: record counts and storage metrics per day, newest first.

Who may read a bucket is decided by `datasources.buckets.readable_buckets` (members of its
institution, its API key, super); a bucket the caller may not read is answered exactly like
an unknown one. Records always carry the six named collections (0 when absent) and a
`total`; when the stored records have no `total`, it is the sum of every other count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from usagegraph.datasources.loaders import SnapshotPageKey
from usagegraph.db import models
from usagegraph.db.models import Snapshot
from usagegraph.errors import invalid, not_found
from usagegraph.input_ids import BUCKET_ID_PATTERN
from usagegraph.resolvers.request_context import RequestContext
from usagegraph.shapes import described

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
NAMED_COLLECTIONS = ("person", "organisation", "member", "payment", "ticket", "booking")
TOTAL = "total"
_BUCKET_ID = re.compile(BUCKET_ID_PATTERN)


RECORD_COUNTS_SCHEMA = {
    "type": "object",
    "required": [*NAMED_COLLECTIONS, "total"],
    "properties": {name: {"type": "integer"} for name in (*NAMED_COLLECTIONS, "total")},
}


@dataclass(frozen=True, slots=True)
class PrefixStorage:
    """Objects and bytes under one storage prefix."""

    count: int = described("Objects under it.")
    bytes: int = described("Bytes under it.")


@dataclass(frozen=True, slots=True)
class SnapshotStorage:
    """Storage metrics of a bucket on one day."""

    object_count: int = described("Total objects.")
    total_bytes: int = described("Total bytes.")
    by_prefix: Mapping[str, PrefixStorage] = described("Breakdown by prefix.")


@dataclass(frozen=True, slots=True)
class BucketSnapshot:
    """A bucket on one day. `records` holds the six named collections, `total`, then extras."""

    bucket_id: str = described("The bucket.")
    snapshot_date: date = described("The day.")
    records: Mapping[str, int] = described(
        "Counts by collection: the six named ones (0 when absent), total, and any other.",
        json_schema=RECORD_COUNTS_SCHEMA,
    )
    storage: SnapshotStorage = described("Storage metrics.")
    computed_at: datetime = described("When it was computed.")


def validate_bucket_id(bucket_id: str) -> str:
    """A bucket id matches ^[A-Za-z0-9_-]{1,64}$; anything else is a 400, before any lookup."""
    if not _BUCKET_ID.fullmatch(bucket_id):
        raise invalid("Invalid bucket_id")
    return bucket_id


def effective_limit(limit: int | None) -> int:
    """100 when not given; outside 1..1000 is refused, not clamped."""
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid(f"Invalid limit: must be an integer between 1 and {MAX_LIMIT}")
    return limit


def validate_range(start_date: date | None, end_date: date | None) -> None:
    """Both ends are inclusive; a start after the end is a mistake worth telling, not []."""
    if start_date is not None and end_date is not None and start_date > end_date:
        raise invalid("Invalid date range: start_date is after end_date")


def complete_records(stored: Mapping[str, int]) -> dict[str, int]:
    """The six named collections (0 when absent), `total`, then any extra keys (sorted).

    A stored `total` is kept as recorded; without one, it is the sum of all other counts.
    """
    named = {name: int(stored.get(name, 0)) for name in NAMED_COLLECTIONS}
    extras = {
        key: int(stored[key])
        for key in sorted(stored)
        if key not in NAMED_COLLECTIONS and key != TOTAL
    }
    total = stored.get(TOTAL)
    if total is None:
        total = sum(named.values()) + sum(extras.values())
    return {**named, TOTAL: int(total), **extras}


def _storage(object_count: int, total_bytes: int, by_prefix: Mapping[str, Any]) -> SnapshotStorage:
    return SnapshotStorage(
        object_count=int(object_count or 0),
        total_bytes=int(total_bytes or 0),
        by_prefix={
            prefix: PrefixStorage(
                count=int(metrics.get("count", 0)), bytes=int(metrics.get("bytes", 0))
            )
            for prefix, metrics in sorted((by_prefix or {}).items())
        },
    )


def to_bucket_snapshot(row: Snapshot) -> BucketSnapshot:
    return BucketSnapshot(
        bucket_id=row.bucket_id,
        snapshot_date=row.snapshot_date,
        records=complete_records(row.records or {}),
        storage=_storage(row.object_count, row.total_bytes, row.by_prefix),
        computed_at=row.computed_at,
    )


async def snapshots_by_bucket(
    context: RequestContext,
    bucket_ids: Sequence[str],
    *,
    start_date: date | None = None,
    end_date: date | None = None,
    limit: int | None = None,
) -> dict[str, tuple[BucketSnapshot, ...]]:
    """Snapshots of many buckets in one batch of the request's loader, newest first per
    bucket. A bucket the caller may not read (or that does not exist) maps to no snapshots."""
    limit = effective_limit(limit)
    validate_range(start_date, end_date)
    pages = await context.loaders.snapshot_page.load_many(
        [
            SnapshotPageKey(bucket_id=bucket_id, start=start_date, end=end_date, limit=limit)
            for bucket_id in bucket_ids
        ]
    )
    return {
        bucket_id: tuple(to_bucket_snapshot(row) for row in rows)
        for bucket_id, rows in zip(bucket_ids, pages, strict=True)
    }


async def bucket_snapshots(
    context: RequestContext,
    bucket_id: str,
    *,
    start_date: date | None = None,
    end_date: date | None = None,
    limit: int | None = None,
) -> tuple[BucketSnapshot, ...]:
    """One bucket's snapshots dated [start_date, end_date], newest first, at most `limit`.

    Raises invalid for a malformed bucket id or parameters, then not-found ("Not found")
    alike for an unknown bucket and for one the caller may not read.
    """
    validate_bucket_id(bucket_id)
    limit = effective_limit(limit)
    validate_range(start_date, end_date)
    if await bucket_by_id(context, bucket_id) is None:
        raise not_found("Not found")
    found = await snapshots_by_bucket(
        context, [bucket_id], start_date=start_date, end_date=end_date, limit=limit
    )
    return found[bucket_id]


# --- the graph's reads, through the request's loaders ---------------------------------------


@dataclass(frozen=True, slots=True)
class ClientBucket:
    """A client's storage area, owned by one institution."""

    bucket_id: str
    institution_id: str


def _bucket(row: models.ClientBucket) -> ClientBucket:
    return ClientBucket(bucket_id=row.id, institution_id=row.institution_id)


async def buckets_by_id(context: RequestContext, ids: Sequence[str]) -> list[ClientBucket | None]:
    """Each bucket the caller may read; None for the others."""
    rows = await context.loaders.bucket.load_many(ids)
    return [_bucket(row) if row else None for row in rows]


async def bucket_by_id(context: RequestContext, bucket_id: str) -> ClientBucket | None:
    """A bucket of one of the caller's institutions; None for any other (or unknown) id."""
    validate_bucket_id(bucket_id)
    (bucket,) = await buckets_by_id(context, [bucket_id])
    return bucket


async def buckets_of_institution(
    context: RequestContext, institution_id: str
) -> list[ClientBucket]:
    rows = await context.loaders.buckets_of_institution.load(institution_id)
    return [_bucket(row) for row in rows]


async def snapshot_page(
    context: RequestContext,
    bucket_id: str,
    *,
    start_date: date | None,
    end_date: date | None,
    size: int,
    after_day: date | None,
) -> list[BucketSnapshot]:
    """`size + 1` snapshots dated [start_date, end_date] before `after_day`, newest first."""
    validate_range(start_date, end_date)
    if after_day is not None:  # newest first: continue with the days before the cursor's
        before = after_day - timedelta(days=1)
        end_date = before if end_date is None else min(end_date, before)
    rows = await context.loaders.snapshot_page.load(
        SnapshotPageKey(bucket_id=bucket_id, start=start_date, end=end_date, limit=size + 1)
    )
    return [to_bucket_snapshot(row) for row in rows]


async def snapshot_on(context: RequestContext, bucket_id: str, day: date) -> BucketSnapshot | None:
    """A bucket's snapshot of one day (the graph's `node`), if the caller may read it."""
    rows = await context.loaders.snapshot_page.load(
        SnapshotPageKey(bucket_id=bucket_id, start=day, end=day, limit=1)
    )
    return to_bucket_snapshot(rows[0]) if rows else None
