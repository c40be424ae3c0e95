"""Data shapes declared once: a rules-layer dataclass per answer, read by both APIs.

The rules layer (`resolvers/`) returns frozen dataclasses. Each field is declared with
`described(...)`: its description, and where the seed documents a different JSON name, that
name. From that one declaration:

- the graph's Strawberry types are derived (`schema/shape_types.py`), and the resolvers'
  objects are served as they are, without a copy per field;
- the REST shims render JSON with `render` (the seeds' field names, enums as their values);
- the OpenAPI document's schemas are generated with `json_schema`.

So a new field is one line in the rules layer, plus whatever computes its value. This module
imports nothing of the package: every layer may use it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

Surface = Literal["both", "rest", "graph"]

_DESCRIPTION = "description"
_JSON_NAME = "json_name"
_JSON_SCHEMA = "json_schema"
_SURFACE = "surface"
_GRAPH_NAME = "graph_name"


def described(
    description: str,
    *,
    json_name: str | None = None,
    json_schema: Mapping[str, Any] | None = None,
    graph_name: str | None = None,
    surface: Surface = "both",
    default: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with what both APIs need to show it.

    `json_name` is the REST name where the seed documents one other than the field's, and
    `graph_name` the graph's where it differs (in snake case: the graph camel-cases it);
    `json_schema` replaces the schema derived from the type where the type says too little
    (an id's pattern, an open record); `surface` limits a field to one API.
    """
    metadata = {
        _DESCRIPTION: description,
        _JSON_NAME: json_name,
        _JSON_SCHEMA: json_schema,
        _GRAPH_NAME: graph_name,
        _SURFACE: surface,
    }
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True, slots=True)
class ShapeField:
    """One declared field, its type hint resolved."""

    name: str
    hint: Any
    description: str
    json_name: str
    json_schema: Mapping[str, Any] | None
    graph_name: str
    surface: Surface

    def shown_in(self, surface: Literal["rest", "graph"]) -> bool:
        return self.surface in ("both", surface)


def shape_fields(shape: type) -> tuple[ShapeField, ...]:
    """The declared fields of a shape, in declaration order; every one must be `described`."""
    hints = typing.get_type_hints(shape)
    declared = []
    for field in dataclasses.fields(shape):
        if _DESCRIPTION not in field.metadata:
            raise TypeError(f"{shape.__name__}.{field.name} is not declared with described()")
        declared.append(
            ShapeField(
                name=field.name,
                hint=hints[field.name],
                description=field.metadata[_DESCRIPTION],
                json_name=field.metadata[_JSON_NAME] or field.name,
                json_schema=field.metadata[_JSON_SCHEMA],
                graph_name=field.metadata[_GRAPH_NAME] or field.name,
                surface=field.metadata[_SURFACE],
            )
        )
    return tuple(declared)


_FIELDS_CACHE: dict[type, tuple[ShapeField, ...]] = {}


def _rest_fields(shape: type) -> tuple[ShapeField, ...]:
    cached = _FIELDS_CACHE.get(shape)
    if cached is None:
        cached = tuple(field for field in shape_fields(shape) if field.shown_in("rest"))
        _FIELDS_CACHE[shape] = cached
    return cached


# --- REST rendering -------------------------------------------------------------------------


def render(value: Any) -> Any:
    """The JSON value of a shape (or of a value inside one), with the seeds' field names.

    Decimals and datetimes are left to the response encoder (`http/json.py`), which writes
    money as a number and times in ISO 8601.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.json_name: render(getattr(value, field.name))
            for field in _rest_fields(type(value))
        }
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {key: render(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [render(item) for item in value]
    return value


# --- JSON Schema ----------------------------------------------------------------------------

_SCALARS: dict[Any, dict[str, Any]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    Decimal: {"type": "number"},
    float: {"type": "number"},
    str: {"type": "string"},
    datetime: {"type": "string", "format": "date-time"},
    date: {"type": "string", "format": "date"},
}


def json_schema(shape: type) -> dict[str, Any]:
    """The JSON Schema (OpenAPI 3.1) of a shape as `render` writes it: every field required,
    no others allowed."""
    fields = _rest_fields(shape)
    return {
        "type": "object",
        "required": [field.json_name for field in fields],
        "properties": {
            field.json_name: dict(field.json_schema)
            if field.json_schema is not None
            else schema_of_type(field.hint)
            for field in fields
        },
        "additionalProperties": False,
    }


def schema_of_type(hint: Any) -> dict[str, Any]:
    """The JSON Schema of one field's type hint."""
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        present = [argument for argument in arguments if argument is not type(None)]
        schema = schema_of_type(present[0]) if len(present) == 1 else {}
        return {"anyOf": [schema, {"type": "null"}]} if len(present) < len(arguments) else schema
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    if isinstance(hint, type) and issubclass(hint, Enum):
        return {"type": "string", "enum": [member.value for member in hint]}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return json_schema(hint)
    if origin in (tuple, list, Sequence):
        return {"type": "array", "items": schema_of_type(arguments[0])}
    if origin in (dict, Mapping):
        value = arguments[1] if arguments else Any
        if value is Any:
            return {"type": "object"}
        return {"type": "object", "additionalProperties": schema_of_type(value)}
    raise TypeError(f"no JSON Schema for {hint!r}")
