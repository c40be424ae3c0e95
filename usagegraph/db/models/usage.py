"""Usage events: what a user spent, where, and when. Append-only apart from `forgotten`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from usagegraph.db.models.base import Base, BigIntPK, utcnow
from usagegraph.db.types import Money, UTCDateTime

PERSONAL_INSTANCE = "personal"
USAGE_STATUSES = ("success", "failed")


def instance_of(institution_id: str | None) -> str:
    """An event's instance as the APIs spell it, from its institution column: the id, or
    `personal` (for rows read as plain columns, which have no `instance` property)."""
    return institution_id or PERSONAL_INSTANCE


class UsageEvent(Base):
    """One metered call. `institution_id` NULL is the user's personal instance."""

    __tablename__ = "usage_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    institution_id: Mapped[str | None] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE")
    )
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    credits: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    messages: Mapped[int] = mapped_column(Integer, default=1)
    endpoint: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="success")
    # Forgotten usage leaves the reporting views but still counts for money.
    forgotten: Mapped[bool] = mapped_column(Boolean, default=False)
    # Recorded although it took the member past their cap (the institution does not enforce).
    over_cap: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def instance(self) -> str:
        """The instance id as the APIs spell it: an institution id or `personal`."""
        return instance_of(self.institution_id)

    __table_args__ = (
        Index("ix_usage_events_institution_time", "institution_id", "occurred_at"),
        # A user's events newest first, ties by id: the order of their page (migration 0006).
        Index("ix_usage_events_user_time_id", "user_id", "occurred_at", "id"),
        # The same order inside one instance, for a page filtered by instanceId (migration 0008):
        # without it the page reads through the user's events in every other instance.
        Index(
            "ix_usage_events_user_instance_time_id",
            "user_id",
            "institution_id",
            "occurred_at",
            "id",
        ),
        CheckConstraint("status IN ('success', 'failed')", name="status_known"),
        CheckConstraint("messages >= 0", name="messages_non_negative"),
    )


class UsageIdempotencyKey(Base):
    """A client's idempotency key, scoped to the event's user, and the event it produced.

    Kept apart from `usage_events` so that table can be partitioned by time later (a unique
    index on a partitioned table must include the partition key).
    """

    __tablename__ = "usage_idempotency_keys"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    usage_event_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # SHA-256 of the event's canonical payload (resolvers/usage_recording.py `payload_digest`): a
    # replay with another payload is refused. None for keys claimed before revision 0005.
    payload_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
