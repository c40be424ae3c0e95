"""One place that sees every request whole: its metrics and its access-log line.

It sits just inside the request-id middleware, so it knows the id the client gets and the
final status of every answer (429s, 503s and CORS preflights included). It opens the
request's record (observability/request_record.py), which code further in fills (SQL
statements, GraphQL operations), and reads the caller the principal middleware left in the
request's state once the answer is sent. The route label is the matched template. When the
app is traced, the request id goes on the HTTP server span, which is current here
(observability/tracing.py).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from usagegraph.http.route_template import route_template
from usagegraph.observability import metrics
from usagegraph.observability.database import observe_pool
from usagegraph.observability.logs import log_access
from usagegraph.observability.request_record import open_record


class RequestTelemetryMiddleware:
    """Pure ASGI; a request whose app raised counts as the 500 Starlette answers for it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        record = open_record(state.get("request_id", "unknown"))
        app_state = scope["app"].state
        tracing = getattr(app_state, "tracing", None)
        if tracing is not None:
            tracing.annotate_request(record.request_id)
        engine = getattr(app_state, "engine", None)
        if engine is not None:
            observe_pool(engine)  # a backlog of waiters shows as requests arrive
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - started
            method = metrics.method_label(scope["method"])
            route = route_template(scope)
            metrics.observe_request(method, route, status, seconds, record.sql_statements)
            principal = state.get("principal")
            log_access(
                request_id=record.request_id,
                method=method,
                route=route,
                status=status,
                seconds=seconds,
                principal_kind=str(getattr(principal, "kind", "anonymous")),
                principal_id=_principal_id(principal),
                graphql_operation=",".join(op.name for op in record.operations) or None,
                sql_statements=record.sql_statements,
            )


def _principal_id(principal: object) -> str | None:
    """The user id or the institution id the credential resolved to (never the credential)."""
    user_id = getattr(principal, "user_id", None)
    if user_id is not None:
        return str(user_id)
    return getattr(principal, "institution_id", None)
