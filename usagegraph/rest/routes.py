"""Every REST route, collected in one list for the app."""

from __future__ import annotations

from starlette.routing import BaseRoute

from usagegraph.rest import (
    billing,
    buckets,
    events,
    openapi,
    usage_history,
    user_stats,
    wallet_account,
)


def rest_routes() -> list[BaseRoute]:
    """The five documented APIs and the events API; /v1's catch-all comes last within
    billing's own list."""
    return [
        *openapi.routes,
        *usage_history.routes,
        *user_stats.routes,
        *wallet_account.routes,
        *buckets.routes,
        *events.routes,
        *billing.routes,
    ]
