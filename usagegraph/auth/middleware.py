"""ASGI middleware that resolves the caller once per request into `request.state.principal`."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from usagegraph.auth.credentials import (
    key_checked_by_write,
    misdirected_header,
    presented_credential,
)
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.auth.resolve import Caller, resolve_caller
from usagegraph.http.rate_limit import CALLER_KEY_STATE
from usagegraph.http.request_resources import request_reads

# The caller's users row, when a user: `context_of` hands it to the request's user loader.
CALLER_USER_STATE = "caller_user"


def caller_key(principal: Principal | None, scope: Scope) -> str:
    """Whose rate-limit bucket a request takes from: the identity its credential resolved to
    (a user, an institution), else the client address (refused credentials included)."""
    if principal is not None and principal.kind is CallerKind.USER:
        return f"user:{principal.user_id}"
    if principal is not None and principal.kind is CallerKind.INSTITUTION:
        return f"institution:{principal.institution_id}"
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


class PrincipalMiddleware:
    """Reads the credential the route accepts; never rejects (routes decide their 401 shape).

    A database failure while resolving propagates: the availability middleware around this one
    turns it into the route family's 503.

    The session factory and secret come from the app state at call time, because the engine
    only exists once the lifespan has started.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {
                key.decode("latin-1").lower(): value.decode("latin-1")
                for key, value in scope["headers"]
            }
            credential = presented_credential(scope["path"], headers)
            misdirected = misdirected_header(scope["path"], headers)
            state = scope["app"].state
            settings = state.settings
            if misdirected is not None:
                caller = Caller(Principal.misdirected(misdirected))
            else:
                reads = request_reads(scope.setdefault("state", {}), state)
                sessions = reads.connection if reads is not None else state.sessions
                known_keys = (
                    getattr(state, "known_keys", None)
                    if key_checked_by_write(scope["path"])
                    else None
                )
                try:
                    caller = await resolve_caller(
                        sessions, settings.jwt_secret, credential, settings.tokens, known_keys
                    )
                finally:
                    if reads is not None:
                        await reads.release()
            state_of_request = scope.setdefault("state", {})
            state_of_request["principal"] = caller.principal
            state_of_request[CALLER_USER_STATE] = caller.user
            state_of_request[CALLER_KEY_STATE] = caller_key(caller.principal, scope)
        await self.app(scope, receive, send)
