"""SQL of usage ingestion: member caps and their locks, live idempotency keys, lifetime
credits per user and instance, and the multi-row inserts of events and keys.

Set-based on purpose: a batch of a thousand events costs a handful of statements, not a
thousand. The caller (`resolvers.usage_recording`) has already decided who may write what; these
functions are not scoped by caller, because writes are authorised event by event before
anything here runs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    any_,
    bindparam,
    delete,
    insert,
    literal,
    literal_column,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.datasources.bulk_inserts import (
    allocate_ids,
    insert_returning_ids,
    json_rows,
    rows_json,
    rows_with_defaults,
)
from usagegraph.datasources.transactions import dialect_of
from usagegraph.datasources.usage_rollups import (
    SUMMED_EVENT_COLUMNS,
    UsageFact,
    add_usage,
    forget_usage,
    summing_upserts,
)
from usagegraph.db.models import (
    PERSONAL_INSTANCE,
    Institution,
    Membership,
    UsageEvent,
    UsageIdempotencyKey,
    UsageTotal,
    User,
)
from usagegraph.live.changes import note_change
from usagegraph.live.channels import usage_channel

MemberKey = tuple[int, str]  # (user id, institution id)
UsageKey = tuple[int, str]  # (user id, instance: an institution id or `personal`)
KeyRef = tuple[int, str]  # (user id, idempotency key)


# A primary-key probe's LIMIT, as a literal: the planner knows it, and it keeps the LATERAL
# subquery from being flattened into a join.
_ONE = literal_column("1")


@dataclass(frozen=True, slots=True)
class MemberCap:
    """A member's cap in an institution (cap_limit, else default_cap) and its enforcement,
    and their lifetime credits there as read with it (without a lock on them: exact for a
    member whose usage is not serialised anyway, re-read under the lock for capped ones)."""

    cap: Decimal | None
    enforce: bool
    lifetime: Decimal = Decimal(0)


def _among(dialect: str, column: Any, name: str, item_type: Any) -> Any:
    """`column IN :name`: one array parameter on PostgreSQL (a thousand-key batch would
    otherwise render and plan a thousand parameters), an expanding IN on SQLite."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(item_type)))
    return column.in_(bindparam(name, expanding=True))


@cache
def _member_caps_statement(dialect: str, lock: bool) -> Any:
    """The caps of the given (user, institution) pairs, built once per dialect (every usage
    write runs it: building a statement costs more than running its cached compiled form).

    PostgreSQL gets the pairs as JSON rows, each probing its membership by primary key in a
    LATERAL subquery that the planner cannot turn into a join (its LIMIT keeps it apart): a
    write's cost follows its events, whatever the institution's size and however stale the
    statistics. Matched by two arrays instead, every write read all the memberships of its
    institution (1,000 rows for one event in the benchmark's institution). Locked rows are
    locked in the order of the pairs, which the caller sorts. SQLite gets the users and the
    institutions (a superset of the pairs, which the caller narrows).
    """
    columns = (
        Membership.user_id,
        Membership.institution_id,
        Membership.cap_limit,
        Institution.default_cap,
        Institution.enforce_caps,
        UsageTotal.credits.label("lifetime"),
    )
    statement = (
        select(*columns)
        .join(Institution, Institution.id == Membership.institution_id)
        .outerjoin(
            UsageTotal,
            (UsageTotal.user_id == Membership.user_id)
            & (UsageTotal.instance == Membership.institution_id),
        )
    )
    if dialect == "postgresql":
        wanted = json_rows(Membership.__table__, ("user_id", "institution_id")).subquery("wanted")
        probe = statement.where(
            Membership.user_id == wanted.c.user_id,
            Membership.institution_id == wanted.c.institution_id,
        ).limit(_ONE)
        found = (probe.with_for_update(of=Membership) if lock else probe).lateral("found")
        return select(*found.c).select_from(wanted).join(found, true())
    statement = statement.where(
        _among(dialect, Membership.user_id, "users", BigInteger),
        _among(dialect, Membership.institution_id, "institutions", String),
    ).order_by(Membership.user_id, Membership.institution_id)
    return statement.with_for_update(of=Membership) if lock else statement


