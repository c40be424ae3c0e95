"""The ASGI application: one Starlette app serving the graph, the REST shims and probes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute

from usagegraph.auth.challenge import ChallengeMiddleware
from usagegraph.auth.known_keys import KnownKeys
from usagegraph.auth.middleware import PrincipalMiddleware
from usagegraph.cache import create_cache
from usagegraph.clock import Clock, system_clock
from usagegraph.datasources.read_connection import ReadConnection
from usagegraph.db.engine import create_engine, session_factory
from usagegraph.db.partition_span import refresh_span
from usagegraph.db.partitions import keep_partitions_ahead, maintain_partitions
from usagegraph.db.schema_version import ensure_schema
from usagegraph.garbage_collection import settle_heap
from usagegraph.http.availability import AvailabilityMiddleware, settle_cancelled_work
from usagegraph.http.body_limit import BodyLimitMiddleware
from usagegraph.http.cors import cors_middleware
from usagegraph.http.health import healthz, readyz
from usagegraph.http.loop_watchdog import LoopWatchdog
from usagegraph.http.metrics_endpoint import metrics_routes
from usagegraph.http.rate_limit import RateLimitMiddleware, create_rate_limiter
from usagegraph.http.request_id import RequestIdMiddleware
from usagegraph.http.request_resources import RequestResourcesMiddleware
from usagegraph.http.request_telemetry import RequestTelemetryMiddleware
from usagegraph.live.bus import create_bus
from usagegraph.live.changes import publisher_info
from usagegraph.observability import metrics
from usagegraph.observability.database import watch_database
from usagegraph.observability.tracing import Tracing, tracing_from_env
from usagegraph.outages import watch_engine
from usagegraph.resolvers.usage_group_commit import UsageGroupCommit
from usagegraph.resolvers.wallet_operations import keep_expiring_reservations
from usagegraph.rest.routes import rest_routes
from usagegraph.schema.endpoint import graphql_endpoint
from usagegraph.schema.graphiql import graphiql_routes
from usagegraph.schema.persisted_queries import create_persisted_queries
from usagegraph.settings import Settings
from usagegraph.webhooks.deliverer import Deliverer

# After uvicorn's own shutdown window: the lifespan's cleanup (cancelled requests, the pool).
SHUTDOWN_MARGIN_SECONDS = 10.0


def create_app(
    settings: Settings | None = None,
    clock: Clock = system_clock,
    tracing: Tracing | None = None,
) -> Starlette:
    """Build the app; the database is opened (and its schema checked) by the lifespan.

    Traced when `tracing` is given or the `OTEL_*` variables ask for it (with the `otel`
    extra installed: observability/tracing.py); otherwise no tracing code runs at all.
    """
    settings = settings or Settings.from_env()
    tracing = tracing or tracing_from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # First, so that a bad persisted-query manifest stops start-up before anything opens.
        persisted_queries = create_persisted_queries(settings)
        await _prepare_schema(settings)
        engine = create_engine(
            settings.database_url,
            statement_timeout_seconds=settings.request_timeout_seconds,
            pool_size=settings.database_pool_size,
        )
        watch_engine(engine)
        watch_database(engine)
        await refresh_span(engine)  # usage pages read by time band (db/partition_span.py)
        if tracing is not None:
            tracing.instrument_engine(engine)
        cache = create_cache(settings)
        # Live updates: commits of this worker's sessions are published on the bus, and the
        # bus feeds this worker's subscriptions (usagegraph/live/bus.py picks the transport).
        live_bus = create_bus(settings.redis_url, settings.database_url)
        await live_bus.start()
        rate_limiter = create_rate_limiter(settings)
        watchdog = LoopWatchdog(
            max_blocking_seconds=min(
                settings.max_blocking_seconds, settings.request_timeout_seconds
            ),
            graceful_shutdown_seconds=settings.shutdown_timeout_seconds + SHUTDOWN_MARGIN_SECONDS,
        )
        stop_delivering = asyncio.Event()
        delivering: asyncio.Task[None] | None = None
        expiring: asyncio.Task[None] | None = None
        try:
            app.state.engine = engine
            app.state.sessions = session_factory(engine, info=publisher_info(live_bus.publish))
            # API keys of POST /v1/events verified before (auth/known_keys.py): checked by the
            # write's transaction instead of a statement of their own.
            app.state.known_keys = KnownKeys()
            app.state.usage_writes = UsageGroupCommit(
                app.state.sessions, clock, settings, known_keys=app.state.known_keys
            )
            app.state.live_bus = live_bus
            # Each request's reads (its caller, its loaders, its compiled statements) share
            # one autocommit connection (http.request_resources.request_reads).
            app.state.open_reads = functools.partial(ReadConnection, engine)
            app.state.cache = cache
            app.state.rate_limiter = rate_limiter
            app.state.persisted_queries = persisted_queries
            maintenance = asyncio.create_task(
                keep_partitions_ahead(
                    engine, history=settings.event_window.max_age, after_round=refresh_span
                )
            )
            expiring = asyncio.create_task(
                keep_expiring_reservations(app.state.sessions, clock, stop_delivering)
            )
            # Every worker runs one; the database lease lets one of them send at a time.
            delivering = (
                asyncio.create_task(
                    Deliverer(app.state.sessions, settings.webhooks).run(stop_delivering)
                )
                if settings.webhooks.deliver
                else None
            )
            watchdog.start()
            settle_heap(settings.gc_young_threshold)  # last: what is alive now lives long
            metrics.READY.set(1)  # the schema was checked: ready until a probe says otherwise
            yield
        finally:
            watchdog.stop()
            maintenance.cancel()
            stop_delivering.set()
            for task in (delivering, expiring):
                if task is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(task, SHUTDOWN_MARGIN_SECONDS)
            await settle_cancelled_work()
            if hasattr(app.state, "usage_writes"):
                await app.state.usage_writes.close()
            await live_bus.close()
            if rate_limiter is not None:
                await rate_limiter.close()
            await cache.close()
            await persisted_queries.close()
            await engine.dispose()
            if tracing is not None:
                tracing.release_engine()
            metrics.forget_this_process()

    graphql = graphql_endpoint(settings, tracing)
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *metrics_routes(settings),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            # Subscriptions over graphql-transport-ws (schema/live_endpoint.py).
            WebSocketRoute("/graphql", graphql),
            # GraphiQL's scripts and styles; not mounted at all when GraphiQL is off.
            *(graphiql_routes() if settings.graphql.graphiql else []),
            *rest_routes(),
        ],
        # Outermost first: every answer has a request id, and is counted (metrics) with its
        # final status; preflights are answered, and every
        # answer (errors included) carries the CORS headers a browser needs to read it, and
        # every 401 its WWW-Authenticate challenge;
        # outages and overruns anywhere below (resolving the caller included) become 503; the
        # limiter keys on the resolved caller; a body is read (and bounded) only for a request
        # the limiter let through.
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(RequestTelemetryMiddleware),
            Middleware(RequestResourcesMiddleware),
            *cors_middleware(settings.cors_origins),
            Middleware(ChallengeMiddleware),
            Middleware(AvailabilityMiddleware),
            Middleware(PrincipalMiddleware),
            Middleware(RateLimitMiddleware),
            Middleware(BodyLimitMiddleware),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.tracing = tracing
    if tracing is not None:
        tracing.instrument_app(app)  # outermost: the HTTP span holds everything above
    return app


async def _prepare_schema(settings: Settings) -> None:
    """Check (or, for the embedded default, apply) the schema and create usage partitions
    ahead, on an engine of its own: the serving engine's statement budget is for requests,
    and a migration may take longer."""
    engine = create_engine(settings.database_url)
    try:
        await ensure_schema(engine, migrate=settings.embedded_database)
        await maintain_partitions(engine, history=settings.event_window.max_age)
    finally:
        await engine.dispose()
