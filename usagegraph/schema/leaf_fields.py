"""Plain scalar fields completed without graphql-core's per-field machinery.

On the resolver path most fields of an answer are leaves read straight off an object: an
event's `credits`, a member's `role`. graphql-core executes each one like any field: it
builds a `GraphQLResolveInfo`, calls the resolver, asks whether the result is awaitable,
then walks `complete_value` through the non-null wrapper to the scalar's `serialize`. For a
nested read of 500 events that was most of the Python time of the answer.

A field qualifies when Strawberry marks its resolver as the default attribute read
(`_is_default`: no resolver function, no permission classes, no field extensions), it takes
no arguments, and its type is a scalar or enum, non-null or not. Such a field's value is
read and serialised here. Whatever is not the plain case goes down graphql-core's own path,
so errors stay exactly as they were: a null in a non-null field, a value the scalar refuses
to serialise, an awaitable, a resolver that raised. With graphql-core middleware in place
(a schema extension that wraps every resolver, such as tracing), nothing is short-cut.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    Undefined,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from usagegraph.schema.plain_values import attribute_reader, is_plain_field

# (reader, leaf type, non-null) of a plain leaf field, or None; per (type, field name).
_Plan = tuple[Any, GraphQLScalarType | GraphQLEnumType, bool] | None
_PLANS: dict[tuple[GraphQLObjectType, str], _Plan] = {}


def _plan(parent_type: GraphQLObjectType, name: str) -> _Plan:
    key = (parent_type, name)
    if key not in _PLANS:
        _PLANS[key] = _plan_of(parent_type, name)
    return _PLANS[key]


def _plan_of(parent_type: GraphQLObjectType, name: str) -> _Plan:
    field = parent_type.fields.get(name)
    if field is None or not is_plain_field(field):
        return None
    field_type, non_null = field.type, False
    if isinstance(field_type, GraphQLNonNull):
        field_type, non_null = field_type.of_type, True
    if not isinstance(field_type, GraphQLScalarType | GraphQLEnumType):
        return None
    return attribute_reader(field), field_type, non_null


class LeafFieldsExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, with plain leaf fields read and serialised directly."""

    def resolvers_wrapped(self) -> bool:
        """Whether graphql-core middleware wraps every resolver (a schema extension with a
        `resolve` hook, e.g. tracing): then no field may be completed around it. Strawberry
        always passes a manager; it wraps only when it holds middleware."""
        manager = self.middleware_manager
        return manager is not None and bool(manager.middlewares)

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any = None,
    ) -> Any:
        node = field_details_list[0].node
        wrapped = node.arguments or self.resolvers_wrapped()
        plan = None if wrapped else _plan(parent_type, node.name.value)
        if plan is not None:
            read, leaf_type, non_null = plan
            try:
                value = read(source)
                if value is None and not non_null:
                    return None
                if value is not None and not self.is_awaitable(value):
                    serialized = leaf_type.coerce_output_value(value)  # as graphql-core does
                    if serialized is not None and serialized is not Undefined:
                        return serialized
            except Exception:  # graphql-core's path below reports it, located and coded
                pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )


__all__ = ["LeafFieldsExecutionContext"]
