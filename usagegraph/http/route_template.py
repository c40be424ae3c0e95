"""The route template a request matched (`/api/v1/clients/{bucket_id}/history`), never its
raw path: metrics and access logs label requests with it, and a raw path would put a bucket
id (or anything a client typed) into a label, one series per value."""

from __future__ import annotations

from starlette.routing import Match
from starlette.types import Scope

UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The path template of the app's route that fully matches `scope`; a route that
    matches the path but not the method (405) counts too; `unmatched` for 404s."""
    router = getattr(scope.get("app"), "router", None)
    partial: str | None = None
    for route in getattr(router, "routes", ()):
        match, _child = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", UNMATCHED))
        if match is Match.PARTIAL and partial is None:
            partial = str(getattr(route, "path", UNMATCHED))
    return partial or UNMATCHED
