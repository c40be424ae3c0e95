"""Completing plain selections without graphql-core's per-field machinery.

Much of an answer is a tree of values read straight off attributes: a report (`UsageHistory`
with its buckets, `UserStatsReport` with up to 5,000 rows), and below every connection its
edges, their cursors and nodes, and the nodes' scalars. graphql-core completes each field of
each of them as it would a resolver's field: a ResolveInfo, a Path, the resolver wrapper,
an awaitable check and the nullability checks. For usage history through the graph that was
~1.8 ms of a ~10 ms request in-process (30 buckets); for 100 members' `usageEvents(first:
5)` it was 1,100 object completions.

A selection is plain when every field it selects (after aliases, fragments and
`@skip`/`@include`, as graphql-core itself collected them) is Strawberry's default
attribute read without arguments, of a scalar, an enum, a list of them, or an object type
whose own selection is plain. Other fields of the type do not matter: `usageEvents { edges
{ node { credits } } }` is plain although a connection's `totalCount` is a resolver. Such a
selection is planned once per query text (kept across requests by the execution context,
`schema/compiled_execution.py`) into completers, and every row then goes straight through them,
calling the same attribute reads, `is_type_of` checks and scalar and enum coercions.

Nothing here reports an error: whenever a value would need one (a null for a non-null
field, a value a scalar refuses, an object `is_type_of` refuses, a read that raises, an
awaitable), the walk gives up and graphql-core completes that object the usual way, so
errors, their paths and nulls are exactly those of the reference executor. With a resolve
middleware installed (tracing), every field goes through graphql-core so each one is seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from inspect import isawaitable
from operator import attrgetter
from typing import Any

from graphql import (
    GRAPHQL_MAX_INT,
    GRAPHQL_MIN_INT,
    GraphQLField,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLString,
    Undefined,
    is_leaf_type,
)
from strawberry.schema.schema_converter import GraphQLCoreConverter

TYPENAME = "__typename"
# Values that are never awaitable: `inspect.isawaitable` (an ABC check) is skipped for them.
_NEVER_AWAITABLE = frozenset({str, int, float, bool, Decimal, datetime, date, list, tuple})

# Collects the subfields of an object type for a field's nodes, as graphql-core does
# (`ExecutionContext.collect_subfields`, memoized per execution): (grouped fields, defers).
CollectSubfields = Callable[[GraphQLObjectType, Any], tuple[Mapping[str, Any], Any]]
# Completes one value of a field's type (None, a scalar, a list or a dict), or NotPlain.
Completer = Callable[[Any], Any]


class NotPlain(Exception):
    """This selection or value needs graphql-core's completion (an error to report, or a
    field that is not a plain attribute)."""


def attribute_reader(field: GraphQLField) -> Callable[[Any], Any]:
    """What a default-resolved field's resolver returns for a source, read directly.

    Strawberry's default resolver calls a wrapper, then `StrawberryField.get_result`, then the
    config's default resolver (`getattr`) on the field's Python name: two calls per value
    that a report of 30 buckets made 150 times. Anything else keeps its resolver.
    """
    definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    default = _is_default_read(field) and definition is not None
    if default and definition.default_resolver is getattr:
        return attrgetter(definition.python_name)
    resolve = field.resolve
    return lambda source: resolve(source, None)  # type: ignore[misc]


def is_plain_field(field: GraphQLField) -> bool:
    """Strawberry's default attribute read, without arguments."""
    return not field.args and _is_default_read(field)


def _is_default_read(field: GraphQLField) -> bool:
    """Whether Strawberry marked the field's resolver as its default attribute read (no
    resolver function, no permission classes, no field extensions)."""
    return bool(getattr(field.resolve, "_is_default", False))


def maybe_awaitable(value: Any) -> bool:
    """`inspect.isawaitable`, answered at once for the plain values a report holds."""
    return value.__class__ not in _NEVER_AWAITABLE and isawaitable(value)


def plain_completer(
    collect: CollectSubfields, object_type: GraphQLObjectType, field_details_list: Any
) -> Completer | None:
    """The completer of objects of this type under these field nodes, or None when the
    selection is not plain (then graphql-core completes them)."""
    try:
        return _object_completer(collect, object_type, field_details_list)
    except NotPlain:
        return None


