"""The error bodies of each documented API family, exactly as their documents show them.

- /api/user, /api/admin (seeds 000, 001): {"success": false, "message": "..."}
- /v1/... (seed 002), and /auth/account (seed 003 documents no error body; we use the same
  coded shape): {"error": {"code", "message"}, "meta": {"request_id"}}
- /api/v1/clients (seed 004): {"error": "...", "request_id": "..."}
- /graphql: a GraphQL response, {"errors": [{"message", "extensions": {"code", "requestId"}}]}

Routes render their own errors with the family's function. Middleware that answers before
(or instead of) a route — rate limiting, outages, timeouts — knows only the path, so
`error_response_for` maps a path to its family, here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, auto
from typing import Any

from starlette.requests import Request

from usagegraph.errors import UsageGraphError
from usagegraph.http.json import JSON


class Family(Enum):
    """The API families, each with its own error body."""

    LEGACY = auto()
    CODED = auto()
    CLIENTS = auto()
    GRAPHQL = auto()


# Longest prefix first: /api/v1/clients is more specific than /api/.
_FAMILY_PREFIXES: tuple[tuple[str, Family], ...] = (
    ("/api/v1/clients/", Family.CLIENTS),
    ("/api/", Family.LEGACY),
    ("/graphql", Family.GRAPHQL),
)


def family_of(path: str) -> Family:
    """The family whose envelope a path answers errors in; coded for /v1, /auth and the rest."""
    for prefix, family in _FAMILY_PREFIXES:
        if path.startswith(prefix):
            return family
    return Family.CODED


def legacy_body(error: UsageGraphError) -> dict[str, Any]:
    return {"success": False, "message": error.message}


def coded_body(error: UsageGraphError, request_id: str) -> dict[str, Any]:
    return {
        "error": {"code": error.code.value, "message": error.message},
        "meta": {"request_id": request_id},
    }


def clients_body(error: UsageGraphError, request_id: str) -> dict[str, Any]:
    return {"error": error.message, "request_id": request_id}


def graphql_body(error: UsageGraphError, request_id: str) -> dict[str, Any]:
    """No `data` key: the request was refused before execution (GraphQL over HTTP)."""
    extensions = {"code": error.code.value, "requestId": request_id}
    return {"errors": [{"message": error.message, "extensions": extensions}]}


def error_body_for(path: str, error: UsageGraphError, request_id: str) -> dict[str, Any]:
    """The body of `error` in the envelope of the family `path` belongs to."""
    family = family_of(path)
    if family is Family.LEGACY:
        return legacy_body(error)
    if family is Family.CLIENTS:
        return clients_body(error, request_id)
    if family is Family.GRAPHQL:
        return graphql_body(error, request_id)
    return coded_body(error, request_id)


def error_response_for(
    path: str,
    error: UsageGraphError,
    request_id: str,
    headers: Mapping[str, str] | None = None,
) -> JSON:
    """`error` answered in the envelope of `path`'s family, with the error's HTTP status."""
    return JSON(
        error_body_for(path, error, request_id), status_code=error.http_status, headers=headers
    )


def legacy_error(error: UsageGraphError) -> JSON:
    return JSON(legacy_body(error), status_code=error.http_status)


def coded_error(error: UsageGraphError, request: Request) -> JSON:
    return JSON(coded_body(error, request.state.request_id), status_code=error.http_status)


def clients_error(error: UsageGraphError, request: Request) -> JSON:
    return JSON(clients_body(error, request.state.request_id), status_code=error.http_status)
