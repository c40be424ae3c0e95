"""OpenTelemetry traces: optional, configured by the standard `OTEL_*` variables, else absent.

Why optional: most deployments scrape `/metrics` and read the logs; traces need a collector
and five more packages, so they come with `pip install usagegraph[otel]` only.

Why nothing is imported otherwise: `tracing_from_env` reads the environment first and
imports OpenTelemetry only once tracing is asked for (`OTEL_TRACES_EXPORTER` other than
`none`, or an OTLP endpoint) and not disabled (`OTEL_SDK_DISABLED=true`). Without the extra
or without that configuration it returns None and the app is built exactly as before: no
middleware, no schema extension, no engine listeners, no OpenTelemetry module loaded. Asked
for without the extra, it logs one warning and carries on untraced (an `OTEL_*` variable set
for a whole cluster should not stop a server).

Why the `OTEL_*` variables and not `USAGEGRAPH_*` settings: they mean what the OpenTelemetry
specification says, and the SDK reads most of them itself (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`, and the exporter's
`OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, `_HEADERS`, `_TIMEOUT`). This module only picks the
exporter (`OTEL_TRACES_EXPORTER`, with `otlp` sent over `OTEL_EXPORTER_OTLP_PROTOCOL`,
`http/protobuf` unless it says `grpc`).

What is traced, in one tree per request (`Tracing` does the wiring):
- HTTP: the Starlette instrumentation's ASGI middleware, outermost of the app's middleware:
  a server span named by method and route template (`POST /graphql`), with the request id
  the client sees in `X-Request-Id` as `usagegraph.request_id` (set by
  http/request_telemetry.py through `annotate_request`), and its `http send`/`http receive`
  children.
- GraphQL: Strawberry's `OpenTelemetryExtension`, first of the schema's extensions:
  `GraphQL Query: <operation>` under the HTTP span, and under it `GraphQL Parsing`,
  `GraphQL Validation` and `GraphQL Resolving: <field>` for every field with a resolver of
  its own (plain attributes are not spanned).
- SQL: the SQLAlchemy instrumentation on the serving engine: one span per statement, under
  the resolver (or middleware) that ran it, and a `connect` span per connection checkout.

Each app gets its own tracer provider through `Tracing` (a test passes one with an in-memory
exporter); `tracing_from_env` makes the process's provider once and registers it globally, so
propagation and any other instrumentation use it too. Every worker of `serve --workers N` is
a process of its own and builds its own.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: importing them at run time would load OpenTelemetry
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.applications import Starlette
    from strawberry.extensions import SchemaExtension
    from strawberry.types.execution import ExecutionContext

log = logging.getLogger(__name__)

REQUEST_ID_ATTRIBUTE = "usagegraph.request_id"
EXTRA_HINT = "pip install 'usagegraph[otel]'"
# OTEL_TRACES_EXPORTER names (after `otlp` is resolved by protocol) -> entry point names of
# the SDK's `opentelemetry_traces_exporter` group.
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}


class TracingConfigError(ValueError):
    """The `OTEL_*` variables ask for an exporter that cannot be used; the message says why."""


def tracing_requested(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces: an exporter other than `none`, or an OTLP
    endpoint (then the exporter is `otlp`), and the SDK not disabled.

    The specification's default exporter is `otlp`, but an installed extra alone does not
    turn tracing on: a server with nowhere to send spans would only retry and log.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The SDK entry-point names of the exporters `OTEL_TRACES_EXPORTER` asks for."""
    names = [
        name.strip().lower()
        for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if name.strip() and name.strip().lower() != "none"
    ]
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    resolved = []
    for name in names:
        if name == "otlp":
            if protocol not in _OTLP_BY_PROTOCOL:
                raise TracingConfigError(
                    f"OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL={protocol!r} is not one of "
                    f"{', '.join(_OTLP_BY_PROTOCOL)}"
                )
            name = _OTLP_BY_PROTOCOL[protocol]
        resolved.append(name)
    return resolved


def tracing_from_env() -> Tracing | None:
    """The process's tracing if `OTEL_*` asks for it and the extra is installed, else None.

    Raises `TracingConfigError` for an exporter that is named but not installed.
    """
    if not tracing_requested(os.environ):
        return None
    return _process_tracing()


