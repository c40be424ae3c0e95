"""Strawberry types derived from the rules layer's shapes (`usagegraph/shapes.py`).

`shape_fields_of(Shape)` is a base class holding one Strawberry field per declared field, with
the shape's description; a graph type subclasses it and adds only what the graph has beyond the
shape (a node id, nested connections). Nested shapes become the graph types registered for
them, tuples become lists and open records the JSON scalar.

The graph serves the rules layer's objects as they are: graphql-core reads fields by attribute
and checks no Python type for a type that implements no interface, so a shape needs no copy.
Node types (which graphql-core does check) are copied into with `fields_of`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.utils.str_converters import to_camel_case

from usagegraph.shapes import shape_fields

# shape → the graph type that shows it, filled by `graph_type_of`.
_GRAPH_TYPES: dict[type, type] = {}


def shape_fields_of(
    shape: type, *, private: Sequence[str] = (), overrides: Mapping[str, Any] | None = None
) -> type:
    """A dataclass base whose fields are the shape's graph fields.

    `private` fields are kept on the object but not shown (a node's database id); `overrides`
    replaces a field's graph type where the shape's type says less than the graph should.
    """
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__annotations__": annotations}
    for field in shape_fields(shape):
        if field.name in private:
            annotations[field.name] = strawberry.Private[field.hint]
            continue
        if not field.shown_in("graph"):
            continue
        graph_type = (overrides or {}).get(field.name) or _graph_annotation(field.hint)
        annotations[field.name] = graph_type
        namespace[field.name] = strawberry.field(
            name=_camel(field.graph_name) if field.graph_name != field.name else None,
            description=field.description,
        )
    base = type(f"{shape.__name__}Fields", (), namespace)
    return dataclasses.dataclass(kw_only=True)(base)


def graph_type_of(
    shape: type, *, name: str, description: str, overrides: Mapping[str, Any] | None = None
) -> type:
    """The graph type of a shape that needs nothing beyond its fields."""
    base = shape_fields_of(shape, overrides=overrides)
    graph_type = strawberry.type(type(name, (base,), {}), name=name, description=description)
    _GRAPH_TYPES[shape] = graph_type
    return graph_type


def register(shape: type, graph_type: type) -> None:
    """Show `shape` as `graph_type` wherever another shape nests it."""
    _GRAPH_TYPES[shape] = graph_type


def _camel(name: str) -> str:
    """The graph's name for a snake-case name, as Strawberry's auto camel case writes it."""
    return to_camel_case(name)


def _graph_annotation(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        present = [_graph_annotation(a) for a in arguments if a is not type(None)]
        (inner,) = present
        return inner | None if len(present) < len(arguments) else inner
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _GRAPH_TYPES[hint]
    if origin in (tuple, list, Sequence):
        return list[_graph_annotation(arguments[0])]  # type: ignore[misc]
    if origin in (dict, Mapping):
        return JSON
    return hint
