"""A user's account in the graph: credit balance, ledger, subscription and usage statistics.

These render the same result objects the `/auth/account/...` shim renders (resolvers/account
and resolvers/ledger), so the graph and REST cannot disagree on a number.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Self

import strawberry
from strawberry import relay

from usagegraph.resolvers import wallet_account, wallet_ledger
from usagegraph.schema.connections import CountedConnection, build_connection
from usagegraph.schema.context import Info
from usagegraph.schema.fields import fields_of
from usagegraph.schema.node_ids import integer_keys, load_keys
from usagegraph.schema.pagination import encode_cursor, moment_id_cursor, page_size
from usagegraph.schema.shape_types import graph_type_of, shape_fields_of

LedgerType = strawberry.enum(
    wallet_ledger.LedgerType,
    description="credit adds the amount, debit subtracts it, adjustment carries its sign.",
)
AccountPeriod = strawberry.enum(
    wallet_account.AccountPeriod, description="The calendar period of usage statistics (UTC)."
)


CreditBalance = graph_type_of(
    wallet_account.CreditBalance,
    name="CreditBalance",
    description="A wallet's balance (seed 003's CreditBalance).",
)
PlanSubscription = graph_type_of(
    wallet_account.SubscriptionDetails,
    name="PlanSubscription",
    description="A user's plan subscription (named so that `Subscription` stays free for the "
    "graph's subscription root).",
)
UsageStats = graph_type_of(
    wallet_account.UsageStats,
    name="UsageStats",
    description="Usage of one account in one calendar period (seed 003's UsageStats).",
)


@strawberry.type(description="An immutable movement of credits.")
class LedgerEntry(relay.Node, shape_fields_of(wallet_ledger.CreditLedgerEntry, private=("id",))):
    @classmethod
    def resolve_id(cls, root: Self, *, info: Any) -> str:
        return str(root.id)

    @classmethod
    def from_result(cls, entry: wallet_ledger.CreditLedgerEntry) -> LedgerEntry:
        """A copy: graphql-core checks a node's Python type."""
        return cls(**fields_of(entry))

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[LedgerEntry | None]:
        entries = await load_keys(
            integer_keys(node_ids),
            lambda ids: wallet_ledger.ledger_entries_by_id(info.context, ids),
        )
        return [cls.from_result(entry) if entry else None for entry in entries]


@strawberry.type(description="A page of ledger entries, newest first.")
class LedgerEntryConnection(CountedConnection[LedgerEntry]):
    pass


async def resolve_ledger(
    info: Info,
    user_id: int,
    ledger_filter: wallet_ledger.LedgerFilter,
    first: int | None,
    after: str | None,
) -> LedgerEntryConnection:
    """A page of the user's ledger, keyset-paginated in SQL and batched across users."""
    size = page_size(first)
    entries, count = await wallet_ledger.ledger_keyset_page(
        info.context, user_id, ledger_filter, size=size, before=moment_id_cursor(after)
    )
    return build_connection(
        LedgerEntryConnection,
        entries,
        size=size,
        after=after,
        count=count,
        cursor_of=lambda entry: encode_cursor(entry.created_at.isoformat(), entry.id),
        node_of=LedgerEntry.from_result,
    )


FromArgument = Annotated[
    datetime | None,
    strawberry.argument(name="from", description="Inclusive start (UTC)."),
]
ToArgument = Annotated[
    datetime | None, strawberry.argument(name="to", description="Exclusive end (UTC).")
]
