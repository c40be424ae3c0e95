"""Release what a request held (its read connection) once its answer is sent.

Pure ASGI, so it wraps streaming answers too; the resources are found on the request's state,
where the request context keeps them, under `RESOURCES_KEY`: anything with `async close()`.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

RESOURCES_KEY = "closing_resources"


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
