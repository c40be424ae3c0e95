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

from usagegraph.resolvers import directory, wallet_account
from usagegraph.resolvers.wallet_account import AccountPeriod
from usagegraph.resolvers.wallet_ledger import LedgerFilter
from usagegraph.schema import billing, buckets, usage_events, usage_history, wallet
from usagegraph.schema.connections import CountedConnection, build_connection
from usagegraph.schema.context import Info
from usagegraph.schema.fields import fields_of
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
from usagegraph.schema.shape_types import shape_fields_of


@strawberry.type(description="A person who uses the service.")
class User(relay.Node, shape_fields_of(directory.DirectoryUser, private=("id",))):
    @strawberry.field(description="The user's integer id, as the REST APIs show it.")
    def user_id(self) -> int:
        return self.id

    @classmethod
    def resolve_id(cls, root: Self, *, info: Any) -> str:
        return str(root.id)

    @classmethod
    def of(cls, user: directory.DirectoryUser | None) -> User | None:
        """A copy: graphql-core checks a node's Python type."""
        return cls(**fields_of(user)) if user else None

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[User | None]:
        users = await load_keys(
            integer_keys(node_ids), lambda ids: directory.users_by_id(info.context, ids)
        )
        return [cls.of(user) for user in users]

    @strawberry.field(description="The institutions this user belongs to (that you may see).")
    async def memberships(self, info: Info) -> list[Membership]:
        memberships = await directory.memberships_of_user(info.context, self.id)
        return [Membership.of(membership) for membership in memberships]

    @strawberry.field(description="The credit balance. The user's own (super: any).")
    async def wallet(self, info: Info) -> wallet.CreditBalance:
        return await wallet_account.wallet_balance(info.context, self.id)

    @strawberry.field(description="The user's plan, if any. The user's own (super: any).")
    async def subscription(self, info: Info) -> wallet.PlanSubscription | None:
        return await wallet_account.plan_subscription(info.context, self.id)

    @strawberry.field(
        description="Credit ledger entries, newest first. The user's own (super: any)."
    )
    async def ledger(
        self,
        info: Info,
        type: Annotated[
            wallet.LedgerType | None, strawberry.argument(description="Only this type.")
        ] = None,
        from_: wallet.FromArgument = None,
        to: wallet.ToArgument = None,
        first: FirstArgument = None,
        after: AfterArgument = None,
    ) -> wallet.LedgerEntryConnection:
        ledger_filter = LedgerFilter(entry_type=type, start=from_, end=to)
        return await wallet.resolve_ledger(info, self.id, ledger_filter, first, after)

    @strawberry.field(
        description="Usage statistics per calendar period overlapping [from, to), every "
        "instance, forgotten usage included (it still costs). The user's own (super: any)."
    )
    async def usage(
        self,
        info: Info,
        period: Annotated[
            wallet.AccountPeriod, strawberry.argument(description="Bucket size.")
        ] = AccountPeriod.MONTHLY,
        from_: Annotated[
            datetime | None,
            strawberry.argument(name="from", description="Start (default: this month's 1st)."),
        ] = None,
        to: Annotated[
            datetime | None, strawberry.argument(description="End (default: now).")
        ] = None,
    ) -> list[wallet.UsageStats]:
        return await wallet_account.user_usage(
            info.context, self.id, period=period, start=from_, end=to
        )

    @strawberry.field(
        description="Individual usage events, newest first: your own, or (for institution "
        "admins) a member's events in the institutions you administer.",
        graphql_type=usage_events.UsageEventConnection,
    )
    def usage_events(
        self,
        info: Info,
        instance_id: Annotated[
            str | None,
            strawberry.argument(description="Only `personal` or this institution's events."),
        ] = None,
        from_: wallet.FromArgument = None,
        to: wallet.ToArgument = None,
        first: FirstArgument = None,
        after: AfterArgument = None,
    ) -> usage_events.UsageEventConnection | Awaitable[usage_events.UsageEventConnection]:
        return usage_events.resolve_usage_events(
            info,
            self.id,
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
        window: usage_history.WindowArgument = None,
        interval: usage_history.IntervalArgument = None,
        scope: usage_history.ScopeArgument = None,
        time_zone: usage_history.TimeZoneArgument = "UTC",
    ) -> usage_history.UsageHistory:
        return await usage_history.resolve_usage_history(
            info, instance_id, window, interval, scope, time_zone, reader_id=self.id
        )


