"""A real `usagegraph serve --workers 2`, `kill -9`'d twice mid-load, loses and doubles nothing.

`usagegraph send` pushes a few thousand CloudEvents in small chunks (Acme's usage and, every
fifth, personal usage that debits a wallet; so a super user's JWT, which may record both),
while the test kills the server's whole process group (the uvicorn supervisor and both
workers) with SIGKILL, once a quarter and again once two thirds of the events are stored,
and each time restarts it on the same database and port. The client retries every chunk it
got no 200 for, with the same ids: a chunk whose transaction was cut short must have left
nothing behind, and one committed just before the kill (its answer lost) must come back as
duplicates (the window for that is small, so a run usually shows only the first case; the
counts hold either way). Afterwards every event is stored exactly once, its idempotency key
too, each personal event is debited once on an unbroken ledger chain, and the rollups equal
a recomputation from the events.

Both databases: SQLite (WAL) serves two workers as well, one writer at a time. On a loaded
2-core machine everything waits for conditions (rows stored, every process gone, the server
ready several times in a row), never for fixed times, and the timeouts are generous.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.running import cli_env, free_port
from tests.databases import TestDatabase
from tests.fixtures.events_data import EventsWorld, seed_events_world, wall_clock_events
from tests.fixtures.usage_recording_data import assert_chain, ledger, principal, run
from usagegraph.datasources.usage_rollups import rebuild_rollups
from usagegraph.db.engine import session_factory
from usagegraph.db.models import ROLLUPS, UsageEvent, UsageIdempotencyKey, UsageTotal
from usagegraph.resolvers import wallet_operations

EVENTS = 4000
CHUNK = 50  # 80 requests: the kills land while requests are coming and going
KILL_AT = (EVENTS // 4, EVENTS * 2 // 3)  # stored rows that trigger each kill
STARTUP_SECONDS = 90.0
SEND_SECONDS = 300.0
TOP_UP = Decimal(10_000_000)


def _start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """`usagegraph serve --workers 2` in a process group of its own, once ready.

    Ready means /readyz answered 200 three times in a row, so both workers are up.
    """
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "usagegraph", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + STARTUP_SECONDS
    in_a_row = 0
    while in_a_row < 3:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{log.read_text()}")
        if time.monotonic() > deadline:
            _kill_group(process)
            raise AssertionError(f"serve not ready in {STARTUP_SECONDS} s:\n{log.read_text()}")
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            ready = False
        in_a_row = in_a_row + 1 if ready else 0
        time.sleep(0.1)
    return process


def _group_alive(group: int) -> list[int]:
    """Processes of the group that still run (zombies are dead: they only await a reaper)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] != "Z":
                alive.append(int(stat.parent.name))
    return alive


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the supervisor and its workers at once, then wait until none of them runs."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _group_alive(process.pid):
        assert time.monotonic() < deadline, f"still running: {_group_alive(process.pid)}"
        time.sleep(0.05)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_group(process)


def _send(env: dict[str, str], path: Path, port: int) -> subprocess.Popen[bytes]:
    """`usagegraph send` in the background, with attempts to outlast two restarts."""
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "usagegraph", "send", str(path)),
            *("--url", f"http://127.0.0.1:{port}", "--chunk-size", str(CHUNK)),
            *("--attempts", "20", "--timeout", "60"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@contextlib.contextmanager
def _cleanup(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            _stop_group(process)


async def _count(engine: AsyncEngine, model: Any = UsageEvent) -> int:
    async with session_factory(engine)() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _wait_for_rows(engine: AsyncEngine, rows: int, sender: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SEND_SECONDS
    while await _count(engine) < rows:
        assert sender.poll() is None, "send ended before the kill"
        assert time.monotonic() < deadline, f"fewer than {rows} events stored in time"
        await asyncio.sleep(0.02)


async def _top_up(engine: AsyncEngine, world: EventsWorld, amount: Decimal) -> None:
    """Credits for ada's personal usage, dated now (the server's debits follow it)."""
    root = await principal(engine, world.root)
    await run(
        engine,
        lambda session: wallet_operations.credit_wallet(
            session, root, datetime.now(UTC), user_id=world.ada, amount=amount
        ),
    )


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


async def _rollups(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    async with session_factory(engine)() as session:
        snapshot = {}
        for model in ROLLUPS:
            table = model.__table__
            rows = await session.execute(select(table).order_by(*table.primary_key.columns))
            snapshot[table.name] = [tuple(row) for row in rows]
        return snapshot


async def test_a_server_killed_twice_mid_load_stores_each_event_exactly_once(
    engine: AsyncEngine, database: TestDatabase, tmp_path: Path
) -> None:
    world = await seed_events_world(engine)
    events = wall_clock_events(world, EVENTS, prefix="crash")
    for event in events[::5]:
        event["subject"], event["data"]["instance"] = str(world.ada), "personal"
    personal = [Decimal(e["data"]["credits"]) for e in events[::5]]
    await _top_up(engine, world, TOP_UP)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    jwt = world.super_jwt["Authorization"].removeprefix("Bearer ")
    env = cli_env(tmp_path, database.url_string, USAGEGRAPH_API_KEY=jwt)
    port = free_port()
    log = tmp_path / "serve.log"
    processes: list[subprocess.Popen[bytes]] = []
    with _cleanup(processes):
        processes.append(await asyncio.to_thread(_start, env, port, log))
        sender = _send(env, path, port)
        processes.append(sender)
        for rows in KILL_AT:
            await _wait_for_rows(engine, rows, sender)
            await asyncio.to_thread(_kill_group, processes[0])
            stored_at_kill = await _count(engine)
            assert stored_at_kill < EVENTS, "the kill came after the load"
            processes[0] = await asyncio.to_thread(_start, env, port, log)
        stdout, stderr = await asyncio.to_thread(sender.communicate, timeout=SEND_SECONDS)

    report = stdout.decode() + stderr.decode()
    assert sender.returncode == 0, report
    assert "retrying" in report  # the client saw the kills
    # At least one kill cut a request in flight (not only refused connections afterwards).
    assert any(cut in report for cut in ("RemoteDisconnected", "ConnectionReset", "BrokenPipe"))
    summary = stdout.decode().strip().splitlines()[-1]
    assert f"sent {EVENTS} events" in summary, report
    assert summary.endswith(", 0 refused"), report

    async with session_factory(engine)() as session:
        stored = await session.execute(
            select(UsageEvent.user_id, UsageEvent.credits, UsageEvent.occurred_at)
        )
        rows = Counter((user, credits, _utc(at)) for user, credits, at in stored)
    expected = Counter(
        (int(e["subject"]), Decimal(e["data"]["credits"]), datetime.fromisoformat(e["time"]))
        for e in events
    )
    assert rows == expected  # every event, none twice
    assert await _count(engine, UsageIdempotencyKey) == EVENTS

    entries = await ledger(engine, world.ada)
    debits = [entry for entry in entries if entry.type == "debit"]
    assert sorted(entry.amount for entry in debits) == sorted(personal)
    assert assert_chain(entries) == TOP_UP - sum(personal)

    incremental = await _rollups(engine)
    async with engine.begin() as connection:
        await rebuild_rollups(connection)
    assert await _rollups(engine) == incremental
    async with session_factory(engine)() as session:
        assert await session.scalar(select(func.sum(UsageTotal.events))) == EVENTS