def _pair_values(
    dialect: str, pairs: Collection[tuple[int, str]], column: str, plural: str
) -> dict[str, Any]:
    """The parameters of a statement that reads rows by (user_id, `column`) pairs: on
    PostgreSQL the pairs as JSON rows, in order (each probed by primary key); on SQLite the
    users and the `plural` apart (a superset of the pairs, which the caller narrows)."""
    if dialect == "postgresql":
        rows = [{"user_id": user, column: other} for user, other in sorted(pairs)]
        return {"rows": rows_json(rows)}
    return {
        "users": sorted({user for user, _ in pairs}),
        plural: sorted({other for _, other in pairs}),
    }


async def member_caps(
    session: AsyncSession, members: Collection[MemberKey], *, lock: bool = False
) -> dict[MemberKey, MemberCap]:
    """The caps of these (user, institution) memberships; missing keys are not members.

    With `lock`, the membership rows are locked (in key order) for the transaction: the lock
    that serialises usage against one member's cap.
    """
    if not members:
        return {}
    dialect = dialect_of(session)
    values = _pair_values(dialect, members, "institution_id", "institutions")
    rows = await session.execute(_member_caps_statement(dialect, lock), values)
    # Rows unpacked as tuples: a batch reads up to a thousand, and named access costs more.
    return {
        (user_id, institution_id): MemberCap(
            cap=cap_limit if cap_limit is not None else default_cap,
            enforce=bool(enforce_caps),
            lifetime=lifetime or Decimal(0),
        )
        for user_id, institution_id, cap_limit, default_cap, enforce_caps, lifetime in rows
        if (user_id, institution_id) in members
    }


async def existing_users(session: AsyncSession, user_ids: Collection[int]) -> set[int]:
    if not user_ids:
        return set()
    return set(await session.scalars(select(User.id).where(User.id.in_(sorted(user_ids)))))


async def existing_institutions(session: AsyncSession, ids: Collection[str]) -> set[str]:
    if not ids:
        return set()
    return set(await session.scalars(select(Institution.id).where(Institution.id.in_(sorted(ids)))))


@dataclass(frozen=True, slots=True)
class ClaimedKey:
    """A live idempotency key: the event it produced (None once that event is gone) and the
    digest of the payload it was first used with (None for keys older than the digest)."""

    event: UsageEvent | None
    payload_digest: str | None


async def live_keys(
    session: AsyncSession, refs: Collection[KeyRef], since: datetime
) -> dict[KeyRef, ClaimedKey]:
    """Idempotency keys claimed at or after `since` (still live) and their first events.

    A live key whose event no longer exists (its institution was deleted, taking its usage
    along) maps to None. Keys are read by (user, key) pair on PostgreSQL, and by user and
    key separately on SQLite, matched as pairs here; the events are read only for keys that
    matched (replays are the rare case, and joining them in made PostgreSQL's generic plan
    ten times slower).
    """
    if not refs:
        return {}
    dialect = dialect_of(session)
    values = _pair_values(dialect, refs, "key", "keys")
    rows = await session.execute(_live_keys_statement(dialect), {**values, "since": since})
    found = {
        (user_id, key): (event_id, digest)
        for user_id, key, event_id, digest in rows
        if (user_id, key) in refs
    }
    if not found:
        return {}
    ids = sorted({event_id for event_id, _ in found.values()})
    events = await session.scalars(_events_statement(dialect), {"ids": ids})
    by_id = {event.id: event for event in events}
    return {
        ref: ClaimedKey(by_id.get(event_id), digest) for ref, (event_id, digest) in found.items()
    }


@cache
def _live_keys_statement(dialect: str) -> Any:
    """Key rows claimed since `since`, built once (see above).

    PostgreSQL gets the (user, key) pairs as JSON rows, each probing the primary key in a
    LATERAL subquery that its LIMIT keeps from becoming a join: one index probe per key,
    always. As a join, the generic plan of a small write was a hash join over a sequential
    scan of every key (the planner guesses 100 JSON rows and a third of the keys live): 2.5 ms
    for one event once the table held 15,000 keys, and growing with it. Matched by two arrays
    (`key = ANY(...) AND user_id = ANY(...)`), a batch read every key of its users. SQLite gets
    the keys and the users, matched as pairs by the caller.
    """
    keys = UsageIdempotencyKey
    statement = select(keys.user_id, keys.key, keys.usage_event_id, keys.payload_digest)
    if dialect == "postgresql":
        wanted = json_rows(keys.__table__, ("user_id", "key")).subquery("wanted")
        found = (
            statement.where(
                keys.user_id == wanted.c.user_id,
                keys.key == wanted.c.key,
                keys.created_at >= bindparam("since"),
            )
            .limit(_ONE)
            .lateral("found")
        )
        return select(*found.c).select_from(wanted).join(found, true())
    return statement.where(
        _among(dialect, keys.key, "keys", String),
        _among(dialect, keys.user_id, "users", BigInteger),
        keys.created_at >= bindparam("since"),
    )


