"""Individual usage events in the graph: a user's metered calls, newest first."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, Self

import strawberry
from strawberry import relay

from usagegraph.db import models
from usagegraph.resolvers.usage_events import usage_event_page
from usagegraph.schema.connections import CountedConnection, build_connection
from usagegraph.schema.context import Info
from usagegraph.schema.node_ids import integer_keys, load_keys
from usagegraph.schema.pagination import encode_cursor, moment_id_cursor, page_size


@strawberry.type(description="One metered call.")
class UsageEvent(relay.Node):
    event_id: strawberry.Private[int]
    user_id: int = strawberry.field(description="Who used it.")
    instance_id: str = strawberry.field(description="`personal` or the institution id.")
    occurred_at: datetime = strawberry.field(description="When it happened (UTC).")
    credits: Decimal = strawberry.field(description="Credits it cost.")
    messages: int = strawberry.field(description="Messages it counted.")
    endpoint: str | None = strawberry.field(description="The endpoint called, if recorded.")
    status: str = strawberry.field(description="`success` or `failed` (both count).")
    forgotten: bool = strawberry.field(
        description="Flagged by the user: out of the reports, still counted for money."
    )

    @classmethod
    def resolve_id(cls, root: Self, *, info: Any) -> str:
        return str(root.event_id)

    @classmethod
    def from_row(cls, row: models.UsageEvent) -> UsageEvent:
        return cls(
            event_id=row.id,
            user_id=row.user_id,
            instance_id=row.instance,
            occurred_at=row.occurred_at,
            credits=row.credits,
            messages=row.messages,
            endpoint=row.endpoint,
            status=row.status,
            forgotten=row.forgotten,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[UsageEvent | None]:
        loader = info.context.loaders.usage_event
        rows = await load_keys(integer_keys(node_ids), loader.load_many)
        return [cls.from_row(row) if row else None for row in rows]


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
    rows, total = await usage_event_page(
        info.context,
        user_id,
        instance=instance,
        start=start,
        end=end,
        size=size,
        before=moment_id_cursor(after),
    )
    return build_connection(
        UsageEventConnection,
        rows,
        size=size,
        after=after,
        total=total,
        cursor_of=lambda row: encode_cursor(row.occurred_at.isoformat(), row.id),
        node_of=UsageEvent.from_row,
    )
