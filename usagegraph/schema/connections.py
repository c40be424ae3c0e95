"""The connection type every growing list uses: Relay edges plus a total count."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import strawberry
from strawberry import relay

from usagegraph.schema.pagination import page_info

NodeT = TypeVar("NodeT")
RowT = TypeVar("RowT")


@strawberry.type(description="A page of a list, in Relay's connection shape.")
class CountedConnection(relay.Connection[NodeT], Generic[NodeT]):
    total_count: int = strawberry.field(description="How many items the whole list holds.")


def build_connection(
    connection: type[CountedConnection[NodeT]],
    rows: Sequence[RowT],
    *,
    size: int,
    after: str | None,
    total: int,
    cursor_of: Callable[[RowT], str],
    node_of: Callable[[RowT], NodeT],
) -> CountedConnection[NodeT]:
    """A connection from rows fetched with one extra row (which only signals a next page)."""
    shown = rows[:size]
    return connection(
        edges=[relay.Edge(cursor=cursor_of(row), node=node_of(row)) for row in shown],
        page_info=page_info(rows, size, cursor_of, after=after),
        total_count=total,
    )
