"""Usage reads: every query starts from what the caller may read, then narrows.

`readable_usage` is the only place that turns a Principal into a WHERE clause over usage
(events, or their rollups), so a resolver that forgets a check still cannot return another
tenant's rows. Reports read the rollups (`db.models.usage_rollups`): whole slots of the
window come pre-summed, and only the partial slots at an unaligned window's edges are summed
from events, so a report costs what its window holds in slots, not what history holds in
events. Resolvers fold slots into calendar buckets in Python, which keeps any time zone exact
(all zone offsets are multiples of 15 minutes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Subquery

from usagegraph.auth.access import administered_institutions, is_super
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.datasources.pages import newest_first, page_per_parent_statements, read_column_pages
from usagegraph.datasources.transactions import dialect_of
from usagegraph.datasources.usage_rollups import slot_start_of
from usagegraph.db.models import (
    PERSONAL_INSTANCE,
    UsageEvent,
    UsageRollupDay,
    UsageRollupDayEndpoint,
    UsageRollupHour,
    UsageRollupQuarterHour,
    UsageTotal,
)
from usagegraph.db.models.usage_rollups import DAY_SECONDS, HOUR_SECONDS, QUARTER_HOUR_SECONDS
from usagegraph.db.partition_span import known_span, occurred_at_bands

DAY_SLOT_SECONDS = DAY_SECONDS
HOUR_SLOT_SECONDS = HOUR_SECONDS
# The finest offset step of any time zone: slots this size never straddle a local boundary.
ZONE_SAFE_SLOT_SECONDS = QUARTER_HOUR_SECONDS
_ROLLUP_OF_SLOT = {
    DAY_SECONDS: UsageRollupDay,
    HOUR_SECONDS: UsageRollupHour,
    QUARTER_HOUR_SECONDS: UsageRollupQuarterHour,
}
LOOKUP_CHUNK = 1000
# A user's events, newest first; ties on the time broken by id (served by the index of
# migration 0006; a page of one instance by (user_id, institution_id, occurred_at, id),
# migration 0008).
EVENTS_NEWEST_FIRST = newest_first("occurred_at", "id")
# A usage event read as plain columns named like the model's attributes (`pages`, columns).
EventRow = Row[Any]

# Usage rows: the events model or a rollup model; both have `user_id` and `institution_id`.
UsageSource = Any
# A narrowing of usage, written once and applied to whichever source a query reads.
UsageFilter = Callable[[UsageSource], ColumnElement[bool]]


def readable_usage(principal: Principal, source: UsageSource = UsageEvent) -> ColumnElement[bool]:
    """Usage the caller may read: their own, plus all usage of institutions they administer.

    Super reads everything; an institution's API key reads that institution's usage.
    """
    if is_super(principal):
        return true()
    if principal.kind is CallerKind.INSTITUTION and principal.institution_id:
        return source.institution_id == principal.institution_id
    if principal.kind is not CallerKind.USER or principal.user_id is None:
        return false()
    own = source.user_id == principal.user_id
    others = readable_usage_of_others(principal, source)
    return own if others is None else or_(own, others)


def readable_usage_of_others(
    principal: Principal, source: UsageSource = UsageEvent
) -> ColumnElement[bool] | None:
    """For a user caller, other users' usage they may read: that of the institutions they
    administer; None if they administer none.

    An equality when there is one institution: beside a user id it keeps the order of a
    (user, instance, ...) index, where `IN (x)` may not.
    """
    administered = administered_institutions(principal)
    if not administered:
        return None
    if len(administered) == 1:
        return source.institution_id == administered[0]
    return source.institution_id.in_(administered)


def of_user(user_id: int) -> UsageFilter:
    """Usage of this user only."""
    return lambda source: source.user_id == user_id


def in_instance(institution_id: str | None) -> UsageFilter:
    """Usage in this institution; None is the personal instance."""
    if institution_id is None:
        return lambda source: source.institution_id.is_(None)
    return lambda source: source.institution_id == institution_id


_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class UsageSlot:
    """Usage of one user in one instance during one slot (optionally per endpoint)."""

    slot_start: datetime
    user_id: int
    institution_id: str | None
    credits: Decimal
    messages: int
    events: int
    failed_events: int
    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class _SlotQuery:
    """What usage_by_slot was asked, shared by its rollup part and its event part."""

    principal: Principal
    slot_seconds: int
    filters: Sequence[UsageFilter]
    include_forgotten: bool
    by_endpoint: bool
    # Period starts (Unix seconds, ascending, each on a slot boundary): rows are summed per
    # period instead of per slot. Empty: per slot.
    periods: tuple[int, ...] = ()

    @property
    def rows_are_slots(self) -> bool:
        """Whether a slot rollup row is already one (slot, user, instance): it is when
        forgotten usage is left out (one row per flag) and nothing regroups the rows."""
        return not (self.include_forgotten or self.by_endpoint or self.periods)

    def conditions(self, source: UsageSource) -> list[ColumnElement[bool]]:
        conditions = [readable_usage(self.principal, source), *(f(source) for f in self.filters)]
        if not self.include_forgotten:
            conditions.append(source.forgotten.is_(False))
        return conditions

    def summed(self, source: UsageSource, slot: Any, endpoint: Any, sums: list[Any]) -> Select:
        keys = [self._period_of(slot).label("slot"), source.user_id, source.institution_id]
        if self.by_endpoint:
            keys.append(endpoint.label("endpoint"))
        # Grouped by the output name of the first key: its parameters are then bound once.
        grouping = [literal_column("slot"), *keys[1:]]
        return select(*keys, *sums).where(*self.conditions(source)).group_by(*grouping)

    def _period_of(self, slot: Any) -> Any:
        """The start of the period holding `slot` (exact: periods start on slot boundaries)."""
        if not self.periods:
            return slot
        if len(self.periods) == 1:
            return literal(self.periods[0], BigInteger)
        following = zip(self.periods, self.periods[1:], strict=False)
        return case(*((slot < end, start) for start, end in following), else_=self.periods[-1])


def _ceil(moment: datetime, seconds: int) -> int:
    return -(-int(moment.timestamp()) // seconds) * seconds


def _floor(moment: datetime, seconds: int) -> int:
    return int(moment.timestamp()) // seconds * seconds


def _rollup_of(query: _SlotQuery) -> Any:
    """The rollup that answers the query: per endpoint (day slots, forgotten usage included,
    what account usage asks), else the one of the slot size."""
    if query.by_endpoint:
        if query.slot_seconds != DAY_SECONDS or not query.include_forgotten:
            raise ValueError("usage per endpoint is kept per UTC day, forgotten usage included")
        return UsageRollupDayEndpoint
    return _ROLLUP_OF_SLOT[query.slot_seconds]


def _rollup_part(query: _SlotQuery, first: int, end: int) -> Select:
    """Whole slots [first, end) (Unix seconds), pre-summed."""
    rollup = _rollup_of(query)
    endpoint = (
        case((rollup.endpoint_given, rollup.endpoint), else_=null()) if query.by_endpoint else None
    )
    in_range = (rollup.slot_start >= first, rollup.slot_start < end)
    measures = (rollup.credits, rollup.messages, rollup.events, rollup.failed_events)
    names = ("credits", "messages", "events", "failed")
    if query.rows_are_slots:
        # Each rollup row is already one (slot, user, instance): read it as it is, with no
        # aggregation (on 11k rows, PostgreSQL's hash aggregate alone took 20 ms).
        keys = (rollup.slot_start.label("slot"), rollup.user_id, rollup.institution_id)
        values = (measure.label(name) for measure, name in zip(measures, names, strict=True))
        return select(*keys, *values).where(*query.conditions(rollup), *in_range)
    sums = [func.sum(measure).label(name) for measure, name in zip(measures, names, strict=True)]
    return query.summed(rollup, rollup.slot_start, endpoint, sums).where(*in_range)


def _event_part(query: _SlotQuery, dialect: str, edges: list[tuple[datetime, datetime]]) -> Select:
    """The partial slots at the window's edges, summed from the events themselves."""
    slot = slot_start_of(dialect, query.slot_seconds, UsageEvent.occurred_at)
    sums = [
        func.sum(UsageEvent.credits).label("credits"),
        func.sum(UsageEvent.messages).label("messages"),
        func.count().label("events"),
        func.sum(cast(UsageEvent.status == "failed", Integer)).label("failed"),
    ]
    statement = query.summed(UsageEvent, slot, UsageEvent.endpoint, sums)
    return statement.where(
        or_(*(and_(UsageEvent.occurred_at >= a, UsageEvent.occurred_at < b) for a, b in edges))
    )


