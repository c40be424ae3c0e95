"""Plain values (schema/plain_values.py) complete in one walk, exactly as graphql-core would.

Two schemas over the same types: one with the graph's execution context, one with
graphql-core's own. Every document must answer the same data and the same errors on both,
and the walk must actually have answered the plain objects (else the test proves nothing).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import pytest
import strawberry

from usagegraph.recently_used import RecentlyUsed
from usagegraph.schema import plain_values
from usagegraph.schema.compiled_execution import MAX_PLAIN_PLANS, CompilingExecutionContext


@strawberry.enum(description="A colour.")
class Colour(Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type(description="A leaf object.")
class Cell:
    n: int = strawberry.field(description="A number.")
    label: str | None = strawberry.field(description="A label, maybe null.")
    colour: Colour = strawberry.field(description="An enum.")


@strawberry.type(description="A plain object holding plain objects.")
class Table:
    name: str = strawberry.field(description="Its name.")
    cells: list[Cell] = strawberry.field(description="Its cells.")
    first: Cell | None = strawberry.field(description="The first cell, maybe null.")
    tags: list[str] = strawberry.field(description="Scalars in a list.")

    @strawberry.field(description="A resolver: this type is not plain.")
    def size(self) -> int:
        return len(self.cells)


@strawberry.type(description="A plain holder of a non-plain object.")
class Holder:
    table: Table = strawberry.field(description="A table.")
    cells: list[Cell] = strawberry.field(description="Plain cells.")


def _cells(broken: bool) -> list[Cell]:
    cells = [Cell(n=i, label=None if i % 2 else f"c{i}", colour=Colour.RED) for i in range(3)]
    if broken:
        cells[1] = Cell(n=None, label="x", colour=Colour.BLUE)  # type: ignore[arg-type]
    return cells


@strawberry.type(description="The root.")
class Query:
    @strawberry.field(description="Plain cells.")
    def cells(self) -> list[Cell]:
        return _cells(broken=False)

    @strawberry.field(description="Cells whose numbers sit at the edges of Int.")
    def edge_cells(self, case: int) -> list[Cell]:
        numbers: list[Any] = [[0, -(2**31), 2**31 - 1, True, False], [2**31], [-(2**31) - 1]][case]
        return [Cell(n=n, label=str(n), colour=Colour.BLUE) for n in numbers]

    @strawberry.field(description="A holder, null when a cell of it is broken.")
    async def holder(self, broken: bool = False) -> Holder | None:
        cells = _cells(broken)
        return Holder(table=Table(name="t", cells=cells, first=None, tags=["a"]), cells=cells)


FAST = strawberry.Schema(query=Query, execution_context_class=CompilingExecutionContext)
REFERENCE = strawberry.Schema(query=Query)

DOCUMENT = """
query Q($skip: Boolean!, $broken: Boolean!) {
  cells { ...C colour __typename alias: n }
  holder(broken: $broken) {
    __typename
    cells { n ... on Cell { label } l2: label @skip(if: $skip) colour @include(if: $skip) }
    table { name size tags first { n } cells { n colour } }
  }
  plainTable: holder(broken: $broken) { table { name tags first { n } cells { n } } }
}
fragment C on Cell { n label }
"""


@pytest.fixture(autouse=True)
def no_kept_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test plans afresh: the plans of one test's spies are not kept for the next."""
    monkeypatch.setattr(
        "usagegraph.schema.compiled_execution._PLAIN_PLANS", RecentlyUsed(MAX_PLAIN_PLANS)
    )


def _answer(result: Any) -> tuple[Any, list[tuple[str, list[Any] | None]]]:
    errors = [(e.message, e.path) for e in result.errors or []]
    return result.data, sorted(errors, key=repr)


