"""Expected failures, with machine-readable codes shared by GraphQL and every REST shim.

Resolvers raise `UsageGraphError`; each API renders it in its documented envelope. Messages
are written for clients: they never hold SQL, stack traces or another tenant's identifiers.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_REQUEST = "INVALID_REQUEST"
    # A GraphQL operation whose fragments, once spread, select more fields than allowed.
    OPERATION_TOO_LARGE = "OPERATION_TOO_LARGE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    # A body in a format the route does not read (POST /v1/events: the CloudEvents types).
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    # An idempotency key sent again with a different payload (a retry must repeat its event).
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    # Automatic persisted queries: the hash is unknown (send the query with it), or the
    # server runs registered documents only.
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_NOT_ALLOWED = "PERSISTED_QUERY_NOT_ALLOWED"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"
    INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
    CAP_REACHED = "CAP_REACHED"
    RATE_LIMITED = "RATE_LIMITED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL = "INTERNAL"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.OPERATION_TOO_LARGE: 400,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: 409,
    ErrorCode.PERSISTED_QUERY_NOT_FOUND: 400,
    ErrorCode.PERSISTED_QUERY_NOT_ALLOWED: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ENDPOINT_NOT_FOUND: 404,
    ErrorCode.INSUFFICIENT_CREDITS: 402,
    ErrorCode.CAP_REACHED: 403,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}


class UsageGraphError(Exception):
    """An expected failure: a code for machines and a message for people."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


def invalid(message: str) -> UsageGraphError:
    return UsageGraphError(ErrorCode.INVALID_REQUEST, message)


def unauthorized(message: str = "Authentication required") -> UsageGraphError:
    return UsageGraphError(ErrorCode.UNAUTHORIZED, message)


def forbidden(message: str = "Forbidden") -> UsageGraphError:
    return UsageGraphError(ErrorCode.FORBIDDEN, message)


def not_found(message: str = "Not found") -> UsageGraphError:
    return UsageGraphError(ErrorCode.NOT_FOUND, message)


def rate_limited(retry_after_seconds: int) -> UsageGraphError:
    return UsageGraphError(
        ErrorCode.RATE_LIMITED,
        f"Too many requests; retry after {retry_after_seconds} second"
        + ("" if retry_after_seconds == 1 else "s"),
    )


def unavailable(
    message: str = "The service is temporarily unavailable; try again shortly",
) -> UsageGraphError:
    return UsageGraphError(ErrorCode.SERVICE_UNAVAILABLE, message)
