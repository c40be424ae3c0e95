"""Per-request DataLoaders: every relation in the graph is fetched in batches by key.

A `Loaders` is built for one request, inside its event loop, and bound to its caller. Keys of
the page and count loaders are small frozen dataclasses naming their parent and arguments
(`UsageEventPageKey`, ...), so a caller cannot misplace one of seven positional values. Each
batch function opens its own session (Strawberry resolves sibling fields concurrently, and
one AsyncSession must not be shared between concurrent tasks) and reads through the
caller-scoped queries, so a loader can never return a row the caller may not read.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from datetime import date, datetime
from functools import cached_property
from typing import Any, ClassVar, Protocol

from aiodataloader import DataLoader as _DataLoader
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from usagegraph.auth.principal import Principal
from usagegraph.datasources import billing, buckets, directory, usage, wallet_batches
from usagegraph.datasources.read_connection import ReadConnection
from usagegraph.datasources.usage import EventFilter
from usagegraph.datasources.wallet import LedgerPosition
from usagegraph.db.models import Snapshot, User

# --- the keys of the grouped loaders -------------------------------------------------------
# A grouped key names one parent (`PARENT` names its field) and the arguments of its page.
# Keys that differ only by their parent are fetched together, in one statement.


class DataLoader(_DataLoader[Any, Any]):
    """aiodataloader's loader, whose answers survive a cancelled asker.

    A key's future is shared by every field that asked for it (and cached for the request).
    graphql-core cancels the sibling fields of a failed non-null field; cancelling a task
    cancels the future it awaits, so one cancelled asker cancelled the shared answer under
    every other field waiting for it, and a CancelledError escaped the request as a 500.
    Each asker now awaits a shield of the shared future: cancelling it cancels only its own
    wait.
    """

    def __init__(self, batch_load_fn: Callable[[list[Any]], Awaitable[list[Any]]]) -> None:
        # aiodataloader's cache of answers (key -> future), held here so `known` can read it.
        self.answers: dict[Hashable, asyncio.Future[Any]] = {}
        super().__init__(batch_load_fn, cache_map=self.answers)

    def known(self, key: Any) -> Any:
        """The key's value when it is already known (loaded or primed), else None: a field
        can then answer at once instead of awaiting (graphql-core's async machinery costs
        more than the value)."""
        future = self.answers.get(self.get_cache_key(key))
        if future is None or not future.done() or future.cancelled():
            return None
        return None if future.exception() is not None else future.result()

    def load(self, key: Any) -> asyncio.Future[Any]:
        shared = super().load(key)
        # Nobody may be left to read a failure (every asker cancelled): read it here, so that
        # asyncio does not log it as never retrieved.
        shared.add_done_callback(_retrieve)
        return asyncio.shield(shared)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class GroupedKey(Protocol):
    """A loader key made of one parent id and the arguments shared by its batch siblings."""

    PARENT: ClassVar[str]


@dataclass(frozen=True, slots=True)
class UsageEventPageKey:
    """`first` events of a user matching `event_filter`, older than `before` (time, id)."""

    PARENT: ClassVar[str] = "user_id"
    user_id: int
    event_filter: EventFilter
    first: int
    before: tuple[datetime, int] | None = None


@dataclass(frozen=True, slots=True)
class UsageEventCountKey:
    """How many events of a user match `event_filter`."""

    PARENT: ClassVar[str] = "user_id"
    user_id: int
    event_filter: EventFilter


@dataclass(frozen=True, slots=True)
class LedgerPageKey:
    """`first` ledger entries of a user (optional type, created_at window [start, end)),
    older than `before`."""

    PARENT: ClassVar[str] = "user_id"
    user_id: int
    entry_type: str | None
    start: datetime | None
    end: datetime | None
    first: int
    before: LedgerPosition | None = None


@dataclass(frozen=True, slots=True)
class LedgerCountKey:
    """How many ledger entries of a user match the type and created_at window."""

    PARENT: ClassVar[str] = "user_id"
    user_id: int
    entry_type: str | None
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True, slots=True)
class MemberPageKey:
    """`first` memberships of an institution after `after_user_id`, by user id."""

    PARENT: ClassVar[str] = "institution_id"
    institution_id: str
    first: int
    after_user_id: int | None = None


@dataclass(frozen=True, slots=True)
class SnapshotPageKey:
    """At most `limit` snapshots of a bucket dated [start, end], newest first."""

    PARENT: ClassVar[str] = "bucket_id"
    bucket_id: str
    start: date | None
    end: date | None
    limit: int


@dataclass(frozen=True, slots=True)
class BillingMonthsKey:
    """Messages of an institution in each month between consecutive `boundaries`."""

    PARENT: ClassVar[str] = "institution_id"
    institution_id: str
    boundaries: tuple[datetime, ...]


def _parent_of(key: GroupedKey) -> Hashable:
    parent: Hashable = getattr(key, key.PARENT)
    return parent


def _siblings_of(key: GroupedKey) -> tuple[Any, ...]:
    """Everything in the key but its parent: keys equal here share one fetch."""
    return tuple(getattr(key, field.name) for field in fields(key) if field.name != key.PARENT)


class Loaders:
    """The DataLoaders of one request, each made when a field first asks for it (a request
    uses a few of them; making all twenty cost more than the compiled read path's own work)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        principal: Principal,
        reads: ReadConnection | None = None,
        caller_user: User | None = None,
    ) -> None:
        self.sessions = sessions
        self.principal = principal
        # Batches share the request's autocommit read connection when there is one.
        self.reads = reads
        self.caller_user = caller_user

    @cached_property
    def user(self) -> DataLoader[Any, Any]:
        """Users by id; the caller's own row, read when the request was authenticated, is
        known already (`readable_users` always lets a user read themselves)."""
        loader = self._by_key(directory.users_by_id)
        if self.caller_user is not None and self.caller_user.id == self.principal.user_id:
            loader.prime(self.caller_user.id, self.caller_user)
        return loader

    @cached_property
    def institution(self) -> DataLoader[Any, Any]:
        return self._by_key(directory.institutions_by_id)

    @cached_property
    def membership(self) -> DataLoader[Any, Any]:
        return self._by_key(directory.memberships_by_key)

    @cached_property
    def memberships_of_user(self) -> DataLoader[Any, Any]:
        return self._by_key(directory.memberships_of_users, default=list)

    @cached_property
    def member_count(self) -> DataLoader[Any, Any]:
        return self._by_key(directory.member_counts)

    @cached_property
    def member_page(self) -> DataLoader[MemberPageKey, list[directory.MembershipRow]]:
        return self._grouped(self._member_pages)

    @cached_property
    def bucket(self) -> DataLoader[Any, Any]:
        return self._by_key(buckets.buckets_by_id)

    @cached_property
    def buckets_of_institution(self) -> DataLoader[Any, Any]:
        return self._by_key(buckets.buckets_of_institutions, default=list)

    @cached_property
    def snapshot_page(self) -> DataLoader[SnapshotPageKey, list[Snapshot]]:
        return self._grouped(self._snapshot_pages)

    @cached_property
    def usage_event(self) -> DataLoader[Any, Any]:
        return self._by_key(usage.usage_events_by_id)

    @cached_property
    def usage_event_page(self) -> DataLoader[UsageEventPageKey, list[usage.EventRow]]:
        return self._grouped(self._usage_event_pages)

    @cached_property
    def usage_event_count(self) -> DataLoader[UsageEventCountKey, int]:
        return self._grouped(self._usage_event_counts)

    @cached_property
    def wallet(self) -> DataLoader[Any, Any]:
        return self._by_key(wallet_batches.wallets_of_users)

    @cached_property
    def subscription(self) -> DataLoader[Any, Any]:
        return self._by_key(wallet_batches.subscriptions_of_users)

    @cached_property
    def ledger_entry(self) -> DataLoader[Any, Any]:
        return self._by_key(wallet_batches.ledger_entries_by_id)

    @cached_property
    def ledger_page(self) -> DataLoader[LedgerPageKey, list[wallet_batches.EntryRow]]:
        return self._grouped(self._ledger_pages)

    @cached_property
    def ledger_count(self) -> DataLoader[LedgerCountKey, int]:
        return self._grouped(self._ledger_counts)

    @cached_property
    def billing_facts(self) -> DataLoader[Any, Any]:
        return self._by_key(billing.billing_facts_of)

    @cached_property
    def billing_months(self) -> DataLoader[BillingMonthsKey, list[int]]:
        return self._grouped(self._billing_months)

    async def close(self) -> None:
        """Drop this request's loaders and what they cached, once the answer is sent.

        Each loader's batch function is a closure over these `Loaders`, which hold the loader:
        a reference cycle, so without this everything the request loaded (rows, ORM objects,
        futures; ~3,600 objects for 100 members' event pages) waits for the cyclic garbage
        collector, whose full passes then cost tens of milliseconds. Emptying the loaders
        breaks the cycle and reference counting frees the request's objects at once.
        """
        for name, value in list(vars(self).items()):
            if isinstance(value, _DataLoader):
                value.clear_all()
                del self.__dict__[name]
        self.caller_user = None

    def read_session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """Where a batch (or another read-only rule of the request) reads: the shared read
        connection, or a session of its own."""
        if self.reads is not None:
            return self.reads.session()
        return self.sessions()

    def _by_key(
        self,
        fetch: Callable[[AsyncSession, Principal, Sequence[Any]], Awaitable[dict[Any, Any]]],
        default: Callable[[], Any] | None = None,
    ) -> DataLoader[Any, Any]:
        """A loader for a fetch that maps keys to values (missing keys load as None)."""

        async def batch(keys: list[Any]) -> list[Any]:
            async with self.read_session() as session:
                found = await fetch(session, self.principal, keys)
            return [found.get(key, default() if default else None) for key in keys]

        return DataLoader(batch)

    def _grouped(self, fetch: Callable[[Any, list[Any]], Awaitable[dict[Any, Any]]]) -> Any:
        """A loader of `GroupedKey`s: one fetch per distinct arguments, for all their parents.

        `fetch` gets one key of the group (for its arguments) and the group's parents.
        """

        async def batch(keys: list[Any]) -> list[Any]:
            groups: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
            for key in keys:
                groups[_siblings_of(key)].append(key)
            results: dict[Any, Any] = {}
            for members in groups.values():
                parents = list(dict.fromkeys(_parent_of(key) for key in members))
                found = await fetch(members[0], parents)
                for key in members:
                    results[key] = found[_parent_of(key)]
            return [results[key] for key in keys]

        return DataLoader(batch)

    async def _usage_event_pages(
        self, key: UsageEventPageKey, user_ids: list[int]
    ) -> dict[int, list[usage.EventRow]]:
        async with self.read_session() as session:
            return await usage.usage_event_pages(
                session,
                self.principal,
                user_ids,
                key.event_filter,
                first=key.first,
                before=key.before,
            )

    async def _usage_event_counts(
        self, key: UsageEventCountKey, user_ids: list[int]
    ) -> dict[int, int]:
        async with self.read_session() as session:
            return await usage.usage_event_counts(
                session, self.principal, user_ids, key.event_filter
            )

    async def _snapshot_pages(
        self, key: SnapshotPageKey, bucket_ids: list[str]
    ) -> dict[str, list[Snapshot]]:
        async with self.read_session() as session:
            return await buckets.snapshots_of_buckets(
                session,
                self.principal,
                bucket_ids,
                start=key.start,
                end=key.end,
                limit_per_bucket=key.limit,
            )

    async def _ledger_pages(
        self, key: LedgerPageKey, user_ids: list[int]
    ) -> dict[int, list[wallet_batches.EntryRow]]:
        async with self.read_session() as session:
            return await wallet_batches.ledger_pages(
                session,
                self.principal,
                user_ids,
                entry_type=key.entry_type,
                start=key.start,
                end=key.end,
                first=key.first,
                before=key.before,
            )

    async def _ledger_counts(self, key: LedgerCountKey, user_ids: list[int]) -> dict[int, int]:
        async with self.read_session() as session:
            return await wallet_batches.ledger_counts(
                session,
                self.principal,
                user_ids,
                entry_type=key.entry_type,
                start=key.start,
                end=key.end,
            )

    async def _member_pages(
        self, key: MemberPageKey, institution_ids: list[str]
    ) -> dict[str, list[directory.MembershipRow]]:
        """The pages; the members' users they came with are answers of the user loader."""
        async with self.read_session() as session:
            found = await directory.member_pages(
                session,
                self.principal,
                institution_ids,
                first=key.first,
                after_user_id=key.after_user_id,
            )
        for user in found.users:
            self.user.prime(user.id, user)
        return found.pages

    async def _billing_months(
        self, key: BillingMonthsKey, institution_ids: list[str]
    ) -> dict[str, list[int]]:
        async with self.read_session() as session:
            return await billing.messages_by_month_of(
                session, self.principal, institution_ids, key.boundaries
            )
