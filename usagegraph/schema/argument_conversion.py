"""Converting a field's arguments once per distinct value, not once per resolver call.

Strawberry converts the arguments graphql-core coerced (`first: 5`) into the resolver's Python
values on every call: for each argument the field declares it converts the name to camel case
and walks `convert_argument`'s type checks. A connection nested under a list is called once
per parent with the same arguments: issue 14's question (100 members' `usageEvents(first:
5)`, 5 institutions' `members(first: 20)`) made ~500 such conversions a request, 2.3 ms of a
34 ms request in-process (7 %, measured by turning this on and off).

Conversion is a pure function of the field's declared arguments and the coerced values when
both sides are plain immutable leaves (strings, numbers, booleans, null; converted: those and
times, dates, decimals, enum members). Those results are kept per (field, values) in a bounded
map, and every call gets a dict of its own (Strawberry adds `info`, `root` and the like to it).
Anything else (input objects, lists, IDs, `Maybe`) is converted every time, as before.

graphql-core coerces the arguments from the query's text just before, on every call too:
`get_argument_values` per field node. A node whose arguments are literals (no variable
anywhere in them) always coerces to the same values, so those are kept per (field, node) the
same way (nodes come from the parsed document, which the parser cache keeps across requests).
A node with variables is coerced every time; so is a failing one (its error is raised again).
Both together: ~3 ms of ~34 ms in-process on that question.

Neither library exposes a hook for this, so `install` replaces the two functions the resolver
wrappers call (`strawberry.schema.schema_converter.convert_arguments`,
`graphql.execution.executor.get_argument_values`) with these keeping ones, which call the
originals on a miss. The tests of this module pin both names, so an upgrade that moves one
fails a test instead of silently dropping the keeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import graphql.execution.executor as executor
import strawberry.schema.schema_converter as schema_converter
from graphql import FieldNode, GraphQLField, ListValueNode, ObjectValueNode, ValueNode, VariableNode
from strawberry.types.arguments import StrawberryArgument
from strawberry.types.unset import UNSET

from usagegraph.recently_used import RecentlyUsed

_ORIGINAL = schema_converter.convert_arguments
_ORIGINAL_COERCION = executor.get_argument_values
# Distinct (field, values) pairs kept; a client's few queries use a handful.
KEPT_CONVERSIONS = 4096
_RAW_LEAVES = (str, int, float, bool, type(None))
_CONVERTED_LEAVES = (*_RAW_LEAVES, datetime, date, Decimal, Enum)

# (ids of the field's argument list, the scalar registry and the config; the coerced values)
# -> (those three, the converted values or None when they are not all immutable leaves).
# The entry holds what its key names by id, so no other object can take such an id while the
# entry lives.
_KEPT: RecentlyUsed[tuple[Any, ...], tuple[Any, Any, Any, dict[str, Any] | None]] = RecentlyUsed(
    KEPT_CONVERSIONS
)


def keeping_convert_arguments(
    value: dict[str, Any],
    arguments: list[StrawberryArgument],
    scalar_registry: Mapping[object, Any],
    config: Any,
    info: Any = None,
) -> dict[str, Any]:
    """`convert_arguments`, kept for leaf values; a new dict on every call."""
    if not arguments:
        return {}
    if not all(type(raw) in _RAW_LEAVES for raw in value.values()):
        return _ORIGINAL(value, arguments, scalar_registry, config, info)
    key = (id(arguments), id(scalar_registry), id(config), *sorted(value.items()))
    *_held, converted = _KEPT.get_or_make(
        key, lambda: _converted(value, arguments, scalar_registry, config)
    )
    if converted is None:  # a result that is not a leaf: converted every time
        return _ORIGINAL(value, arguments, scalar_registry, config, info)
    return dict(converted)


def _converted(
    value: dict[str, Any],
    arguments: list[StrawberryArgument],
    scalar_registry: Mapping[object, Any],
    config: Any,
) -> tuple[Any, Any, Any, dict[str, Any] | None]:
    """The entry to keep: the conversion, or None (kept as such) when a result is not an
    immutable leaf."""
    converted = _ORIGINAL(value, arguments, scalar_registry, config, None)
    keepable = all(v is UNSET or isinstance(v, _CONVERTED_LEAVES) for v in converted.values())
    return (arguments, scalar_registry, config, converted if keepable else None)


# (id of the field definition, id of the node, hide_suggestions) -> (the definition, the
# node, the coerced values or None when they depend on variables or are not all leaves).
_COERCED: RecentlyUsed[tuple[int, int, bool], tuple[Any, Any, dict[str, Any] | None]] = (
    RecentlyUsed(KEPT_CONVERSIONS)
)


def keeping_argument_values(
    type_def: GraphQLField,
    node: FieldNode,
    variable_values: Any = None,
    fragment_variable_values: Any = None,
    hide_suggestions: bool = False,
) -> dict[str, Any]:
    """graphql-core's `get_argument_values`, kept for nodes of literal leaf arguments."""
    key = (id(type_def), id(node), hide_suggestions)
    entry = _COERCED.get(key)
    if entry is None:
        coerced = _ORIGINAL_COERCION(
            type_def, node, variable_values, fragment_variable_values, hide_suggestions
        )
        literal = not any(_has_variable(argument.value) for argument in node.arguments or ())
        leaves = all(type(value) in _RAW_LEAVES for value in coerced.values())
        _COERCED.keep(key, (type_def, node, dict(coerced) if literal and leaves else None))
        return coerced
    kept = entry[2]
    if kept is None:
        return _ORIGINAL_COERCION(
            type_def, node, variable_values, fragment_variable_values, hide_suggestions
        )
    return dict(kept)


def _has_variable(value: ValueNode) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_has_variable(item) for item in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_has_variable(field.value) for field in value.fields)
    return False


def install() -> None:
    """Make the resolver wrappers coerce and convert through the keeping functions."""
    schema_converter.convert_arguments = keeping_convert_arguments  # type: ignore[assignment]
    executor.get_argument_values = keeping_argument_values  # type: ignore[assignment]


def forget() -> None:
    """Drop every kept conversion (tests)."""
    _KEPT.clear()
    _COERCED.clear()
