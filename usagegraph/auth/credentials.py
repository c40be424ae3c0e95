"""Which credential each route family accepts, and in which header (CONTRACT.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from usagegraph.auth.tokens import looks_like_jwt


class Source(Enum):
    ACCESS_TOKEN_HEADER = auto()  # x-access-token: <jwt>
    BEARER_JWT = auto()  # Authorization: Bearer <jwt>
    API_KEY = auto()  # Authorization: Bearer <key> or X-API-Key: <key>


@dataclass(frozen=True, slots=True)
class PresentedCredential:
    """What the request carried: a JWT or an API key, before verification."""

    is_jwt: bool
    value: str


# Longest prefix first: /api/v1/clients/ is more specific than /api/.
_ROUTE_SOURCES: tuple[tuple[str, frozenset[Source]], ...] = (
    ("/api/v1/clients/", frozenset({Source.BEARER_JWT, Source.API_KEY})),
    ("/api/", frozenset({Source.ACCESS_TOKEN_HEADER})),
    ("/auth/", frozenset({Source.BEARER_JWT})),
    # API keys reach the graph too: an institution's key records its members' usage there.
    ("/graphql", frozenset({Source.BEARER_JWT, Source.API_KEY})),
    # Usage events: an institution's key, or a super user's JWT (CloudEvents ingestion).
    ("/v1/events", frozenset({Source.BEARER_JWT, Source.API_KEY})),
    ("/v1/", frozenset({Source.API_KEY})),
)


# Routes whose write checks an API key in its own transaction, so that a key this process
# verified before need not be read again first (auth/known_keys.py).
_KEY_CHECKED_BY_WRITE = frozenset({"/v1/events"})


def key_checked_by_write(path: str) -> bool:
    return path in _KEY_CHECKED_BY_WRITE


# How a 401 names the header(s) each source is read from.
_HEADER_OF = {
    Source.ACCESS_TOKEN_HEADER: "x-access-token",
    Source.BEARER_JWT: "Authorization (Bearer)",
    Source.API_KEY: "Authorization (Bearer) or X-API-Key",
}


def accepted_sources(path: str) -> frozenset[Source]:
    for prefix, sources in _ROUTE_SOURCES:
        if path.startswith(prefix):
            return sources
    return frozenset()


def _bearer(headers: dict[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def presented_credential(path: str, headers: dict[str, str]) -> PresentedCredential | None:
    """The credential this route reads from these headers, if any (headers lower-cased)."""
    sources = accepted_sources(path)
    if Source.ACCESS_TOKEN_HEADER in sources and headers.get("x-access-token"):
        return PresentedCredential(is_jwt=True, value=headers["x-access-token"].strip())
    bearer = _bearer(headers)
    if bearer is not None:
        if Source.BEARER_JWT in sources and looks_like_jwt(bearer):
            return PresentedCredential(is_jwt=True, value=bearer)
        if Source.API_KEY in sources:
            return PresentedCredential(is_jwt=False, value=bearer)
        if Source.BEARER_JWT in sources:
            return PresentedCredential(is_jwt=True, value=bearer)
    if Source.API_KEY in sources and headers.get("x-api-key"):
        return PresentedCredential(is_jwt=False, value=headers["x-api-key"].strip())
    return None


def misdirected_header(path: str, headers: dict[str, str]) -> str | None:
    """When the request carries a credential only in headers this route does not read: the
    header(s) it does read, for a 401 that tells the client where to put it."""
    carried = (
        headers.get("x-access-token") or headers.get("x-api-key") or _bearer(headers) is not None
    )
    if not carried or presented_credential(path, headers) is not None:
        return None
    sources = accepted_sources(path)
    if not sources:
        return None
    if Source.API_KEY in sources:
        return _HEADER_OF[Source.API_KEY]
    return " or ".join(_HEADER_OF[source] for source in sorted(sources, key=lambda s: s.value))
