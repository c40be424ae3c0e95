"""Webhook endpoints and their delivery log in the graph (`resolvers.webhooks` holds the
rules: an institution's admins manage its endpoints)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from usagegraph.resolvers import webhooks
from usagegraph.schema.context import Info
from usagegraph.schema.shape_types import graph_type_of
from usagegraph.schema.writes import INPUT, open_write

WebhookEndpoint = graph_type_of(
    webhooks.WebhookEndpointInfo,
    name="WebhookEndpoint",
    description="An institution's webhook receiver, as listed (never its secret).",
)
WebhookDelivery = graph_type_of(
    webhooks.WebhookDeliveryInfo,
    name="WebhookDelivery",
    description="One event for one endpoint, and how its attempts went.",
)


@strawberry.type(description="A new endpoint: the secret is shown this once, never again.")
class CreatedWebhookEndpoint:
    secret: str = strawberry.field(
        description="The signing secret (`whsec_…`): verify deliveries with any Standard "
        "Webhooks library."
    )
    endpoint: WebhookEndpoint = strawberry.field(  # type: ignore[valid-type]
        description="The stored endpoint."
    )


@strawberry.input(description="A new webhook endpoint for an institution.")
class CreateWebhookEndpointInput:
    institution_id: str = strawberry.field(description="The institution whose events it gets.")
    url: str = strawberry.field(
        description="An http(s) URL; private and loopback addresses are refused unless the "
        "deployment allows them."
    )
    event_types: list[str] = strawberry.field(
        description="alert.raised, usage.cap_reached, api_key.created, api_key.revoked."
    )
    description: str | None = strawberry.field(default=None, description="A label.")


@strawberry.type(description="Whether an endpoint was deleted.")
class DeleteWebhookEndpointPayload:
    deleted: bool = strawberry.field(description="true once it is gone.")


@strawberry.type(description="Webhook endpoints and deliveries.")
class WebhookQueries:
    @strawberry.field(description="The webhook endpoints of an institution you administer.")
    async def webhook_endpoints(
        self,
        info: Info,
        institution_id: Annotated[str, strawberry.argument(description="The institution.")],
    ) -> list[WebhookEndpoint]:  # type: ignore[valid-type]
        context = info.context
        async with context.read_session() as session:
            return await webhooks.list_endpoints(session, context.principal, institution_id)

    @strawberry.field(description="An endpoint's delivery log, newest first (its admins).")
    async def webhook_deliveries(
        self,
        info: Info,
        endpoint_id: Annotated[int, strawberry.argument(description="The endpoint's id.")],
        first: Annotated[int, strawberry.argument(description="How many (1 to 100).")] = 20,
    ) -> list[WebhookDelivery]:  # type: ignore[valid-type]
        context = info.context
        async with context.read_session() as session:
            return await webhooks.list_deliveries(session, context.principal, endpoint_id, first)


@strawberry.type(description="The webhook writes.")
class WebhookMutations:
    @strawberry.mutation(
        description="Register a webhook endpoint for an institution (its admins); the "
        "answer holds the signing secret, shown once."
    )
    async def create_webhook_endpoint(
        self,
        info: Info,
        input: Annotated[CreateWebhookEndpointInput, strawberry.argument(description=INPUT)],
    ) -> CreatedWebhookEndpoint:
        async with open_write(info) as write:
            created = await webhooks.create_endpoint(
                write.session,
                write.principal,
                write.now,
                write.settings.webhooks,
                institution_id=input.institution_id,
                url=input.url,
                event_types=input.event_types,
                description=input.description,
            )
        return CreatedWebhookEndpoint(secret=created.secret, endpoint=created.endpoint)

    @strawberry.mutation(description="Delete a webhook endpoint and its delivery log.")
    async def delete_webhook_endpoint(
        self,
        info: Info,
        endpoint_id: Annotated[int, strawberry.argument(description="The endpoint's id.")],
    ) -> DeleteWebhookEndpointPayload:
        async with open_write(info) as write:
            deleted = await webhooks.delete_endpoint(
                write.session, write.principal, write.now, endpoint_id=endpoint_id
            )
        return DeleteWebhookEndpointPayload(deleted=deleted)

    @strawberry.mutation(
        description="Send a delivery again now, with a fresh budget of retries (same "
        "webhook-id and body)."
    )
    async def redeliver_webhook(
        self,
        info: Info,
        delivery_id: Annotated[int, strawberry.argument(description="The delivery's id.")],
    ) -> WebhookDelivery:  # type: ignore[valid-type]
        async with open_write(info) as write:
            return await webhooks.redeliver(
                write.session, write.principal, write.now, delivery_id=delivery_id
            )
