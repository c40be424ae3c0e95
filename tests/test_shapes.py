"""One declaration per shape: REST JSON, JSON Schema and graph fields all come from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import pytest
import strawberry

from usagegraph.schema.shape_types import graph_type_of, shape_fields_of
from usagegraph.shapes import described, json_schema, render, shape_fields


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, slots=True)
class Part:
    count: int = described("How many.")
    weight: Decimal | None = described("Grams, if weighed.")


@dataclass(frozen=True, slots=True)
class Order:
    order_id: int = described("The order.", json_name="orderId")
    colour: Colour = described("Its colour.")
    placed_on: date = described("The day.")
    parts: tuple[Part, ...] = described("Its parts.")
    by_shelf: Mapping[str, Part] = described("Parts by shelf.")
    notes: dict[str, Any] = described("Anything else.")
    internal: str = described("Only the graph shows it.", surface="graph")
    code: str = described("A code.", json_schema={"type": "string", "pattern": "^[A-Z]{3}$"})


ORDER = Order(
    order_id=7,
    colour=Colour.BLUE,
    placed_on=date(2026, 5, 20),
    parts=(Part(2, Decimal("1.5")), Part(1, None)),
    by_shelf={"a": Part(3, None)},
    notes={"gift": True},
    internal="x",
    code="ABC",
)


def test_render_uses_the_json_names_enum_values_and_leaves_out_graph_only_fields() -> None:
    assert render(ORDER) == {
        "orderId": 7,
        "colour": "blue",
        "placed_on": date(2026, 5, 20),
        "parts": [{"count": 2, "weight": Decimal("1.5")}, {"count": 1, "weight": None}],
        "by_shelf": {"a": {"count": 3, "weight": None}},
        "notes": {"gift": True},
        "code": "ABC",
    }


def test_render_of_a_sequence_of_shapes_is_a_list_of_objects() -> None:
    assert render((Part(1, None),)) == [{"count": 1, "weight": None}]


def test_json_schema_follows_the_types_names_and_overrides() -> None:
    part = {
        "type": "object",
        "required": ["count", "weight"],
        "properties": {
            "count": {"type": "integer"},
            "weight": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        },
        "additionalProperties": False,
    }
    assert json_schema(Order) == {
        "type": "object",
        "required": ["orderId", "colour", "placed_on", "parts", "by_shelf", "notes", "code"],
        "properties": {
            "orderId": {"type": "integer"},
            "colour": {"type": "string", "enum": ["red", "blue"]},
            "placed_on": {"type": "string", "format": "date"},
            "parts": {"type": "array", "items": part},
            "by_shelf": {"type": "object", "additionalProperties": part},
            "notes": {"type": "object"},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        },
        "additionalProperties": False,
    }


def test_a_field_declared_without_a_description_is_refused() -> None:
    @dataclass(frozen=True)
    class Bare:
        value: int

    with pytest.raises(TypeError, match=r"Bare\.value is not declared with described\(\)"):
        shape_fields(Bare)


def test_a_datetime_is_a_date_time_string_and_a_bool_is_not_an_integer() -> None:
    @dataclass(frozen=True)
    class Moment:
        at: datetime = described("When.")
        flag: bool = described("Whether.")

    assert json_schema(Moment)["properties"] == {
        "at": {"type": "string", "format": "date-time"},
        "flag": {"type": "boolean"},
    }


strawberry.enum(Colour, description="A colour.")
graph_type_of(Part, name="Part", description="A part.")


@strawberry.type(description="An order.")
class GraphOrder(shape_fields_of(Order, private=("code",))):
    pass


@strawberry.type
class Query:
    @strawberry.field
    def order(self) -> GraphOrder:
        return ORDER  # type: ignore[return-value]  # the shape itself: no copy


def test_the_graph_type_shows_the_shapes_fields_with_their_descriptions() -> None:
    schema = strawberry.Schema(Query)
    sdl = schema.as_str()
    assert '"""The order."""\n  orderId: Int!' in sdl
    assert '"""Its parts."""\n  parts: [Part!]!' in sdl
    assert '"""Only the graph shows it."""\n  internal: String!' in sdl
    assert "byShelf: JSON!" in sdl
    assert "code" not in sdl.split("type GraphOrder")[1].split("}")[0]
    result = schema.execute_sync("{ order { orderId colour parts { count weight } internal } }")
    assert result.errors is None
    assert result.data == {
        "order": {
            "orderId": 7,
            "colour": "BLUE",
            "parts": [{"count": 2, "weight": "1.5"}, {"count": 1, "weight": None}],
            "internal": "x",
        }
    }


def test_moments_are_left_to_the_response_encoder() -> None:
    @dataclass(frozen=True)
    class Stamp:
        at: datetime = described("When.")

    moment = datetime(2026, 5, 20, tzinfo=UTC)
    assert render(Stamp(moment)) == {"at": moment}
