"""The ASGI application: one Starlette app serving the graph, the REST shims and probes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from usagegraph.auth.middleware import PrincipalMiddleware
from usagegraph.cache import create_cache
from usagegraph.clock import Clock, system_clock
from usagegraph.db.engine import create_engine, session_factory
from usagegraph.db.schema_version import ensure_schema
from usagegraph.health import healthz, readyz
from usagegraph.request_id import RequestIdMiddleware
from usagegraph.rest.routes import rest_routes
from usagegraph.schema.endpoint import graphql_endpoint
from usagegraph.settings import Settings


def create_app(settings: Settings | None = None, clock: Clock = system_clock) -> Starlette:
    """Build the app; the database is opened (and its schema checked) by the lifespan."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        cache = create_cache(settings)
        try:
            await ensure_schema(engine, migrate=settings.embedded_database)
            app.state.engine = engine
            app.state.sessions = session_factory(engine)
            app.state.cache = cache
            yield
        finally:
            await cache.close()
            await engine.dispose()

    graphql = graphql_endpoint()
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            *rest_routes(),
        ],
        middleware=[Middleware(RequestIdMiddleware), Middleware(PrincipalMiddleware)],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock
    return app
