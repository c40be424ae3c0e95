"""Each worker of `serve --workers N` accepts on a socket of its own (http/worker_sockets.py):
a worker claims the first socket no living worker holds, and a dead worker's socket is free
for its replacement. Real processes hold the claims."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import pytest

from usagegraph.http.worker_sockets import WorkerSockets, claim_socket

# A worker process: claims one of two sockets, says which, and holds it until its stdin ends.
WORKER = """
import socket, sys
from usagegraph.http.worker_sockets import claim_socket
sockets = [socket.socket(), socket.socket()]
claimed = claim_socket(sockets, sys.argv[1])
print(",".join(str(sockets.index(s)) for s in claimed), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made = [socket.socket(), socket.socket()]
    for each in made:
        each.bind(("127.0.0.1", 0))  # each its own port, to tell them apart once unpickled
    yield made
    for each in made:
        each.close()


def _worker(lock_directory: Path) -> tuple[subprocess.Popen[str], str]:
    """A worker process holding its claim, and the indexes of the sockets it claimed."""
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(lock_directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def _end(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=30)


def test_workers_claim_different_sockets_and_one_too_many_serves_them_all(
    tmp_path: Path,
) -> None:
    first, first_claim = _worker(tmp_path)
    second, second_claim = _worker(tmp_path)
    third, third_claim = _worker(tmp_path)
    for process in (first, second, third):
        _end(process)
    assert (first_claim, second_claim, third_claim) == ("0", "1", "0,1")


def test_a_dead_workers_socket_is_claimed_by_its_replacement(tmp_path: Path) -> None:
    first, first_claim = _worker(tmp_path)
    second, second_claim = _worker(tmp_path)
    first.kill()  # as kill -9: no clean-up of its own, the kernel drops its lock
    first.wait(timeout=30)
    replacement, replacement_claim = _worker(tmp_path)
    _end(second)
    _end(replacement)
    assert (first_claim, second_claim, replacement_claim) == ("0", "1", "0")


def test_unpickled_in_a_worker_the_sockets_are_the_one_it_claimed(
    tmp_path: Path, sockets: list[socket.socket]
) -> None:
    """The supervisor pickles the same WorkerSockets for every worker it starts."""
    holder, held = _worker(tmp_path)  # holds socket 0
    try:
        received = ForkingPickler.loads(ForkingPickler.dumps(WorkerSockets(sockets, tmp_path)))
    finally:
        _end(holder)
    assert held == "0"
    assert [each.getsockname() for each in received] == [sockets[1].getsockname()]
    received[0].close()


def test_claim_socket_returns_the_sockets_themselves(
    tmp_path: Path, sockets: list[socket.socket]
) -> None:
    assert claim_socket(sockets, str(tmp_path)) == [sockets[0]]
