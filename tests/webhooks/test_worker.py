"""`usagegraph worker` as a process: it delivers what is pending and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.running import cli_env
from tests.databases import TestDatabase
from tests.fixtures.usage_recording_data import ACME
from tests.schema.mutations_data import add_people
from tests.webhooks.receiver import receiving
from usagegraph.datasources.outbox import enqueue
from usagegraph.db.engine import session_factory
from usagegraph.db.models import WebhookDelivery, WebhookEndpoint
from usagegraph.resolvers.webhooks import new_secret


async def test_the_worker_command_delivers_and_stops_on_sigterm(
    database: TestDatabase, engine: AsyncEngine, tmp_path: Path
) -> None:
    await add_people(engine)
    secret = new_secret()
    with receiving() as receiver:
        async with session_factory(engine)() as session, session.begin():
            session.add(
                WebhookEndpoint(
                    institution_id=ACME,
                    url=receiver.url,
                    event_types=["api_key.revoked"],
                    secret=secret,
                    status="active",
                )
            )
            await session.flush()
            queued = await enqueue(
                session,
                datetime.now(UTC),
                "api_key.revoked",
                {"api_key_id": 1, "institution_id": ACME},
                institution_id=ACME,
            )
        assert queued.deliveries == 1
        env = cli_env(
            tmp_path,
            database.url_string,
            USAGEGRAPH_WEBHOOKS_ALLOW_PRIVATE="true",
            USAGEGRAPH_WEBHOOKS_POLL_MS="50",
        )
        worker = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
            [sys.executable, "-m", "usagegraph", "worker"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            await asyncio.to_thread(receiver.wait_for, 1, 60)
            deadline = time.monotonic() + 30
            while True:
                async with session_factory(engine)() as session:
                    status = await session.scalar(select(WebhookDelivery.status))
                if status == "delivered":
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        finally:
            worker.terminate()
            output, _ = await asyncio.to_thread(worker.communicate, timeout=30)
        assert worker.returncode == 0, output
        assert list(receiver.verified(secret)) == [queued.event_id]


def time_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)
