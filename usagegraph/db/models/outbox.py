"""The outbox: events written in the transaction of the change they describe, and the
webhook endpoints and deliveries that carry them out, and the leases of background workers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from usagegraph.db.models.base import Base, BigIntPK, utcnow
from usagegraph.db.types import UTCDateTime

DELIVERY_STATUSES = ("pending", "delivered", "failed")
ENDPOINT_STATUSES = ("active", "failing")


class OutboxEvent(Base):
    """A billing-relevant change, as the exact JSON body webhooks receive (`body`), so every
    attempt and every redelivery sends and signs the same bytes under the same `event_id`
    (the Standard Webhooks `webhook-id`, receivers' deduplication key)."""

    __tablename__ = "outbox_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    # Whose event it is: an institution's (webhooks of that institution receive it) or a
    # user's (their wallet: no webhook; it is for the user's own subscriptions).
    institution_id: Mapped[str | None] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE")
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_outbox_events_institution_id_id", "institution_id", "id"),)


class WebhookEndpoint(Base):
    """An institution's receiver. The secret is kept in clear: signing needs it (it is
    shown to the admin once, never listed)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    institution_id: Mapped[str] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint: pending until a 2xx answer (delivered) or until the
    retries run out (failed); `redeliver` makes it pending again."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    outbox_event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("endpoint_id", "outbox_event_id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )


class WorkerLease(Base):
    """A named lease: whoever holds an unexpired one is the only runner of that background
    work among all processes on this database (the webhook deliverer)."""

    __tablename__ = "worker_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
