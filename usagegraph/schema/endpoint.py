"""The `/graphql` HTTP endpoint: builds a fresh context for every request.

The schema is built from the deployment's settings (limits, introspection); the GraphiQL
page (ours, on vendored assets: usagegraph/schema/graphiql.py) is served only when the
settings allow it. Every answer is JSON with coded errors: a request Strawberry refuses
before running it (a body or query string that is not UTF-8, a body that is not JSON, a batch
with too many operations, a mutation over GET) gets `{"errors": [{"message", "extensions":
{"code"}}]}` with its 4xx status instead of Strawberry's plain-text reason (or a 500 for
bytes that are not UTF-8). Bodies and the `variables` of a GET are parsed by the strict JSON
rule of `input_text`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.unset import UNSET

from usagegraph.auth.challenge import authentication_error
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.http.json import JSON, dumps
from usagegraph.input_text import NotJson, NotUtf8, json_value, query_string_is_utf8
from usagegraph.observability.tracing import Tracing
from usagegraph.resolvers.request_context import context_of
from usagegraph.schema.context import GraphQLContext
from usagegraph.schema.errors import coded_errors
from usagegraph.schema.graphiql import graphiql_page
from usagegraph.schema.live_endpoint import (
    ConnectionSlots,
    LiveProtocol,
    TextFrames,
    live_context_of,
)
from usagegraph.schema.persisted_queries import PersistedQueries
from usagegraph.schema.root import build_schema
from usagegraph.settings import GraphQLLimits, LiveLimits, Settings

_CODE_FOR_STATUS = {401: ErrorCode.UNAUTHORIZED, 404: ErrorCode.NOT_FOUND}
GRAPHQL_RESPONSE_TYPE = "application/graphql-response+json"
# A websocket that has not sent `connection_init` by then is closed (4408).
CONNECTION_INIT_WAIT = timedelta(seconds=10)
# Levels of objects and lists a request's variables (or extensions) may nest: far beyond any
# input type of the graph (a usage batch nests 3), far below the interpreter's stack.
MAX_VALUE_NESTING = 32


class GraphQLEndpoint(GraphQL[GraphQLContext, None]):
    """Strawberry's ASGI app with our per-request context and coded errors; over a websocket,
    subscriptions (`graphql-transport-ws`, schema/live_endpoint.py)."""

    keep_suggestions = False
    websocket_adapter_class = TextFrames  # type: ignore[assignment]
    graphql_transport_ws_handler_class = LiveProtocol  # type: ignore[assignment]
    connection_slots = ConnectionSlots(LiveLimits().max_connections_per_credential)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None = None
    ) -> Any:
        if isinstance(request, WebSocket):
            return live_context_of(request)
        return context_of(request)

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        if isinstance(request, WebSocket):  # subscriptions: schema/live_endpoint.py
            return await super().run(request, context, root_value)
        principal = request.state.principal
        if principal.rejection is not None or principal.expected_header is not None:
            # A credential was presented and refused: say so (401), rather than answer as an
            # anonymous caller, so a client knows to refresh its token.
            return refused(401, authentication_error(principal, "").message)
        if not query_string_is_utf8(request.scope.get("query_string", b"")):
            return refused(400, "The query string is not valid UTF-8")
        request.state.refused_before_execution = []
        try:
            response = await super().run(request, context, root_value)
        except HTTPException as exc:
            response = refused(exc.status_code, exc.reason)
        if wants_graphql_response(request):
            _as_graphql_response(response, request.state.refused_before_execution)
        return response

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Any,
        context: Any,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Runs one operation, its text taken from the persisted queries when it sent a hash."""
        persisted: PersistedQueries = request.app.state.persisted_queries
        try:
            request_data = await persisted.resolve(request_data)
        except UsageGraphError as exc:
            error = GraphQLError(exc.message, extensions={"code": exc.code.value})
            return PreExecutionError(data=None, errors=[error])
        return await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )

    def should_render_graphql_ide(self, request: Any) -> bool:
        """The GraphiQL page, for a browser's plain GET: never for a GET that carries an
        operation, such as a persisted query's hash in `extensions` (clients send those with
        `Accept: */*`)."""
        return (
            super().should_render_graphql_ide(request)
            and request.query_params.get("extensions") is None
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        """Our GraphiQL page, on vendored assets (Strawberry's loads them from a CDN).

        Strawberry decides when to call this (GET from a browser, no `query` parameter) and
        answers 404 instead when the IDE is off.
        """
        return graphiql_page(request)

    def encode_json(self, data: object) -> bytes:
        """Responses through orjson: several times faster than the standard library."""
        return dumps(data)

    def parse_json(self, data: str | bytes) -> Any:
        """The body, refused unless it is an operation object or a batch (array) of them.

        Strawberry reads fields of whatever JSON arrives; a number, a string, `null` or a
        batch item that is not an object would fail there as a server error.
        """
        try:
            body = json_value(data)
        except NotUtf8:
            raise HTTPException(400, "The request body is not valid UTF-8") from None
        except NotJson:
            raise HTTPException(400, "Unable to parse request body as JSON") from None
        operations = body if isinstance(body, list) else [body]
        if not all(isinstance(operation, dict) for operation in operations):
            raise HTTPException(400, "The body must be an operation object or an array of them")
        if isinstance(body, list):
            self._check_batch_size(len(body))
        for operation in operations:
            _check_operation_fields(operation)
        return body

    def _check_batch_size(self, count: int) -> None:
        """A batch holds 1 to `max_operations` operations (USAGEGRAPH_GRAPHQL_MAX_OPERATIONS)."""
        batching = self.schema.config.batching_config
        most = batching["max_operations"] if batching else 1
        if not 1 <= count <= most:
            raise HTTPException(
                400, f"A batch must hold 1 to {most} operations; this one holds {count}"
            )

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        """Code (or mask) any error that reached here without passing `CodedErrors`.

        For a client that accepts `application/graphql-response+json`, a request that failed
        before execution (it did not parse, validate, or name its operation) has no `data`
        entry, as the GraphQL-over-HTTP spec asks, and is answered 4xx by `run`.
        """
        if result.errors:
            result.errors = coded_errors(
                result.errors, request.state.request_id, keep_suggestions=self.keep_suggestions
            )
        processed = await super().process_result(request, result)
        failed_early = isinstance(result, PreExecutionError)
        request.state.refused_before_execution.append(failed_early)
        if failed_early and wants_graphql_response(request):
            processed.pop("data", None)
        return processed


def _check_operation_fields(operation: dict[str, Any]) -> None:
    """The checks Strawberry makes on a single operation, made on batch items too."""
    expected = {"query": str, "operationName": str, "variables": dict, "extensions": dict}
    for name, kind in expected.items():
        value = operation.get(name)
        if value is not None and not isinstance(value, kind):
            noun = "a string" if kind is str else "an object"
            raise HTTPException(400, f"The operation's `{name}` must be {noun} or null")
        if kind is dict and _nested_deeper_than(value, MAX_VALUE_NESTING):
            raise HTTPException(
                400, f"The operation's `{name}` nest more than {MAX_VALUE_NESTING} levels deep"
            )


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and lists in `value` nest more than `limit` levels (no recursion).

    Every later step that reads variables (input coercion, the NUL check) recurses; a value
    nested thousands of levels deep would exhaust the stack there.
    """
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def wants_graphql_response(request: Request) -> bool:
    """Whether the client accepts the GraphQL-over-HTTP media type (else: legacy JSON)."""
    return GRAPHQL_RESPONSE_TYPE in request.headers.get("accept", "")


def _as_graphql_response(response: Response, refused_early: list[bool]) -> None:
    """The GraphQL-over-HTTP media type; 400 for a single operation refused before it ran
    (a batch keeps 200: its operations fail or succeed one by one)."""
    response.headers["content-type"] = f"{GRAPHQL_RESPONSE_TYPE}; charset=utf-8"
    if response.status_code == 200 and refused_early == [True]:
        response.status_code = 400


def refused(status: int, reason: str) -> Response:
    """A GraphQL-shaped error body for a request refused before it ran."""
    code = _CODE_FOR_STATUS.get(status, ErrorCode.INVALID_REQUEST)
    return JSON(
        {"errors": [{"message": reason, "extensions": {"code": code.value}}]},
        status_code=status,
    )


def graphql_endpoint(
    settings: Settings | None = None, tracing: Tracing | None = None
) -> GraphQLEndpoint:
    """The endpoint for these settings' GraphQL limits (the defaults without settings), its
    operations and resolvers traced when `tracing` is given."""
    limits = settings.graphql if settings is not None else GraphQLLimits()
    endpoint = GraphQLEndpoint(
        build_schema(limits, tracing.graphql_extensions() if tracing is not None else ()),
        graphql_ide="graphiql" if limits.graphiql else None,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        connection_init_wait_timeout=CONNECTION_INIT_WAIT,
        allowed_origins=settings.cors_origins if settings is not None else (),
    )
    live = settings.live if settings is not None else LiveLimits()
    endpoint.connection_slots = ConnectionSlots(live.max_connections_per_credential)
    # Schema-spelling hints ("Did you mean ...?") only where the schema is public anyway.
    endpoint.keep_suggestions = limits.introspection
    return endpoint
