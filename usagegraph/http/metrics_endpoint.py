"""GET /metrics: every worker's metrics in the Prometheus text format.

Not mounted at all with USAGEGRAPH_METRICS=off (404 like any unknown path). With
USAGEGRAPH_METRICS_TOKEN set it answers only `Authorization: Bearer <token>` (compared in
constant time); Prometheus sends it with `authorization: {credentials: ...}` in its scrape
config (deploy/README.md). It is never rate limited: a scraper must always get an answer.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from usagegraph.observability.database import observe_pool
from usagegraph.observability.metrics import exposition
from usagegraph.settings import Settings

METRICS_PATH = "/metrics"


async def metrics_endpoint(request: Request) -> Response:
    """The exposition; 401 without the configured bearer token."""
    settings: Settings = request.app.state.settings
    if settings.metrics_token is not None and not _presents(request, settings.metrics_token):
        return JSONResponse(
            {"error": "Unauthorized", "request_id": request.state.request_id},
            status_code=401,  # the challenge middleware adds WWW-Authenticate
        )
    engine = getattr(request.app.state, "engine", None)
    if engine is not None:
        observe_pool(engine)
    body, content_type = exposition()
    return Response(body, headers={"Content-Type": content_type})


def _presents(request: Request, token: str) -> bool:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    presented = value.strip().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(presented, token.encode())


def metrics_routes(settings: Settings) -> list[Route]:
    """The /metrics route, or none when USAGEGRAPH_METRICS is off."""
    if not settings.metrics_enabled:
        return []
    return [Route(METRICS_PATH, metrics_endpoint, methods=["GET"])]
