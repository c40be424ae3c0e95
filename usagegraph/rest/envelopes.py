"""The error bodies of each documented API family, exactly as their documents show them.

- /api/user, /api/admin (seeds 000, 001): {"success": false, "message": "..."}
- /v1/... (seed 002), and /auth/account (seed 003 documents no error body; we use the same
  coded shape): {"error": {"code", "message"}, "meta": {"request_id"}}
- /api/v1/clients (seed 004): {"error": "...", "request_id": "..."}
"""

from __future__ import annotations

from starlette.requests import Request

from usagegraph.errors import UsageGraphError
from usagegraph.rest.json import JSON


def legacy_error(error: UsageGraphError) -> JSON:
    return JSON({"success": False, "message": error.message}, status_code=error.http_status)


def coded_error(error: UsageGraphError, request: Request) -> JSON:
    return JSON(
        {
            "error": {"code": error.code.value, "message": error.message},
            "meta": {"request_id": request.state.request_id},
        },
        status_code=error.http_status,
    )


def clients_error(error: UsageGraphError, request: Request) -> JSON:
    return JSON(
        {"error": error.message, "request_id": request.state.request_id},
        status_code=error.http_status,
    )
