"""One listening socket per worker, so that the kernel spreads connections over the workers.

With one listening socket shared by every worker, the worker whose event loop wakes first
accepts every connection waiting. A client with a few keep-alive connections (a metering
gateway, the ingestion benchmark's 4-8) then often had all of them on one worker while the
other sat idle: the same code measured 7,600-10,500 or 11,800-16,900 events/s by the luck
of the accept. Here `serve --workers N` binds N sockets to the port with SO_REUSEPORT, and
the kernel hands each new connection to one of them by a hash of its addresses; each worker
accepts on its own socket only (nginx's `reuseport` does the same).

What stays as it was:
- the port is ours before "serving on" is said: all N sockets are bound and listening in the
  supervisor, and connections made before the workers are up wait in their backlogs;
- a port something else holds is refused: before binding with SO_REUSEPORT (which would let
  another `serve` of the same user share the port without a word), a plain socket is bound
  to the address and closed, and that bind fails on a port held by anyone;
- a worker that dies is replaced: the sockets are created once, in the supervisor, and every
  worker process receives all of them. A worker claims the first socket no living worker
  holds, with an exclusive `flock` on that socket's lock file (the kernel releases it when
  the worker exits, so its replacement claims the same socket). Connections sent to a dead
  worker's socket wait in its backlog until the replacement has started. A worker that finds
  no socket free (more workers than sockets) serves all of them.

How the sockets reach the workers: uvicorn's supervisor pickles the same list of sockets for
every worker it starts, and the worker's server listens on each socket of the list it gets.
`WorkerSockets` is that list; unpickled in a worker, it becomes the list of the one socket the
worker claimed (`__reduce__`). Were uvicorn to copy it into a plain list first, every worker
would serve every socket: the lottery again, but nothing lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# The lock files' descriptors of this process's claim: open (so the lock holds) until exit.
_claims: list[int] = []


class WorkerSockets(list[socket.socket]):
    """The sockets of one `serve`; in a worker, the socket it claimed (see the module)."""

    def __init__(self, sockets: Sequence[socket.socket], lock_directory: Path) -> None:
        super().__init__(sockets)
        self.lock_directory = lock_directory

    def __reduce__(self) -> tuple[Any, ...]:
        return (claim_socket, (list(self), str(self.lock_directory)))


def claim_socket(sockets: list[socket.socket], lock_directory: str) -> list[socket.socket]:
    """The first socket no other living worker holds, as a list of one; all of them if none
    is free. Runs in the worker, as its sockets are unpickled."""
    for index, sock in enumerate(sockets):
        descriptor = os.open(Path(lock_directory) / f"socket-{index}.lock", os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        _claims.append(descriptor)
        return [sock]
    return list(sockets)


@contextlib.contextmanager
def worker_sockets(
    address: Any, family: int, kind: int, proto: int, count: int, backlog: int
) -> Iterator[WorkerSockets]:
    """`count` sockets bound to `address` with SO_REUSEPORT and listening, and the directory
    of their lock files; all closed and removed when the block ends.

    Raises OSError (EADDRINUSE and the like) when the address cannot be had, before any
    socket of the group is bound.
    """
    address = _probe(address, family, kind, proto)
    sockets: list[socket.socket] = []
    lock_directory = Path(tempfile.mkdtemp(prefix="usagegraph-sockets-"))
    try:
        for _ in range(count):
            sockets.append(listening_socket(address, family, kind, proto, backlog, reuse_port=True))
        yield WorkerSockets(sockets, lock_directory)
    finally:
        for sock in sockets:
            sock.close()
        shutil.rmtree(lock_directory, ignore_errors=True)


def listening_socket(
    address: Any, family: int, kind: int, proto: int, backlog: int, *, reuse_port: bool = False
) -> socket.socket:
    """A TCP socket bound to `address` and listening, inheritable by worker processes.

    Connections made from now on wait in its backlog until a worker accepts them, so once
    this returns the port is really ours and clients are not refused. SO_REUSEADDR (as
    uvicorn sets it) allows a quick restart over old TIME_WAIT connections; on Linux it never
    lets two listeners share a port. SO_REUSEPORT does, for the sockets of `worker_sockets`.
    """
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def _probe(address: Any, family: int, kind: int, proto: int) -> Any:
    """Bind a plain socket to `address` and let it go: an error if anyone holds the port.
    The address to bind the group to (with the port the kernel chose, for port 0)."""
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        return probe.getsockname()