@cache
def _events_statement(dialect: str) -> Any:
    return select(UsageEvent).where(_among(dialect, UsageEvent.id, "ids", BigInteger))


async def drop_keys(session: AsyncSession, refs: Collection[KeyRef]) -> None:
    """Delete key rows (those whose events are gone, so the keys can be used again)."""
    if refs:
        await session.execute(
            delete(UsageIdempotencyKey).where(
                tuple_(UsageIdempotencyKey.user_id, UsageIdempotencyKey.key).in_(sorted(refs))
            )
        )


async def lifetime_credits(
    session: AsyncSession, keys: Collection[UsageKey]
) -> dict[UsageKey, Decimal]:
    """All-time credits of each user in each instance: forgotten, failed and over-cap usage
    included (all of it cost credits). Read from the lifetime totals: one row each; a key
    without usage is absent."""
    if not keys:
        return {}
    statement = select(UsageTotal.user_id, UsageTotal.instance, UsageTotal.credits).where(
        tuple_(UsageTotal.user_id, UsageTotal.instance).in_(sorted(keys))
    )
    rows = await session.execute(statement)
    return {(user_id, instance): total or Decimal(0) for user_id, instance, total in rows}


@dataclass(frozen=True, slots=True)
class InsertedEvents:
    """Events inserted but not yet counted in the rollups: their ids in the order given,
    and the rows (on PostgreSQL also as the text they were sent as, to be counted from)."""

    ids: list[int]
    rows: Sequence[dict[str, Any]]
    sent: str | None = None  # PostgreSQL: the rows as the JSON text they were inserted from


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert usage events and count them in the rollups (same transaction); their ids, in
    the order given. For writers that hold no other rows: the importer, fixtures."""
    inserted = await insert_uncounted_events(session, rows)
    await count_inserted_events(session, inserted)
    return inserted.ids


async def insert_uncounted_events(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> InsertedEvents:
    """Insert usage events, not yet counted in the rollups. The caller must
    `count_inserted_events` in the same transaction.

    Counting is a step of its own so that a usage write can run it last: it updates the
    rollup rows of the current slots, which every concurrent writer of the same users
    updates too, and a row stays locked from its update to the commit. Inserting the events
    and claiming their keys first keeps that lock short.

    PostgreSQL: the ids are drawn from the sequence first; then one statement inserts the
    rows, sent as one JSON text (`bulk_inserts.json_rows`). SQLite: a multi-row insert.
    """
    if not rows:
        return InsertedEvents([], rows)
    note_usage_changes(session, ((row["user_id"], row.get("institution_id")) for row in rows))
    table = UsageEvent.__table__
    if dialect_of(session) != "postgresql":
        return InsertedEvents(await insert_returning_ids(session, table, rows), rows)
    ids = await allocate_ids(session, table, len(rows))
    sent = rows_json(rows_with_defaults(table, rows, id=ids))
    await session.execute(_inserting(), {"rows": sent})
    return InsertedEvents(ids, rows, sent)


async def count_inserted_events(session: AsyncSession, inserted: InsertedEvents) -> None:
    """Add just-inserted events to every rollup table.

    PostgreSQL: one statement, the JSON text the events were inserted from sent again and
    summed by the database into each table, in lock order. SQLite: the sums made here.
    """
    if not inserted.rows:
        return
    if inserted.sent is None:
        await add_usage(session, (UsageFact.of_row(row) for row in inserted.rows))
        return
    await session.execute(_counting(), {"rows": inserted.sent})


@cache
def _inserting() -> Any:
    """PostgreSQL: the rows given as JSON, inserted."""
    table = UsageEvent.__table__
    columns = tuple(column.name for column in table.c)
    rows = json_rows(table, columns)
    return insert(table).from_select(columns, rows, include_defaults=False)


@cache
def _counting() -> Any:
    """PostgreSQL: rows given as JSON summed into every rollup table, each upsert a
    data-modifying CTE of one statement (each runs exactly once)."""
    given = json_rows(UsageEvent.__table__, SUMMED_EVENT_COLUMNS).cte("given")
    upserts = [
        upsert.cte(f"add_{index}")
        for index, upsert in enumerate(summing_upserts("postgresql", given))
    ]
    return select(literal(1)).add_cte(*upserts)


async def claim_keys(
    session: AsyncSession, rows: Sequence[dict[str, Any]], stale_before: datetime
) -> set[KeyRef]:
    """Store idempotency keys; return the ones this transaction now holds.

    A key row that expired (claimed before `stale_before`) is taken over. A live key of
    another transaction is not: it is missing from the result, and the caller must treat
    the race as lost (the primary key decided it). Only the conflicting row itself may be
    consulted here: on PostgreSQL a subquery would read the statement's snapshot, older than
    the row a concurrent winner just committed.
    """
    if not rows:
        return set()
    dialect = dialect_of(session)
    if dialect == "postgresql":
        values = {"rows": rows_json(rows), "stale_before": stale_before}
        result = await session.execute(_claiming(dialect), values)
    else:
        result = await session.execute(
            _claiming(dialect), [{**row, "stale_before": stale_before} for row in rows]
        )
    return {(row.user_id, row.key) for row in result}


_KEY_COLUMNS = ("user_id", "key", "usage_event_id", "created_at", "payload_digest")


@cache
def _claiming(dialect_name: str) -> Any:
    """The key-claiming upsert, built once (every usage write runs it): on PostgreSQL fed
    the rows as JSON (the keys of a batch are distinct, so no row is touched twice)."""
    table = UsageIdempotencyKey.__table__
    if dialect_name == "postgresql":
        statement = postgresql.insert(table)
        statement = statement.from_select(_KEY_COLUMNS, json_rows(table, _KEY_COLUMNS))
    else:
        statement = sqlite.insert(table)
    return statement.on_conflict_do_update(
        index_elements=[table.c.user_id, table.c.key],
        set_={
            "usage_event_id": statement.excluded.usage_event_id,
            "created_at": statement.excluded.created_at,
            "payload_digest": statement.excluded.payload_digest,
        },
        where=table.c.created_at < bindparam("stale_before"),
    ).returning(table.c.user_id, table.c.key)


async def forget_events(
    session: AsyncSession,
    user_id: int,
    *,
    event_ids: Sequence[int] | None = None,
    before: datetime | None = None,
) -> list[int]:
    """Flag the user's not yet forgotten events (by id, or occurred before a time), and move
    them to the forgotten rollups; their ids.

    Always narrowed to `user_id`: an id of someone else's event matches nothing.
    """
    conditions = [UsageEvent.user_id == user_id, UsageEvent.forgotten.is_(False)]
    if event_ids is not None:
        conditions.append(UsageEvent.id.in_(sorted(set(event_ids))))
    if before is not None:
        conditions.append(UsageEvent.occurred_at < before)
    statement = (
        update(UsageEvent)
        .where(*conditions)
        .values(forgotten=True)
        .returning(UsageEvent.id, *_FACT_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(statement)).mappings().all()
    await forget_usage(session, [UsageFact.of_row({**row, "forgotten": False}) for row in rows])
    note_usage_changes(session, ((row["user_id"], row["institution_id"]) for row in rows))
    return sorted(row["id"] for row in rows)


def note_usage_changes(session: AsyncSession, pairs: Iterable[tuple[int, str | None]]) -> None:
    """Announce, once this transaction commits, whose usage changed in which instance (the
    live `usageUpdated` subscriptions); every write of usage rows passes here."""
    for user_id, institution_id in set(pairs):
        instance = institution_id if institution_id is not None else PERSONAL_INSTANCE
        note_change(session, usage_channel(instance, user_id), user_id)


_FACT_COLUMNS = (
    UsageEvent.user_id,
    UsageEvent.institution_id,
    UsageEvent.occurred_at,
    UsageEvent.credits,
    UsageEvent.messages,
    UsageEvent.status,
    UsageEvent.endpoint,
)
