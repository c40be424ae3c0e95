"""Completing plain values without graphql-core's per-field machinery.

A report's answer is a tree of frozen values: `UsageHistory` with its buckets and totals,
`UserStatsReport` with up to 5,000 rows. Below such an object every field is read from an
attribute (Strawberry's default resolver), takes no arguments, and is a scalar, an enum, a
list of them or another such object. graphql-core completes each one as it would a
resolver's field: a ResolveInfo, a Path, the resolver wrapper, an awaitable check and the
nullability checks, per field of every row. For usage history through the graph that was
~1.8 ms of a ~10 ms request in-process (30 buckets), and most of a 5,000-row userStats.

Here such a subtree is completed in one walk that calls the same default resolvers and the
same scalar and enum coercions, over the fields graphql-core itself collected (aliases,
fragments, `@skip`/`@include`). Nothing here can report an error: whenever a value would
need one (a null for a non-null field, a value a scalar refuses, anything not plain), the
walk gives up and graphql-core completes the whole object the usual way, so errors, their
paths and nulls are exactly those of the reference executor. With a resolve middleware
installed (tracing), every field goes through graphql-core so each one is seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from inspect import isawaitable
from typing import Any

from graphql import (
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    Undefined,
    is_leaf_type,
)

TYPENAME = "__typename"

# Collects the subfields of an object type for a field's nodes, as graphql-core does
# (`ExecutionContext.collect_subfields`, memoized per execution): (grouped fields, defers).
CollectSubfields = Callable[[GraphQLObjectType, Any], tuple[Mapping[str, Any], Any]]


class NotPlain(Exception):
    """This value needs graphql-core's completion (an error to report, or a field that is
    not a plain attribute)."""


_PLAIN_TYPES: dict[GraphQLObjectType, bool] = {}


def is_plain_type(object_type: GraphQLObjectType) -> bool:
    """Whether every field of the type is Strawberry's default attribute read without
    arguments, and the type needs no `is_type_of` check (worked out once per type)."""
    known = _PLAIN_TYPES.get(object_type)
    if known is None:
        known = _PLAIN_TYPES[object_type] = object_type.is_type_of is None and all(
            not field.args and getattr(field.resolve, "_is_default", False)
            for field in object_type.fields.values()
        )
    return known


def complete_plain_object(
    collect: CollectSubfields,
    object_type: GraphQLObjectType,
    field_details_list: Any,
    source: Any,
) -> dict[str, Any]:
    """The completed value of a plain object, or NotPlain."""
    if not is_plain_type(object_type):
        raise NotPlain(object_type.name)
    grouped, defers = collect(object_type, field_details_list)
    if defers:
        raise NotPlain("deferred fields")
    completed: dict[str, Any] = {}
    for response_name, details in grouped.items():
        name = details[0].node.name.value
        if name == TYPENAME:
            completed[response_name] = object_type.name
            continue
        field = object_type.fields[name]
        try:
            # The default resolver ignores its info; graphql-core calls it the same way.
            value = field.resolve(source, None)  # type: ignore[misc]
        except Exception as exc:  # graphql-core reports it, at this field's path
            raise NotPlain("the resolver raised") from exc
        if isawaitable(value):
            raise NotPlain("an awaitable value")
        completed[response_name] = _complete(collect, field.type, details, value)
    return completed


def _complete(
    collect: CollectSubfields, value_type: GraphQLOutputType, details: Any, value: Any
) -> Any:
    if isinstance(value_type, GraphQLNonNull):
        completed = _complete(collect, value_type.of_type, details, value)
        if completed is None:
            raise NotPlain("null for a non-null field")
        return completed
    if value is None or value is Undefined:
        return None
    if isinstance(value_type, GraphQLList):
        # An iterator would be spent if graphql-core had to complete it after all.
        if isinstance(value, str | bytes | Mapping | Iterator) or not isinstance(value, Iterable):
            raise NotPlain("not a list")
        return [_complete(collect, value_type.of_type, details, item) for item in value]
    if is_leaf_type(value_type):
        try:
            coerced = value_type.coerce_output_value(value)  # type: ignore[union-attr]
        except Exception as exc:
            raise NotPlain("a value the scalar refuses") from exc
        if coerced is None or coerced is Undefined:
            raise NotPlain("a value the scalar refuses")
        return coerced
    if isinstance(value_type, GraphQLObjectType):
        return complete_plain_object(collect, value_type, details, value)
    raise NotPlain("an abstract type")
