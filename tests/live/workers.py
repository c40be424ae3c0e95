"""Which worker of `serve --workers N` holds a TCP connection, read from /proc (Linux).

uvicorn's workers share one listening socket; the kernel hands each new connection to one of
them. The server side of a connection is a socket whose inode appears in /proc/net/tcp
(local port = the server's, remote port = the client's) and among the fds of exactly one
worker once it has accepted it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson


def workers_of(pid: int) -> list[int]:
    """The uvicorn workers among a server's children (not multiprocessing's helpers)."""
    found = []
    for child in children_of(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in command and b"forkserver" not in command:
            found.append(child)
    return found


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            found.append(int(entry.name))
    return found


def _inode(server_port: int, client_port: int) -> int | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if (
                int(local.rsplit(":", 1)[1], 16) == server_port
                and int(remote.rsplit(":", 1)[1], 16) == client_port
                and inode
            ):
                return inode
    return None


def _holds(pid: int, inode: int) -> bool:
    target = f"socket:[{inode}]"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


async def worker_of(workers: list[int], server_port: int, client_port: int) -> int:
    """The worker that accepted the connection from `client_port` (waits for the accept)."""
    for _ in range(200):
        inode = _inode(server_port, client_port)
        if inode is not None:
            for pid in workers:
                if _holds(pid, inode):
                    return pid
        await asyncio.sleep(0.05)
    raise AssertionError(f"no worker holds the connection from port {client_port}")


class RawHttp:
    """One kept-alive HTTP/1.1 connection, so the test knows which worker answers it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawHttp:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    @property
    def local_port(self) -> int:
        return self.writer.get_extra_info("sockname")[1]

    async def post_json(self, path: str, body: object, headers: dict[str, str]) -> dict:
        data = orjson.dumps(body)
        lines = [
            f"POST {path} HTTP/1.1",
            "Host: 127.0.0.1",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        payload = orjson.loads(await self.reader.readexactly(length))
        assert status == 200, payload
        return payload

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
