"""The connection type every growing list uses: Relay edges plus a total count.

The total is counted only when the query selects `totalCount`: a connection carries how to
count, not the count, so a page that is not asked for its total costs no count statement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Generic, TypeVar

import strawberry
from strawberry import relay

from usagegraph.schema.pagination import page_info

NodeT = TypeVar("NodeT")
RowT = TypeVar("RowT")


@strawberry.type(description="A page of a list, in Relay's connection shape.")
class CountedConnection(relay.Connection[NodeT], Generic[NodeT]):
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many items the whole list holds.")
    async def total_count(self) -> int:
        return await self.count()


class LazyCursorEdge(relay.Edge[NodeT]):
    """A Relay edge that encodes its cursor only when the client selects it.

    Encoding a cursor (JSON, then base64) costs more than the rest of a small edge, and most
    queries ask for `pageInfo.endCursor` rather than every edge's cursor. To Strawberry this
    is an `Edge` (it type-checks edges with isinstance); only where `cursor` comes from differs.
    """

    def __init__(self, node: NodeT, cursor_of: Callable[[], str]) -> None:
        self.node = node
        self._cursor_of = cursor_of

    @property  # type: ignore[override]
    def cursor(self) -> str:
        return self._cursor_of()


def build_connection(
    connection: type[CountedConnection[NodeT]],
    rows: Sequence[RowT],
    *,
    size: int,
    after: str | None,
    count: Callable[[], Awaitable[int]],
    cursor_of: Callable[[RowT], str],
    node_of: Callable[[RowT], NodeT],
) -> CountedConnection[NodeT]:
    """A connection from rows fetched with one extra row (which only signals a next page);
    `count` is awaited only if the query selects `totalCount`."""
    shown = rows[:size]
    return connection(
        edges=[LazyCursorEdge(node_of(row), partial(cursor_of, row)) for row in shown],
        page_info=page_info(rows, size, cursor_of, after=after),
        count=count,
    )