def _slot_statement(query: _SlotQuery, dialect: str, start: datetime, end: datetime) -> Any:
    first, last = _ceil(start, query.slot_seconds), _floor(end, query.slot_seconds)
    if first >= last:  # no whole slot inside the window
        return _event_part(query, dialect, [(start, end)])
    edges = [
        (a, b)
        for a, b in (
            (start, datetime.fromtimestamp(first, UTC)),
            (datetime.fromtimestamp(last, UTC), end),
        )
        if a < b
    ]
    whole = _rollup_part(query, first, last)
    return union_all(whole, _event_part(query, dialect, edges)) if edges else whole


async def usage_by_slot(
    session: AsyncSession,
    principal: Principal,
    *,
    start: datetime,
    end: datetime,
    slot_seconds: int,
    filters: Sequence[UsageFilter] = (),
    include_forgotten: bool,
    by_endpoint: bool = False,
    period_starts: Sequence[datetime] = (),
) -> list[UsageSlot]:
    """Readable usage in [start, end), summed per slot, user and instance.

    `slot_seconds` is DAY_SLOT_SECONDS (UTC days), HOUR_SLOT_SECONDS or
    ZONE_SAFE_SLOT_SECONDS (quarter hours). Usage in a
    partial slot at an edge of the window is reported at that slot's start. With
    `period_starts` (ascending, on slot boundaries) the database sums whole periods instead
    and each row is reported at its period's start: a 180-day weekly report of 76 members
    returns 26 x 76 rows, not 180 x 76.
    """
    periods = tuple(int(moment.timestamp()) for moment in period_starts)
    if any(period % slot_seconds for period in periods):
        raise ValueError("period starts must fall on slot boundaries")
    query = _SlotQuery(principal, slot_seconds, filters, include_forgotten, by_endpoint, periods)
    statement = _slot_statement(query, session.bind.dialect.name, start, end)
    rows = await session.execute(statement)
    # One datetime per distinct slot, shared by its rows: callers key dicts by slot start, and
    # a datetime computes its hash once (thousands of rows share a few hundred slots).
    starts: dict[int, datetime] = {}

    def start_of(slot: int) -> datetime:
        moment = starts.get(slot)
        if moment is None:
            moment = starts[slot] = datetime.fromtimestamp(int(slot), UTC)
        return moment

    # Rows unpacked as tuples: on a 5,000-row report, attribute access by name was a third
    # of this function. Columns: slot, user, institution, [endpoint,] the four sums.
    keyed = (
        ((s, u, i, ep, c, m, e, f) for s, u, i, ep, c, m, e, f in rows)
        if by_endpoint
        else ((s, u, i, None, c, m, e, f) for s, u, i, c, m, e, f in rows)
    )
    slots = [
        UsageSlot(
            slot_start=start_of(slot),
            user_id=user_id,
            institution_id=institution_id,
            credits=credits if credits is not None else _ZERO,
            messages=int(messages or 0),
            events=int(events),
            failed_events=int(failed or 0),
            endpoint=endpoint,
        )
        for slot, user_id, institution_id, endpoint, credits, messages, events, failed in keyed
    ]
    # A period that holds both an edge and whole slots comes back twice (one row from each
    # part of the UNION); per slot, the parts never share a key.
    return _merged(slots) if periods else slots


