"""Client buckets and their daily snapshots in the graph (seed 004's data)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Annotated, Any, Self

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from usagegraph.resolvers import buckets
from usagegraph.schema.context import Info
from usagegraph.schema.node_ids import bucket_keys, load_keys, snapshot_key
from usagegraph.schema.pagination import (
    AfterArgument,
    FirstArgument,
    day_cursor,
    encode_cursor,
    page_info,
    page_size,
)
from usagegraph.schema.scalars import BigInt


@strawberry.type(description="Objects and bytes under one storage prefix.")
class PrefixStorage:
    prefix: str = strawberry.field(description="The prefix, e.g. `docs/`.")
    count: BigInt = strawberry.field(description="Objects under it.")
    bytes: BigInt = strawberry.field(description="Bytes under it.")


@strawberry.type(description="Storage metrics of a bucket on one day.")
class SnapshotStorage:
    object_count: BigInt = strawberry.field(description="Total objects.")
    total_bytes: BigInt = strawberry.field(description="Total bytes.")
    by_prefix: list[PrefixStorage] = strawberry.field(description="Breakdown by prefix.")


@strawberry.type(description="Record counts and storage of a bucket on one day.")
class Snapshot(relay.Node):
    bucket_id: str = strawberry.field(description="The bucket.")
    snapshot_date: date = strawberry.field(description="The day.")
    records: JSON = strawberry.field(
        description="Counts by collection: person, organisation, member, payment, ticket, "
        "booking (0 when absent), total, and any other collection."
    )
    storage: SnapshotStorage = strawberry.field(description="Storage metrics.")
    computed_at: datetime = strawberry.field(description="When it was computed.")

    @classmethod
    def resolve_id(cls, root: Self, *, info: Any) -> str:
        return f"{root.bucket_id}:{root.snapshot_date.isoformat()}"

    @classmethod
    def from_result(cls, result: buckets.BucketSnapshot) -> Snapshot:
        storage = result.storage
        return cls(
            bucket_id=result.bucket_id,
            snapshot_date=result.snapshot_date,
            records=dict(result.records),
            storage=SnapshotStorage(
                object_count=storage.object_count,
                total_bytes=storage.total_bytes,
                by_prefix=[
                    PrefixStorage(prefix=prefix, count=item.count, bytes=item.bytes)
                    for prefix, item in storage.by_prefix.items()
                ],
            ),
            computed_at=result.computed_at,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Snapshot | None]:
        found: list[Snapshot | None] = []
        for node_id in node_ids:
            key = snapshot_key(node_id)
            snapshot = await buckets.snapshot_on(info.context, *key) if key else None
            found.append(cls.from_result(snapshot) if snapshot else None)
        return found


@strawberry.type(description="A page of snapshots, newest first.")
class SnapshotConnection(relay.Connection[Snapshot]):
    pass


@strawberry.type(description="A client's storage area, owned by one institution.")
class ClientBucket(relay.Node):
    bucket_id: str = strawberry.field(description="The bucket id, as the REST API shows it.")
    institution_id: str = strawberry.field(description="The owning institution's id.")

    @classmethod
    def resolve_id(cls, root: Self, *, info: Any) -> str:
        return root.bucket_id

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[ClientBucket | None]:
        found = await load_keys(
            bucket_keys(node_ids), lambda ids: buckets.buckets_by_id(info.context, ids)
        )
        return [cls.of(bucket) if bucket else None for bucket in found]

    @classmethod
    def of(cls, bucket: buckets.ClientBucket) -> ClientBucket:
        """A copy: graphql-core checks a node's Python type."""
        return cls(bucket_id=bucket.bucket_id, institution_id=bucket.institution_id)

    @strawberry.field(description="Snapshots dated [startDate, endDate], newest first.")
    async def snapshots(
        self,
        info: Info,
        start_date: Annotated[
            date | None, strawberry.argument(description="First day (inclusive).")
        ] = None,
        end_date: Annotated[
            date | None, strawberry.argument(description="Last day (inclusive).")
        ] = None,
        first: FirstArgument = None,
        after: AfterArgument = None,
    ) -> SnapshotConnection:
        size = page_size(first)
        found = await buckets.snapshot_page(
            info.context,
            self.bucket_id,
            start_date=start_date,
            end_date=end_date,
            size=size,
            after_day=day_cursor(after),
        )

        def cursor_of(snapshot: buckets.BucketSnapshot) -> str:
            return encode_cursor(snapshot.snapshot_date.isoformat())

        return SnapshotConnection(
            edges=[
                relay.Edge(cursor=cursor_of(snapshot), node=Snapshot.from_result(snapshot))
                for snapshot in found[:size]
            ],
            page_info=page_info(found, size, cursor_of, after=after),
        )


async def resolve_bucket(info: Info, bucket_id: str) -> ClientBucket | None:
    """A bucket of one of your institutions; null for any other (or unknown) id."""
    bucket = await buckets.bucket_by_id(info.context, bucket_id)
    return ClientBucket.of(bucket) if bucket else None


async def resolve_institution_buckets(info: Info, institution_id: str) -> list[ClientBucket]:
    return [
        ClientBucket.of(bucket)
        for bucket in await buckets.buckets_of_institution(info.context, institution_id)
    ]
