"""The assembled schema: every entry point of the graph is listed here."""

from __future__ import annotations

import strawberry

from usagegraph.schema.viewer import Viewer, resolve_viewer


@strawberry.type(description="The entry points of the usagegraph API.")
class Query:
    viewer: Viewer = strawberry.field(
        resolver=resolve_viewer, description="The caller of this request."
    )


schema = strawberry.Schema(query=Query)
