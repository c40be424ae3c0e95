"""Every REST route, collected in one list for the app."""

from __future__ import annotations

from starlette.routing import BaseRoute

from usagegraph.rest import account, billing, clients, openapi, usage_history, user_stats


def rest_routes() -> list[BaseRoute]:
    """The five documented APIs; /v1's catch-all comes last within billing's own list."""
    return [
        *openapi.routes,
        *usage_history.routes,
        *user_stats.routes,
        *account.routes,
        *clients.routes,
        *billing.routes,
    ]
