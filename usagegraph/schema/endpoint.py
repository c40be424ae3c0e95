"""The `/graphql` HTTP endpoint: builds a fresh context for every request."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from usagegraph.datasources.loaders import Loaders
from usagegraph.schema.context import GraphQLContext
from usagegraph.schema.root import schema


class GraphQLEndpoint(GraphQL[GraphQLContext, None]):
    """Strawberry's ASGI app with our per-request context."""

    async def get_context(
        self, request: Request | WebSocket, response: Response | None = None
    ) -> GraphQLContext:
        state: Any = request.app.state
        principal = request.state.principal
        return GraphQLContext(
            principal=principal,
            sessions=state.sessions,
            request_id=request.state.request_id,
            now=state.clock(),
            loaders=Loaders(state.sessions, principal),
            cache=getattr(state, "cache", None),
        )


def graphql_endpoint() -> GraphQLEndpoint:
    return GraphQLEndpoint(schema)
