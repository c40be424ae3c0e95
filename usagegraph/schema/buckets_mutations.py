"""The bucket writes: a client bucket's daily snapshot of records and storage.

`recordSnapshot` runs `resolvers.administration.record_snapshot` (super, the institution's
API key, or its admins) and answers the stored snapshot as `schema.buckets` shows it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from usagegraph.resolvers import directory_writes
from usagegraph.resolvers.buckets import PrefixStorage as PrefixStorageResult
from usagegraph.resolvers.buckets import SnapshotStorage as SnapshotStorageResult
from usagegraph.schema.buckets import Snapshot
from usagegraph.schema.context import Info
from usagegraph.schema.scalars import BigInt
from usagegraph.schema.writes import INPUT, open_write


@strawberry.input(description="Objects and bytes under one storage prefix.")
class PrefixStorageInput:
    prefix: str = strawberry.field(description="The prefix, e.g. `docs/`.")
    count: BigInt = strawberry.field(description="Objects under it.")
    bytes: BigInt = strawberry.field(description="Bytes under it.")


@strawberry.input(description="Storage metrics of a bucket on one day.")
class SnapshotStorageInput:
    object_count: BigInt = strawberry.field(description="Total objects.")
    total_bytes: BigInt = strawberry.field(description="Total bytes.")
    by_prefix: list[PrefixStorageInput] = strawberry.field(
        default_factory=list, description="Breakdown by prefix."
    )


@strawberry.input(description="A bucket's snapshot of one day (replaces that day's, if any).")
class RecordSnapshotInput:
    bucket_id: str = strawberry.field(description="The bucket.")
    snapshot_date: date = strawberry.field(description="The day.")
    records: JSON = strawberry.field(
        description='{collection: count}, e.g. {"person": 15000, "payment": 45000}.'
    )
    storage: SnapshotStorageInput = strawberry.field(description="Storage metrics.")
    computed_at: datetime | None = strawberry.field(
        default=None, description="When it was computed (default: now)."
    )

    def storage_value(self) -> SnapshotStorageResult:
        return SnapshotStorageResult(
            object_count=int(self.storage.object_count),
            total_bytes=int(self.storage.total_bytes),
            by_prefix={
                item.prefix: PrefixStorageResult(count=int(item.count), bytes=int(item.bytes))
                for item in self.storage.by_prefix
            },
        )


@strawberry.type(description="The bucket writes.")
class BucketsMutations:
    @strawberry.mutation(
        description="Store a bucket's snapshot of one day, replacing that day's (super, the "
        "institution's API key, or its admins)."
    )
    async def record_snapshot(
        self,
        info: Info,
        input: Annotated[RecordSnapshotInput, strawberry.argument(description=INPUT)],
    ) -> Snapshot:
        async with open_write(info) as write:
            result = await directory_writes.record_snapshot(
                write.session,
                write.principal,
                write.now,
                bucket_id=input.bucket_id,
                snapshot_date=input.snapshot_date,
                records=input.records,
                storage=input.storage_value(),
                computed_at=input.computed_at,
            )
        return Snapshot.from_result(result)
