"""The websocket side of /graphql: `graphql-transport-ws`, authenticated in `connection_init`.

- The credential travels in the `connection_init` payload, as the headers of an HTTP request
  to /graphql would carry it: `{"Authorization": "Bearer <jwt or API key>"}` or
  `{"X-API-Key": "<key>"}` (names case-insensitive), read and verified by the same rules
  (auth/credentials.py, auth/resolve.py). Browsers cannot set headers on a websocket, so
  this is the one place a credential can come from.
- Refusals close the socket as the protocol specifies for a rejected `connection_init`:
  4403 "Forbidden: <why>" for no, an invalid, an expired or a revoked credential, and for a
  credential already holding `USAGEGRAPH_LIVE_MAX_CONNECTIONS` sockets on this worker.
  (Strawberry closes with 4401 a `subscribe` sent before the connection was acknowledged,
  4400 a malformed message, 4408 a socket that never sent `connection_init`.)
- While open, the credential is verified again every `USAGEGRAPH_LIVE_RECHECK_SECONDS`, at
  the moment a token lapses (`exp` + leeway), and on every `subscribe`: a revoked key, an
  expired token or a deleted user closes the socket with 4403; changed roles and
  memberships apply from the next message on.
- Only subscriptions run here; a query or mutation gets an `error` message (INVALID_REQUEST)
  and belongs on HTTP, where its limits, rate limit and cache apply.
- Messages are text frames of JSON, as the protocol requires (decimals as JSON numbers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.types.execution import PreExecutionError

from usagegraph.auth.credentials import presented_credential
from usagegraph.auth.middleware import caller_key
from usagegraph.auth.principal import Principal
from usagegraph.auth.resolve import resolve_principal
from usagegraph.auth.tokens import valid_until
from usagegraph.errors import ErrorCode
from usagegraph.http.json import dumps
from usagegraph.http.request_id import new_request_id
from usagegraph.resolvers.live_context import LiveContext
from usagegraph.schema.errors import coded_errors

log = logging.getLogger(__name__)

GRAPHQL_PATH = "/graphql"
FORBIDDEN = 4403
UNAVAILABLE = 1011  # RFC 6455: the server met a condition that kept it from answering
NO_CREDENTIAL = "Forbidden: connection_init must carry a valid credential"
TOO_MANY = "Forbidden: too many open connections for this credential"
LAPSED = "Forbidden: the credential is no longer valid"
NOT_A_SUBSCRIPTION = (
    "Only subscriptions run over the websocket; send queries and mutations over HTTP"
)


class ConnectionSlots:
    """Open websockets per credential in this worker (USAGEGRAPH_LIVE_MAX_CONNECTIONS)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def take(self, key: str) -> bool:
        if self._open[key] >= self.limit:
            return False
        self._open[key] += 1
        return True

    def give_back(self, key: str) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]


def live_context_of(websocket: WebSocket) -> LiveContext:
    """A new socket's context: anonymous until `connection_init` says otherwise."""
    state: Any = websocket.app.state
    return LiveContext(
        engine=state.engine,
        sessions=state.sessions,
        clock=state.clock,
        settings=state.settings,
        bus=state.live_bus,
        request_id=new_request_id(),
    )


def _headers_of(payload: Mapping[str, Any]) -> dict[str, str]:
    """The payload's string entries as lower-cased header names (others ignored)."""
    return {str(name).lower(): value for name, value in payload.items() if isinstance(value, str)}


