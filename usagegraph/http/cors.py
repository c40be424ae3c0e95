"""CORS for browser frontends, off unless USAGEGRAPH_CORS_ORIGINS names their origins.

Frontends on another origin (Apollo Client, urql, Relay in a browser) send a preflight before
every request that carries `Authorization` or a JSON body. For the listed origins it is
answered, and every answer — errors included, so a client can read a 401 or a 429 — carries
`Access-Control-Allow-Origin` naming the origin (never `*`, since credentials are allowed),
`Access-Control-Allow-Credentials` and the headers a client may read. Other origins get no
CORS headers, so the browser keeps their pages from reading anything.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

# The headers the APIs read: credentials on every route family, and JSON bodies.
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "X-API-Key",
    "x-access-token",
    "X-Request-Id",
    "Idempotency-Key",
)
# The headers a browser script may read from an answer.
EXPOSED_HEADERS = ("X-Request-Id", "Retry-After", "WWW-Authenticate")
# How long a browser may reuse a preflight's answer.
PREFLIGHT_MAX_AGE_SECONDS = 600


def cors_middleware(origins: tuple[str, ...]) -> list[Middleware]:
    """The CORS middleware for `origins`; none at all when the list is empty."""
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=list(ALLOWED_HEADERS),
            allow_credentials=True,
            expose_headers=list(EXPOSED_HEADERS),
            max_age=PREFLIGHT_MAX_AGE_SECONDS,
        )
    ]
