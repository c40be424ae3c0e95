"""OpenTelemetry traces (observability/tracing.py): one GraphQL request through the real app
is one span tree, HTTP over GraphQL over SQL, with the request id the client sees; and an app
without tracing configured never loads OpenTelemetry."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.running import cli_env, run_cli
from tests.conftest import FIXED_NOW, TEST_JWT_SECRET
from tests.databases import TestDatabase
from tests.fixtures.factories import add_user
from usagegraph.app import create_app
from usagegraph.auth.tokens import mint_token
from usagegraph.observability.tracing import (
    REQUEST_ID_ATTRIBUTE,
    Tracing,
    TracingConfigError,
    exporter_names,
    tracing_requested,
)
from usagegraph.settings import Settings

QUERY = "query Me { viewer { kind email user { memberships { role } } } }"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


async def traced_request(
    settings: Settings, exporter: InMemorySpanExporter, user_id: int
) -> tuple[httpx.Response, list[ReadableSpan]]:
    """One GraphQL request through the real app traced into `exporter`: its response, and
    the spans of that request alone (the lifespan's own statements are dropped)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    application = create_app(settings, clock=lambda: FIXED_NOW, tracing=Tracing(provider))
    headers = {"Authorization": f"Bearer {mint_token(user_id, TEST_JWT_SECRET)}"}
    async with application.router.lifespan_context(application):
        exporter.clear()
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.post(
                "/graphql", json={"query": QUERY, "operationName": "Me"}, headers=headers
            )
        spans = list(exporter.get_finished_spans())
    provider.shutdown()
    return response, spans


def render(spans: list[ReadableSpan]) -> str:
    """The tree as indented names, for a failing assertion's message."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            lines.append("  " * depth + span.name)
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def is_sql(span: ReadableSpan) -> bool:
    """A statement's span (the instrumentation names it by operation and database)."""
    attributes = span.attributes or {}
    return span.kind is SpanKind.CLIENT and "db.statement" in attributes


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    """The names of `span`'s ancestors, nearest first."""
    names = []
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


async def test_a_graphql_request_is_one_span_tree_from_http_through_resolvers_to_sql(
    settings: Settings, engine: AsyncEngine, exporter: InMemorySpanExporter
) -> None:
    user_id = await add_user(engine, email="ada@example.com")
    response, spans = await traced_request(settings, exporter, user_id)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["viewer"]["email"] == "ada@example.com"
    tree = render(spans)
    by_id = {span.context.span_id: span for span in spans}
    assert {span.context.trace_id for span in spans} == {spans[0].context.trace_id}, tree

    # The HTTP server span is the one root, named by the route template, with the request
    # id the client got.
    roots = [span for span in spans if span.parent is None]
    assert [root.name for root in roots] == ["POST /graphql"], tree
    http_span = roots[0]
    assert http_span.kind is SpanKind.SERVER
    assert http_span.attributes is not None
    assert http_span.attributes["http.route"] == "/graphql"
    assert http_span.attributes[REQUEST_ID_ATTRIBUTE] == response.headers["x-request-id"]

    def child(name: str, parent: ReadableSpan) -> ReadableSpan:
        found = [
            span
            for span in spans
            if span.name == name
            and span.parent is not None
            and span.parent.span_id == parent.context.span_id
        ]
        assert len(found) == 1, f"one {name!r} under {parent.name!r}:\n{tree}"
        return found[0]

    # The operation under the HTTP span; its steps and every resolver of a field with a
    # resolver of its own under the operation (`kind` is a plain attribute: no span).
    operation = child("GraphQL Query: Me", http_span)
    child("GraphQL Parsing", operation)
    child("GraphQL Validation", operation)
    child("GraphQL Resolving: viewer", operation)
    email = child("GraphQL Resolving: email", operation)
    memberships = child("GraphQL Resolving: memberships", operation)
    assert not [span for span in spans if span.name == "GraphQL Resolving: kind"], tree

    # SQL: the caller's lookup (principal middleware) under the HTTP span, which brings the
    # caller's users row along (so `email` reads nothing), and the memberships resolver's
    # load under that resolver, with its statement.
    statements = [span for span in spans if is_sql(span)]
    assert all(ancestors(span, by_id)[-1] == "POST /graphql" for span in statements), tree
    assert not [span for span in statements if span.parent.span_id == email.context.span_id]
    under_memberships = [
        span for span in statements if span.parent.span_id == memberships.context.span_id
    ]
    assert len(under_memberships) == 1, tree
    statement = str((under_memberships[0].attributes or {})["db.statement"])
    assert statement.startswith("SELECT memberships."), statement
    assert (under_memberships[0].attributes or {})["db.system"] == engine.dialect.name
    assert any(span.parent.span_id == http_span.context.span_id for span in statements), tree


# What tracing would load: the SDK's tracing, the instrumentations, Strawberry's extension.
# (Not `opentelemetry` as a whole: redis-py imports OpenTelemetry's metrics SDK by itself
# whenever it is installed, whatever usagegraph does.)
TRACING_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.instrumentation",
    "strawberry.extensions.tracing",
)


