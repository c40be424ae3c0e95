"""Plain leaf fields read directly (schema/leaf_fields.py) answer exactly as graphql-core's
own path: values, nulls, enums, and the errors of a null in a non-null field or of a value
the scalar cannot serialise, with their paths. Each query runs on a schema with the fast
path and on the same schema with Strawberry's stock execution context."""

from __future__ import annotations

import enum
from typing import Any

import pytest
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from usagegraph.schema import leaf_fields
from usagegraph.schema.leaf_fields import LeafFieldsExecutionContext


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Item:
    name: str
    note: str | None
    colour: Colour
    count: int
    broken: str  # holds None in some items: an error on both paths

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()

    @strawberry.field
    def repeat(self, times: int) -> str:
        return self.name * times


ITEMS = [
    Item(name="a", note=None, colour=Colour.RED, count=1, broken="x"),
    Item(name="b", note="n", colour=Colour.BLUE, count=2**40, broken=None),  # type: ignore[arg-type]
]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return ITEMS


def schema(context_class: type[Any]) -> strawberry.Schema:
    return strawberry.Schema(query=Query, execution_context_class=context_class)


FAST = schema(LeafFieldsExecutionContext)
STOCK = schema(StrawberryGraphQLCoreExecutionContext)


@pytest.mark.parametrize(
    "query",
    [
        "{ items { name note colour } }",
        "{ items { shout repeat(times: 2) } }",
        "{ items { name count } }",  # 2**40 is not a GraphQL Int: an error, item b is null
        "{ items { name broken } }",  # None in a non-null field: an error, item b is null
        "{ items { n: name c: colour, ...on Item { note } } }",
    ],
)
async def test_the_fast_path_answers_as_graphql_core(query: str) -> None:
    fast, stock = await FAST.execute(query), await STOCK.execute(query)
    assert fast.data == stock.data
    assert [(e.message, e.path) for e in fast.errors or []] == [
        (e.message, e.path) for e in stock.errors or []
    ]


async def test_plain_leaves_take_the_fast_path_and_others_do_not() -> None:
    result = await FAST.execute("{ items { name colour shout } }")
    assert result.errors is None
    item = FAST._schema.get_type("Item")
    planned = {
        name for (parent, name), plan in leaf_fields._PLANS.items() if parent is item and plan
    }
    assert {"name", "colour"} <= planned
    assert "shout" not in planned  # a resolver function: graphql-core's path
