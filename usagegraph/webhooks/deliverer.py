"""The webhook deliverer: sends pending deliveries, signed per Standard Webhooks.

Where it runs: inside every `usagegraph serve` worker (unless USAGEGRAPH_WEBHOOKS_DELIVER is
false) and as `usagegraph worker`; in each, it first takes the database lease `webhooks`
(`datasources.webhooks.take_lease`, a conditional upsert on one row, the same on SQLite and
PostgreSQL), and only the holder sends. So N workers, or several servers and a worker, send
each attempt once. The holder renews the lease at every poll; if it dies (`kill -9`), the
lease runs out after USAGEGRAPH_WEBHOOKS_LEASE_SECONDS and another process (or the restarted
one) takes over.

At least once: a delivery is marked delivered only after a 2xx answer, in a transaction
after the request; a crash between the two sends it again, with the same `webhook-id`
(the outbox event's id), by which receivers deduplicate. A failed attempt (no answer, a
non-2xx answer, a URL now resolving to a private address) is retried after
`retry_base_ms·2ⁿ⁻¹`; once `max_attempts` have failed the delivery is `failed` and its
endpoint `failing`; a later success makes the endpoint `active` again.

Signature: `standardwebhooks.Webhook(secret).sign(webhook-id, now, body)`, with the
timestamp of the attempt (receivers refuse timestamps more than five minutes off), over the
stored body bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from usagegraph.datasources import webhooks as webhook_rows
from usagegraph.datasources.transactions import write_transaction
from usagegraph.datasources.webhooks import DueDelivery
from usagegraph.errors import UsageGraphError
from usagegraph.settings import WebhookSettings
from usagegraph.webhook_urls import check_url

log = logging.getLogger(__name__)

LEASE_NAME = "webhooks"
BATCH = 50
USER_AGENT = "usagegraph-webhooks/1"
MAX_ERROR = 500


def wall_clock() -> datetime:
    return datetime.now(UTC)


def signed_headers(secret: str, event_id: str, body: str, moment: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    signature = Webhook(secret).sign(event_id, moment, body)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


class Deliverer:
    """One process's deliverer: sends only while it holds the lease."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: WebhookSettings,
        *,
        holder: str | None = None,
        clock: Any = wall_clock,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.leading = False

    async def lead(self) -> bool:
        """Take or renew the lease; whether this process is the one that sends."""
        now = self.clock()
        until = now + timedelta(seconds=self.settings.lease_seconds)
        async with self.sessions() as session, write_transaction(session):
            self.leading = await webhook_rows.take_lease(
                session, LEASE_NAME, self.holder, now, until
            )
        return self.leading

    async def release(self) -> None:
        if not self.leading:
            return
        async with self.sessions() as session, write_transaction(session):
            await webhook_rows.release_lease(session, LEASE_NAME, self.holder, self.clock())
        self.leading = False

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Make one attempt at each due delivery (up to BATCH, concurrently); how many."""
        async with self.sessions() as session:
            due = await webhook_rows.due_deliveries(session, self.clock(), BATCH)
        if due:
            await asyncio.gather(*(self._attempt(client, delivery) for delivery in due))
        return len(due)

    async def _attempt(self, client: httpx.AsyncClient, delivery: DueDelivery) -> None:
        status_code: int | None = None
        error: str | None = None
        try:
            await check_url(delivery.url, allow_private=self.settings.allow_private)
            moment = self.clock()
            response = await client.post(
                delivery.url,
                content=delivery.body.encode(),
                headers=signed_headers(delivery.secret, delivery.event_id, delivery.body, moment),
            )
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except UsageGraphError as refused:
            error = refused.message
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"
        await self._record(delivery, status_code, error)

    async def _record(
        self, delivery: DueDelivery, status_code: int | None, error: str | None
    ) -> None:
        now = self.clock()
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_attempt_at": now,
            "last_status_code": status_code,
            "last_error": error[:MAX_ERROR] if error else None,
        }
        endpoint_status = None
        if error is None:
            values.update(status="delivered", delivered_at=now, next_attempt_at=None)
            endpoint_status = "active"
        elif attempts >= self.settings.max_attempts:
            values.update(status="failed", next_attempt_at=None)
            endpoint_status = "failing"
        else:
            values["next_attempt_at"] = now + self.settings.retry_delay(attempts)
        async with self.sessions() as session, write_transaction(session):
            await webhook_rows.record_attempt(
                session,
                delivery.id,
                values,
                endpoint_id=delivery.endpoint_id,
                endpoint_status=endpoint_status,
                now=now,
            )

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll until `stop` is set (or the task is cancelled); then give the lease up."""
        stop = stop or asyncio.Event()
        poll = self.settings.poll_ms / 1000
        async with httpx.AsyncClient(
            timeout=self.settings.timeout_seconds, follow_redirects=False
        ) as client:
            try:
                while not stop.is_set():
                    busy = False
                    try:
                        if await self.lead():
                            busy = await self.deliver_due(client) == BATCH
                    except Exception:  # a database outage must not end the loop
                        log.exception("webhook deliverer: poll failed")
                    if not busy:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), poll)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.release())
