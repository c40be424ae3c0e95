"""GET /api/v1/clients/{bucket_id}/history (seed 004): a client bucket's snapshots."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
