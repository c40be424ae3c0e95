"""A client that hangs up before its request body arrives: no answer, no server error."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.types import Message

from tests.fixtures.user_stats_data import SUPER, headers, seed_campus


async def test_a_body_never_sent_ends_the_request_quietly(
    app: Starlette, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    await seed_campus(engine)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/admin/histories/charts/user-stats",
        "raw_path": b"/api/admin/histories/charts/user-stats",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (name.lower().encode(), value.encode()) for name, value in headers(SUPER).items()
        ]
        + [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "app": app,
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    with caplog.at_level(logging.WARNING):
        await app(scope, receive, send)  # raises nothing
    assert sent == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
