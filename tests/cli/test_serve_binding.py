"""`usagegraph serve` says "serving on …" only once its port is really bound and listening,
and a port another process holds is a one-line error and a non-zero exit, with one worker or
several. Real processes: the embedded database, real sockets."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.running import cli_env, run_cli, stop

SERVING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)/graphql")
WORKERS = pytest.mark.parametrize("workers", ["1", "2"])


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other process is listening on (here: this test's own socket)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@WORKERS
def test_a_taken_port_is_a_one_line_error_and_a_failed_exit(
    tmp_path: Path, taken_port: int, workers: str
) -> None:
    result = run_cli(
        cli_env(tmp_path, None), "serve", "--port", str(taken_port), "--workers", workers
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: cannot listen on 127.0.0.1:{taken_port}: the port is already in use; stop "
        "whatever holds it or pick another --port"
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert "serving on" not in result.stderr + result.stdout


@WORKERS
def test_serving_on_is_said_only_once_the_port_accepts_connections(
    tmp_path: Path, workers: str
) -> None:
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "usagegraph", "serve", "--port", "0", "--workers", workers],
            env=cli_env(tmp_path, None, USAGEGRAPH_LOG_FORMAT="text"),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        port = _wait_for_serving_line(process, log)
        # The very first attempts, with no retry: connecting is accepted (the kernel queues
        # it until a worker takes it), and the first request is answered, however long the
        # workers took to start.
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=60)
        assert answer.status_code == 200
    finally:
        stop(process)


def _wait_for_serving_line(process: subprocess.Popen, log: Path, timeout: float = 60) -> int:
    """The port of the "serving on" line, as soon as the server has written it."""
    deadline = time.monotonic() + timeout
    while True:
        found = SERVING.search(log.read_text())
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            raise AssertionError(f"serve exited before saying where:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"serve said nothing in {timeout} s:\n{log.read_text()}")
        time.sleep(0.05)
