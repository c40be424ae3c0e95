"""A user's account in the graph: credit balance, ledger, subscription and usage statistics.

These render the same result objects the `/auth/account/...` shim renders (resolvers/account
and resolvers/ledger), so the graph and REST cannot disagree on a number.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Self

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from usagegraph.auth.access import owns_account
from usagegraph.errors import forbidden
from usagegraph.resolvers import account, ledger
from usagegraph.schema.connections import CountedConnection, build_connection
from usagegraph.schema.context import Info
from usagegraph.schema.fields import fields_of
from usagegraph.schema.node_ids import integer_keys, load_keys
from usagegraph.schema.pagination import encode_cursor, moment_id_cursor, page_size

LedgerType = strawberry.enum(
    ledger.LedgerType,
    description="credit adds the amount, debit subtracts it, adjustment carries its sign.",
)
AccountPeriod = strawberry.enum(
    account.AccountPeriod, description="The calendar period of usage statistics (UTC)."
)


@strawberry.type(description="A wallet's balance (seed 003's CreditBalance).")
class CreditBalance:
    user_id: int = strawberry.field(description="The wallet's owner.")
    balance: Decimal = strawberry.field(description="Total balance.")
    reserved: Decimal = strawberry.field(description="Credits held by open reservations.")
    available: Decimal = strawberry.field(description="balance minus reserved.")
    currency: str = strawberry.field(description="Currency code, e.g. `usd`.")
    last_updated: datetime | None = strawberry.field(
        description="When the wallet last changed; null without a wallet."
    )
    auto_reload_enabled: bool = strawberry.field(description="Whether auto-reload is on.")
    auto_reload_threshold: Decimal | None = strawberry.field(
        description="Auto-reload tops up when available falls below this."
    )
    auto_reload_amount: Decimal | None = strawberry.field(description="The top-up amount.")


@strawberry.type(
    description="A user's plan subscription (named so that `Subscription` stays free for the "
    "graph's subscription root)."
)
class PlanSubscription:
    plan: str = strawberry.field(description="Plan name.")
    status: str = strawberry.field(description="Status, e.g. `active`.")
    current_period_start: datetime | None = strawberry.field(description="Period start.")
    current_period_end: datetime | None = strawberry.field(description="Period end.")


@strawberry.type(description="Usage of one account in one calendar period (seed 003's UsageStats).")
class UsageStats:
    user_id: int = strawberry.field(description="The account's user id.")
    period: AccountPeriod = strawberry.field(description="daily, monthly or yearly.")
    total_requests: int = strawberry.field(description="Usage events in the period.")
    successful_requests: int = strawberry.field(description="Events with status success.")
    failed_requests: int = strawberry.field(description="Events with status failed.")
    credits_consumed: Decimal = strawberry.field(description="Credits of all those events.")
    requests_by_endpoint: JSON = strawberry.field(
        description="{endpoint: event count}; events without an endpoint count as `unknown`."
    )
    period_start: datetime = strawberry.field(description="Start, clipped to the window.")
    period_end: datetime = strawberry.field(description="End, clipped to the window.")


@strawberry.type(description="An immutable movement of credits.")
class LedgerEntry(relay.Node):
    entry_id: strawberry.Private[int]
    user_id: int = strawberry.field(description="The wallet's owner.")
    type: LedgerType = strawberry.field(description="credit, debit or adjustment.")
    amount: Decimal = strawberry.field(
        description="Positive for credit and debit; an adjustment carries its sign."
    )
    balance_after: Decimal = strawberry.field(description="The balance after this entry.")
    description: str | None = strawberry.field(description="What it was for.")
    reference: str | None = strawberry.field(description="External reference, e.g. a payment.")
    metadata: JSON = strawberry.field(description="Additional data.")
    created_at: datetime = strawberry.field(description="When it was written.")

    @classmethod
    def resolve_id(cls, root: Self, *, info: Any) -> str:
        return str(root.entry_id)

    @classmethod
    def from_result(cls, entry: ledger.CreditLedgerEntry) -> LedgerEntry:
        fields = fields_of(entry)
        return cls(entry_id=fields.pop("id"), **fields)

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[LedgerEntry | None]:
        loader = info.context.loaders.ledger_entry
        rows = await load_keys(integer_keys(node_ids), loader.load_many)
        return [cls.from_result(ledger.ledger_entry(row)) if row else None for row in rows]


@strawberry.type(description="A page of ledger entries, newest first.")
class LedgerEntryConnection(CountedConnection[LedgerEntry]):
    pass


def _require_account(info: Info, user_id: int) -> None:
    if not owns_account(info.context.principal, user_id):
        raise forbidden("only the account holder may read this account")


async def resolve_wallet(info: Info, user_id: int) -> CreditBalance:
    _require_account(info, user_id)
    wallet = await info.context.loaders.wallet.load(user_id)
    return CreditBalance(**fields_of(account.credit_balance(user_id, wallet)))


async def resolve_subscription(info: Info, user_id: int) -> PlanSubscription | None:
    _require_account(info, user_id)
    details = account.subscription_details(await info.context.loaders.subscription.load(user_id))
    return PlanSubscription(**fields_of(details)) if details else None


async def resolve_usage(
    info: Info,
    user_id: int,
    period: account.AccountPeriod,
    start: datetime | None,
    end: datetime | None,
) -> list[UsageStats]:
    async with info.context.sessions() as session:
        stats = await account.user_usage(
            session,
            info.context.principal,
            info.context.now,
            user_id,
            period=period,
            start=start,
            end=end,
        )
    return [UsageStats(**fields_of(item)) for item in stats]


async def resolve_ledger(
    info: Info,
    user_id: int,
    ledger_filter: ledger.LedgerFilter,
    first: int | None,
    after: str | None,
) -> LedgerEntryConnection:
    """A page of the user's ledger, keyset-paginated in SQL and batched across users."""
    _require_account(info, user_id)
    ledger.validate_filter(ledger_filter)
    size = page_size(first)
    before = moment_id_cursor(after)
    entry_type = ledger_filter.entry_type.value if ledger_filter.entry_type else None
    filters = (entry_type, ledger_filter.start, ledger_filter.end)
    loaders = info.context.loaders
    rows = await loaders.ledger_page.load((user_id, *filters, size, *before))
    total = await loaders.ledger_count.load((user_id, *filters))
    return build_connection(
        LedgerEntryConnection,
        rows,
        size=size,
        after=after,
        total=total,
        cursor_of=lambda row: encode_cursor(row.created_at.isoformat(), row.id),
        node_of=lambda row: LedgerEntry.from_result(ledger.ledger_entry(row)),
    )


FromArgument = Annotated[
    datetime | None,
    strawberry.argument(name="from", description="Inclusive start (UTC)."),
]
ToArgument = Annotated[
    datetime | None, strawberry.argument(name="to", description="Exclusive end (UTC).")
]
