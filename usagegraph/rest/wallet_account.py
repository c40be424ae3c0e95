"""GET /auth/account/{usage,credits,ledger,summary} (seed 003): the caller's own account.

A thin translation: query strings become typed values, the resolvers decide everything,
and their dataclasses are rendered with the seed's field names. Errors use the coded
envelope (seed 003 documents none): {"error": {"code", "message"}, "meta": {"request_id"}}.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from usagegraph.auth.principal import Principal
from usagegraph.errors import UsageGraphError
from usagegraph.http.envelopes import coded_error
from usagegraph.http.json import JSON
from usagegraph.http.query_params import QueryParameters, Wording
from usagegraph.resolvers.request_context import context_of
from usagegraph.resolvers.wallet_account import (
    AccountPeriod,
    account_credits,
    account_holder_id,
    account_summary,
    account_usage,
)
from usagegraph.resolvers.wallet_ledger import (
    LedgerFilter,
    LedgerType,
    account_ledger,
)
from usagegraph.shapes import render

# The account API's wording of a bad query parameter (seed 003 documents none of its own).
WORDING = Wording(
    not_integer="'{name}' must be an integer",
    bad_moment="'{name}' must be an ISO 8601 date or date-time",
    bad_choice="'{name}' must be one of {allowed}",
    out_of_range="'{name}' {problem}",
    blank_is_absent=True,
)


# --- endpoints ---------------------------------------------------------------------------

Handler = Callable[[Request, Principal], Awaitable[Any]]


def _account_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Runs a handler for an authenticated user and renders its payload or its error.

    The caller is checked before any parameter, so an anonymous request gets 401, not 400.
    """

    async def endpoint(request: Request) -> Response:
        try:
            principal = context_of(request).principal
            account_holder_id(principal)
            payload = await handler(request, principal)
        except UsageGraphError as error:
            return coded_error(error, request)
        return JSON(payload)

    return endpoint


async def _usage(request: Request, principal: Principal) -> dict[str, Any]:
    params = QueryParameters(request, WORDING)
    period = params.choice("period", AccountPeriod) or AccountPeriod.MONTHLY
    start, end = params.moment("from"), params.moment("to")
    stats = await account_usage(context_of(request), period=period, start=start, end=end)
    return {"data": render(stats)}


async def _credits(request: Request, principal: Principal) -> dict[str, Any]:
    return render(await account_credits(context_of(request)))


async def _ledger(request: Request, principal: Principal) -> dict[str, Any]:
    params = QueryParameters(request, WORDING)
    ledger_filter = LedgerFilter(
        entry_type=params.choice("type", LedgerType),
        start=params.moment("from"),
        end=params.moment("to"),
    )
    limit = params.integer("limit")
    offset = params.integer("offset")
    page = await account_ledger(
        context_of(request), ledger_filter=ledger_filter, limit=limit, offset=offset
    )
    return render(page)


async def _summary(request: Request, principal: Principal) -> dict[str, Any]:
    return render(await account_summary(context_of(request)))


routes: list[BaseRoute] = [
    Route("/auth/account/usage", _account_endpoint(_usage), methods=["GET"]),
    Route("/auth/account/credits", _account_endpoint(_credits), methods=["GET"]),
    Route("/auth/account/ledger", _account_endpoint(_ledger), methods=["GET"]),
    Route("/auth/account/summary", _account_endpoint(_summary), methods=["GET"]),
]
