"""SQL of webhook endpoints, their deliveries, and the lease that elects one deliverer.

Endpoints and the delivery log are read per institution (the caller's access is decided in
`resolvers.webhooks`); the deliverer reads due deliveries across institutions and records
each attempt's outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.datasources.transactions import dialect_of
from usagegraph.db.models import OutboxEvent, WebhookDelivery, WebhookEndpoint, WorkerLease


async def add_endpoint(session: AsyncSession, values: dict[str, Any]) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(**values)
    session.add(endpoint)
    await session.flush()
    return endpoint


async def endpoint_by_id(session: AsyncSession, endpoint_id: int) -> WebhookEndpoint | None:
    return await session.get(WebhookEndpoint, endpoint_id)


async def endpoints_of(session: AsyncSession, institution_id: str) -> Sequence[WebhookEndpoint]:
    statement = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.institution_id == institution_id)
        .order_by(WebhookEndpoint.id)
    )
    return list(await session.scalars(statement))


async def delete_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    await session.delete(endpoint)
    await session.flush()


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A delivery with what the log shows of its event."""

    delivery: WebhookDelivery
    event_id: str
    event_type: str
    institution_id: str


def _delivery_rows(rows: Any) -> list[DeliveryRow]:
    return [
        DeliveryRow(delivery=d, event_id=event_id, event_type=event_type, institution_id=inst)
        for d, event_id, event_type, inst in rows
    ]


_DELIVERY = (
    select(
        WebhookDelivery,
        OutboxEvent.event_id,
        OutboxEvent.type,
        WebhookEndpoint.institution_id,
    )
    .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.outbox_event_id)
    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
)


async def deliveries_of(
    session: AsyncSession, endpoint_id: int, *, limit: int
) -> list[DeliveryRow]:
    """An endpoint's delivery log, newest first."""
    statement = (
        _DELIVERY.where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return _delivery_rows(await session.execute(statement))


async def delivery_by_id(session: AsyncSession, delivery_id: int) -> DeliveryRow | None:
    rows = _delivery_rows(await session.execute(_DELIVERY.where(WebhookDelivery.id == delivery_id)))
    return rows[0] if rows else None


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """What the deliverer needs to make one attempt."""

    id: int
    attempts: int
    endpoint_id: int
    url: str
    secret: str
    event_id: str
    body: str


async def due_deliveries(session: AsyncSession, now: datetime, limit: int) -> list[DueDelivery]:
    """Pending deliveries whose next attempt is due, oldest first."""
    statement = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.attempts,
            WebhookEndpoint.id,
            WebhookEndpoint.url,
            WebhookEndpoint.secret,
            OutboxEvent.event_id,
            OutboxEvent.body,
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.outbox_event_id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    return [DueDelivery(*row) for row in await session.execute(statement)]


async def record_attempt(
    session: AsyncSession,
    delivery_id: int,
    values: dict[str, Any],
    *,
    endpoint_id: int,
    endpoint_status: str | None,
    now: datetime,
) -> None:
    """Store one attempt's outcome, and the endpoint's status when it changes (`active`
    after a success, `failing` when a delivery ran out of attempts)."""
    await session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values)
    )
    if endpoint_status == "active":
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.status != "active")
            .values(status="active", failing_since=None)
        )
    elif endpoint_status == "failing":
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.status != "failing")
            .values(status="failing", failing_since=now)
        )


async def take_lease(
    session: AsyncSession, name: str, holder: str, now: datetime, until: datetime
) -> bool:
    """Take or renew the lease `name` for `holder` until `until`; False while another
    holder's lease is unexpired. One conditional upsert: two processes cannot both win."""
    dialect = postgresql if dialect_of(session) == "postgresql" else sqlite
    statement = dialect.insert(WorkerLease).values(name=name, holder=holder, expires_at=until)
    statement = statement.on_conflict_do_update(
        index_elements=[WorkerLease.name],
        set_={"holder": holder, "expires_at": until},
        where=(WorkerLease.holder == holder) | (WorkerLease.expires_at < now),
    ).returning(WorkerLease.holder)
    return (await session.scalar(statement)) == holder


async def release_lease(session: AsyncSession, name: str, holder: str, now: datetime) -> None:
    """Give the lease up (on a clean stop), so another process need not wait it out."""
    await session.execute(
        update(WorkerLease)
        .where(WorkerLease.name == name, WorkerLease.holder == holder)
        .values(expires_at=now)
    )
