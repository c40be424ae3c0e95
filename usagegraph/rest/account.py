"""GET /auth/account/{usage,credits,ledger,summary} (seed 003): the caller's own account."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