@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("broken", [False, True])
async def test_the_walk_answers_what_graphql_core_answers(
    monkeypatch: pytest.MonkeyPatch, skip: bool, broken: bool
) -> None:
    walked: list[str] = []
    planner = plain_values.plain_completer

    def spy(collect: Any, object_type: Any, details: Any) -> Any:
        complete = planner(collect, object_type, details)
        if complete is None:
            return None

        def counted(value: Any) -> Any:
            walked.append(object_type.name)
            return complete(value)

        return counted

    monkeypatch.setattr("usagegraph.schema.compiled_execution.plain_completer", spy)
    variables = {"skip": skip, "broken": broken}
    fast = await FAST.execute(DOCUMENT, variable_values=variables)
    reference = await REFERENCE.execute(DOCUMENT, variable_values=variables)
    assert _answer(fast) == _answer(reference)
    assert walked.count("Cell") >= 3
    # A selection of Holder with `size` (a resolver) below it is not plain; one without is,
    # though Table has that resolver.
    assert walked.count("Holder") == 1
    if broken:  # graphql-core reports the null `n` and nulls the nearest nullable field
        assert fast.data is not None
        assert (fast.data["holder"], fast.data["plainTable"]) == (None, None)
        assert sorted(e.path for e in fast.errors or []) == [
            ["holder", "cells", 1, "n"],
            ["plainTable", "table", "cells", 1, "n"],
        ]
    else:
        assert not fast.errors


@pytest.mark.parametrize("case", [0, 1, 2])
async def test_ints_and_strings_at_their_edges_answer_what_graphql_core_answers(case: int) -> None:
    # In range they go out unchanged without a call; a bool becomes 0 or 1; out of range is
    # graphql-core's error, at the same path.
    document = "query($case: Int!) { edgeCells(case: $case) { n label } }"
    fast = await FAST.execute(document, variable_values={"case": case})
    reference = await REFERENCE.execute(document, variable_values={"case": case})
    assert _answer(fast) == _answer(reference)
    if case == 0:
        assert fast.data is not None
        assert [cell["n"] for cell in fast.data["edgeCells"]] == [0, -(2**31), 2**31 - 1, 1, 0]
    else:
        assert fast.errors


async def _plan(document: str, type_name: str) -> Any:
    """The plain completer of `type_name` for the first field of `document` that returns it."""
    planned: dict[str, Any] = {}
    planner = plain_values.plain_completer

    def spy(collect: Any, object_type: Any, details: Any) -> Any:
        complete = planner(collect, object_type, details)
        planned.setdefault(object_type.name, complete)
        return complete

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("usagegraph.schema.compiled_execution.plain_completer", spy)
        result = await FAST.execute(document)
    assert not result.errors, result.errors
    return planned.get(type_name)


async def test_a_selection_is_plain_when_every_field_it_selects_is_an_attribute_read() -> None:
    assert await _plan("{ holder { table { name tags } } }", "Holder") is not None
    assert await _plan("{ holder { table { name size } } }", "Holder") is None
    assert await _plan("{ holder { table { size } } }", "Table") is None


async def test_a_plain_selection_is_planned_once_for_every_request_of_its_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planned: list[str] = []
    planner = plain_values.plain_completer

    def spy(collect: Any, object_type: Any, details: Any) -> Any:
        planned.append(object_type.name)
        return planner(collect, object_type, details)

    monkeypatch.setattr("usagegraph.schema.compiled_execution.plain_completer", spy)
    for _ in range(3):
        result = await FAST.execute("{ holder { table { name tags } } }")
        assert result.data == {"holder": {"table": {"name": "t", "tags": ["a"]}}}
    assert planned == ["Holder"]


async def test_directive_variables_are_part_of_the_kept_plan() -> None:
    """`@skip(if: $skip)` changes the selection: each value has its plan, and answers as
    graphql-core does whichever came first."""
    document = "query Q($skip: Boolean!) { holder { cells { n label @skip(if: $skip) } } }"
    for skip in (True, False, True, False):
        fast = await FAST.execute(document, variable_values={"skip": skip})
        reference = await REFERENCE.execute(document, variable_values={"skip": skip})
        assert _answer(fast) == _answer(reference)
        assert fast.data is not None
        assert ("label" in fast.data["holder"]["cells"][0]) is not skip
