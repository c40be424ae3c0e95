"""Usage rollups: usage events pre-summed per user, instance and time slot, plus lifetime totals.

Reports read these instead of the events, so an answer about 30 days costs 30 days of slots
however many events history holds. They are derived data: every usage write, import, demo
load and forget updates them in the same transaction as the events, and
`usagegraph rollups rebuild` recomputes them from the events.

Three slot sizes are kept. Quarter hours keep every time zone exact (all zone offsets are
multiples of 15 minutes, Nepal's +05:45 and Chatham's +12:45 included); hours serve the
zones with whole-hour offsets; whole UTC days serve the default UTC reports with 96 times
fewer rows. A row keeps the dimensions the reports
group or filter by: user, instance and whether the usage was forgotten; the endpoint only in
the day-by-endpoint table that account usage reads.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from usagegraph.db.models.base import Base, BigIntPK
from usagegraph.db.types import Money

QUARTER_HOUR_SECONDS = 900
HOUR_SECONDS = 3600
DAY_SECONDS = 86_400
# Every usage write adds to rollup rows: with 30 % of each page free, the new version of a
# row stays on its page and no index is rewritten (migration 0010).
ROLLUP_TABLE_OPTIONS = {"postgresql_with": {"fillfactor": 70}}


class _UsageAggregate:
    """The measures every rollup row sums, and the user and institution it belongs to."""

    # `instance` is the key column (an institution id, or `personal`); `institution_id` repeats
    # it as a nullable foreign key, so deleting an institution or user removes its rollups and
    # readers filter rollups with the same column names as events.
    user_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("users.id", ondelete="CASCADE"))
    instance: Mapped[str] = mapped_column(String(24))

    institution_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("institutions.id", ondelete="CASCADE")
    )

    credits: Mapped[Decimal] = mapped_column(Money)
    messages: Mapped[int] = mapped_column(BigInteger)
    events: Mapped[int] = mapped_column(BigInteger)
    failed_events: Mapped[int] = mapped_column(BigInteger)


class _UsageSlotRollup(_UsageAggregate):
    """A slot's usage of one user in one instance, forgotten and remembered apart."""

    slot_seconds: int
    # Seconds since the Unix epoch at which the slot starts (a multiple of the slot size).
    slot_start: Mapped[int] = mapped_column(BigInteger)
    forgotten: Mapped[bool] = mapped_column(Boolean)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        # A user's slots in time order (own reports, forgetting); an instance's slots in
        # time order (institution-wide reports); all slots in time order (super's reports).
        return (
            PrimaryKeyConstraint("user_id", "instance", "slot_start", "forgotten"),
            Index(f"ix_{cls.__tablename__}_institution_slot", "institution_id", "slot_start"),
            Index(f"ix_{cls.__tablename__}_slot_start", "slot_start"),
            ROLLUP_TABLE_OPTIONS,
        )


class UsageRollupQuarterHour(_UsageSlotRollup, Base):
    """Usage per 15-minute slot: exact for reports in any time zone and for hourly buckets."""

    __tablename__ = "usage_rollups_quarter_hour"
    slot_seconds = QUARTER_HOUR_SECONDS


class UsageRollupHour(_UsageSlotRollup, Base):
    """Usage per hour: reports in the many zones whose offset is a whole number of hours
    (New York, Berlin, Tokyo) read a quarter as many rows as from the quarter hours."""

    __tablename__ = "usage_rollups_hour"
    slot_seconds = HOUR_SECONDS


class UsageRollupDay(_UsageSlotRollup, Base):
    """Usage per UTC day: what UTC reports by day, week, month or year read."""

    __tablename__ = "usage_rollups_day"
    slot_seconds = DAY_SECONDS


class UsageRollupDayEndpoint(_UsageAggregate, Base):
    """Usage per UTC day and endpoint, forgotten included: a user's account usage (requests by
    endpoint). Kept apart so the reports that never split by endpoint read narrower tables."""

    __tablename__ = "usage_rollups_day_endpoint"
    slot_seconds = DAY_SECONDS

    slot_start: Mapped[int] = mapped_column(BigInteger)
    # NULL endpoints cannot be part of a primary key, and "" is a real endpoint: the pair
    # (endpoint_given, endpoint) keeps "no endpoint" and "" apart.
    endpoint_given: Mapped[bool] = mapped_column(Boolean)
    endpoint: Mapped[str] = mapped_column(String(200))

    __table_args__ = (
        PrimaryKeyConstraint("user_id", "instance", "slot_start", "endpoint_given", "endpoint"),
        ROLLUP_TABLE_OPTIONS,
    )


class UsageTotal(_UsageAggregate, Base):
    """All-time usage of a user in an instance, forgotten usage included (it still cost)."""

    __tablename__ = "usage_totals"
    __table_args__ = (PrimaryKeyConstraint("user_id", "instance"), ROLLUP_TABLE_OPTIONS)


# Every rollup, in the order writers lock their rows.
ROLLUPS: tuple[type[_UsageAggregate], ...] = (
    UsageRollupDay,
    UsageRollupHour,
    UsageRollupQuarterHour,
    UsageRollupDayEndpoint,
    UsageTotal,
)
