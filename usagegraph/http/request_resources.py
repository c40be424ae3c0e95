"""Release what a request held (its read connection, its loaders) once its answer is sent.

Pure ASGI, so it wraps streaming answers too; the resources are found on the request's state,
where the request context keeps them, under `RESOURCES_KEY`: anything with `async close()`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

RESOURCES_KEY = "closing_resources"
READS_KEY = "reads"


class ReadSessions(Protocol):
    """A request's read connection (datasources.read_connection.ReadConnection)."""

    def session(self) -> AbstractAsyncContextManager[Any]: ...

    async def release(self) -> None: ...

    async def close(self) -> None: ...


def request_reads(request_state: dict[str, Any], app_state: Any) -> ReadSessions | None:
    """The request's one read connection, opened by the app's `open_reads` on first use and
    closed at the request's end; None for an app without one.

    The caller's principal is read on it first (then it is released: a write holds its own
    session), then the loaders and compiled reads use it; no BEGIN/ROLLBACK around reads.
    """
    reads = request_state.get(READS_KEY)
    if reads is None:
        open_reads = getattr(app_state, "open_reads", None)
        if open_reads is None:
            return None
        reads = open_reads()
        request_state[READS_KEY] = reads
        request_state.setdefault(RESOURCES_KEY, []).append(reads)
    return reads


class RequestResourcesMiddleware:
    """Close the request's resources at its end, whatever happened."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        try:
            await self.app(scope, receive, send)
        finally:
            for resource in state.pop(RESOURCES_KEY, []):
                await resource.close()
