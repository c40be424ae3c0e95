"""GET /auth/account/{usage,credits,ledger,summary} (seed 003): the caller's own account.

A thin translation: query strings become typed values, the resolvers decide everything,
and their dataclasses are rendered with the seed's field names. Errors use the coded
envelope (seed 003 documents none): {"error": {"code", "message"}, "meta": {"request_id"}}.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from usagegraph.auth.principal import Principal
from usagegraph.errors import UsageGraphError, invalid
from usagegraph.http.envelopes import coded_error
from usagegraph.http.json import JSON
from usagegraph.input_ids import parse_integer
from usagegraph.iso_dates import OutOfRange, parse_moment
from usagegraph.resolvers.request_context import context_of
from usagegraph.resolvers.wallet_account import (
    AccountPeriod,
    account_credits,
    account_holder_id,
    account_summary,
    account_usage,
)
from usagegraph.resolvers.wallet_ledger import (
    DEFAULT_LEDGER_LIMIT,
    LedgerFilter,
    LedgerType,
    account_ledger,
)
from usagegraph.shapes import render

_Choice = TypeVar("_Choice", bound=StrEnum)

# --- query parameters --------------------------------------------------------------------


def _param(request: Request, name: str) -> str | None:
    """A query parameter's value; absent and blank (`?type=`) both read as not given."""
    value = request.query_params.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _choice(request: Request, name: str, choices: type[_Choice]) -> _Choice | None:
    value = _param(request, name)
    if value is None:
        return None
    try:
        return choices(value)
    except ValueError:
        allowed = ", ".join(choice.value for choice in choices)
        raise invalid(f"'{name}' must be one of {allowed}") from None


def _moment(request: Request, name: str) -> datetime | None:
    """An ISO 8601 date-time (no offset = UTC), or a date meaning 00:00 UTC that day."""
    value = _param(request, name)
    if value is None:
        return None
    try:
        return parse_moment(value)
    except OutOfRange as exc:
        raise invalid(f"'{name}' {exc}") from None
    except ValueError:
        raise invalid(f"'{name}' must be an ISO 8601 date or date-time") from None


def _integer(request: Request, name: str, default: int) -> int:
    value = _param(request, name)
    if value is None:
        return default
    try:
        return parse_integer(value)
    except ValueError:
        raise invalid(f"'{name}' must be an integer") from None


# --- rendering (the seed's field names) --------------------------------------------------


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
    period = _choice(request, "period", AccountPeriod) or AccountPeriod.MONTHLY
    start, end = _moment(request, "from"), _moment(request, "to")
    stats = await account_usage(context_of(request), period=period, start=start, end=end)
    return {"data": render(stats)}


async def _credits(request: Request, principal: Principal) -> dict[str, Any]:
    return render(await account_credits(context_of(request)))


async def _ledger(request: Request, principal: Principal) -> dict[str, Any]:
    ledger_filter = LedgerFilter(
        entry_type=_choice(request, "type", LedgerType),
        start=_moment(request, "from"),
        end=_moment(request, "to"),
    )
    limit = _integer(request, "limit", DEFAULT_LEDGER_LIMIT)
    offset = _integer(request, "offset", 0)
    async with context_of(request).sessions() as session:
        page = await account_ledger(
            session,
            principal,
            context_of(request).now,
            ledger_filter=ledger_filter,
            limit=limit,
            offset=offset,
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
