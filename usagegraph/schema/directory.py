"""Users, institutions and memberships in the graph.

Objects are built from ORM rows that the caller-scoped loaders returned, so holding one
already means the caller may see it; fields that need more (members of an institution,
a user's wallet) check `auth.access` before loading.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Self

import strawberry
from strawberry import relay
from strawberry.types.unset import UNSET, UnsetType

from usagegraph.auth.access import is_institution_admin, is_member
from usagegraph.db import models
from usagegraph.errors import forbidden
from usagegraph.resolvers import account as account_rules
from usagegraph.resolvers.account import AccountPeriod
from usagegraph.resolvers.ledger import LedgerFilter
from usagegraph.schema import account, billing, buckets, usage, usage_events
from usagegraph.schema.connections import CountedConnection, build_connection
from usagegraph.schema.context import Info
from usagegraph.schema.node_ids import (
    institution_keys,
    integer_keys,
    load_keys,
    membership_keys,
)
from usagegraph.schema.pagination import (
    AfterArgument,
    FirstArgument,
    encode_cursor,
    id_cursor,
    page_size,
)


@strawberry.type(description="A person who uses the service.")
class User(relay.Node):
    database_id: strawberry.Private[int]
    email: str = strawberry.field(description="Email address (unique, case-insensitive).")
    fname: str | None = strawberry.field(description="First name.")
    lname: str | None = strawberry.field(description="Last name.")
    role: str = strawberry.field(description="`user`, `admin` or `super`.")
    permissions: list[str] = strawberry.field(description="Granted permissions.")
    created_at: datetime = strawberry.field(description="When the account was created.")
    last_login_at: datetime | None = strawberry.field(description="The last sign-in, if any.")

    @strawberry.field(description="The user's integer id, as the REST APIs show it.")
    def user_id(self) -> int:
        return self.database_id

    @classmethod
    def resolve_id(cls, root: Self, *, info: Any) -> str:
        return str(root.database_id)

    @classmethod
    def from_row(cls, row: models.User) -> User:
        return cls(
            database_id=row.id,
            email=row.email,
            fname=row.fname,
            lname=row.lname,
            role=row.role,
            permissions=list(row.permissions or []),
            created_at=row.created_at,
            last_login_at=row.last_login_at,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[User | None]:
        rows = await load_keys(integer_keys(node_ids), info.context.loaders.user.load_many)
        return [cls.from_row(row) if row else None for row in rows]

    @strawberry.field(description="The institutions this user belongs to (that you may see).")
    async def memberships(self, info: Info) -> list[Membership]:
        rows = await info.context.loaders.memberships_of_user.load(self.database_id)
        return [Membership.from_row(row) for row in rows]

    @strawberry.field(description="The credit balance. The user's own (super: any).")
    async def wallet(self, info: Info) -> account.CreditBalance:
        return await account_rules.wallet_balance(info.context, self.database_id)

    @strawberry.field(description="The user's plan, if any. The user's own (super: any).")
    async def subscription(self, info: Info) -> account.PlanSubscription | None:
        return await account_rules.plan_subscription(info.context, self.database_id)

    @strawberry.field(
        description="Credit ledger entries, newest first. The user's own (super: any)."
    )
    async def ledger(
        self,
        info: Info,
        type: Annotated[
            account.LedgerType | None, strawberry.argument(description="Only this type.")
        ] = None,
        from_: account.FromArgument = None,
        to: account.ToArgument = None,
        first: FirstArgument = None,
        after: AfterArgument = None,
    ) -> account.LedgerEntryConnection:
        ledger_filter = LedgerFilter(entry_type=type, start=from_, end=to)
        return await account.resolve_ledger(info, self.database_id, ledger_filter, first, after)

    @strawberry.field(
        description="Usage statistics per calendar period overlapping [from, to), every "
        "instance, forgotten usage included (it still costs). The user's own (super: any)."
    )
    async def usage(
        self,
        info: Info,
        period: Annotated[
            account.AccountPeriod, strawberry.argument(description="Bucket size.")
        ] = AccountPeriod.MONTHLY,
        from_: Annotated[
            datetime | None,
            strawberry.argument(name="from", description="Start (default: this month's 1st)."),
        ] = None,
        to: Annotated[
            datetime | None, strawberry.argument(description="End (default: now).")
        ] = None,
    ) -> list[account.UsageStats]:
        return await account_rules.user_usage(
            info.context, self.database_id, period=period, start=from_, end=to
        )

    @strawberry.field(
        description="Individual usage events, newest first: your own, or (for institution "
        "admins) a member's events in the institutions you administer."
    )
    async def usage_events(
        self,
        info: Info,
        instance_id: Annotated[
            str | None,
            strawberry.argument(description="Only `personal` or this institution's events."),
        ] = None,
        from_: account.FromArgument = None,
        to: account.ToArgument = None,
        first: FirstArgument = None,
        after: AfterArgument = None,
    ) -> usage_events.UsageEventConnection:
        return await usage_events.resolve_usage_events(
            info,
            self.database_id,
            instance=instance_id,
            start=from_,
            end=to,
            first=first,
            after=after,
        )

    @strawberry.field(
        description="Bucketed usage of one of your instances (GET /api/user/usage-history in "
        "the graph). Only on your own user: FORBIDDEN on anyone else."
    )
    async def usage_history(
        self,
        info: Info,
        instance_id: Annotated[
            str, strawberry.argument(description="`personal` or an institution id.")
        ],
        window: usage.WindowArgument = None,
        interval: usage.IntervalArgument = None,
        scope: usage.ScopeArgument = None,
        time_zone: usage.TimeZoneArgument = "UTC",
    ) -> usage.UsageHistory:
        if info.context.principal.user_id != self.database_id:
            raise forbidden("usage history is read as yourself")
        return await usage.resolve_usage_history(
            info, instance_id, window, interval, scope, time_zone
        )


@strawberry.type(description="A tenant: an organisation whose members use the service.")
class Institution(relay.Node):
    institution_id: strawberry.Private[str]
    name: str = strawberry.field(description="Display name.")
    ai_name: str | None = strawberry.field(description="The name of its assistant, if any.")
    currency: str = strawberry.field(description="Billing currency, e.g. `usd`.")
    plan_limit: int | None = strawberry.field(
        description="Messages included per calendar month; null means unlimited."
    )
    default_cap: Decimal | None = strawberry.field(
        description="Credits each member may spend unless their membership says otherwise.",
    )
    created_at: datetime = strawberry.field(description="When the institution was created.")

    @strawberry.field(description="The 24-hex institution id, as the REST APIs show it.")
    def database_id(self) -> str:
        return self.institution_id

    @classmethod
    def resolve_id(cls, root: Self, *, info: Any) -> str:
        return root.institution_id

    @classmethod
    def from_row(cls, row: models.Institution) -> Institution:
        return cls(
            institution_id=row.id,
            name=row.name,
            ai_name=row.ai_name,
            currency=row.currency,
            plan_limit=row.plan_limit,
            default_cap=row.default_cap,
            created_at=row.created_at,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Institution | None]:
        loader = info.context.loaders.institution
        rows = await load_keys(institution_keys(node_ids), loader.load_many)
        return [cls.from_row(row) if row else None for row in rows]

    @strawberry.field(
        description="Members, ordered by user id. Admins of the institution and super only."
    )
    async def members(
        self,
        info: Info,
        first: FirstArgument = None,
        after: AfterArgument = None,
    ) -> MembershipConnection:
        if not is_institution_admin(info.context.principal, self.institution_id):
            raise forbidden("only the institution's admins may list its members")
        size = page_size(first)
        after_user_id = id_cursor(after)
        loaders = info.context.loaders
        rows = await loaders.member_page.load((self.institution_id, size, after_user_id))
        total = await loaders.member_count.load(self.institution_id)
        return build_connection(
            MembershipConnection,
            rows,
            size=size,
            after=after,
            total=total,
            cursor_of=lambda row: encode_cursor(row.user_id),
            node_of=lambda row: Membership.from_row(row, self),
        )

    @strawberry.field(
        description="Bucketed usage in this institution: yours, or everyone's with scope "
        "`all` (admins)."
    )
    async def usage_history(
        self,
        info: Info,
        window: usage.WindowArgument = None,
        interval: usage.IntervalArgument = None,
        scope: usage.ScopeArgument = None,
        time_zone: usage.TimeZoneArgument = "UTC",
    ) -> usage.UsageHistory:
        return await usage.resolve_usage_history(
            info, self.institution_id, window, interval, scope, time_zone
        )

    @strawberry.field(
        description="Monthly message counts against the plan, newest first (admins and super)."
    )
    async def billing_periods(
        self,
        info: Info,
        limit: Annotated[
            int | None, strawberry.argument(description="Months, 1 to 24 (default 12).")
        ] = None,
        offset: Annotated[
            int | None, strawberry.argument(description="Months to skip (default 0).")
        ] = None,
    ) -> billing.BillingPeriodPage:
        return await billing.resolve_billing_periods(info, self.institution_id, limit, offset)

    @strawberry.field(description="The institution's client buckets.")
    async def buckets(self, info: Info) -> list[buckets.ClientBucket]:
        return await buckets.resolve_institution_buckets(info, self.institution_id)


@strawberry.type(description="A user's place in an institution.")
class Membership(relay.Node):
    user_database_id: strawberry.Private[int]
    institution_database_id: strawberry.Private[str]
    role: str = strawberry.field(description="`user` or `admin` inside the institution.")
    cap_limit: Decimal | None = strawberry.field(
        description="This member's own credit cap, overriding the institution's default_cap.",
    )
    # The institution's default_cap, when the membership was listed from its institution;
    # UNSET when it has to be looked up (see `effective_cap`).
    institution_default_cap: strawberry.Private[Decimal | UnsetType | None] = UNSET

    @classmethod
    def resolve_id(cls, root: Self, *, info: Any) -> str:
        return f"{root.user_database_id}:{root.institution_database_id}"

    @classmethod
    def from_row(cls, row: models.Membership, institution: Institution | None = None) -> Membership:
        """The membership; pass the institution it was listed from when there is one."""
        return cls(
            user_database_id=row.user_id,
            institution_database_id=row.institution_id,
            role=row.role,
            cap_limit=row.cap_limit,
            institution_default_cap=institution.default_cap if institution else UNSET,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Membership | None]:
        loader = info.context.loaders.membership
        rows = await load_keys(membership_keys(node_ids), loader.load_many)
        return [cls.from_row(row) if row else None for row in rows]

    @strawberry.field(description="The member.")
    async def user(self, info: Info) -> User | None:
        row = await info.context.loaders.user.load(self.user_database_id)
        return User.from_row(row) if row else None

    @strawberry.field(description="The institution.")
    async def institution(self, info: Info) -> Institution | None:
        row = await info.context.loaders.institution.load(self.institution_database_id)
        return Institution.from_row(row) if row else None

    @strawberry.field(
        description="The cap that applies: cap_limit, else the institution's default_cap.",
        graphql_type=Decimal | None,
    )
    def effective_cap(self, info: Info) -> Decimal | Awaitable[Decimal | None] | None:
        """A plain value whenever the cap is known without a lookup, else an awaitable.

        Not `async`: graphql-core gathers a member's awaitable fields in tasks, and a page of
        members listed from their institution already knows every cap.
        """
        if self.cap_limit is not None:
            return self.cap_limit
        if not isinstance(self.institution_default_cap, UnsetType):
            return self.institution_default_cap
        return self._looked_up_default_cap(info)

    async def _looked_up_default_cap(self, info: Info) -> Decimal | None:
        row = await info.context.loaders.institution.load(self.institution_database_id)
        return row.default_cap if row else None


@strawberry.type(description="A page of an institution's members.")
class MembershipConnection(CountedConnection[Membership]):
    pass


@strawberry.type(description="A page of institutions.")
class InstitutionConnection(CountedConnection[Institution]):
    pass


async def resolve_institution(info: Info, institution_id: str) -> Institution:
    """An institution the caller belongs to; FORBIDDEN for any other id, known or not."""
    if not is_member(info.context.principal, institution_id):
        raise forbidden("you are not a member of that institution")
    row = await info.context.loaders.institution.load(institution_id)
    if row is None:
        raise forbidden("you are not a member of that institution")
    return Institution.from_row(row)
