"""The client side of POST /v1/events: send a file of CloudEvents in chunks (`usagegraph send`).

A metering backfill is a file of events, possibly larger than memory and larger than one
request may carry (USAGEGRAPH_MAX_EVENTS_PER_REQUEST, USAGEGRAPH_MAX_BODY_BYTES). So the file
is streamed: NDJSON line by line, a JSON array element by element (its raw bytes, never
decoded here: the server judges each event), and posted in chunks of at most
`chunk_events` events and `chunk_bytes` bytes.

Delivery is at least once, made exactly once by the server: a chunk whose answer never came
(connection refused or reset, a timeout, 429, a 5xx) is sent again with the same bytes, so
the same ids, after an exponentially growing pause; events an unanswered attempt did commit
come back as duplicates. Any other 4xx (a bad key, a body over the server's limits, a wrong
content type) would fail the same way again, so it stops the run with the server's message.

Standard library HTTP (http.client) on purpose: one keep-alive connection sending one chunk
at a time needs nothing more, and the server's install stays free of a client library.
"""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import orjson

DEFAULT_URL = "http://127.0.0.1:8000"
PATH = "/v1/events"
NDJSON = "application/x-ndjson"
BATCH = "application/cloudevents-batch+json"
# Well under the server's defaults (10,000 events, 8 MiB): room for a server configured lower
# and for a chunk to stay one of its write transactions (1,000 events each).
DEFAULT_CHUNK_EVENTS = 1000
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
DEFAULT_ATTEMPTS = 8
DEFAULT_TIMEOUT_SECONDS = 60.0
# Pauses between attempts: 0.5 s, 1 s, 2 s, ... up to this; 8 attempts wait about a minute in
# all, long enough for a server restart.
FIRST_PAUSE_SECONDS = 0.5
MAX_PAUSE_SECONDS = 15.0
_READ_BYTES = 1 << 16


class SendError(Exception):
    """The run stopped: a chunk was refused as a whole, or never got an answer.

    `summary` holds the answers before the stop (set by `send_file`), so the caller can say
    what was recorded.
    """

    summary: Summary | None = None


@dataclass(frozen=True, slots=True)
class FileRefusal:
    """A refused event, placed in the file rather than in its chunk."""

    index: int  # the event's position in the file, from 0 (NDJSON: non-blank lines)
    line: int | None  # its line number (NDJSON), from 1
    id: str | None
    code: str
    message: str

    def describe(self) -> str:
        where = f"line {self.line}" if self.line is not None else f"event {self.index}"
        named = f" (id {self.id})" if self.id is not None else ""
        return f"{where}{named}: {self.code}: {self.message}"


@dataclass(slots=True)
class Summary:
    """The sum of the server's answers so far."""

    inserted: int = 0
    duplicates: int = 0
    refused: int = 0
    requests: int = 0
    retries: int = 0
    refusals: list[FileRefusal] = field(default_factory=list)

    @property
    def events(self) -> int:
        return self.inserted + self.duplicates + self.refused


@dataclass(frozen=True, slots=True)
class Chunk:
    """Events ready to post, and where they sit in the file."""

    first: int  # index of its first event in the file
    events: list[bytes]
    lines: list[int] | None  # line number of each event (NDJSON)
    media_type: str
    read_bytes: int  # bytes of the file read once this chunk was complete

    @property
    def body(self) -> bytes:
        if self.media_type == NDJSON:
            return b"\n".join(self.events) + b"\n"
        return b"[" + b",".join(self.events) + b"]"

    def span(self) -> str:
        last = self.first + len(self.events) - 1
        if self.lines is not None:
            return f"lines {self.lines[0]}-{self.lines[-1]}"
        return f"events {self.first}-{last}"


def read_chunks(
    path: Path, chunk_events: int, chunk_bytes: int, *, block_bytes: int = _READ_BYTES
) -> Iterator[Chunk]:
    """The file's events in chunks; a JSON array if it starts with `[`, else NDJSON.

    `block_bytes` is how much of a JSON array is read at a time (small in tests, so that
    elements, strings and escapes straddle the blocks).
    """
    with path.open("rb") as handle:
        start = _first_significant_byte(handle)
        handle.seek(0)
        if start == b"[":
            elements = _array_elements(handle, block_bytes)
            yield from _batch(elements, BATCH, chunk_events, chunk_bytes)
        else:
            yield from _batch(_ndjson_lines(handle), NDJSON, chunk_events, chunk_bytes)