def _object_completer(
    collect: CollectSubfields, object_type: GraphQLObjectType, field_details_list: Any
) -> Completer:
    grouped, defers = collect(object_type, field_details_list)
    if defers:
        raise NotPlain("deferred fields")
    typename = object_type.name
    is_type_of = object_type.is_type_of
    parts: list[tuple[str, Callable[[Any], Any] | None, Completer | None]] = []
    for response_name, details in grouped.items():
        name = details[0].node.name.value
        if name == TYPENAME:
            parts.append((response_name, None, None))
            continue
        field = object_type.fields[name]
        if not is_plain_field(field):
            raise NotPlain(f"{typename}.{name} is resolved")
        parts.append(
            (response_name, attribute_reader(field), _completer(collect, field.type, details))
        )

    def complete(source: Any) -> dict[str, Any]:
        # graphql-core asks `is_type_of` before completing (Strawberry's ignores its info).
        if is_type_of is not None and is_type_of(source, None) is not True:
            raise NotPlain(f"not a {typename}")
        completed: dict[str, Any] = {}
        for response_name, read, finish in parts:
            if read is None or finish is None:
                completed[response_name] = typename
                continue
            try:
                value = read(source)
            except Exception as exc:  # graphql-core reports it, at this field's path
                raise NotPlain("the read raised") from exc
            if maybe_awaitable(value):
                raise NotPlain("an awaitable value")
            completed[response_name] = finish(value)
        return completed

    return complete


def _completer(collect: CollectSubfields, value_type: GraphQLOutputType, details: Any) -> Completer:
    """The completer of values of `value_type`, as graphql-core would complete them."""
    if isinstance(value_type, GraphQLNonNull):
        if is_leaf_type(value_type.of_type):
            return _leaf(value_type.of_type, non_null=True)
        return _non_null(_completer(collect, value_type.of_type, details))
    if isinstance(value_type, GraphQLList):
        return _listed(_completer(collect, value_type.of_type, details))
    if is_leaf_type(value_type):
        return _leaf(value_type)
    if isinstance(value_type, GraphQLObjectType):
        return _nullable(_object_completer(collect, value_type, details))
    raise NotPlain("an abstract type")


def _non_null(inner: Completer) -> Completer:
    def non_null(value: Any) -> Any:
        completed = inner(value)
        if completed is None:
            raise NotPlain("null for a non-null field")
        return completed

    return non_null


def _listed(item: Completer) -> Completer:
    def listed(value: Any) -> Any:
        if value is None or value is Undefined:
            return None
        # An iterator would be spent if graphql-core had to complete it after all.
        if isinstance(value, str | bytes | Mapping | Iterator) or not isinstance(value, Iterable):
            raise NotPlain("not a list")
        return [item(entry) for entry in value]

    return listed


def _leaf(value_type: Any, non_null: bool = False) -> Completer:
    """A scalar's or enum's completer (a non-null one refuses None, in the same call). Ints in
    range and strings go out as they are without a call: exactly what graphql-core's
    `serialize_int` and `serialize_string` return for them (a 500-event page has 1,500 leaves).
    """
    coerce = value_type.coerce_output_value
    unchanged = _UNCHANGED.get(value_type)

    def leaf(value: Any) -> Any:
        if value is None or value is Undefined:
            if non_null:
                raise NotPlain("null for a non-null field")
            return None
        if unchanged is not None and unchanged(value):
            return value
        try:
            coerced = coerce(value)
        except Exception as exc:
            raise NotPlain("a value the scalar refuses") from exc
        if coerced is None or coerced is Undefined:
            raise NotPlain("a value the scalar refuses")
        return coerced

    return leaf


# Values the built-in scalars put in a response unchanged, by scalar (bool is not an int here:
# graphql-core turns it into 0 or 1).
_UNCHANGED: dict[Any, Callable[[Any], bool]] = {
    GraphQLInt: lambda v: v.__class__ is int and GRAPHQL_MIN_INT <= v <= GRAPHQL_MAX_INT,
    GraphQLString: lambda v: v.__class__ is str,
}


def _nullable(complete: Completer) -> Completer:
    def nullable(value: Any) -> Any:
        if value is None or value is Undefined:
            return None
        return complete(value)

    return nullable
