"""Per-request DataLoaders: every relation in the graph is fetched in batches by key.

A `Loaders` is built for one request, inside its event loop, and bound to its caller: each
batch function opens its own session (Strawberry resolves sibling fields concurrently, and
one AsyncSession must not be shared between concurrent tasks) and reads through the
caller-scoped queries, so a loader can never return a row the caller may not read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiodataloader import DataLoader
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from usagegraph.auth.principal import Principal
from usagegraph.datasources import buckets, directory, usage, wallet_batches
from usagegraph.datasources.wallet import LedgerPosition
from usagegraph.db.models import LedgerEntry, Membership, Snapshot, UsageEvent


class Loaders:
    """The DataLoaders of one request."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], principal: Principal) -> None:
        self.sessions = sessions
        self.principal = principal
        self.user = self._by_key(directory.users_by_id)
        self.institution = self._by_key(directory.institutions_by_id)
        self.membership = self._by_key(directory.memberships_by_key)
        self.memberships_of_user = self._by_key(directory.memberships_of_users, default=list)
        self.member_count = self._by_key(directory.member_counts)
        self.member_page: DataLoader[tuple[str, int, int | None], list[Membership]] = self._grouped(
            self._member_pages
        )
        self.bucket = self._by_key(buckets.buckets_by_id)
        self.buckets_of_institution = self._by_key(buckets.buckets_of_institutions, default=list)
        # keys: (bucket_id, start_date, end_date, limit)
        self.snapshot_page: DataLoader[tuple[Any, ...], list[Snapshot]] = self._grouped(
            self._snapshot_pages
        )
        self.usage_event = self._by_key(usage.usage_events_by_id)
        # keys: (user_id, EventFilter, first, before_occurred_at, before_id)
        self.usage_event_page: DataLoader[tuple[Any, ...], list[UsageEvent]] = self._grouped(
            self._usage_event_pages
        )
        # keys: (user_id, EventFilter)
        self.usage_event_count: DataLoader[tuple[Any, ...], int] = self._grouped(
            self._usage_event_counts
        )
        self.wallet = self._by_key(wallet_batches.wallets_of_users)
        self.subscription = self._by_key(wallet_batches.subscriptions_of_users)
        self.ledger_entry = self._by_key(wallet_batches.ledger_entries_by_id)
        # keys: (user_id, type, start, end, first, before_created_at, before_id)
        self.ledger_page: DataLoader[tuple[Any, ...], list[LedgerEntry]] = self._grouped(
            self._ledger_pages
        )
        # keys: (user_id, type, start, end)
        self.ledger_count: DataLoader[tuple[Any, ...], int] = self._grouped(self._ledger_counts)

    def _by_key(
        self,
        fetch: Callable[[AsyncSession, Principal, Sequence[Any]], Awaitable[dict[Any, Any]]],
        default: Callable[[], Any] | None = None,
    ) -> DataLoader[Any, Any]:
        """A loader for a fetch that maps keys to values (missing keys load as None)."""

        async def batch(keys: list[Any]) -> list[Any]:
            async with self.sessions() as session:
                found = await fetch(session, self.principal, keys)
            return [found.get(key, default() if default else None) for key in keys]

        return DataLoader(batch)

    def _grouped(
        self, fetch: Callable[[Any, list[Any]], Awaitable[dict[Any, Any]]]
    ) -> DataLoader[Any, Any]:
        """A loader whose keys are (parent, *arguments): one fetch per distinct arguments."""

        async def batch(keys: list[tuple[Any, ...]]) -> list[Any]:
            groups: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
            for parent, *arguments in keys:
                groups[tuple(arguments)].append(parent)
            results: dict[tuple[Any, ...], Any] = {}
            for arguments, parents in groups.items():
                found = await fetch(arguments, parents)
                for parent in parents:
                    results[(parent, *arguments)] = found[parent]
            return [results[key] for key in keys]

        return DataLoader(batch)

    async def _usage_event_pages(
        self, arguments: tuple[Any, ...], user_ids: list[int]
    ) -> dict[int, list[UsageEvent]]:
        event_filter, first, before_at, before_id = arguments
        before = (before_at, before_id) if before_at is not None else None
        async with self.sessions() as session:
            return await usage.usage_event_pages(
                session, self.principal, user_ids, event_filter, first=first, before=before
            )

    async def _usage_event_counts(
        self, arguments: tuple[Any, ...], user_ids: list[int]
    ) -> dict[int, int]:
        (event_filter,) = arguments
        async with self.sessions() as session:
            return await usage.usage_event_counts(session, self.principal, user_ids, event_filter)

    async def _snapshot_pages(
        self, arguments: tuple[Any, ...], bucket_ids: list[str]
    ) -> dict[str, list[Snapshot]]:
        start, end, limit = arguments
        async with self.sessions() as session:
            return await buckets.snapshots_of_buckets(
                session, self.principal, bucket_ids, start=start, end=end, limit_per_bucket=limit
            )

    async def _ledger_pages(
        self, arguments: tuple[Any, ...], user_ids: list[int]
    ) -> dict[int, list[LedgerEntry]]:
        entry_type, start, end, first, before_created_at, before_id = arguments
        before = (
            LedgerPosition(created_at=before_created_at, id=before_id)
            if before_created_at is not None
            else None
        )
        async with self.sessions() as session:
            return await wallet_batches.ledger_pages(
                session,
                self.principal,
                user_ids,
                entry_type=entry_type,
                start=start,
                end=end,
                first=first,
                before=before,
            )

    async def _ledger_counts(
        self, arguments: tuple[Any, ...], user_ids: list[int]
    ) -> dict[int, int]:
        entry_type, start, end = arguments
        async with self.sessions() as session:
            return await wallet_batches.ledger_counts(
                session, self.principal, user_ids, entry_type=entry_type, start=start, end=end
            )

    async def _member_pages(
        self, arguments: tuple[int, int | None], institution_ids: list[str]
    ) -> dict[str, list[Membership]]:
        first, after_user_id = arguments
        async with self.sessions() as session:
            return await directory.member_pages(
                session, self.principal, institution_ids, first=first, after_user_id=after_user_id
            )
