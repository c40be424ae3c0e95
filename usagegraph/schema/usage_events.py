"""Individual usage events in the graph: a user's metered calls, newest first."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Self

import strawberry
from strawberry import relay

from usagegraph.resolvers import usage_events
from usagegraph.schema.connections import CountedConnection, build_connection
from usagegraph.schema.context import Info
from usagegraph.schema.node_ids import integer_keys, load_keys
from usagegraph.schema.pagination import encode_cursor, moment_id_cursor, page_size
from usagegraph.schema.shape_types import shape_fields_of


@strawberry.type(description="One metered call.")
class UsageEvent(relay.Node, shape_fields_of(usage_events.RecordedUsageEvent, private=("id",))):
    @classmethod
    def resolve_id(cls, root: Self, *, info: Any) -> str:
        return str(root.id)

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[UsageEvent | None]:
        # Built as this type (graphql-core checks a node's Python type), not copied into it.
        return await load_keys(
            integer_keys(node_ids),
            lambda ids: usage_events.usage_events_by_id(info.context, ids, build=cls),
        )


@strawberry.type(description="A page of usage events, newest first.")
class UsageEventConnection(CountedConnection[UsageEvent]):
    pass


async def resolve_usage_events(
    info: Info,
    user_id: int,
    *,
    instance: str | None,
    start: datetime | None,
    end: datetime | None,
    first: int | None,
    after: str | None,
) -> UsageEventConnection:
    """The user's events the caller may read (their own; admins: in their institutions)."""
    size = page_size(first)
    events, count = await usage_events.usage_event_page(
        info.context,
        user_id,
        instance=instance,
        start=start,
        end=end,
        size=size,
        before=moment_id_cursor(after),
        build=UsageEvent,
    )
    return build_connection(
        UsageEventConnection,
        events,
        size=size,
        after=after,
        count=count,
        cursor_of=lambda event: encode_cursor(event.occurred_at.isoformat(), event.id),
        node_of=lambda event: event,
    )