def _first_significant_byte(handle: IO[bytes]) -> bytes:
    while block := handle.read(_READ_BYTES):
        stripped = block.lstrip()
        if stripped.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark
            stripped = stripped[3:].lstrip()
        if stripped:
            return stripped[:1]
    return b""


def _batch(
    items: Iterator[tuple[bytes, int | None, int]],
    media_type: str,
    chunk_events: int,
    chunk_bytes: int,
) -> Iterator[Chunk]:
    """Group (event, line, bytes read) into chunks bounded by count and size."""
    events: list[bytes] = []
    lines: list[int] = []
    size = 0
    first = 0
    read = 0
    for event, line, read_so_far in items:
        if events and (len(events) >= chunk_events or size + len(event) + 1 > chunk_bytes):
            yield Chunk(first, events, lines or None, media_type, read)
            first += len(events)
            events, lines, size = [], [], 0
        events.append(event)
        if line is not None:
            lines.append(line)
        size += len(event) + 1
        read = read_so_far
    if events:
        yield Chunk(first, events, lines or None, media_type, read)


def _ndjson_lines(handle: IO[bytes]) -> Iterator[tuple[bytes, int | None, int]]:
    """Non-blank lines (as the server counts them), with their line numbers."""
    read = 0
    for number, line in enumerate(handle, start=1):
        read += len(line)
        stripped = line.strip()
        if number == 1 and stripped.startswith(b"\xef\xbb\xbf"):
            stripped = stripped[3:].strip()
        if stripped:
            yield stripped, number, read


_OUTSIDE_STRING = re.compile(rb'["{}\[\],]')
_INSIDE_STRING = re.compile(rb'["\\]')


def _array_elements(handle: IO[bytes], block_bytes: int) -> Iterator[tuple[bytes, int | None, int]]:
    """The raw bytes of each element of a top-level JSON array, read block by block.

    Only the structure is followed (brackets, braces, strings and their escapes), enough to
    cut the array at its top-level commas; each element is sent as it is written and judged
    by the server. The buffer is compacted only when a block is read, so a block's elements
    cost one scan, not one copy each.
    """
    buffer = b""
    position = 0  # next byte of `buffer` to scan
    start: int | None = None  # where the current element's bytes begin (None before `[`)
    depth = 0  # 0: before the array; 1: between its elements; more: inside one
    in_string = False
    consumed = 0  # bytes of the file dropped from the front of `buffer`
    count = 0
    while True:
        found = (_INSIDE_STRING if in_string else _OUTSIDE_STRING).search(buffer, position)
        if found is None or (in_string and found.group() == b"\\" and found.end() == len(buffer)):
            block = handle.read(block_bytes)
            if not block:
                raise SendError("the JSON array of CloudEvents ends before its closing `]`")
            drop = start if start is not None else position
            buffer = buffer[drop:] + block
            position -= drop
            consumed += drop
            if start is not None:
                start -= drop
            continue
        char = found.group()
        position = found.end()
        if in_string:
            if char == b"\\":
                position += 1  # the escaped byte, whatever it is
            else:
                in_string = False
        elif depth == 0:
            if char != b"[":
                raise SendError("the file is neither NDJSON nor a JSON array of CloudEvents")
            depth, start = 1, position
        elif char == b'"':
            in_string = True
        elif char in (b"{", b"["):
            depth += 1
        elif depth > 1:
            if char in (b"}", b"]"):
                depth -= 1  # a comma inside an element is the element's
        elif char in (b",", b"]"):
            assert start is not None
            element = buffer[start : found.start()].strip()
            if element:
                count += 1
                yield element, None, consumed + position
            elif char == b"," or count:
                raise SendError(f"an empty element in the JSON array near byte {consumed + start}")
            start = position
            if char == b"]":
                break
        else:
            raise SendError(f"a stray `{char.decode()}` in the JSON array near byte {consumed}")
    if (buffer[position:] + handle.read(_READ_BYTES)).strip():
        raise SendError("the file goes on after the JSON array of CloudEvents ends")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    retry_after: float | None