@functools.cache
def _process_tracing() -> Tracing | None:
    """Made once per process: the SDK allows one global tracer provider."""
    try:
        # The instrumentations too: the API alone may be there (another package's need).
        import opentelemetry.instrumentation.sqlalchemy
        import opentelemetry.instrumentation.starlette  # noqa: F401
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning(
            "OTEL_* asks for traces but %s is not installed (%s); serving untraced",
            exc.name,
            EXTRA_HINT,
        )
        return None
    exporters = [_exporter_class(name)() for name in exporter_names(os.environ)]
    # Resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) and sampler (OTEL_TRACES_SAMPLER)
    # come from the environment; the provider flushes its batches at exit.
    provider = TracerProvider()
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return Tracing(provider)


def check_tracing_environment(environ: Mapping[str, str]) -> None:
    """Raise `TracingConfigError` now if `OTEL_*` names an exporter that is not installed,
    so `serve` refuses to start instead of every worker failing to build its app."""
    if not tracing_requested(environ):
        return
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return  # each worker warns and serves untraced
    for name in exporter_names(environ):
        _exporter_class(name)


def _exporter_class(name: str) -> type[SpanExporter]:
    """An exporter by its entry point in the SDK's `opentelemetry_traces_exporter` group."""
    from importlib.metadata import entry_points

    installed = entry_points(group="opentelemetry_traces_exporter")
    found = installed.select(name=name)
    if not found:
        hint = (
            "; OTLP over gRPC needs `pip install opentelemetry-exporter-otlp-proto-grpc`"
            if name == "otlp_proto_grpc"
            else ""
        )
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER: no trace exporter {name!r} is installed (installed: "
            f"{', '.join(sorted(installed.names)) or 'none'}){hint}"
        )
    exporter_class: type[SpanExporter] = next(iter(found)).load()
    return exporter_class


class Tracing:
    """Instruments one app, its schema and its engine on one tracer provider."""

    def __init__(self, tracer_provider: TracerProvider) -> None:
        self.tracer_provider = tracer_provider

    def instrument_app(self, app: Starlette) -> None:
        """HTTP server spans: the Starlette instrumentation's middleware, added outermost.

        The span is current for everything the app does, so the GraphQL operation span and
        the SQL spans of middleware nest under it. Call before the app starts.
        """
        from opentelemetry.instrumentation.starlette import StarletteInstrumentor

        StarletteInstrumentor.instrument_app(app, tracer_provider=self.tracer_provider)

    def graphql_extensions(self) -> tuple[type[SchemaExtension], ...]:
        """Strawberry's tracing extension bound to this provider, as a class: Strawberry
        makes an instance per operation, so concurrent operations never share spans."""
        from strawberry.extensions.tracing import OpenTelemetryExtension

        provider = self.tracer_provider

        class GraphQLTracing(OpenTelemetryExtension):
            """Operation, parsing, validation and resolver spans on this app's provider."""

            def __init__(self, *, execution_context: ExecutionContext | None = None) -> None:
                super().__init__(execution_context=execution_context, tracer_provider=provider)

        return (GraphQLTracing,)

    def instrument_engine(self, engine: AsyncEngine) -> None:
        """SQL spans for `engine` (its sync core, where SQLAlchemy's events fire).

        The instrumentor is one per process: `serve` builds one app (one serving engine) per
        worker, and `release_engine` undoes it when the app stops. Its metadata names
        SQLAlchemy < 2.1 and would refuse 2.1 without a word but a log line; the events it
        uses are unchanged in 2.1, and tests/observability/test_tracing.py checks its spans,
        so the check is skipped.
        """
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().instrument(
            engine=engine.sync_engine,
            tracer_provider=self.tracer_provider,
            skip_dep_check=True,
        )

    def release_engine(self) -> None:
        """Remove the SQL instrumentation (the app stopped; its engine is disposed)."""
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        instrumentor = SQLAlchemyInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()

    def annotate_request(self, request_id: str) -> None:
        """Put the request id on the current span: within the app, the HTTP server span."""
        from opentelemetry import trace

        trace.get_current_span().set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
