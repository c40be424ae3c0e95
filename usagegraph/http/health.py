"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse

from usagegraph.observability.metrics import record_readiness

READINESS_TIMEOUT_SECONDS = 2.0
# Never rate limited, never given a request budget: orchestrators must always get an answer.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
log = logging.getLogger(__name__)


async def healthz(_request: Request) -> JSONResponse:
    """The process is up and serving; says nothing about its dependencies."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """The database answers within a short timeout; 503 otherwise."""
    engine = request.app.state.engine
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (TimeoutError, SQLAlchemyError, OSError) as exc:
        log.warning("readiness check failed: %s", type(exc).__name__)
        record_readiness(False)
        return JSONResponse(
            {"status": "unavailable", "code": "DATABASE_UNAVAILABLE"}, status_code=503
        )
    record_readiness(True)
    return JSONResponse({"status": "ready"})
