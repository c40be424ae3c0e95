"""A user's individual usage events, newest first, as the caller may read them.

Who may read whose events is the datasource's readable statement (your own; an institution
admin: a member's events in the institutions they administer; an API key: its institution's
events); the page is read through this request's loaders, one batch for every user of the
query, and counted only from the same filter.
"""

from __future__ import annotations

from datetime import datetime

from usagegraph.datasources.usage import EventFilter
from usagegraph.db.models import UsageEvent
from usagegraph.resolvers.request_context import RequestContext


async def usage_event_page(
    context: RequestContext,
    user_id: int,
    *,
    instance: str | None,
    start: datetime | None,
    end: datetime | None,
    size: int,
    before: tuple[datetime, int] | tuple[None, None],
) -> tuple[list[UsageEvent], int]:
    """`size + 1` events of the user older than `before` (time, id), and how many match."""
    event_filter = EventFilter(instance=instance, start=start, end=end)
    loaders = context.loaders
    rows = await loaders.usage_event_page.load((user_id, event_filter, size, *before))
    total = await loaders.usage_event_count.load((user_id, event_filter))
    return rows, total
