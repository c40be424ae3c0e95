"""A Strawberry extension that counts and times every GraphQL operation.

Each operation (one per element of a batch) is observed once it has run: its name (bounded
by `metrics.operation_label`: a client picks it), its type, how long it took and whether it
answered errors; the request's record gets the same, for the access-log line. Strawberry
makes an instance per operation from the class the schema lists, so nothing is shared
between concurrent operations.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from usagegraph.observability.metrics import observe_operation, operation_label
from usagegraph.observability.request_record import GraphQLOperation, current_record


class OperationMetrics(SchemaExtension):
    """Observes each operation after it ran, refused ones (invalid, too costly) included."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        name = operation_label(context.operation_name)
        try:
            operation_type = context.operation_type.value
        except (RuntimeError, GraphQLError):  # not parsed, or no such operation in it
            operation_type = "unknown"
        result = context.result
        errors = bool(context.pre_execution_errors) or bool(result is not None and result.errors)
        observe_operation(name, operation_type, time.perf_counter() - started, errors)
        record = current_record()
        if record is not None:
            record.operations.append(GraphQLOperation(name, operation_type, errors))
