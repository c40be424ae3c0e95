"""Measure usage ingestion through a real server on PostgreSQL: recordUsage and recordUsageBatch.

    .venv/bin/python bench/ingestion.py [--members N] [--single N] [--single-concurrency N]
                                        [--batches N] [--batch-size N] [--batch-concurrency N]
                                        [--personal]

Creates a uniquely named database next to `postgres` (USAGEGRAPH_TEST_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/postgres), migrates it, adds an institution with
`--members` members and an API key (with `--personal`: a super user and funded wallets, so
every event debits a wallet), starts `usagegraph serve` on it as a subprocess, and drives
/graphql with httpx from concurrent asyncio tasks for a bounded number of requests:

- single: `--single` recordUsage requests (one event each) from `--single-concurrency` tasks;
- batched: `--batches` recordUsageBatch requests of `--batch-size` events from
  `--batch-concurrency` tasks.

Every event carries its own idempotency key (the realistic case: keys are claimed too).
Rate limiting is turned off for the server (USAGEGRAPH_RATE_LIMIT_PER_MINUTE=0).
Prints events/s for each, checks the stored count, and always stops the server and drops the
database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import func, select
from sqlalchemy.engine import URL, make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from usagegraph.auth.api_keys import create_api_key
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import create_engine, session_factory
from usagegraph.db.models import Institution, Membership, UsageEvent, User, Wallet
from usagegraph.db.schema_version import upgrade_to_head

ADMIN_URL = os.environ.get(
    "USAGEGRAPH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
JWT_SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"
INSTITUTION = "b" * 24
RECORD = """mutation($input: UsageEventInput!) {
  recordUsage(input: $input) { status event { eventId } }
}"""
BATCH = """mutation($events: [UsageEventInput!]!) {
  recordUsageBatch(events: $events) { inserted duplicates refused }
}"""


@dataclass(frozen=True)
class Setup:
    url: URL
    api_key: str
    super_token: str
    members: list[int]


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _seed(url: URL, members: int, personal: bool) -> Setup:
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
        async with session_factory(engine)() as session, session.begin():
            session.add(Institution(id=INSTITUTION, name="Bench U"))
            root = User(email="root@bench.io", role="super", permissions=[])
            users = [User(email=f"user{i}@bench.io", permissions=[]) for i in range(members)]
            session.add_all([root, *users])
            await session.flush()
            session.add_all(
                Membership(user_id=u.id, institution_id=INSTITUTION, role="user") for u in users
            )
            if personal:
                session.add_all(
                    Wallet(user_id=u.id, balance=Decimal(10**9), reserved=Decimal(0)) for u in users
                )
            _row, key = await create_api_key(session, INSTITUTION, "bench")
            ids = [u.id for u in users]
            token = mint_token(root.id, JWT_SECRET, 3600)
    finally:
        await engine.dispose()
    return Setup(url=url, api_key=key, super_token=token, members=ids)


async def _stored_events(url: URL) -> int:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            return int(await session.scalar(select(func.count()).select_from(UsageEvent)) or 0)
    finally:
        await engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _serving(url: URL) -> Iterator[str]:
    """`usagegraph serve` on the database, on a free port, until the block ends."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGEGRAPH_")}
    env.update(
        USAGEGRAPH_DATABASE_URL=url.render_as_string(hide_password=False),
        USAGEGRAPH_JWT_SECRET=JWT_SECRET,
        # Throughput, not the limiter, is measured here: per-credential limiting off.
        USAGEGRAPH_RATE_LIMIT_PER_MINUTE="0",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "usagegraph", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{process.stderr.read()}")  # type: ignore[union-attr]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not start in time")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


class EventSource:
    """Distinct events, round-robin over the members, each with its own idempotency key."""

    def __init__(self, members: list[int], instance: str) -> None:
        self.members = itertools.cycle(members)
        self.counter = itertools.count()
        self.instance = instance
        self.when = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()

    def next(self) -> dict[str, Any]:
        n = next(self.counter)
        return {
            "userId": next(self.members),
            "instance": self.instance,
            "occurredAt": self.when,
            "credits": "0.25",
            "messages": 1,
            "endpoint": "/v1/chat",
            "idempotencyKey": f"bench-{n}",
        }


async def _drive(
    base: str,
    headers: dict[str, str],
    payloads: AsyncIterator[dict[str, Any]] | Iterator[dict[str, Any]],
    concurrency: int,
) -> tuple[float, int]:
    """Post every payload from `concurrency` tasks; (seconds, failed responses)."""
    failures = 0
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for payload in payloads:  # type: ignore[union-attr]
        queue.put_nowait(payload)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=120
    ) as http:

        async def worker() -> None:
            nonlocal failures
            while True:
                try:
                    payload = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                response = await http.post("/graphql", json=payload)
                body = response.json()
                if response.status_code != 200 or body.get("errors"):
                    failures += 1
                    if failures == 1:
                        print(f"first failure: {response.status_code} {body}", file=sys.stderr)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, failures


async def main(args: argparse.Namespace) -> None:
    name = f"usagegraph_bench_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    try:
        setup = await _seed(url, args.members, args.personal)
        instance = "personal" if args.personal else INSTITUTION
        credential = setup.super_token if args.personal else setup.api_key
        headers = {"Authorization": f"Bearer {credential}"}
        source = EventSource(setup.members, instance)
        mode = "personal (wallet debits, super token)" if args.personal else "institution (API key)"
        print(f"PostgreSQL, one `usagegraph serve` process; {mode}; {args.members} members")
        with _serving(url) as base:
            # Warm up: the first requests pay for imports and connection set-up.
            warm = ({"query": RECORD, "variables": {"input": source.next()}} for _ in range(50))
            await _drive(base, headers, warm, 4)
            singles = (
                {"query": RECORD, "variables": {"input": source.next()}} for _ in range(args.single)
            )
            seconds, failed = await _drive(base, headers, singles, args.single_concurrency)
            print(
                f"recordUsage:      {args.single:>7,} events in {seconds:6.2f} s = "
                f"{args.single / seconds:>8,.0f} events/s "
                f"({args.single_concurrency} concurrent clients, {failed} failed)"
            )
            batches = (
                {
                    "query": BATCH,
                    "variables": {"events": [source.next() for _ in range(args.batch_size)]},
                }
                for _ in range(args.batches)
            )
            total = args.batches * args.batch_size
            seconds, failed = await _drive(base, headers, batches, args.batch_concurrency)
            print(
                f"recordUsageBatch: {total:>7,} events in {seconds:6.2f} s = "
                f"{total / seconds:>8,.0f} events/s ({args.batches} batches of "
                f"{args.batch_size}, {args.batch_concurrency} concurrent clients, {failed} failed)"
            )
        stored = await _stored_events(url)
        expected = 50 + args.single + total
        print(f"stored usage events: {stored:,} (expected {expected:,})")
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--single", type=int, default=3000)
    parser.add_argument("--single-concurrency", type=int, default=16)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-concurrency", type=int, default=4)
    parser.add_argument("--personal", action="store_true", help="Personal usage: wallet debits.")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(_parse()))
