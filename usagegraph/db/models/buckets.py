"""Client buckets and their dated storage snapshots."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from usagegraph.db.models.base import Base, utcnow
from usagegraph.db.types import UTCDateTime


class ClientBucket(Base):
    """A client's storage area, owned by one institution."""

    __tablename__ = "client_buckets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    institution_id: Mapped[str] = mapped_column(ForeignKey("institutions.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        # An institution's buckets by id: the order its bucket list is read in (migration 0007).
        Index("ix_client_buckets_institution_bucket", "institution_id", "id"),
    )


class Snapshot(Base):
    """Record counts and storage metrics of a bucket on one day (one per bucket and date)."""

    __tablename__ = "snapshots"

    bucket_id: Mapped[str] = mapped_column(
        ForeignKey("client_buckets.id", ondelete="CASCADE"), primary_key=True
    )
    snapshot_date: Mapped[date] = mapped_column(Date, primary_key=True)
    # {collection name: count}; the six named collections are filled in when read.
    records: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    object_count: Mapped[int] = mapped_column(BigInteger, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # {prefix: {"count": int, "bytes": int}}
    by_prefix: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
