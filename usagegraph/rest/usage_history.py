"""GET /api/user/usage-history (seed 000): per-bucket usage of an instance.

A thin translation: query strings in, the resolver's UsageHistory out in the seed's field
names; every rule (fallbacks, access, scope, buckets, cache) lives in
resolvers/usage_history.py.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from usagegraph.errors import UsageGraphError
from usagegraph.http.envelopes import legacy_error
from usagegraph.http.json import JSON
from usagegraph.input_ids import ascii_digits
from usagegraph.resolvers.request_context import context_of
from usagegraph.resolvers.usage_history import UsageHistory, usage_history_for
from usagegraph.shapes import render

PATH = "/api/user/usage-history"
# Longer than any accepted window; longer strings cannot be one and need no int() work.
_MAX_WINDOW_DIGITS = 4


def parse_window(raw: str | None) -> int | None:
    """A plain decimal integer, or None (the resolver then falls back to 30).

    Stricter than int(): "7.0", "+7", " 7" and "7_0" are not integers a client meant.
    """
    if raw is None or len(raw) > _MAX_WINDOW_DIGITS or not ascii_digits(raw):
        return None
    return int(raw)


def render_history(history: UsageHistory) -> dict[str, Any]:
    """The body of the usage-history route: the seed's envelope around the shape."""
    return {"success": True, **render(history)}


async def get_usage_history(request: Request) -> Response:
    params = request.query_params
    try:
        history = await usage_history_for(
            context_of(request),
            instance_id=params.get("instanceId"),
            window=parse_window(params.get("window")),
            interval=params.get("interval"),
            scope=params.get("scope"),
        )
    except UsageGraphError as error:
        return legacy_error(error)
    return JSON(render_history(history))


routes: list[BaseRoute] = [Route(PATH, get_usage_history, methods=["GET"])]
