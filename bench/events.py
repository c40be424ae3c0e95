"""Measure ingestion through `POST /v1/events` against its physical floor (issue 16).

    ./scripts/bench events [--members N] [--batches N] [--batch-size N]
                           [--batch-concurrency N] [--single-seconds N]
                           [--single-concurrency N]
                           [--graphql-batches N] [--rss-seconds N]

On a throwaway PostgreSQL database next to `postgres` (USAGEGRAPH_TEST_POSTGRES_URL): an
institution with `--members` members and an API key, then a real `usagegraph serve
--workers 2` (bench/server.py) driven from httpx tasks with pre-encoded bodies (so the
client's own JSON work is not timed), every event with its own id:

- batched: `--batches` requests of `--batch-size` CloudEvents (cloudevents-batch+json)
  from `--batch-concurrency` connections;
- single: one CloudEvent per request for `--single-seconds`, from `--single-concurrency`
  connections of wrk (bench/wrk.py builds each event with its own id);
- graphql: `--graphql-batches` recordUsageBatch requests of `--batch-size` events (the
  shared write path through the graph);
- floor: the same rows as the batched run, loaded with raw asyncpg `copy_records_to_table`
  into a scratch table with the usage events' columns, in the same chunks from the same
  number of connections. The ratio is batched events/s over floor events/s.

It also samples the workers' RSS before and after the batched load and the CPU seconds
each worker used during it (a worker near 0 took none of the connections), checks the
stored count, and always stops the server and drops the database.

With `--rss-seconds N` (off by default, so the default run stays short) it ends with a
memory check: batched requests of `--batch-size` fresh events from `--batch-concurrency`
connections for N seconds, each worker's RSS read from /proc every second, and per worker
the RSS at the start, the highest, at the end and the slope (least squares, MiB/minute) over
the whole load and over its second half (after pools and caches have warmed up).

The client runs on the same machine as the server and PostgreSQL: on a small machine the
three share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import orjson
from sqlalchemy import func, select
from sqlalchemy.engine import URL, make_url

from bench.dataset import ADMIN_URL
from bench.server import JWT_SECRET, RunningServer, cpu_seconds_of, serving, stat_fields
from bench.wrk import Check, IngestLoad, WrkRunner, find_wrk, lua_script
from usagegraph.auth.api_keys import create_api_key
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import create_engine, session_factory
from usagegraph.db.models import Institution, Membership, UsageEvent, User
from usagegraph.db.schema_version import upgrade_to_head

INSTITUTION = "e" * 24
BATCH_TYPE = {"Content-Type": "application/cloudevents-batch+json"}
SINGLE_TYPE = {"Content-Type": "application/cloudevents+json"}
GRAPHQL_BATCH = """mutation($events: [UsageEventInput!]!) {
  recordUsageBatch(events: $events) { inserted duplicates refused }
}"""
SCRATCH_COLUMNS = (
    "user_id",
    "institution_id",
    "occurred_at",
    "credits",
    "messages",
    "endpoint",
    "status",
    "forgotten",
    "over_cap",
    "created_at",
)


@dataclass(frozen=True)
class Setup:
    url: URL
    api_key: str
    super_token: str
    members: list[int]


@dataclass(frozen=True)
class Row:
    name: str
    events: int
    seconds: float
    failed: int
    note: str

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def line(self) -> str:
        return (
            f"| {self.name} | {self.events:,} | {self.seconds:.2f} | {self.rate:,.0f} | "
            f"{self.failed} | {self.note} |"
        )


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _seed(url: URL, members: int) -> Setup:
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
        async with session_factory(engine)() as session, session.begin():
            session.add(Institution(id=INSTITUTION, name="Events Bench U"))
            root = User(email="root@bench.io", role="super", permissions=[])
            users = [User(email=f"user{i}@bench.io", permissions=[]) for i in range(members)]
            session.add_all([root, *users])
            await session.flush()
            session.add_all(
                Membership(user_id=u.id, institution_id=INSTITUTION, role="user") for u in users
            )
            _row, key = await create_api_key(session, INSTITUTION, "bench")
            setup = Setup(url, key, mint_token(root.id, JWT_SECRET, 3600), [u.id for u in users])
    finally:
        await engine.dispose()
    return setup


class Events:
    """Distinct CloudEvents (and their rows), round-robin over the members."""

    def __init__(self, members: list[int]) -> None:
        self.members = itertools.cycle(members)
        self.counter = itertools.count()
        self.when = datetime.now(UTC) - timedelta(minutes=1)
        self.time = self.when.isoformat()

    def cloud(self) -> dict[str, object]:
        n = next(self.counter)
        return {
            "specversion": "1.0",
            "id": f"bench-{n}",
            "source": "//bench/gateway",
            "type": "usage",
            "subject": str(next(self.members)),
            "time": self.time,
            "data": {"instance": INSTITUTION, "credits": 0.25, "endpoint": "/v1/chat"},
        }

    def graphql(self) -> dict[str, object]:
        n = next(self.counter)
        return {
            "userId": next(self.members),
            "instance": INSTITUTION,
            "occurredAt": self.time,
            "credits": "0.25",
            "endpoint": "/v1/chat",
            "idempotencyKey": f"bench-gql-{n}",
        }

    def row(self) -> tuple[object, ...]:
        return (
            next(self.members),
            INSTITUTION,
            self.when,
            Decimal("0.25"),
            1,
            "/v1/chat",
            "success",
            False,
            False,
            datetime.now(UTC),
        )


async def _drive(
    base: str,
    path: str,
    headers: dict[str, str],
    bodies: Iterable[bytes],
    concurrency: int,
    expected_inserted: int,
) -> tuple[float, int]:
    """POST every body from `concurrency` connections; (seconds, failed responses)."""
    queue: list[bytes] = list(bodies)
    queue.reverse()
    failures = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=120) as h:

        async def worker() -> None:
            nonlocal failures
            while queue:
                response = await h.post(path, content=queue.pop())
                ok = response.status_code == 200
                if ok:
                    body = response.json()
                    data = (
                        body.get("data", {}).get("recordUsageBatch", body)
                        if path == "/graphql"
                        else body
                    )
                    ok = data.get("inserted") == expected_inserted
                if not ok:
                    failures += 1
                    if failures == 1:
                        print(f"first failure: {response.status_code} {response.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, failures


def _singles(base_url: str, work_dir: Path, setup: Setup, args: argparse.Namespace) -> Row:
    """One CloudEvent per request for `--single-seconds`, from wrk (C, on epoll): a Python
    client spent more CPU per request (~5 ms with httpx) than the server, on the same cores.
    Events count only when the server answered that it inserted them."""
    load = IngestLoad(setup.api_key, INSTITUTION, tuple(setup.members), cloud_events=True)
    runner = WrkRunner(find_wrk(), base_url, work_dir)
    script = runner.script("events_single", lua_script([], Check.STATUS, load))
    result = runner.run(
        script, threads=2, connections=args.single_concurrency, seconds=args.single_seconds
    )
    latency = result.latency_ms
    note = (
        f"1/request, {args.single_concurrency} connections (wrk), "
        f"p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms"
    )
    return Row("/v1/events single", result.events, result.seconds, result.failures, note)


async def _floor(url: URL, chunks: list[list[tuple[object, ...]]], concurrency: int) -> float:
    """Seconds to COPY the chunks into a scratch table from `concurrency` connections."""
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    setup = await asyncpg.connect(dsn)
    await setup.execute(
        "CREATE TABLE bench_floor (id bigserial PRIMARY KEY, user_id bigint NOT NULL, "
        "institution_id varchar(24), occurred_at timestamptz NOT NULL, credits numeric(20, 6) "
        "NOT NULL, messages integer NOT NULL, endpoint varchar(200), status varchar(16) NOT "
        "NULL, forgotten boolean NOT NULL, over_cap boolean NOT NULL, created_at timestamptz "
        "NOT NULL)"
    )
    await setup.close()
    connections = [await asyncpg.connect(dsn) for _ in range(concurrency)]
    queue = list(chunks)

    async def worker(connection: asyncpg.Connection) -> None:
        while queue:
            chunk = queue.pop()
            await connection.copy_records_to_table(
                "bench_floor", records=chunk, columns=SCRATCH_COLUMNS
            )

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    seconds = time.perf_counter() - started
    for connection in connections:
        await connection.close()
    return seconds


def _worker_rss_mib(server: RunningServer) -> list[float]:
    """Resident memory of each process of the server's group (Linux /proc)."""
    sizes = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = stat_fields(stat)
        if fields is None or int(fields[2]) != server.process_group:
            continue
        try:
            status = (stat.parent / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sorted(sizes)


def _worker_pids(server: RunningServer) -> list[int]:
    """uvicorn's worker processes: children of its supervisor started by multiprocessing's
    spawn (its resource tracker, also a child, is not a worker)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = stat_fields(stat)
        if fields is None or int(fields[1]) != server.process_group:  # field 4: parent pid
            continue
        try:
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def _cpu_seconds(pids: list[int]) -> list[float]:
    """CPU seconds (user + system) each process has used so far (0 once it is gone)."""
    stats = (stat_fields(Path(f"/proc/{pid}/stat")) for pid in pids)
    return [0.0 if fields is None else cpu_seconds_of(fields) for fields in stats]


def _rss_of(pid: int) -> float | None:
    """Resident memory of one process in MiB, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def _slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / len(samples)
    mean_m = sum(m for _, m in samples) / len(samples)
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return 0.0
    return 60 * sum((t - mean_t) * (m - mean_m) for t, m in samples) / spread


async def _rss_under_load(
    server: RunningServer, events: Events, headers: dict[str, str], args: argparse.Namespace
) -> tuple[Row, list[str]]:
    """Batched load for `--rss-seconds`, each worker's RSS sampled every second."""
    pids = _worker_pids(server)
    traces: dict[int, list[tuple[float, float]]] = {pid: [] for pid in pids}
    size = args.batch_size
    sent = 0
    failures = 0
    started = time.perf_counter()
    end = started + args.rss_seconds

    def sample() -> None:
        moment = time.perf_counter() - started
        for pid in pids:
            rss = _rss_of(pid)
            if rss is not None:
                traces[pid].append((moment, rss))

    limits = httpx.Limits(
        max_connections=args.batch_concurrency, max_keepalive_connections=args.batch_concurrency
    )
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=headers, limits=limits, timeout=120
    ) as client:

        async def worker() -> None:
            nonlocal sent, failures
            while time.perf_counter() < end:
                body = orjson.dumps([events.cloud() for _ in range(size)])
                response = await client.post("/v1/events", content=body)
                if response.status_code == 200 and response.json().get("inserted") == size:
                    sent += size
                else:
                    failures += 1

        async def sampler() -> None:
            while time.perf_counter() < end:
                sample()
                await asyncio.sleep(1)
            sample()

        await asyncio.gather(sampler(), *(worker() for _ in range(args.batch_concurrency)))
    seconds = time.perf_counter() - started
    row = Row(
        f"/v1/events batched for {args.rss_seconds} s (RSS sampled)",
        sent,
        seconds,
        failures,
        f"{size}/request, {args.batch_concurrency} connections",
    )
    lines = [
        f"worker RSS over a {args.rss_seconds} s batched load, sampled every second (MiB):",
        "| worker pid | samples | start | max | end | slope MiB/min | slope, 2nd half |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pid, samples in traces.items():
        if not samples:
            lines.append(f"| {pid} | 0 | gone | | | | |")
            continue
        sizes = [m for _, m in samples]
        half = [s for s in samples if s[0] >= seconds / 2]
        lines.append(
            f"| {pid} | {len(samples)} | {sizes[0]:.1f} | {max(sizes):.1f} | {sizes[-1]:.1f} | "
            f"{_slope_per_minute(samples):+.2f} | {_slope_per_minute(half):+.2f} |"
        )
    return row, lines


async def _stored(url: URL) -> int:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            return int(await session.scalar(select(func.count()).select_from(UsageEvent)) or 0)
    finally:
        await engine.dispose()


async def main(args: argparse.Namespace) -> None:
    name = f"usagegraph_bench_events_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    rows: list[Row] = []
    rss_row: Row | None = None
    rss_lines: list[str] = []
    try:
        setup = await _seed(url, args.members)
        events = Events(setup.members)
        key = {"X-API-Key": setup.api_key}
        size = args.batch_size
        with (
            tempfile.TemporaryDirectory() as tmp,
            serving(url, Path(tmp), Path(tmp) / "serve.log", workers=2) as server,
        ):
            warm = [orjson.dumps([events.cloud() for _ in range(100)]) for _ in range(8)]
            await _drive(server.base_url, "/v1/events", {**key, **BATCH_TYPE}, warm, 4, 100)
            bodies = [
                orjson.dumps([events.cloud() for _ in range(size)]) for _ in range(args.batches)
            ]
            rss_before = _worker_rss_mib(server)
            workers = _worker_pids(server)
            cpu_before = _cpu_seconds(workers)
            seconds, failed = await _drive(
                server.base_url,
                "/v1/events",
                {**key, **BATCH_TYPE},
                bodies,
                args.batch_concurrency,
                size,
            )
            rss_after = _worker_rss_mib(server)
            worker_cpu = [b - a for a, b in zip(cpu_before, _cpu_seconds(workers), strict=True)]
            rows.append(
                Row(
                    "/v1/events batched",
                    args.batches * size,
                    seconds,
                    failed,
                    f"{size}/request, {args.batch_concurrency} connections",
                )
            )
            rows.append(_singles(server.base_url, Path(tmp), setup, args))
            graphql = [
                orjson.dumps(
                    {
                        "query": GRAPHQL_BATCH,
                        "variables": {"events": [events.graphql() for _ in range(size)]},
                    }
                )
                for _ in range(args.graphql_batches)
            ]
            seconds, failed = await _drive(
                server.base_url,
                "/graphql",
                {**key, "Content-Type": "application/json"},
                graphql,
                args.batch_concurrency,
                size,
            )
            rows.append(
                Row(
                    "GraphQL recordUsageBatch",
                    args.graphql_batches * size,
                    seconds,
                    failed,
                    f"{size}/request, {args.batch_concurrency} connections",
                )
            )
            if args.rss_seconds > 0:
                rss_row, rss_lines = await _rss_under_load(
                    server, events, {**key, **BATCH_TYPE}, args
                )
        chunks = [[events.row() for _ in range(size)] for _ in range(args.batches)]
        seconds = await _floor(url, chunks, args.batch_concurrency)
        rows.append(
            Row(
                "floor: asyncpg copy_records_to_table",
                args.batches * size,
                seconds,
                0,
                f"{size}/COPY, {args.batch_concurrency} connections, scratch table",
            )
        )
        stored = await _stored(url)
        expected = 800 + sum(r.events for r in rows[:3]) + (rss_row.events if rss_row else 0)
        print("PostgreSQL, `usagegraph serve --workers 2`, API key, institution usage")
        print("| path | events | seconds | events/s | failed | shape |")
        print("|---|---:|---:|---:|---:|---|")
        for row in rows:
            print(row.line())
        if rss_row is not None:
            print(rss_row.line())
        print(f"ratio batched / floor: {rows[0].rate / rows[-1].rate:.2f}")
        print(f"worker RSS MiB before/after the batched load: {rss_before} -> {rss_after}")
        print(
            "worker CPU seconds during the batched load: "
            + ", ".join(f"{used:.2f}" for used in worker_cpu)
            + " (a worker near 0 accepted none of the connections; each worker accepts on "
            "its own socket and the kernel spreads connections by a hash of their addresses)"
        )
        for line in rss_lines:
            print(line)
        # wrk stops at its deadline without reading the answers in flight, which the server
        # still writes: up to one event per single-event connection more than were counted.
        in_flight = args.single_concurrency
        verdict = "ok" if expected <= stored <= expected + in_flight else "MISMATCH"
        print(
            f"stored usage events: {stored:,} (counted {expected:,}, plus at most {in_flight} "
            f"answers wrk left unread at its deadline): {verdict}"
        )
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-concurrency", type=int, default=4)
    parser.add_argument("--single-seconds", type=int, default=10)
    parser.add_argument("--single-concurrency", type=int, default=32)
    parser.add_argument("--graphql-batches", type=int, default=20)
    parser.add_argument(
        "--rss-seconds",
        type=int,
        default=0,
        help="also load the server this long sampling its workers' RSS every second (0: off)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(_parse(sys.argv[1:])))
