"""Time `generate_demo` on a throwaway PostgreSQL database.

    .venv/bin/python bench/demo_timing.py [--events N] [--users N] [--institutions N] [--days N]

Creates a uniquely named database next to `postgres` (USAGEGRAPH_TEST_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/postgres), migrates it, generates the demo data set,
prints the wall time and rows per second per phase and in total, and drops the database
whatever happened. The default size is the one the speed requirement names: 1,000,000
events, 2,000 users, 20 institutions, 365 days, to finish well under 60 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from usagegraph.db.engine import create_engine
from usagegraph.db.schema_version import upgrade_to_head
from usagegraph.demo_data import DemoSpec, DemoSummary, generate_demo

ADMIN_URL = os.environ.get(
    "USAGEGRAPH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class PhaseClock:
    """Records when each progress phase first and last reported, to time phases apart."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.phases: dict[str, list[float]] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.perf_counter() - self.started
        span = self.phases.setdefault(phase, [now, now, 0])
        span[1], span[2] = now, done


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _report(summary: DemoSummary, seconds: float, clock: PhaseClock) -> None:
    rows = (
        summary.institutions
        + summary.users
        + summary.memberships
        + summary.usage_events
        + summary.ledger_entries
        + summary.wallets
        + summary.subscriptions
        + summary.buckets
        + summary.snapshots
    )
    print(f"{'phase':<16}{'rows':>12}{'ends at s':>11}")
    for phase, (_start, end, done) in clock.phases.items():
        print(f"{phase:<16}{int(done):>12,}{end:>11.2f}")
    print(
        f"usage_events={summary.usage_events:,} ledger_entries={summary.ledger_entries:,} "
        f"users={summary.users:,} memberships={summary.memberships:,} "
        f"snapshots={summary.snapshots:,}"
    )
    print(f"wall time {seconds:.2f} s, {rows:,} rows, {rows / seconds:,.0f} rows/s")
    print(f"usage events {summary.usage_events / seconds:,.0f} events/s")


async def main(spec: DemoSpec) -> float:
    name = f"usagegraph_bench_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
        clock = PhaseClock()
        started = time.perf_counter()
        summary = await generate_demo(engine, spec, clock, now=datetime.now(UTC))
        seconds = time.perf_counter() - started
        _report(summary, seconds, clock)
        return seconds
    finally:
        await engine.dispose()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _parse() -> DemoSpec:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--institutions", type=int, default=20)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    return DemoSpec(
        users=args.users,
        institutions=args.institutions,
        events=args.events,
        days=args.days,
        seed=args.seed,
    )


if __name__ == "__main__":
    asyncio.run(main(_parse()))
