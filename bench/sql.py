"""SQL per request, and the raw SQL floor of the usage-history read.

Statements are counted in-process: the real app (`create_app`, its lifespan, middleware and
cache setting exactly as the server's) behind httpx's ASGI transport, with a
`before_cursor_execute` listener on its engine (as tests/statements.py does). Each request
is sent once to warm up (the first connection runs the dialect's own set-up queries), then
once more while listening; pings are not cursor executions, so they are not counted.

The floor: the usage-reading statements the app actually sent (captured with their bound
parameters, never written down here, because the queries change as rollups land) are timed
straight against PostgreSQL through asyncpg, many times. What a request costs above that is
the service's own overhead (HTTP, auth, Python, serialisation).
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.dataset import Dataset
from bench.scenarios import Scenario
from bench.server import service_env
from bench.wrk import HttpRequest
from usagegraph.app import create_app
from usagegraph.settings import Settings

# A statement reads usage when it names a usage table (events or rollups), not the
# idempotency keys, which only writes use.
_USAGE_TABLE = re.compile(r"\busage_(?!idempotency)\w+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Captured:
    statement: str
    parameters: tuple[Any, ...]

    @property
    def reads_usage(self) -> bool:
        return bool(_USAGE_TABLE.search(self.statement))


@contextmanager
def capture(engine: AsyncEngine) -> Iterator[list[Captured]]:
    statements: list[Captured] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        statements.append(Captured(statement, tuple(parameters or ())))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def _send(http: httpx.AsyncClient, request: HttpRequest) -> httpx.Response:
    return await http.request(
        request.method, request.path, headers=dict(request.headers), content=request.body
    )


async def statements_per_request(
    dataset: Dataset, scenarios: Sequence[Scenario], data_dir: Path
) -> dict[str, list[Captured]]:
    """The statements the first request of each scenario issues, cache off, by scenario key."""
    settings = Settings.from_env(service_env(dataset.url, data_dir))
    app = create_app(settings)
    found: dict[str, list[Captured]] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for scenario in scenarios:
                if not scenario.count_sql or not scenario.requests:
                    continue
                request = scenario.requests[0]
                await _send(http, request)  # warm: connections, dialect set-up, caches
                with capture(app.state.engine) as statements:
                    response = await _send(http, request)
                if response.status_code != 200:
                    continue
                found[scenario.key] = statements
    return found


@dataclass(frozen=True, slots=True)
class Floor:
    """How fast PostgreSQL answers the captured usage read(s) on their own."""

    statements: tuple[str, ...]
    p50_ms: float  # the sum of each statement's p50
    p90_ms: float
    repeats: int
    rows: int
    plans: tuple[str, ...]  # EXPLAIN ANALYZE of each, for whoever tunes it

    def as_json(self) -> dict[str, Any]:
        return {
            "p50_ms": round(self.p50_ms, 3),
            "p90_ms": round(self.p90_ms, 3),
            "repeats": self.repeats,
            "rows": self.rows,
            "statements": list(self.statements),
            "plans": list(self.plans),
        }


def _asyncpg_sql(statement: str) -> str:
    """SQLAlchemy's asyncpg dialect already sends `$n` placeholders; older ones sent `%s`."""
    if "$1" in statement or "%s" not in statement:
        return statement
    counter = iter(range(1, 10_000))
    return re.sub(r"%s", lambda _m: f"${next(counter)}", statement)


async def _time(
    connection: asyncpg.Connection, sql: str, args: tuple[Any, ...], repeats: int
) -> list[float]:
    for _ in range(max(5, repeats // 20)):  # warm: prepared statement, buffers
        await connection.fetch(sql, *args)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        await connection.fetch(sql, *args)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def sql_floor(dataset: Dataset, captured: Sequence[Captured], repeats: int) -> Floor | None:
    """Time every usage-reading statement of one request `repeats` times, sequentially."""
    reads = [c for c in captured if c.reads_usage]
    if not reads:
        return None
    connection = await asyncpg.connect(dataset.plain_url)
    try:
        p50 = p90 = 0.0
        rows = 0
        plans = []
        for read in reads:
            sql = _asyncpg_sql(read.statement)
            timings = await _time(connection, sql, read.parameters, repeats)
            p50 += statistics.median(timings)
            p90 += statistics.quantiles(timings, n=10)[-1]
            rows += len(await connection.fetch(sql, *read.parameters))
            plan = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *read.parameters)
            plans.append("\n".join(r[0] for r in plan))
    finally:
        await connection.close()
    return Floor(
        statements=tuple(r.statement for r in reads),
        p50_ms=p50,
        p90_ms=p90,
        repeats=repeats,
        rows=rows,
        plans=tuple(plans),
    )
