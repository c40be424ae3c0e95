"""GET /v1/billing/usage-history (seed 002) and the /v1 not-found answer."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
