"""Request bodies are bounded: at most `max_body_bytes`, refused with 413 before any parsing.

A body is read by this middleware, whole, before the app sees it: a declared
`Content-Length` over the limit is refused without reading a byte, and a chunked (or
under-declared) body is refused as soon as the bytes received pass the limit. Only what fits
is ever held in memory, so a 400 MB upload costs a worker at most the limit, and the app
below reads an ordinary, complete body. The answer uses the envelope of the route's API
family, coded `PAYLOAD_TOO_LARGE`.

Routes in `STREAMED_PATHS` read their body themselves, as it arrives, and bound it with the
same limit (POST /v1/events decodes NDJSON line by line and never holds the whole body).

It sits inside the availability middleware, so a body that trickles in slowly is bounded by
the request's time budget too.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.http.envelopes import error_response_for

# Routes that stream their body and apply `max_body_bytes` themselves.
STREAMED_PATHS = frozenset({"/v1/events"})


class BodyLimitMiddleware:
    """Pure ASGI; reads the limit from the app's settings at call time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in STREAMED_PATHS:
            await self.app(scope, receive, send)
            return
        limit = scope["app"].state.settings.max_body_bytes
        try:
            if _declared_length(scope) > limit:
                raise _TooLarge
            body = await _read_at_most(receive, limit)
        except _TooLarge:
            await _refuse(scope, send, limit)
            return
        except ClientDisconnect:
            return  # the client hung up before its body arrived: nobody to answer
        await self.app(scope, _replay(body, receive), send)


class _TooLarge(Exception):
    """More bytes were declared or received than the limit allows."""


def _declared_length(scope: Scope) -> int:
    """The Content-Length header's value; 0 when absent or not a plain number (then the
    bytes that arrive are counted instead)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return 0


async def _read_at_most(receive: Receive, limit: int) -> bytes:
    """The whole body; `_TooLarge` as soon as more than `limit` bytes arrived."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the app the body read, then passes on what comes after."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(scope: Scope, send: Send, limit: int) -> None:
    error = UsageGraphError(
        ErrorCode.PAYLOAD_TOO_LARGE,
        f"The request body is larger than {limit} bytes (USAGEGRAPH_MAX_BODY_BYTES)",
    )
    request_id = scope.get("state", {}).get("request_id", "unknown")
    response = error_response_for(scope["path"], error, request_id, {"Connection": "close"})
    await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
