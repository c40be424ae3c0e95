"""`usagegraph serve` says "serving on …" only once its port is really bound and listening,
and a port another process holds is a one-line error and a non-zero exit, with one worker or
several, whether the holder shares ports (SO_REUSEPORT, as `serve --workers N` binds) or not.
Several workers each take a share of the connections. Real processes: the embedded database,
real sockets."""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.running import cli_env, run_cli, server_process, stop

SERVING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)/graphql")
WORKERS = pytest.mark.parametrize("workers", ["1", "2"])


@pytest.fixture(params=["plain", "reuseport"])
def taken_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port some other process is listening on (here: this test's own socket), with or
    without SO_REUSEPORT (another `serve --workers N` of the same user holds it so)."""
    with socket.socket() as holder:
        if request.param == "reuseport":
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to see sockets")
def test_several_workers_each_take_a_share_of_the_connections(tmp_path: Path) -> None:
    """32 keep-alive connections opened at once land on both workers: each accepts on a
    socket of its own. On one shared socket, the worker that woke first took them all."""
    with server_process(cli_env(tmp_path, None), "usagegraph", "--workers", "2") as (base, serve):
        port = int(base.rsplit(":", 1)[1])
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(32)]
        try:
            for connection in connections:
                connection.connect()
            for connection in connections:
                connection.request("GET", "/healthz")
            answers = [connection.getresponse() for connection in connections]
            assert [answer.status for answer in answers] == [200] * 32
            for answer in answers:
                answer.read()  # the connection stays open (keep-alive) for the count below
            owners = _connection_owners(port)
        finally:
            for connection in connections:
                connection.close()
    assert serve.pid not in owners  # the supervisor serves nothing itself
    assert sum(owners.values()) == 32
    assert len(owners) == 2, owners


def _connection_owners(port: int) -> Counter[int]:
    """Established connections to `port`, counted per process that holds them (ss -tnp)."""
    listed = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Counter(int(pid) for pid in re.findall(r"pid=(\d+)", listed))


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
