"""A real webhook receiver for the tests: an HTTP server on loopback, in a thread, that
keeps every request it gets (headers and raw body) and answers as the test tells it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


@dataclass(frozen=True, slots=True)
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    # Status to answer for the n-th request (0-based); 200 when it returns None.
    answer: Callable[[int], int | None] = lambda _n: 200
    # Called (in the server's thread) when a request arrives, before it is answered.
    on_request: Callable[[int], None] = lambda _n: None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verified(self, secret: str) -> dict[str, object]:
        """webhook-id → payload of every request that verifies with `secret` (the
        receiver's deduplication: one entry per id however often it came)."""
        wh = Webhook(secret)
        out: dict[str, object] = {}
        for item in list(self.received):
            out[item.headers["webhook-id"]] = wh.verify(item.body, item.headers)
        return out

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} deliveries arrived")
            time.sleep(0.02)
        return list(self.received)


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A receiver at http://127.0.0.1:<free port>/hook."""
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with receiver.lock:
                index = len(receiver.received)
                receiver.received.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body)
                )
            receiver.on_request(index)
            status = receiver.answer(index) or 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
