"""GET /api/user/usage-history (seed 000): per-bucket usage of an instance."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
