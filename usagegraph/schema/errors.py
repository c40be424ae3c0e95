"""GraphQL errors: expected failures carry their code; anything else is masked.

A resolver raises `UsageGraphError`; this extension puts its code in `extensions.code`. Any
other exception is replaced by "Internal error" with the request id (and logged with it), so
no SQL, stack trace or identifier of another tenant reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from usagegraph.errors import ErrorCode, UsageGraphError

log = logging.getLogger(__name__)


def _coded(error: GraphQLError, request_id: str) -> GraphQLError:
    original = error.original_error
    if isinstance(original, UsageGraphError):
        return GraphQLError(
            original.message,
            nodes=error.nodes,
            path=error.path,
            extensions={"code": original.code.value},
        )
    if original is None:  # a syntax or validation error: the client's own query
        extensions = {**(error.extensions or {}), "code": ErrorCode.INVALID_REQUEST.value}
        return GraphQLError(
            error.message, nodes=error.nodes, path=error.path, extensions=extensions
        )
    log.error("unexpected error in request %s", request_id, exc_info=original)
    return GraphQLError(
        "Internal error",
        nodes=error.nodes,
        path=error.path,
        extensions={"code": ErrorCode.INTERNAL.value, "requestId": request_id},
    )


class CodedErrors(SchemaExtension):
    """Rewrites every error of the result; instantiated per request by Strawberry."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        context = self.execution_context.context
        request_id = getattr(context, "request_id", "unknown")
        result.errors = [_coded(error, request_id) for error in result.errors]