def day_sums(
    principal: Principal,
    dialect: str,
    *,
    start: datetime,
    end: datetime,
    filters: Sequence[UsageFilter] = (),
) -> Subquery:
    """`usage_by_slot`'s rows per UTC day, forgotten usage left out, as a subquery for the
    database to go on with (columns slot, user_id, institution_id, credits, messages, events,
    failed): one row per (day, user, instance), never two, so a report can sum, count, order
    and limit them in SQL instead of receiving every day of its window.

    One row per key holds because a day rollup row is already one (day, user, instance) when
    forgotten usage is left out, and the partial days at an unaligned window's edges, summed
    from events, are days no whole-day row covers.
    """
    query = _SlotQuery(principal, DAY_SLOT_SECONDS, filters, False, False)
    return _slot_statement(query, dialect, start, end).subquery("day_sums")


def _merged(slots: list[UsageSlot]) -> list[UsageSlot]:
    """One slot per (start, user, instance, endpoint), measures summed."""
    merged: dict[tuple[Any, ...], UsageSlot] = {}
    for slot in slots:
        key = (slot.slot_start, slot.user_id, slot.institution_id, slot.endpoint)
        seen = merged.get(key)
        merged[key] = slot if seen is None else _sum(seen, slot)
    return list(merged.values())


def _sum(a: UsageSlot, b: UsageSlot) -> UsageSlot:
    return UsageSlot(
        slot_start=a.slot_start,
        user_id=a.user_id,
        institution_id=a.institution_id,
        credits=a.credits + b.credits,
        messages=a.messages + b.messages,
        events=a.events + b.events,
        failed_events=a.failed_events + b.failed_events,
        endpoint=a.endpoint,
    )


