"""The outbox: an event row, and a pending delivery for each webhook endpoint that wants it,
written in the transaction of the change the event describes.

Writing both in the same transaction is the whole point: the change and the promise to tell
about it commit together or not at all, so a crash can delay a delivery (the deliverer picks
up pending rows after a restart) but never lose or invent one.

The body is rendered here once, as the exact bytes every attempt sends and signs (Standard
Webhooks payload: `type`, `timestamp`, `data`; money as exact JSON numbers), and `event_id`
(`msg_…`) is the `webhook-id` receivers deduplicate by.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.datasources.transactions import QUEUED_EVENTS
from usagegraph.db.models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from usagegraph.http.json import dumps


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """An event this transaction wrote to the outbox, and how many deliveries it queued."""

    id: int
    event_id: str
    type: str
    institution_id: str | None
    user_id: int | None
    created_at: datetime
    data: Mapping[str, Any]
    deliveries: int


def new_event_id() -> str:
    """A fresh, unguessable `webhook-id` (`msg_` and 32 hex digits)."""
    return f"msg_{uuid.uuid4().hex}"


def render_body(event_type: str, now: datetime, data: Mapping[str, Any]) -> str:
    """The Standard Webhooks payload of an event, as text."""
    return dumps({"type": event_type, "timestamp": now, "data": dict(data)}).decode()


async def enqueue(
    session: AsyncSession,
    now: datetime,
    event_type: str,
    data: Mapping[str, Any],
    *,
    institution_id: str | None = None,
    user_id: int | None = None,
) -> QueuedEvent:
    """Write one event (and, for an institution's event, one pending delivery per endpoint
    of that institution subscribed to its type). Runs in the caller's transaction."""
    event = OutboxEvent(
        event_id=new_event_id(),
        type=event_type,
        institution_id=institution_id,
        user_id=user_id,
        body=render_body(event_type, now, data),
        created_at=now,
    )
    session.add(event)
    await session.flush()
    deliveries = 0
    if institution_id is not None:
        endpoints = await session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.institution_id == institution_id)
        )
        for endpoint in endpoints:
            if event_type in (endpoint.event_types or []):
                session.add(
                    WebhookDelivery(
                        endpoint_id=endpoint.id,
                        outbox_event_id=event.id,
                        status="pending",
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
                deliveries += 1
        if deliveries:
            await session.flush()
    queued = QueuedEvent(
        id=event.id,
        event_id=event.event_id,
        type=event_type,
        institution_id=institution_id,
        user_id=user_id,
        created_at=now,
        data=data,
        deliveries=deliveries,
    )
    session.info.setdefault(QUEUED_EVENTS, []).append(queued)
    return queued


def queued_events(session: AsyncSession) -> list[QueuedEvent]:
    """The events the session's last write transaction queued (alerts' `alert.raised`
    included), in order: after a committed write, what live notifications should publish."""
    return list(session.info.get(QUEUED_EVENTS, []))
