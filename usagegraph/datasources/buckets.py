"""Client buckets and their snapshots: every query starts from the buckets a caller may read.

`readable_buckets` is the only place that turns a Principal into a WHERE clause over
buckets. Lookups narrow that set by id, so a bucket the caller may not read and a bucket
that does not exist are the same empty result: nothing downstream can tell them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import ColumnElement, false, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.auth.access import is_member, is_super
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.datasources.pages import newest_first, page_per_parent_statements
from usagegraph.datasources.transactions import dialect_of
from usagegraph.db.models import ClientBucket, Snapshot


def readable_bucket_institutions(principal: Principal) -> frozenset[str] | None:
    """The institutions whose buckets the caller may read; None: every institution.

    Super reads all; a user reads the buckets of institutions they are a member of; an API
    key reads its own institution's buckets; anyone else reads none.
    """
    if is_super(principal):
        return None
    if principal.kind is CallerKind.INSTITUTION and principal.institution_id:
        return frozenset({principal.institution_id})
    if principal.kind is not CallerKind.USER:
        return frozenset()
    return frozenset(i for i in principal.memberships if is_member(principal, i))


def readable_buckets(principal: Principal) -> ColumnElement[bool]:
    """Buckets the caller may read: those of `readable_bucket_institutions`."""
    institutions = readable_bucket_institutions(principal)
    if institutions is None:
        return true()
    return ClientBucket.institution_id.in_(sorted(institutions)) if institutions else false()


async def readable_bucket(
    session: AsyncSession, principal: Principal, bucket_id: str
) -> ClientBucket | None:
    """The bucket, or None when it does not exist or the caller may not read it."""
    return await session.scalar(
        select(ClientBucket).where(readable_buckets(principal), ClientBucket.id == bucket_id)
    )


async def snapshots_of_buckets(
    session: AsyncSession,
    principal: Principal,
    bucket_ids: Sequence[str],
    *,
    start: date | None,
    end: date | None,
    limit_per_bucket: int,
) -> dict[str, list[Snapshot]]:
    """The newest `limit_per_bucket` snapshots of each readable bucket, dated [start, end].

    One query for any number of buckets (a dataloader batch), each bucket's page stopping
    after its rows of the primary key (`datasources.pages`). Unreadable or unknown buckets
    map to an empty list.
    """
    # Correlated to each row the page reads (a primary-key probe of its bucket), not the set
    # of every readable bucket: that set, restated in each parent's page, was read whole once
    # per parent (on a super's request, every bucket there is).
    readable = select(ClientBucket.id).where(
        ClientBucket.id == Snapshot.bucket_id, readable_buckets(principal)
    )
    conditions = [readable.exists()]
    if start is not None:
        conditions.append(Snapshot.snapshot_date >= start)
    if end is not None:
        conditions.append(Snapshot.snapshot_date <= end)
    statements = page_per_parent_statements(
        dialect_of(session),
        Snapshot,
        Snapshot.bucket_id,
        bucket_ids,
        conditions,
        SNAPSHOTS_NEWEST_FIRST,
        limit_per_bucket,
    )
    found: dict[str, list[Snapshot]] = {bucket_id: [] for bucket_id in bucket_ids}
    for statement, parameters in statements:
        for row in await session.scalars(statement, parameters):
            found[row.bucket_id].append(row)
    return found


# Served by the primary key (bucket_id, snapshot_date), read backwards.
SNAPSHOTS_NEWEST_FIRST = newest_first("snapshot_date")


async def buckets_by_id(
    session: AsyncSession, principal: Principal, bucket_ids: Sequence[str]
) -> dict[str, ClientBucket]:
    rows = await session.scalars(
        select(ClientBucket).where(readable_buckets(principal), ClientBucket.id.in_(bucket_ids))
    )
    return {bucket.id: bucket for bucket in rows}


async def buckets_of_institutions(
    session: AsyncSession, principal: Principal, institution_ids: Sequence[str]
) -> dict[str, list[ClientBucket]]:
    # The readable institutions asked for, as one list: beside a second IN list on the same
    # column (readable_buckets'), PostgreSQL scanned the whole table rather than the index.
    readable = readable_bucket_institutions(principal)
    wanted = [i for i in institution_ids if readable is None or i in readable]
    rows = await session.scalars(
        select(ClientBucket)
        .where(ClientBucket.institution_id.in_(wanted))
        # The order of ix_client_buckets_institution_bucket (migration 0007), so the rows come
        # straight off the index with no sort; within an institution it is by id, as before.
        .order_by(ClientBucket.institution_id, ClientBucket.id)
    )
    found: dict[str, list[ClientBucket]] = {
        institution_id: [] for institution_id in institution_ids
    }
    for bucket in rows:
        found[bucket.institution_id].append(bucket)
    return found