async def lifetime_credits(
    session: AsyncSession, principal: Principal, pairs: Collection[tuple[int, str | None]]
) -> dict[tuple[int, str | None], Decimal]:
    """All-time credits of these (user, institution or None) pairs, forgotten usage included
    (it still costs); read from the lifetime totals, one row per pair."""
    credits: dict[tuple[int, str | None], Decimal] = {}
    keys = sorted((user, institution or PERSONAL_INSTANCE) for user, institution in pairs)
    for index in range(0, len(keys), LOOKUP_CHUNK):
        rows = await session.execute(
            select(UsageTotal.user_id, UsageTotal.institution_id, UsageTotal.credits).where(
                readable_usage(principal, UsageTotal),
                tuple_(UsageTotal.user_id, UsageTotal.instance).in_(
                    keys[index : index + LOOKUP_CHUNK]
                ),
            )
        )
        credits.update({(row.user_id, row.institution_id): row.credits for row in rows})
    return credits


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events of a user to list: an optional instance and [start, end) window."""

    instance: str | None = None  # `personal`, an institution id, or None for every instance
    start: datetime | None = None
    end: datetime | None = None

    def conditions(self, principal: Principal) -> list[ColumnElement[bool]]:
        return [readable_usage(principal), *self.narrowing()]

    def narrowing(self) -> list[ColumnElement[bool]]:
        """The filter's own conditions, without the caller's scope."""
        conditions: list[ColumnElement[bool]] = []
        if self.instance == PERSONAL_INSTANCE:
            conditions.append(UsageEvent.institution_id.is_(None))
        elif self.instance is not None:
            conditions.append(UsageEvent.institution_id == self.instance)
        if self.start is not None:
            conditions.append(UsageEvent.occurred_at >= self.start)
        if self.end is not None:
            conditions.append(UsageEvent.occurred_at < self.end)
        return conditions


async def usage_event_pages(
    session: AsyncSession,
    principal: Principal,
    user_ids: Sequence[int],
    event_filter: EventFilter,
    *,
    first: int,
    before: tuple[datetime, int] | None,
) -> dict[int, list[EventRow]]:
    """Up to `first + 1` newest readable events of each user (older than `before`): each
    user's page stops after its rows of the (user, time, id) index, whatever their history
    (of one instance: of the (user, instance, time, id) index). Rows of columns, not ORM
    objects: a nested read copies hundreds of them into its answer."""
    conditions = event_filter.narrowing()
    if before is not None:
        occurred_at, event_id = before
        conditions.append(
            or_(
                UsageEvent.occurred_at < occurred_at,
                and_(UsageEvent.occurred_at == occurred_at, UsageEvent.id < event_id),
            )
        )
    pages: dict[int, list[EventRow]] = {user_id: [] for user_id in user_ids}
    span = known_span(session)
    bands = occurred_at_bands(span) if span is not None else ()
    for users, scope in _scopes_of_pages(principal, user_ids):
        statements = page_per_parent_statements(
            dialect_of(session),
            UsageEvent,
            UsageEvent.user_id,
            users,
            [scope, *conditions],
            EVENTS_NEWEST_FIRST,
            first + 1,
            columns=True,
            bands=bands,
        )
        for event in await read_column_pages(session, statements):
            pages[event.user_id].append(event)
    return pages


def _scopes_of_pages(
    principal: Principal, user_ids: Sequence[int]
) -> list[tuple[list[int], ColumnElement[bool]]]:
    """The users grouped by the clause their pages need (`usage_page_scope`); users with
    nothing readable are not asked."""
    if not splits_pages(principal):
        return [(list(user_ids), readable_usage(principal))]
    own = [user_id for user_id in user_ids if user_id == principal.user_id]
    others = [user_id for user_id in user_ids if user_id != principal.user_id]
    scopes = []
    for users, of_caller in ((own, True), (others, False)):
        scope = usage_page_scope(principal, of_caller=of_caller)
        if users and scope is not None:
            scopes.append((users, scope))
    return scopes


def splits_pages(principal: Principal) -> bool:
    """Whether the caller's own page and other users' pages read through different clauses
    (a user caller who is not super)."""
    return (
        principal.kind is CallerKind.USER
        and principal.user_id is not None
        and not is_super(principal)
    )


def usage_page_scope(principal: Principal, *, of_caller: bool) -> ColumnElement[bool] | None:
    """`readable_usage` as it reads on one user's page: the caller's own (`of_caller`) or
    another user's; None when nothing of theirs is readable.

    A user caller reads their own events whole, and another user's only as
    `readable_usage_of_others` allows. On another user's page `readable_usage` (own OR
    others') is therefore just that second clause: said so, the page is a search of the
    (user, instance, time, id) index, where the OR left it walking the user's events in every
    instance, readable or not (50,000 personal events read for three of an institution's).
    Other callers (super, an API key, anonymous) read every page through `readable_usage`.
    """
    if not splits_pages(principal):
        return readable_usage(principal)
    return readable_usage(principal) if of_caller else readable_usage_of_others(principal)


async def usage_event_counts(
    session: AsyncSession,
    principal: Principal,
    user_ids: Sequence[int],
    event_filter: EventFilter,
) -> dict[int, int]:
    """How many readable events of each user match the filter, read from the rollups.

    Without a time window the all-time `usage_totals` answer (one row per user and instance);
    with one, the UTC day rollups count the whole days inside it and only the partial days at
    its edges are counted from events. So a count costs O(users x days), not O(events).
    """
    counts = dict.fromkeys(user_ids, 0)
    if not user_ids:
        return counts
    terms = _event_count_terms(sorted(set(user_ids)), principal, event_filter)
    statement = terms[0] if len(terms) == 1 else union_all(*terms)
    for user_id, count in await session.execute(statement):
        counts[user_id] += int(count or 0)
    return counts


def _event_count_terms(
    user_ids: list[int], principal: Principal, event_filter: EventFilter
) -> list[Select[Any]]:
    """The (user_id, count) selects whose sums are the counts: rollups, then edge events."""
    start, end = event_filter.start, event_filter.end
    if start is None and end is None:
        return [_rollup_count(UsageTotal, user_ids, principal, event_filter.instance)]
    # The whole UTC days inside [start, end): from the first midnight at or after start to the
    # last midnight at or before end.
    first_day = None if start is None else math.ceil(start.timestamp() / DAY_SECONDS) * DAY_SECONDS
    last_day = None if end is None else math.floor(end.timestamp() / DAY_SECONDS) * DAY_SECONDS
    if first_day is not None and last_day is not None and first_day >= last_day:
        return [_event_count(user_ids, principal, event_filter)]  # no whole day inside
    days = _rollup_count(UsageRollupDay, user_ids, principal, event_filter.instance)
    if first_day is not None:
        days = days.where(UsageRollupDay.slot_start >= first_day)
    if last_day is not None:
        days = days.where(UsageRollupDay.slot_start < last_day)
    terms: list[Select[Any]] = [days]
    if start is not None and first_day is not None and start.timestamp() < first_day:
        edge = EventFilter(event_filter.instance, start, datetime.fromtimestamp(first_day, UTC))
        terms.append(_event_count(user_ids, principal, edge))
    if end is not None and last_day is not None and last_day < end.timestamp():
        edge = EventFilter(event_filter.instance, datetime.fromtimestamp(last_day, UTC), end)
        terms.append(_event_count(user_ids, principal, edge))
    return terms


def _rollup_count(
    rollup: type[UsageTotal] | type[UsageRollupDay],
    user_ids: list[int],
    principal: Principal,
    instance: str | None,
) -> Select[Any]:
    return (
        select(rollup.user_id, func.sum(rollup.events))
        .where(*rollup_count_conditions(rollup, principal, instance), rollup.user_id.in_(user_ids))
        .group_by(rollup.user_id)
    )


def rollup_count_conditions(
    rollup: type[UsageTotal] | type[UsageRollupDay], principal: Principal, instance: str | None
) -> list[ColumnElement[bool]]:
    """The rollup rows whose `events` sum to a user's readable event count (of one instance:
    `personal` or an institution id, as `EventFilter.instance`)."""
    conditions = [readable_usage(principal, rollup)]
    if instance is not None:
        conditions.append(rollup.instance == instance)
    return conditions


def _event_count(
    user_ids: list[int], principal: Principal, event_filter: EventFilter
) -> Select[Any]:
    return (
        select(UsageEvent.user_id, func.count())
        .where(*event_filter.conditions(principal), UsageEvent.user_id.in_(user_ids))
        .group_by(UsageEvent.user_id)
    )


async def usage_events_by_id(
    session: AsyncSession, principal: Principal, ids: Sequence[int]
) -> dict[int, UsageEvent]:
    rows = await session.scalars(
        select(UsageEvent).where(readable_usage(principal), UsageEvent.id.in_(ids))
    )
    return {event.id: event for event in rows}
