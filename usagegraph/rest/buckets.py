"""GET /api/v1/clients/{bucket_id}/history (seed 004): a client bucket's snapshots.

A thin translation onto the snapshots resolver. Checks run in this order:
1. no valid credential (JWT or API key) -> 401 "Unauthorized";
2. malformed bucket_id, then start_date, end_date, limit, then start after end -> 400;
3. unknown bucket, or one the caller may not read -> 404 "Not found" (the same answer).
Errors use the family's `{"error", "request_id"}` body.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from usagegraph.errors import UsageGraphError, unauthorized
from usagegraph.http.envelopes import clients_error
from usagegraph.http.json import JSON
from usagegraph.http.query_params import QueryParameters, Wording
from usagegraph.resolvers.buckets import bucket_snapshots, validate_bucket_id
from usagegraph.resolvers.request_context import context_of
from usagegraph.shapes import render

# The clients API's wording of a bad query parameter (seed 004's "Invalid <name>" errors).
WORDING = Wording(
    not_integer="Invalid {name}: must be an integer",
    bad_date="Invalid {name}: expected an existing date as YYYY-MM-DD",
    out_of_range="Invalid {name}: {problem}",
    repeated="Invalid {name}: given more than once",
)


async def bucket_history(request: Request) -> Response:
    principal = context_of(request).principal
    if not principal.is_authenticated:
        return clients_error(unauthorized("Unauthorized"), request)
    try:
        bucket_id = validate_bucket_id(request.path_params["bucket_id"])
        params = QueryParameters(request, WORDING)
        start_date = params.date("start_date")
        end_date = params.date("end_date")
        limit = params.integer("limit")
        snapshots = await bucket_snapshots(
            context_of(request), bucket_id, start_date=start_date, end_date=end_date, limit=limit
        )
    except UsageGraphError as error:
        return clients_error(error, request)
    return JSON(
        {"snapshots": [render(snapshot) for snapshot in snapshots], "count": len(snapshots)}
    )


class _AnyText(Convertor[str]):
    """Any text at all, newlines included (Starlette's `path` stops at a newline)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", _AnyText())

routes: list[BaseRoute] = [
    # Match any id text (empty, with slashes or control characters) so every malformed id
    # still gets this API's 400 "Invalid bucket_id" rather than a bare framework 404.
    Route("/api/v1/clients/{bucket_id:anytext}/history", bucket_history, methods=["GET"]),
]
