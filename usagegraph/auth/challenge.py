"""What a caller without a usable credential is told: the 401 message and its challenge.

One rule for every API: no credential → the route's "required" message; a credential in a
header the route does not read → a message naming the header it reads; a refused credential
(expired, forged, unknown user or key) → "Invalid or expired token". Every 401 also carries a
`WWW-Authenticate` challenge (RFC 6750) naming the route's scheme, with
`error="invalid_token"` when a credential was refused, so a client knows to refresh it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from usagegraph.auth.credentials import Source, accepted_sources
from usagegraph.auth.principal import Principal
from usagegraph.errors import UsageGraphError, unauthorized

INVALID_TOKEN_MESSAGE = "Invalid or expired token"
REALM = "usagegraph"


def authentication_error(principal: Principal, missing_message: str) -> UsageGraphError:
    """The 401 for an anonymous `principal`, on a route that says `missing_message` when no
    credential came at all."""
    if principal.expected_header is not None:
        return unauthorized(f"Send the credential in the {principal.expected_header} header")
    if principal.rejection is not None:
        return unauthorized(INVALID_TOKEN_MESSAGE)
    return unauthorized(missing_message)


def challenge(path: str, principal: Principal | None) -> str:
    """The WWW-Authenticate value of a 401 on `path`."""
    sources = accepted_sources(path)
    scheme = "ApiKey" if sources == {Source.API_KEY} else "Bearer"
    value = f'{scheme} realm="{REALM}"'
    if principal is not None and principal.rejection is not None:
        value += ', error="invalid_token"'
    elif principal is not None and principal.expected_header is not None:
        value += ', error="invalid_request"'
    return value


class ChallengeMiddleware:
    """Adds the `WWW-Authenticate` challenge to every 401, whichever layer answered it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_challenge(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                principal = scope.get("state", {}).get("principal")
                value = challenge(scope["path"], principal).encode("latin-1")
                headers = [
                    (name, header)
                    for name, header in message.get("headers", [])
                    if name.lower() != b"www-authenticate"
                ]
                message = {**message, "headers": [*headers, (b"www-authenticate", value)]}
            await send(message)

        await self.app(scope, receive, send_with_challenge)
