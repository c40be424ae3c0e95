"""POST /api/admin/histories/charts/user-stats (seed 001): the per-user usage extract."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