class _Connection:
    """One keep-alive HTTP connection to the server, reopened after any transport error."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SendError(f"--url must be an http:// or https:// address, got {url!r}")
        self.secure = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.path = parts.path.rstrip("/") + PATH
        self.timeout = timeout
        self.connection: http.client.HTTPConnection | None = None

    def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        if self.connection is None:
            kind = http.client.HTTPSConnection if self.secure else http.client.HTTPConnection
            self.connection = kind(self.host, self.port, timeout=self.timeout)
        try:
            self.connection.request("POST", self.path, body=body, headers=headers)
            response = self.connection.getresponse()
            content = response.read()
        except BaseException:
            self.close()
            raise
        if response.getheader("connection", "").lower() == "close":
            self.close()
        return Answer(response.status, content, _seconds(response.getheader("retry-after")))

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_text(answer: Answer) -> str:
    """The server's error envelope in words, or the start of whatever it sent."""
    try:
        error = orjson.loads(answer.body)["error"]
        return f"{error['code']}: {error['message']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return answer.body[:200].decode("utf-8", "replace").strip() or "(no body)"


@dataclass(frozen=True, slots=True)
class Retry:
    """What `send_file` tells its caller before pausing for another attempt."""

    chunk: Chunk
    attempt: int  # the attempt that failed, from 1
    reason: str
    pause: float


def send_file(
    path: Path,
    url: str,
    credential: str,
    *,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    attempts: int = DEFAULT_ATTEMPTS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    on_chunk: Callable[[Chunk, Summary], None] = lambda _chunk, _summary: None,
    on_retry: Callable[[Retry], None] = lambda _retry: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Summary:
    """Post every event of the file, chunk by chunk; the sum of the answers.

    `summary` is filled as chunks are answered, so on SendError the caller still has it
    (as the exception's `summary` attribute) to say what was recorded before the stop.
    """
    summary = Summary()
    connection = _Connection(url, timeout)
    headers = {"Authorization": f"Bearer {credential}", "Accept": "application/json"}
    try:
        for chunk in read_chunks(path, chunk_events, chunk_bytes):
            answer = _deliver(connection, chunk, headers, attempts, summary, on_retry, sleep)
            _add_answer(summary, chunk, answer)
            on_chunk(chunk, summary)
    except SendError as error:
        error.summary = summary
        raise
    finally:
        connection.close()
    return summary


def _deliver(
    connection: _Connection,
    chunk: Chunk,
    headers: dict[str, str],
    attempts: int,
    summary: Summary,
    on_retry: Callable[[Retry], None],
    sleep: Callable[[float], None],
) -> Answer:
    """The chunk's 200 answer, after as many attempts as it takes (at most `attempts`)."""
    body = chunk.body
    headers = {**headers, "Content-Type": chunk.media_type}
    for attempt in range(1, attempts + 1):
        summary.requests += 1
        try:
            answer = connection.post(body, headers)
        except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out
            reason = f"{type(error).__name__}: {error}".rstrip(": ")
            retry_after = None
        else:
            if answer.status == 200:
                return answer
            if answer.status != 429 and answer.status < 500:
                hint = ""
                if answer.status == 413:
                    hint = " (try a smaller --chunk-size)"
                raise SendError(
                    f"the server refused {chunk.span()} with {answer.status} "
                    f"{_error_text(answer)}{hint}"
                )
            reason = f"{answer.status} {_error_text(answer)}"
            retry_after = answer.retry_after
        if attempt == attempts:
            raise SendError(f"gave up on {chunk.span()} after {attempts} attempts: {reason}")
        pause = min(FIRST_PAUSE_SECONDS * 2 ** (attempt - 1), MAX_PAUSE_SECONDS)
        if retry_after is not None:
            pause = max(pause, min(retry_after, 4 * MAX_PAUSE_SECONDS))
        summary.retries += 1
        on_retry(Retry(chunk, attempt, reason, pause))
        sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def _add_answer(summary: Summary, chunk: Chunk, answer: Answer) -> None:
    try:
        data = orjson.loads(answer.body)
        inserted, duplicates, refused = data["inserted"], data["duplicates"], data["refused"]
        refusals = data["refusals"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise SendError(
            f"{chunk.span()}: a 200 that is not an events answer: {_error_text(answer)}"
        ) from None
    summary.inserted += inserted
    summary.duplicates += duplicates
    summary.refused += refused
    for refusal in refusals:
        index = refusal["index"]
        line = chunk.lines[index] if chunk.lines is not None and index < len(chunk.lines) else None
        summary.refusals.append(
            FileRefusal(
                chunk.first + index, line, refusal["id"], refusal["code"], refusal["message"]
            )
        )
