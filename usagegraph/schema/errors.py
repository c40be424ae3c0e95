"""GraphQL errors: expected failures carry their code; anything else is masked.

A resolver raises `UsageGraphError`; its code goes into `extensions.code`. An error the
client's own document caused (syntax, validation, a limit, a variable of the wrong type) is
`INVALID_REQUEST`. Any other exception is replaced by "Internal error" with the request id
(and logged once, with that id), so no SQL, stack trace or identifier of another tenant
reaches a client. graphql-core's "Did you mean ...?" hints are cut from every message when
introspection is off: they would spell out the schema to a client that may not introspect it.

`CodedErrors` applies this inside the schema; the HTTP endpoint applies the same function to
what it is about to send, which catches errors Strawberry raises outside the operation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.relay.types import GlobalIDValueError
from strawberry.types import ExecutionContext
from strawberry.types.execution import PreExecutionError

from usagegraph.errors import ErrorCode, UsageGraphError

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "Internal error"
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def coded_errors(
    errors: list[GraphQLError],
    request_id: str,
    *,
    before_execution: bool = False,
    keep_suggestions: bool = False,
) -> list[GraphQLError]:
    """Every error of a result with its code; unexpected ones masked and logged.

    `before_execution`: the errors of a document that failed to parse or validate, which
    only ever describe the client's own document. `keep_suggestions`: leave graphql-core's
    "Did you mean ...?" hints in (where introspection is on, they reveal nothing new).
    """
    return [
        coded_error(
            error, request_id, before_execution=before_execution, keep_suggestions=keep_suggestions
        )
        for error in errors
    ]


def coded_error(
    error: GraphQLError,
    request_id: str,
    *,
    before_execution: bool = False,
    keep_suggestions: bool = False,
) -> GraphQLError:
    original = error.original_error
    if isinstance(original, UsageGraphError):
        return _rebuilt(error, original.message, {"code": original.code.value})
    if original is None or before_execution or _client_input(error):
        # The client's document or variables, or an error coded already (idempotent).
        extensions = {"code": ErrorCode.INVALID_REQUEST.value, **(error.extensions or {})}
        message = error.message if keep_suggestions else without_suggestions(error.message)
        return _rebuilt(error, message, extensions)
    log.error("unexpected error in request %s", request_id, exc_info=original)
    return _rebuilt(
        error, INTERNAL_MESSAGE, {"code": ErrorCode.INTERNAL.value, "requestId": request_id}
    )


def _client_input(error: GraphQLError) -> bool:
    """A variable graphql-core could not coerce, or a malformed global id of `node(id:)`.

    A variable's error has no path (no field ran) and wraps graphql-core's own error, whose
    text only quotes the client's value; anything a resolver raised has a path.
    """
    original = error.original_error
    if isinstance(original, GlobalIDValueError):
        return True
    return error.path is None and isinstance(original, GraphQLError)


def without_suggestions(message: str) -> str:
    """The message without graphql-core's "Did you mean 'x'?" hints."""
    return _SUGGESTION.sub("", message)


def _rebuilt(error: GraphQLError, message: str, extensions: dict[str, Any]) -> GraphQLError:
    """A fresh error (no original exception attached) at the same place in the document."""
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )


class CodedErrors(SchemaExtension):
    """Rewrites every error of the result; instantiated per request by Strawberry."""

    def __init__(self, keep_suggestions: bool = False) -> None:
        self.keep_suggestions = keep_suggestions

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        result.errors = coded_errors(
            result.errors,
            request_id_of(self.execution_context),
            before_execution=isinstance(result, PreExecutionError),
            keep_suggestions=self.keep_suggestions,
        )


def request_id_of(execution_context: ExecutionContext) -> str:
    return getattr(execution_context.context, "request_id", "unknown")


class CodedSchema(strawberry.Schema):
    """A schema that leaves error logging to `coded_error`.

    Strawberry logs every error with its stack, expected refusals included; here only the
    unexpected ones are logged, once, with the request id a client can quote.
    """

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None
