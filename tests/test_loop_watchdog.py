"""A request that holds the event loop is interrupted; the worker keeps answering; SIGTERM ends it.

The stalling route (tests/stalling_app.py) computes without awaiting, as a pathological
request would. No assertion is on elapsed time: a stall of 10 minutes that is answered 503 at
all was interrupted, and a server that exits at all after SIGTERM did not hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.cli.running import cli_env, server_process, serving
from tests.conftest import client_of
from tests.databases import TestDatabase
from tests.fixtures.fragment_documents import fan_out
from tests.stalling_app import with_stall_route
from usagegraph.http.loop_watchdog import LoopWatchdog
from usagegraph.settings import Settings

STALL_FOR_TEN_MINUTES = "/stall?seconds=600"


@pytest.fixture
async def stalling_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    configured = dataclasses.replace(settings, max_blocking_seconds=0.5)
    async with client_of(configured, changes=with_stall_route) as client:
        yield client


async def test_a_request_holding_the_loop_is_interrupted_and_answered_503(
    stalling_client: httpx.AsyncClient,
) -> None:
    response = await stalling_client.get(STALL_FOR_TEN_MINUTES)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    # The worker serves again: the graph answers on the same loop.
    answer = await stalling_client.post("/graphql", json={"query": "{ viewer { kind } }"})
    assert answer.json() == {"data": {"viewer": {"kind": "ANONYMOUS"}}}


async def test_stalls_back_to_back_are_each_interrupted(
    stalling_client: httpx.AsyncClient,
) -> None:
    """The second stall takes the loop the moment the first is interrupted, before the
    heartbeat runs again: it is measured from that moment, not missed."""
    responses = await asyncio.gather(
        *(stalling_client.get(STALL_FOR_TEN_MINUTES) for _ in range(3))
    )
    assert [response.status_code for response in responses] == [503, 503, 503]


async def test_a_short_stall_is_not_interrupted(stalling_client: httpx.AsyncClient) -> None:
    response = await stalling_client.get("/stall?seconds=0.1")
    assert response.status_code == 200
    assert response.json()["spins"] > 0


async def test_the_loop_held_outside_any_request_is_left_alone() -> None:
    watchdog = LoopWatchdog(max_blocking_seconds=0.2, graceful_shutdown_seconds=10)
    watchdog.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the test's own task: not a request
            pass
    finally:
        watchdog.stop()
    await asyncio.sleep(0)


def _stall_env(tmp_path: Path, database: TestDatabase, **extra: str) -> dict[str, str]:
    return cli_env(tmp_path, database.url_string, USAGEGRAPH_RATE_LIMIT_PER_MINUTE="0", **extra)


def test_a_real_server_with_stalled_workers_still_answers_healthz(
    database: TestDatabase, tmp_path: Path
) -> None:
    env = _stall_env(tmp_path, database, USAGEGRAPH_MAX_BLOCKING_SECONDS="1")
    with server_process(env, "tests.stalling_app", "--workers", "2") as (base, _process):
        with ThreadPoolExecutor(4) as pool:
            stalls = [
                pool.submit(httpx.get, base + STALL_FOR_TEN_MINUTES, timeout=120) for _ in range(4)
            ]
            statuses = [stall.result().status_code for stall in stalls]
        assert statuses == [503] * 4
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200


def test_sigterm_ends_workers_that_are_stalled(database: TestDatabase, tmp_path: Path) -> None:
    # The watchdog's blocking limit is far away: only SIGTERM can end these stalls.
    env = _stall_env(
        tmp_path,
        database,
        USAGEGRAPH_MAX_BLOCKING_SECONDS="600",
        USAGEGRAPH_REQUEST_TIMEOUT_SECONDS="900",
        USAGEGRAPH_SHUTDOWN_TIMEOUT_SECONDS="1",
    )
    with (
        server_process(env, "tests.stalling_app", "--workers", "2") as (base, process),
        ThreadPoolExecutor(2) as pool,
    ):
        for _ in range(2):
            pool.submit(_get_quietly, base + STALL_FOR_TEN_MINUTES)
        time.sleep(1)  # both requests reach a worker and stall it
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("serve did not stop within 60 s of SIGTERM")
        assert status == 0


def _get_quietly(url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server went away mid-request
        httpx.get(url, timeout=120)


def test_serve_with_two_workers_answers_healthz_after_ten_fan_out_requests(
    database: TestDatabase, tmp_path: Path
) -> None:
    env = _stall_env(tmp_path, database)
    with serving(env, 30, "--workers", "2") as base, ThreadPoolExecutor(10) as pool:
        document = fan_out(40)
        answers = list(
            pool.map(
                lambda _: httpx.post(f"{base}/graphql", json={"query": document}, timeout=60),
                range(10),
            )
        )
        assert {answer.status_code for answer in answers} == {200}
        codes = {answer.json()["errors"][0]["extensions"]["code"] for answer in answers}
        assert codes == {"OPERATION_TOO_LARGE"}
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
