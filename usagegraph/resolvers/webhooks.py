"""Webhook endpoints and their delivery log: who may register, read and redeliver.

An institution's admins (and super) manage its endpoints; nobody else learns whether an
endpoint or delivery id exists (NOT_FOUND alike). The secret (`whsec_…`, Standard Webhooks'
form) is returned by `create_endpoint` once and never listed. URLs follow
`usagegraph.webhook_urls`.

Institution endpoints receive the institution's events: `alert.raised` (its rules),
`usage.cap_reached`, `api_key.created`, `api_key.revoked`. A wallet's events
(`wallet.low_balance`, `wallet.auto_reloaded`, and its owner's `alert.raised`) belong to a
user, not to an institution: they are written to the outbox (for live notifications) but
no institution's webhook receives them.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.auth.access import is_institution_admin
from usagegraph.auth.principal import Principal
from usagegraph.datasources import webhooks as webhook_rows
from usagegraph.datasources.transactions import run_write
from usagegraph.datasources.webhooks import DeliveryRow
from usagegraph.db.models import WebhookEndpoint
from usagegraph.errors import invalid, not_found
from usagegraph.input_ids import is_id
from usagegraph.resolvers.alerts import require_admin_of
from usagegraph.settings import WebhookSettings
from usagegraph.shapes import described
from usagegraph.webhook_urls import check_url

EVENT_TYPES = ("alert.raised", "usage.cap_reached", "api_key.created", "api_key.revoked")
MAX_DESCRIPTION = 200
MAX_LOG = 100


@dataclass(frozen=True, slots=True)
class WebhookEndpointInfo:
    """A registered endpoint, as listed (never its secret)."""

    id: int = described("The endpoint's id.", graph_name="endpoint_id")
    institution_id: str = described("The institution whose events it receives.")
    url: str = described("Where deliveries are POSTed.")
    event_types: tuple[str, ...] = described("The event types it receives.")
    description: str | None = described("A label.")
    status: str = described(
        "`active`, or `failing` once a delivery ran out of retries (until one succeeds)."
    )
    failing_since: datetime | None = described("When it was marked failing.")
    created_at: datetime = described("When it was registered.")


@dataclass(frozen=True, slots=True)
class CreatedWebhookEndpoint:
    secret: str
    endpoint: WebhookEndpointInfo


@dataclass(frozen=True, slots=True)
class WebhookDeliveryInfo:
    """One event for one endpoint, and how its attempts went."""

    id: int = described("The delivery's id (to redeliver it).", graph_name="delivery_id")
    endpoint_id: int = described("The endpoint.")
    event_id: str = described("The event's id: the `webhook-id` header, the same every try.")
    event_type: str = described("The event's type.")
    status: str = described("`pending`, `delivered`, or `failed` (retries exhausted).")
    attempts: int = described("Attempts made so far.")
    next_attempt_at: datetime | None = described("When the next attempt is due (pending).")
    last_attempt_at: datetime | None = described("When the last attempt was made.")
    last_status_code: int | None = described("The receiver's last HTTP status, if it answered.")
    last_error: str | None = described("Why the last attempt failed, if it did.")
    delivered_at: datetime | None = described("When a 2xx answer came.")
    created_at: datetime = described("When it was queued.")


def endpoint_info(row: WebhookEndpoint) -> WebhookEndpointInfo:
    return WebhookEndpointInfo(
        id=row.id,
        institution_id=row.institution_id,
        url=row.url,
        event_types=tuple(row.event_types or ()),
        description=row.description,
        status=row.status,
        failing_since=row.failing_since,
        created_at=row.created_at,
    )


def delivery_info(row: DeliveryRow) -> WebhookDeliveryInfo:
    d = row.delivery
    return WebhookDeliveryInfo(
        id=d.id,
        endpoint_id=d.endpoint_id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_attempt_at=d.last_attempt_at,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        delivered_at=d.delivered_at,
        created_at=d.created_at,
    )


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def event_types_of(event_types: Sequence[str]) -> list[str]:
    types = sorted(set(event_types))
    if not types:
        raise invalid("eventTypes must name at least one event type")
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise invalid(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
    return types


async def create_endpoint(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    settings: WebhookSettings,
    *,
    institution_id: str,
    url: str,
    event_types: Sequence[str],
    description: str | None = None,
) -> CreatedWebhookEndpoint:
    """Register an endpoint for an institution (its admins); the secret is shown once."""
    require_admin_of(principal, institution_id)
    types = event_types_of(event_types)
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise invalid(f"description is longer than {MAX_DESCRIPTION} characters")
    url = await check_url(url.strip(), allow_private=settings.allow_private)
    secret = new_secret()

    async def work(session: AsyncSession) -> CreatedWebhookEndpoint:
        row = await webhook_rows.add_endpoint(
            session,
            {
                "institution_id": institution_id,
                "url": url,
                "event_types": types,
                "secret": secret,
                "description": description,
                "status": "active",
                "created_at": now,
            },
        )
        return CreatedWebhookEndpoint(secret=secret, endpoint=endpoint_info(row))

    return await run_write(session, work)


async def _managed_endpoint(
    session: AsyncSession, principal: Principal, endpoint_id: int
) -> WebhookEndpoint:
    row = await webhook_rows.endpoint_by_id(session, endpoint_id) if is_id(endpoint_id) else None
    if row is None or not is_institution_admin(principal, row.institution_id):
        raise not_found(f"webhook endpoint {endpoint_id} does not exist")
    return row


async def delete_endpoint(
    session: AsyncSession, principal: Principal, now: datetime, *, endpoint_id: int
) -> bool:
    """Remove an endpoint and its delivery log (its admins)."""
    require_admin_of(principal, None)

    async def work(session: AsyncSession) -> bool:
        row = await _managed_endpoint(session, principal, endpoint_id)
        await webhook_rows.delete_endpoint(session, row)
        return True

    return await run_write(session, work)


async def list_endpoints(
    session: AsyncSession, principal: Principal, institution_id: str
) -> list[WebhookEndpointInfo]:
    require_admin_of(principal, institution_id)
    return [endpoint_info(row) for row in await webhook_rows.endpoints_of(session, institution_id)]


async def list_deliveries(
    session: AsyncSession, principal: Principal, endpoint_id: int, first: int
) -> list[WebhookDeliveryInfo]:
    """An endpoint's delivery log, newest first (its institution's admins)."""
    require_admin_of(principal, None)
    if not 1 <= first <= MAX_LOG:
        raise invalid(f"first must be 1 to {MAX_LOG}")
    await _managed_endpoint(session, principal, endpoint_id)
    rows = await webhook_rows.deliveries_of(session, endpoint_id, limit=first)
    return [delivery_info(row) for row in rows]


async def redeliver(
    session: AsyncSession, principal: Principal, now: datetime, *, delivery_id: int
) -> WebhookDeliveryInfo:
    """Queue a delivery again, now, with a fresh budget of attempts: the same event id and
    body (receivers that already have it deduplicate by `webhook-id`)."""
    require_admin_of(principal, None)

    async def work(session: AsyncSession) -> WebhookDeliveryInfo:
        row = None
        if is_id(delivery_id):
            row = await webhook_rows.delivery_by_id(session, delivery_id)
        if row is None or not is_institution_admin(principal, row.institution_id):
            raise not_found(f"webhook delivery {delivery_id} does not exist")
        delivery = row.delivery
        delivery.status = "pending"
        delivery.attempts = 0
        delivery.next_attempt_at = now
        await session.flush()
        return delivery_info(row)

    return await run_write(session, work)