@strawberry.type(description="A tenant: an organisation whose members use the service.")
class Institution(relay.Node, shape_fields_of(directory.DirectoryInstitution, private=("id",))):
    @strawberry.field(description="The 24-hex institution id, as the REST APIs show it.")
    def database_id(self) -> str:
        return self.id

    @classmethod
    def resolve_id(cls, root: Self, *, info: Any) -> str:
        return root.id

    @classmethod
    def of(cls, institution: directory.DirectoryInstitution) -> Institution:
        """A copy: graphql-core checks a node's Python type."""
        return cls(**fields_of(institution))

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Institution | None]:
        institutions = await load_keys(
            institution_keys(node_ids), lambda ids: directory.institutions_by_id(info.context, ids)
        )
        return [cls.of(institution) if institution else None for institution in institutions]

    @strawberry.field(
        description="Members, ordered by user id. Admins of the institution and super only."
    )
    async def members(
        self,
        info: Info,
        first: FirstArgument = None,
        after: AfterArgument = None,
    ) -> MembershipConnection:
        size = page_size(first)
        members, count = await directory.member_page(
            info.context, self.id, size=size, after_user_id=id_cursor(after)
        )
        # Each member's `user { usageEvents }`, when asked, read with this page's siblings'.
        shown = [member.user_id for member in members[:size]]
        await usage_events.prefetch_event_pages(info, usage_events.EVENTS_OF_MEMBERS, shown)
        return build_connection(
            MembershipConnection,
            members,
            size=size,
            after=after,
            count=count,
            cursor_of=lambda member: encode_cursor(member.user_id),
            node_of=lambda member: Membership.of(member, self),
        )

    @strawberry.field(
        description="Bucketed usage in this institution: yours, or everyone's with scope "
        "`all` (admins)."
    )
    async def usage_history(
        self,
        info: Info,
        window: usage_history.WindowArgument = None,
        interval: usage_history.IntervalArgument = None,
        scope: usage_history.ScopeArgument = None,
        time_zone: usage_history.TimeZoneArgument = "UTC",
    ) -> usage_history.UsageHistory:
        return await usage_history.resolve_usage_history(
            info, self.id, window, interval, scope, time_zone
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
        return await billing.resolve_billing_periods(info, self.id, limit, offset)

    @strawberry.field(description="The institution's client buckets.")
    async def buckets(self, info: Info) -> list[buckets.ClientBucket]:
        return await buckets.resolve_institution_buckets(info, self.id)


@strawberry.type(description="A user's place in an institution.")
class Membership(
    relay.Node,
    shape_fields_of(directory.DirectoryMembership, private=("user_id", "institution_id")),
):
    # The institution's default_cap, when the membership was listed from its institution;
    # UNSET when it has to be looked up (see `effective_cap`).
    institution_default_cap: strawberry.Private[Decimal | UnsetType | None] = UNSET

    @classmethod
    def resolve_id(cls, root: Self, *, info: Any) -> str:
        return f"{root.user_id}:{root.institution_id}"

    @classmethod
    def of(
        cls, membership: directory.DirectoryMembership, institution: Institution | None = None
    ) -> Membership:
        """The membership; pass the institution it was listed from when there is one."""
        return cls(
            **fields_of(membership),
            institution_default_cap=institution.default_cap if institution else UNSET,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Membership | None]:
        memberships = await load_keys(
            membership_keys(node_ids), lambda keys: directory.memberships_by_key(info.context, keys)
        )
        return [cls.of(membership) if membership else None for membership in memberships]

    @strawberry.field(description="The member.", graphql_type=User | None)
    def user(self, info: Info) -> User | Awaitable[User | None] | None:
        """A plain value when this request has the member's user already (a super's page of
        `Institution.members` brings them), else an awaitable read of them.

        Not `async`: graphql-core completes an awaitable field through tasks and coroutines,
        which for a page of 100 members cost more than the users themselves.
        """
        return user_at_once(info, self.user_id)

    @strawberry.field(description="The institution.")
    async def institution(self, info: Info) -> Institution | None:
        institution = await directory.institution_by_id(info.context, self.institution_id)
        return Institution.of(institution) if institution else None

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
        institution = await directory.institution_by_id(info.context, self.institution_id)
        return institution.default_cap if institution else None


@strawberry.type(description="A page of an institution's members.")
class MembershipConnection(CountedConnection[Membership]):
    pass


@strawberry.type(description="A page of institutions.")
class InstitutionConnection(CountedConnection[Institution]):
    pass


def user_at_once(info: Info, user_id: int) -> User | Awaitable[User | None] | None:
    """The user as a plain value when this request has read them already (the caller; a
    member listed with a super's page of members), else an awaitable read of them (None when
    the caller may not read them). For fields that are not `async`: graphql-core completes an
    awaitable field through tasks and coroutines, which cost more than the user."""
    known = directory.known_user(info.context, user_id)
    if known is not None:
        return User.of(known)
    return _read_user(info, user_id)


async def _read_user(info: Info, user_id: int) -> User | None:
    return User.of(await directory.user_by_id(info.context, user_id))


async def resolve_institution(info: Info, institution_id: str) -> Institution:
    """An institution the caller belongs to; FORBIDDEN for any other id, known or not."""
    return Institution.of(await directory.member_institution(info.context, institution_id))
