"""Individual usage events in the graph: a user's metered calls, newest first."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from datetime import datetime
from typing import Any, Self

import strawberry
from graphql import GraphQLError
from graphql.execution.values import VariableValues
from strawberry import relay

from usagegraph.resolvers import usage_events
from usagegraph.schema.compiled_execution import Planner
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


def resolve_usage_events(
    info: Info,
    user_id: int,
    *,
    instance: str | None,
    start: datetime | None,
    end: datetime | None,
    first: int | None,
    after: str | None,
) -> UsageEventConnection | Awaitable[UsageEventConnection]:
    """The user's events the caller may read (their own; admins: in their institutions): at
    once when the page was fetched ahead with its parents' (`prefetch_event_pages`), else an
    awaitable read. Not a coroutine: graphql-core completes an awaitable field through
    coroutines and tasks, which for 100 members' pages cost more than the pages."""
    request = usage_events.PageRequest(
        size=page_size(first),
        before=moment_id_cursor(after),
        instance=instance,
        start=start,
        end=end,
    )
    known = usage_events.known_usage_event_page(info.context, user_id, request, UsageEvent)
    if known is not None:
        return _connection(known, request.size, after)
    return _read_usage_events(info, user_id, request, after)


async def _read_usage_events(
    info: Info, user_id: int, request: usage_events.PageRequest, after: str | None
) -> UsageEventConnection:
    page = await usage_events.usage_event_page(info.context, user_id, request, UsageEvent)
    return _connection(page, request.size, after)


def _connection(
    page: usage_events.Page[UsageEvent], size: int, after: str | None
) -> UsageEventConnection:
    events, count = page
    return build_connection(
        UsageEventConnection,
        events,
        size=size,
        after=after,
        count=count,
        cursor_of=lambda event: encode_cursor(event.occurred_at.isoformat(), event.id),
        node_of=lambda event: event,
    )


# Where each member's events sit below a page of members (`Institution.members`).
EVENTS_OF_MEMBERS = ("edges", "node", "user", "usageEvents")
# Distinct `usageEvents` selections (aliases with other arguments) fetched ahead, at most.
MAX_PREFETCHED_SELECTIONS = 4


async def prefetch_event_pages(info: Info, path: Sequence[str], user_ids: Sequence[int]) -> None:
    """Read ahead, with the parents' page, the `usageEvents` pages that the selection at `path`
    below this field asks of these users, so each user's field answers at once.

    The look-ahead decodes the arguments as the compiled path does (`Planner`: fragments,
    `@skip`/`@include`, variables); a page it reads under other arguments than the field
    asks is merely not used, and the field reads its own.
    """
    raw = info._raw_info
    # Strawberry's resolve info carries the coerced variables alone; the walk coerces the
    # nested arguments (scalars, here) from them.
    variables = VariableValues(sources={}, coerced=raw.variable_values)
    planner = Planner(raw.schema, raw.fragments, variables)
    try:
        selections = planner.nested_arguments(raw.parent_type, list(raw.field_nodes), path)
    except GraphQLError:  # a directive's argument: the fields report it as they run
        return
    requests = [
        usage_events.PageRequest(
            size=arguments["size"],
            before=arguments["before"] or (None, None),
            instance=arguments["instance"],
            start=arguments["from"],
            end=arguments["to"],
        )
        for arguments in selections[:MAX_PREFETCHED_SELECTIONS]
    ]
    if requests and user_ids:
        await usage_events.prefetch_usage_event_pages(info.context, user_ids, requests)
