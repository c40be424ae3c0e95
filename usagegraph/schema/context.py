"""The context every GraphQL resolver gets: the request's one `RequestContext`."""

from __future__ import annotations

from strawberry.types import Info as StrawberryInfo

from usagegraph.resolvers.request_context import RequestContext

# The graph's name for it; the REST shims read the same object (`context_of`).
GraphQLContext = RequestContext
Info = StrawberryInfo[RequestContext, None]
