"""Request bodies are bounded (USAGEGRAPH_MAX_BODY_BYTES) and refused with 413 before parsing.

In process: the boundary byte by byte, chunked bodies, each API's envelope, and the default
holding the largest legitimate batch. Against a real `serve --workers 2`: a 400 MB declared
body and a 50 MB chunked one are refused while the workers' memory stays flat.
"""

from __future__ import annotations

import dataclasses
import json
import select
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.running import cli_env, server_process
from tests.conftest import client_of
from tests.databases import TestDatabase
from usagegraph.settings import DEFAULT_MAX_BODY_BYTES, Settings

LIMIT = 2048
QUERY = b'{"query": "{ viewer { kind } }"}'
MiB = 1024 * 1024
JSON_TYPE = {"content-type": "application/json"}


@pytest.fixture
async def small_limit_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(dataclasses.replace(settings, max_body_bytes=LIMIT)) as client:
        yield client


def _padded(size: int) -> bytes:
    """The query padded with spaces (still valid JSON) to exactly `size` bytes."""
    return QUERY + b" " * (size - len(QUERY))


async def test_a_body_at_the_limit_is_read_and_one_byte_more_is_413(
    small_limit_client: httpx.AsyncClient,
) -> None:
    at_limit = await small_limit_client.post("/graphql", content=_padded(LIMIT), headers=JSON_TYPE)
    assert at_limit.json() == {"data": {"viewer": {"kind": "ANONYMOUS"}}}
    over = await small_limit_client.post("/graphql", content=_padded(LIMIT + 1), headers=JSON_TYPE)
    assert over.status_code == 413
    (error,) = over.json()["errors"]
    assert error["message"] == (
        f"The request body is larger than {LIMIT} bytes (USAGEGRAPH_MAX_BODY_BYTES)"
    )
    assert error["extensions"] == {
        "code": "PAYLOAD_TOO_LARGE",
        "requestId": over.headers["x-request-id"],
    }
    assert over.headers["connection"] == "close"


async def test_a_chunked_body_is_counted_as_it_arrives(
    small_limit_client: httpx.AsyncClient,
) -> None:
    async def chunks(total: int) -> AsyncIterator[bytes]:
        body = _padded(total)
        for start in range(0, total, 500):
            yield body[start : start + 500]

    fits = await small_limit_client.post("/graphql", content=chunks(LIMIT), headers=JSON_TYPE)
    assert fits.json() == {"data": {"viewer": {"kind": "ANONYMOUS"}}}
    over = await small_limit_client.post("/graphql", content=chunks(LIMIT + 1), headers=JSON_TYPE)
    assert over.status_code == 413
    assert over.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    ("path", "envelope"),
    [
        ("/auth/account/usage", {"error": {"code": "PAYLOAD_TOO_LARGE"}}),
        ("/api/user/usage-history", {"success": False}),
        ("/api/v1/clients/b1/history", {"error": "The request body is larger"}),
    ],
)
async def test_413_uses_each_apis_envelope(
    small_limit_client: httpx.AsyncClient, path: str, envelope: dict[str, object]
) -> None:
    response = await small_limit_client.request("GET", path, content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    body = response.json()
    key, expected = next(iter(envelope.items()))
    if isinstance(expected, dict):
        assert body[key]["code"] == expected["code"]
    elif isinstance(expected, str):
        assert body[key].startswith(expected)
    else:
        assert body[key] is expected


def _largest_batch() -> bytes:
    """recordUsageBatch with 1,000 events, every text at its longest, written as \\u escapes
    (a character outside the BMP is 12 bytes escaped)."""
    astral = "\U0001f600"
    event = {
        "userId": 9_223_372_036_854_775_807,
        "instance": "f" * 24,
        "occurredAt": "2026-05-20T15:30:00.123456+00:00",
        "credits": "99999999999999.999999",
        "messages": 2_147_483_647,
        "endpoint": astral * 200,
        "status": "SUCCESS",
        "idempotencyKey": astral * 255,
    }
    query = (
        "mutation($events: [UsageEventInput!]!) { recordUsageBatch(events: $events) { inserted } }"
    )
    return json.dumps({"query": query, "variables": {"events": [event] * 1000}}).encode()


async def test_the_default_limit_holds_the_largest_legitimate_batch(
    client: httpx.AsyncClient,
) -> None:
    body = _largest_batch()
    assert 5 * MiB < len(body) <= DEFAULT_MAX_BODY_BYTES
    response = await client.post("/graphql", content=body, headers=JSON_TYPE)
    assert response.status_code == 200  # read and run: refused only for the anonymous caller
    codes = [error["extensions"]["code"] for error in response.json()["errors"]]
    assert "PAYLOAD_TOO_LARGE" not in codes


# --- a real server ---------------------------------------------------------------------


@pytest.fixture
def server(database: TestDatabase, tmp_path: Path) -> Iterator[tuple[str, int]]:
    env = cli_env(tmp_path, database.url_string, USAGEGRAPH_RATE_LIMIT_PER_MINUTE="0")
    with server_process(env, "usagegraph", "--workers", "2") as (base, process):
        yield base, process.pid


def _worker_rss_bytes(parent_pid: int) -> int:
    """Peak resident memory (VmHWM) of the server's worker processes, added up."""
    children = Path(f"/proc/{parent_pid}/task/{parent_pid}/children").read_text().split()
    total = 0
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
    return total


def _send_until_answered(base: str, head: bytes, chunks: Iterator[bytes]) -> bytes:
    """Send `head`, then body chunks until the server answers; return its answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        for chunk in chunks:
            readable, _, _ = select.select([sock], [], [], 0.01)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def _megabytes(count: int) -> Iterator[bytes]:
    block = b" " * MiB
    for _ in range(count):
        yield block


def _chunked(count: int) -> Iterator[bytes]:
    for block in _megabytes(count):
        yield b"%x\r\n%s\r\n" % (len(block), block)
    yield b"0\r\n\r\n"


def test_a_real_server_refuses_huge_bodies_with_flat_memory(server: tuple[str, int]) -> None:
    base, pid = server
    before = _worker_rss_bytes(pid)
    declared = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (400 * MiB)
    )
    chunked = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    for _ in range(4):
        answer = _send_until_answered(base, declared, _megabytes(400))
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"code":"PAYLOAD_TOO_LARGE"' in answer
        answer = _send_until_answered(base, chunked, _chunked(50))
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    after = _worker_rss_bytes(pid)
    # Each body was at most 8 MiB in memory; nothing of 400 or 50 MB was kept.
    assert after - before < 40 * MiB, (before, after)
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
