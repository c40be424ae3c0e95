"""The assembled schema: every entry point of the graph is listed here."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Sequence
from typing import Annotated

import strawberry
from strawberry import relay
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig

from usagegraph.input_ids import is_id
from usagegraph.resolvers import directory
from usagegraph.schema import argument_conversion
from usagegraph.schema.alerts import AlertMutations, AlertQueries
from usagegraph.schema.buckets import ClientBucket, Snapshot, resolve_bucket
from usagegraph.schema.buckets_mutations import BucketsMutations
from usagegraph.schema.compiled_execution import CompilingExecutionContext
from usagegraph.schema.connections import build_connection
from usagegraph.schema.context import Info
from usagegraph.schema.directory import (
    Institution,
    InstitutionConnection,
    Membership,
    User,
    resolve_institution,
)
from usagegraph.schema.directory_mutations import DirectoryMutations
from usagegraph.schema.errors import CodedErrors, CodedSchema
from usagegraph.schema.limits import limit_extensions
from usagegraph.schema.live import Subscription, SubscriptionsOverWebsocket
from usagegraph.schema.operation_metrics import OperationMetrics
from usagegraph.schema.pagination import (
    AfterArgument,
    FirstArgument,
    encode_cursor,
    institution_cursor,
    page_size,
)
from usagegraph.schema.scalars import SCALAR_MAP
from usagegraph.schema.usage_events import UsageEvent
from usagegraph.schema.usage_mutations import ForgetUsageMutations, UsageMutations
from usagegraph.schema.user_stats import UserStatsInput, UserStatsReport, resolve_user_stats
from usagegraph.schema.viewer import Viewer, resolve_viewer
from usagegraph.schema.wallet import LedgerEntry
from usagegraph.schema.wallet_mutations import WalletMutations
from usagegraph.schema.webhooks import WebhookMutations, WebhookQueries
from usagegraph.settings import GraphQLLimits


@strawberry.type(description="The entry points of the usagegraph API.")
class Query(AlertQueries, WebhookQueries):
    viewer: Viewer = strawberry.field(
        resolver=resolve_viewer, description="The caller of this request."
    )
    node: relay.Node | None = relay.node(
        description="Any object by its global id; null when it does not exist or is not yours "
        "to see."
    )

    @strawberry.field(description="A user by integer id; null unless you may see them.")
    async def user(
        self, info: Info, id: Annotated[int, strawberry.argument(description="The user id.")]
    ) -> User | None:
        return User.of(await directory.user_by_id(info.context, id)) if is_id(id) else None

    @strawberry.field(
        description="An institution you belong to (super: any); FORBIDDEN for any other id."
    )
    async def institution(
        self,
        info: Info,
        id: Annotated[str, strawberry.argument(description="The 24-hex institution id.")],
    ) -> Institution:
        return await resolve_institution(info, id)

    @strawberry.field(
        description="A client bucket of one of your institutions; null for any other id."
    )
    async def bucket(
        self,
        info: Info,
        id: Annotated[str, strawberry.argument(description="The bucket id.")],
    ) -> ClientBucket | None:
        return await resolve_bucket(info, id)

    @strawberry.field(
        description="The per-user usage extract (POST .../charts/user-stats in the graph): "
        "super, or admins for the institutions they administer; FORBIDDEN for others."
    )
    async def user_stats(
        self,
        info: Info,
        input: Annotated[
            UserStatsInput | None, strawberry.argument(description="Window and filters.")
        ] = None,
    ) -> UserStatsReport:
        return await resolve_user_stats(info, input or UserStatsInput())

    @strawberry.field(description="The institutions you belong to (super: all), by id.")
    async def institutions(
        self,
        info: Info,
        first: FirstArgument = None,
        after: AfterArgument = None,
    ) -> InstitutionConnection:
        size = page_size(first)
        after_id = institution_cursor(after)
        institutions, count = await directory.institutions_page(
            info.context, size=size, after_id=after_id
        )
        return build_connection(
            InstitutionConnection,
            institutions,
            size=size,
            after=after,
            count=count,
            cursor_of=lambda institution: encode_cursor(institution.id),
            node_of=Institution.of,
        )


# Every write, one domain module each (`schema/*_mutations.py`). The bases are the domains in
# the order the exported SDL lists their fields (Strawberry keeps the bases' order): usage
# recording, wallets, forgetting usage, buckets, directory. This is what
# `strawberry.tools.merge_types("Mutation", (...))` builds, written out because merge_types
# gives the merged type no description and the SDL documents Mutation.
@strawberry.type(description="Every write of the usagegraph API; each is one transaction.")
class Mutation(
    UsageMutations,
    WalletMutations,
    ForgetUsageMutations,
    BucketsMutations,
    DirectoryMutations,
    AlertMutations,
    WebhookMutations,
):
    pass


# Every resolver call converts its arguments through the keeping conversion (argument_conversion).
argument_conversion.install()

# The converted graph. Strawberry converts a type once per schema and its relay `node` field
# cannot be converted twice, so deployments share this conversion and differ only in what
# `build_schema` sets per copy: the extensions (limits) and the batching cap.
_GRAPH = CodedSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    types=[Membership, LedgerEntry, Snapshot, UsageEvent],
    extensions=[CodedErrors],
    execution_context_class=CompilingExecutionContext,
    config=StrawberryConfig(scalar_map=SCALAR_MAP, disable_field_suggestions=True),
)


def build_schema(
    limits: GraphQLLimits, tracing: Sequence[type[SchemaExtension]] = ()
) -> strawberry.Schema:
    """The graph with the limits of one deployment (each app builds its own from settings),
    and the tracing extensions when traces are on (observability/tracing.py).

    Strawberry reads `extensions` and `config.batching_config` at request time, so a shallow
    copy with its own values of both is a schema of its own; the converted types are shared.
    """
    built = copy.copy(_GRAPH)
    built.extensions = (
        *tracing,  # first: the operation's span covers everything the others do
        OperationMetrics,  # a class: Strawberry makes one per operation
        *limit_extensions(limits),
        SubscriptionsOverWebsocket,
        functools.partial(CodedErrors, keep_suggestions=limits.introspection),
    )
    built.config = dataclasses.replace(
        _GRAPH.config,
        batching_config={"max_operations": limits.max_operations},
        disable_field_suggestions=not limits.introspection,
    )
    return built


# The default limits' schema: the SDL export and its test read it (limits leave SDL alone).
schema = build_schema(GraphQLLimits())