APP_PROCESS = f"""
import asyncio, sys
import httpx
from usagegraph.app import create_app

async def main():
    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.post("/graphql", json={{"query": "{{ viewer {{ kind }} }}"}})
    assert response.status_code == 200, response.text
    print("request id:", response.headers["x-request-id"])
    print("tracing:", app.state.tracing is not None)
    print("middleware:", sorted(m.cls.__name__ for m in app.user_middleware))
    print("loaded:", sorted(name for name in sys.modules if name.startswith({TRACING_MODULES!r})))

asyncio.run(main())
"""


def run_app_process(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter that builds the app from `env` (OTEL_* included), starts it and
    sends one GraphQL request, then prints what it loaded; spans exported to the console
    follow when the process exits."""
    run = subprocess.run(
        [sys.executable, "-c", APP_PROCESS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run


def env_without_otel(tmp_path: Path, database: TestDatabase, **otel: str) -> dict[str, str]:
    env = cli_env(tmp_path, database.url_string)
    return {name: value for name, value in env.items() if not name.startswith("OTEL_")} | otel


def test_an_app_without_otel_configuration_loads_no_tracing_code(
    database: TestDatabase, tmp_path: Path
) -> None:
    """No OTEL_* variables: the app is built, started and serves a request with no tracing
    middleware, extension or module loaded, though the extra is installed here."""
    output = run_app_process(env_without_otel(tmp_path, database)).stdout
    assert "tracing: False" in output
    assert "OpenTelemetryMiddleware" not in output
    assert "loaded: []" in output


def test_otel_variables_alone_turn_tracing_on_with_the_exporter_they_name(
    database: TestDatabase, tmp_path: Path
) -> None:
    """OTEL_TRACES_EXPORTER=console and a service name, nothing else: the spans of the
    request, with its id and the service's name, are written out when the process ends."""
    env = env_without_otel(
        tmp_path, database, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="usagegraph-test"
    )
    output = run_app_process(env).stdout
    request_id = output.split("request id: ", 1)[1].split()[0]
    assert "tracing: True" in output
    assert "OpenTelemetryMiddleware" in output
    assert '"name": "POST /graphql"' in output
    assert '"name": "GraphQL Query"' in output
    assert f'"{REQUEST_ID_ATTRIBUTE}": "{request_id}"' in output
    assert '"service.name": "usagegraph-test"' in output


def test_serve_refuses_an_otel_exporter_that_is_not_installed(tmp_path: Path) -> None:
    env = cli_env(tmp_path, None, OTEL_TRACES_EXPORTER="zipkin_json")
    result = run_cli(env, "serve", "--port", "1")
    assert result.returncode == 2
    assert "OTEL_TRACES_EXPORTER" in result.stderr
    assert "zipkin_json" in result.stderr


@pytest.mark.parametrize(
    ("environ", "requested"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "usagegraph"}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
    ],
)
def test_tracing_is_on_only_when_otel_variables_ask_for_an_exporter(
    environ: dict[str, str], requested: bool
) -> None:
    assert tracing_requested(environ) is requested


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ["otlp_proto_http"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp_proto_http", "console"]),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            ["otlp_proto_grpc"],
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            ["otlp_proto_http"],
        ),
    ],
)
def test_otlp_is_sent_over_http_protobuf_unless_the_protocol_says_grpc(
    environ: dict[str, str], names: list[str]
) -> None:
    assert exporter_names(environ) == names


def test_an_unknown_otlp_protocol_is_refused_naming_the_variable() -> None:
    with pytest.raises(TracingConfigError, match=re.escape("PROTOCOL='smtp' is not one of")):
        exporter_names({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "smtp"})
