"""Run the `usagegraph` command and its server the way a user does: as processes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

from tests.conftest import TEST_JWT_SECRET


def cli_env(tmp_path: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    """An environment with its own data dir and secret; no database URL means the default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGEGRAPH_")}
    env.update(USAGEGRAPH_DATA_DIR=str(tmp_path / "data"), USAGEGRAPH_JWT_SECRET=TEST_JWT_SECRET)
    if database_url is not None:
        env["USAGEGRAPH_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "usagegraph", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """Ask a server to stop (SIGTERM), and kill it if it has not exited in `timeout` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(env: dict[str, str], timeout: float = 30, *args: str) -> Iterator[str]:
    """`usagegraph serve` on a free port; yields its base URL once /healthz answers.

    Further `args` go to `serve` (e.g. "--workers", "2").
    """
    with server_process(env, "usagegraph", *args, timeout=timeout) as (base, _process):
        yield base


@contextlib.contextmanager
def server_process(
    env: dict[str, str], module: str, *args: str, timeout: float = 30
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`python -m module serve --port P *args` on a free port, once /healthz answers.

    Its output goes to a file, not a pipe: a pipe nobody reads fills up and blocks the
    server after a few hundred access-log lines.
    """
    port = free_port()
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--port", str(port), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_healthy(process, log, base, timeout)
            yield base, process
        finally:
            stop(process)


def _wait_until_healthy(process: subprocess.Popen, log: IO[str], base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"serve exited early:\n{log.read()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError("serve did not start in time")
        time.sleep(0.1)
