"""Arguments are coerced and converted once per distinct value, and every resolver gets its
own dict (schema/argument_conversion.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import graphql.execution.executor as executor
import pytest
import strawberry
import strawberry.schema.schema_converter as schema_converter

import usagegraph.schema  # noqa: F401 - installs the keeping conversion, as the app does
from usagegraph.schema import argument_conversion


@strawberry.input
class Window:
    start: datetime


@strawberry.type
class Parent:
    number: int

    @strawberry.field
    def page(self, first: int, after: str | None = None) -> str:
        return f"{self.number}:{first}:{after}"

    @strawberry.field
    def windowed(self, window: Window) -> str:
        return window.start.isoformat()


@strawberry.type
class Query:
    @strawberry.field
    def parents(self) -> list[Parent]:
        return [Parent(number=n) for n in range(3)]


SCHEMA = strawberry.Schema(query=Query)


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The coerced values of every conversion actually made (not kept ones)."""
    argument_conversion.forget()
    made: list[dict[str, Any]] = []
    original = argument_conversion._ORIGINAL

    def counting(value: dict[str, Any], *rest: Any) -> dict[str, Any]:
        made.append(dict(value))
        return original(value, *rest)

    monkeypatch.setattr(argument_conversion, "_ORIGINAL", counting)
    return made


@pytest.fixture
def coercions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The field of every coercion graphql-core actually made (not kept ones)."""
    argument_conversion.forget()
    made: list[str] = []
    original = argument_conversion._ORIGINAL_COERCION

    def counting(type_def: Any, node: Any, *rest: Any) -> dict[str, Any]:
        made.append(node.name.value)
        return original(type_def, node, *rest)

    monkeypatch.setattr(argument_conversion, "_ORIGINAL_COERCION", counting)
    return made


def test_the_resolver_wrappers_go_through_the_keeping_functions() -> None:
    # Pins the names Strawberry's `get_arguments` and graphql-core's `execute_field` call: an
    # upgrade that moves one fails here.
    assert schema_converter.convert_arguments is argument_conversion.keeping_convert_arguments
    assert executor.get_argument_values is argument_conversion.keeping_argument_values


async def test_literal_arguments_are_coerced_once_per_field_node(coercions: list[str]) -> None:
    result = await SCHEMA.execute("{ parents { page(first: 2) other: page(first: 2) } }")
    assert result.errors is None
    assert result.data["parents"][1] == {"page": "1:2:None", "other": "1:2:None"}
    assert coercions == ["page", "page"]  # two nodes, three parents each


async def test_arguments_from_variables_are_coerced_every_time(coercions: list[str]) -> None:
    result = await SCHEMA.execute(
        "query($n: Int!) { parents { page(first: $n) } }", variable_values={"n": 4}
    )
    assert result.errors is None
    assert result.data["parents"][0] == {"page": "0:4:None"}
    assert coercions == ["page"] * 3


async def test_the_same_arguments_under_every_parent_are_converted_once(
    conversions: list[dict[str, Any]],
) -> None:
    result = await SCHEMA.execute("{ parents { page(first: 2) } }")
    assert result.errors is None
    assert result.data == {"parents": [{"page": f"{n}:2:None"} for n in range(3)]}
    assert conversions == [{"first": 2, "after": None}]
    again = await SCHEMA.execute('{ parents { a: page(first: 2) b: page(first: 3, after: "x") } }')
    assert again.errors is None
    assert again.data["parents"][2] == {"a": "2:2:None", "b": "2:3:x"}
    assert conversions == [{"first": 2, "after": None}, {"first": 3, "after": "x"}]


async def test_input_objects_are_converted_for_every_call(
    conversions: list[dict[str, Any]],
) -> None:
    result = await SCHEMA.execute(
        '{ parents { windowed(window: {start: "2026-05-20T15:30:00"}) } }'
    )
    assert result.errors is None
    assert len(conversions) == 3


def test_each_call_gets_a_dict_of_its_own() -> None:
    """Strawberry adds `info`, `root` and the like to the dict it gets: a kept dict handed out
    twice would be shared by every call of the field."""
    field = Parent.__strawberry_definition__.get_field("page")
    assert field is not None
    convert = argument_conversion.keeping_convert_arguments
    registry, config = SCHEMA.schema_converter.scalar_registry, SCHEMA.config
    first = convert({"first": 2, "after": None}, field.arguments, registry, config)
    first["info"] = "the first call's"
    second = convert({"first": 2, "after": None}, field.arguments, registry, config)
    assert second == {"first": 2, "after": None}