class TextFrames(ASGIWebSocketAdapter):
    """graphql-transport-ws messages are text frames; our JSON encoder gives bytes."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(dumps(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class LiveProtocol(BaseGraphQLTransportWSHandler[LiveContext, None]):
    """Strawberry's graphql-transport-ws handler, with our admission and re-checks."""

    context: LiveContext
    _credential: Any = None
    _slot: str | None = None
    _watch: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        """Strawberry's checks of the message, then the credential's (instead of its
        `on_ws_connect`, which can only refuse with a fixed reason)."""
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        payload = message.get("payload") or {}
        if not isinstance(payload, dict):
            await self.websocket.close(code=4400, reason="Invalid connection init payload")
            return
        if self.connection_init_received:
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        self.connection_init_received = True
        self.context.connection_params = payload
        self._credential = presented_credential(GRAPHQL_PATH, _headers_of(payload))
        try:
            principal = await self._resolve()
        except Exception:  # the database is unavailable: the client should try again later
            log.warning("could not verify a websocket's credential", exc_info=True)
            await self.websocket.close(code=UNAVAILABLE, reason="Service unavailable")
            return
        if not principal.is_authenticated:
            await self.websocket.close(code=FORBIDDEN, reason=NO_CREDENTIAL)
            return
        slot = caller_key(principal, {})
        slots: ConnectionSlots = self.view.connection_slots
        if not slots.take(slot):
            await self.websocket.close(code=FORBIDDEN, reason=TOO_MANY)
            return
        self._slot = slot
        self.context.principal = principal
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True
        self._watch = asyncio.create_task(self._keep_checking())

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged:
            try:
                if not await self._still_valid():
                    return
            except Exception:  # the database is down: the subscription's read will say so
                log.warning("could not re-check a websocket's credential", exc_info=True)
            if _not_a_subscription(message):
                await self.send_message(
                    {
                        "id": message["id"],
                        "type": "error",
                        "payload": [
                            {
                                "message": NOT_A_SUBSCRIPTION,
                                "extensions": {"code": ErrorCode.INVALID_REQUEST.value},
                            }
                        ],
                    }
                )
                return
        await super().handle_subscribe(message)

    async def _send_result_stream(self, operation: Any, result_source: Any) -> None:
        """Every error coded as over HTTP (schema/errors.py); Strawberry's CodedErrors
        extension sees only the stream as a whole."""

        async def coded() -> AsyncIterator[Any]:
            async for result in result_source:
                errors = getattr(result, "errors", None)
                early = isinstance(result, PreExecutionError)
                if errors and not (early and self._get_pre_execution_close_reason(errors[0])):
                    result.errors = coded_errors(
                        errors,
                        self.context.request_id,
                        before_execution=early,
                        keep_suggestions=self.view.keep_suggestions,
                    )
                yield result

        await super()._send_result_stream(operation, coded())

    async def shutdown(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
        if self._slot is not None:
            self.view.connection_slots.give_back(self._slot)
            self._slot = None
        await super().shutdown()

    async def _resolve(self) -> Principal:
        settings = self.context.settings
        return await resolve_principal(
            self.context.sessions, settings.jwt_secret, self._credential, settings.tokens
        )

    async def _still_valid(self) -> bool:
        """Verify the credential again; close the socket (4403) when it lapsed."""
        principal = await self._resolve()
        if principal.is_authenticated and caller_key(principal, {}) == self._slot:
            self.context.principal = principal
            return True
        await self.websocket.close(code=FORBIDDEN, reason=LAPSED)
        return False

    async def _keep_checking(self) -> None:
        """Re-check every `recheck_seconds`, and right when a token lapses."""
        settings = self.context.settings
        lapses = None
        if self._credential is not None and self._credential.is_jwt:
            lapses = valid_until(self._credential.value, settings.tokens)
        while True:
            delay = float(settings.live.recheck_seconds)
            if lapses is not None:
                until_lapse = (lapses - datetime.now(UTC)).total_seconds() + 0.05
                delay = max(0.0, min(delay, until_lapse))
            await asyncio.sleep(delay)
            try:
                if not await self._still_valid():
                    return
            except Exception:  # the database is down: keep the socket, try again later
                log.warning("could not re-check a websocket's credential", exc_info=True)


def _not_a_subscription(message: SubscribeMessage) -> bool:
    """Whether the operation is a query or a mutation (unparseable: Strawberry answers)."""
    try:
        payload = message["payload"]
        document = parse(payload["query"])
        operation = get_operation_ast(document, payload.get("operationName"))
    except (GraphQLError, KeyError, TypeError):
        return False
    return operation is not None and operation.operation is not OperationType.SUBSCRIPTION
