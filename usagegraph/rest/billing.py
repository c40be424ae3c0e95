"""GET /v1/billing/usage-history (seed 002) and the /v1 not-found answer.

A thin translation: the API key's institution and the query strings go to the
billing-periods resolver; its page comes back in the seed's field names. Checks run in this
order: credential (401), then parameters (400). Every body, errors included, carries
`meta.request_id`, the same id the middleware puts in the `X-Request-Id` header.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from usagegraph.auth.principal import CallerKind
from usagegraph.errors import ErrorCode, UsageGraphError, unauthorized
from usagegraph.http.envelopes import coded_error
from usagegraph.http.json import JSON
from usagegraph.http.query_params import QueryParameters, Wording
from usagegraph.resolvers.billing import BillingPeriodPage, billing_periods
from usagegraph.resolvers.request_context import context_of
from usagegraph.shapes import render

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


# The billing API's wording of a bad query parameter.
WORDING = Wording(
    not_integer="{name} must be an integer", repeated="{name} must be given at most once"
)


def _page_json(page: BillingPeriodPage, request_id: str) -> dict[str, Any]:
    return {
        "data": render(page.periods),
        "meta": {
            "request_id": request_id,
            "total": page.total,
            "limit": page.limit,
            "offset": page.offset,
            "has_more": page.has_more,
        },
    }


async def usage_history(request: Request) -> Response:
    principal = context_of(request).principal
    if principal.kind is not CallerKind.INSTITUTION or principal.institution_id is None:
        return coded_error(unauthorized("Invalid or missing API key"), request)
    try:
        params = QueryParameters(request, WORDING)
        limit = params.integer("limit")
        offset = params.integer("offset")
        page = await billing_periods(
            context_of(request), principal.institution_id, limit=limit, offset=offset
        )
    except UsageGraphError as error:
        return coded_error(error, request)
    return JSON(_page_json(page, request.state.request_id))


async def endpoint_not_found(request: Request) -> Response:
    """Any other /v1 path, whatever the method or credential: the seed's 404 body."""
    error = UsageGraphError(ErrorCode.ENDPOINT_NOT_FOUND, "endpoint not found")
    return coded_error(error, request)


routes: list[BaseRoute] = [
    Route("/v1/billing/usage-history", usage_history, methods=["GET"]),
    # Last: every other /v1 path and every other method (a function endpoint would default to
    # GET only, so the methods are listed).
    Route("/v1", endpoint_not_found, methods=_ALL_METHODS),
    Route("/v1/{path:path}", endpoint_not_found, methods=_ALL_METHODS),
]
