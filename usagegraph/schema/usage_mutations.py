"""The usage writes: recording metered calls (one, or a batch) and forgetting them.

`recordUsage` and `recordUsageBatch` run `resolvers.metering`; `forgetUsage` runs
`resolvers.administration.forget_usage`. A single event's refusal is a GraphQL error whose
`extensions.code` says why (FORBIDDEN, INSUFFICIENT_CREDITS, CAP_REACHED, INVALID_REQUEST,
IDEMPOTENCY_KEY_REUSED); a batch answers per event instead, so one refusal never hides the
outcome of the others.

Two types hold these fields because the root `Mutation` lists forgetUsage after the wallet
writes (see `schema.root`): `UsageMutations` (recording) and `ForgetUsageMutations`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import strawberry
from strawberry.types.arguments import InputContext

from usagegraph.resolvers import directory_writes, usage_recording
from usagegraph.schema.context import Info
from usagegraph.schema.scalars import BigInt
from usagegraph.schema.shape_types import graph_type_of
from usagegraph.schema.writes import INPUT, open_write

UsageEventStatus = strawberry.enum(
    StrEnum("UsageEventStatus", {"SUCCESS": "success", "FAILED": "failed"}),
    description="Whether the metered call succeeded; failed calls count like any other.",
)
UsageOutcomeStatus = strawberry.enum(
    usage_recording.OutcomeStatus,
    name="UsageOutcomeStatus",
    description="What became of a usage event.",
)


class _RefusalCode(StrEnum):
    INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
    CAP_REACHED = "CAP_REACHED"
    FORBIDDEN = "FORBIDDEN"
    INVALID_REQUEST = "INVALID_REQUEST"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"


UsageRefusalCode = strawberry.enum(
    _RefusalCode,
    name="UsageRefusalCode",
    description="Why an event of a batch was refused (the same codes as `extensions.code`).",
)


def _status_value(status: Any) -> str:
    return str(getattr(status, "value", status))


@strawberry.input(description="One metered call to record.")
class UsageEventInput:
    user_id: int = strawberry.field(description="The user who made the call.")
    instance: str = strawberry.field(
        description="`personal` (debits the user's wallet) or the 24-hex id of an institution "
        "(counts against the member's cap there)."
    )
    occurred_at: datetime = strawberry.field(
        description="When the call happened, with a time zone; inside the acceptance window "
        "(by default the last 35 days up to 5 minutes ahead; older usage is imported), else "
        "INVALID_REQUEST naming the window."
    )
    credits: Decimal = strawberry.field(
        description="Credits it cost: 0 or more, at most 6 decimal places."
    )
    messages: int = strawberry.field(default=1, description="Messages it counts (0 or more).")
    endpoint: str | None = strawberry.field(
        default=None, description="The endpoint called (at most 200 characters)."
    )
    status: UsageEventStatus = strawberry.field(  # type: ignore[valid-type]
        default=UsageEventStatus.SUCCESS,  # type: ignore[attr-defined]
        description="success or failed.",
    )
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="The client's key for this event, unique per user: a replay within 30 "
        "days writes nothing and returns the first event.",
    )

    def to_value(self) -> usage_recording.UsageEventInput:
        return usage_recording.UsageEventInput(
            user_id=self.user_id,
            instance=self.instance,
            occurred_at=self.occurred_at,
            credits=self.credits,
            messages=self.messages,
            endpoint=self.endpoint,
            status=_status_value(self.status),
            idempotency_key=self.idempotency_key,
        )


def _usage_event_from_input(
    cls: type[UsageEventInput], value: Mapping[str, Any], _context: InputContext
) -> UsageEventInput:
    """Build a UsageEventInput straight from graphql-core's coerced value.

    Every field is a scalar or an enum that graphql-core has already parsed and validated,
    so Strawberry's generic per-field conversion (which re-resolves each field's type for
    every event) adds nothing but time: in a batch of 1,000 events it cost more than the
    whole database transaction.
    """
    return cls(
        user_id=value["userId"],
        instance=value["instance"],
        occurred_at=value["occurredAt"],
        credits=value["credits"],
        messages=value.get("messages", 1),
        endpoint=value.get("endpoint"),
        status=value.get("status", UsageEventStatus.SUCCESS),  # type: ignore[attr-defined]
        idempotency_key=value.get("idempotencyKey"),
    )


UsageEventInput.__strawberry_definition__.from_input = _usage_event_from_input  # type: ignore[attr-defined]


RecordedUsageEvent = graph_type_of(
    usage_recording.RecordedUsage,
    name="RecordedUsageEvent",
    description="A stored usage event.",
    overrides={"id": BigInt},
)


@strawberry.type(description="The result of recordUsage.")
class RecordUsagePayload:
    status: UsageOutcomeStatus = strawberry.field(  # type: ignore[valid-type]
        description="INSERTED, or DUPLICATE when the idempotency key was already used."
    )
    event: RecordedUsageEvent = strawberry.field(
        description="The event: the new one, or the first one recorded with this key."
    )


@strawberry.type(description="What became of one event of a batch.")
class UsageEventOutcome:
    index: int = strawberry.field(description="The event's position in the batch (from 0).")
    status: UsageOutcomeStatus = strawberry.field(  # type: ignore[valid-type]
        description="INSERTED, DUPLICATE or REFUSED."
    )
    event: RecordedUsageEvent | None = strawberry.field(
        description="The stored event (for a duplicate, the first one); null when refused."
    )
    code: UsageRefusalCode | None = strawberry.field(  # type: ignore[valid-type]
        description="Why it was refused; null otherwise."
    )
    message: str | None = strawberry.field(description="The refusal, in words.")

    @classmethod
    def from_result(cls, outcome: usage_recording.UsageOutcome) -> UsageEventOutcome:
        return cls(
            index=outcome.index,
            status=outcome.status,
            event=outcome.event,
            code=_RefusalCode(outcome.code.value) if outcome.code else None,
            message=outcome.message,
        )


@strawberry.type(description="The result of recordUsageBatch: one outcome per event, in order.")
class UsageBatchResult:
    result: strawberry.Private[usage_recording.UsageBatchResult]

    @strawberry.field(description="Events recorded now.")
    def inserted(self) -> int:
        return self.result.inserted

    @strawberry.field(description="Replays of events already recorded.")
    def duplicates(self) -> int:
        return self.result.duplicates

    @strawberry.field(description="Events refused (nothing written for them).")
    def refused(self) -> int:
        return self.result.refused

    @strawberry.field(description="Per event, in order (built only when asked for).")
    def outcomes(self) -> list[UsageEventOutcome]:
        return [UsageEventOutcome.from_result(outcome) for outcome in self.result.outcomes]


@strawberry.input(description="Which of a user's usage events to forget: ids, or before a time.")
class ForgetUsageInput:
    ids: list[BigInt] | None = strawberry.field(
        default=None, description="Event ids (1 to 1000); others' ids match nothing."
    )
    before: datetime | None = strawberry.field(
        default=None, description="Every event that occurred before this time."
    )
    user_id: int | None = strawberry.field(
        default=None, description="Whose usage (default: yours; only super may name another)."
    )


@strawberry.type(description="Usage events just flagged as forgotten.")
class ForgetUsagePayload:
    user_id: int = strawberry.field(description="Whose usage.")
    forgotten_count: int = strawberry.field(description="Events newly forgotten.")
    forgotten_ids: list[BigInt] = strawberry.field(description="Their ids, ascending.")


@strawberry.type(description="The usage writes that record metered calls.")
class UsageMutations:
    @strawberry.mutation(
        description="Record one usage event (an institution's API key for its members, or "
        "super). Refusals are errors: INSUFFICIENT_CREDITS, CAP_REACHED, FORBIDDEN, "
        "INVALID_REQUEST; nothing is written then."
    )
    async def record_usage(
        self, info: Info, input: Annotated[UsageEventInput, strawberry.argument(description=INPUT)]
    ) -> RecordUsagePayload:
        event = input.to_value()
        async with open_write(info) as write:
            outcome = await usage_recording.record_usage(
                write.session,
                write.principal,
                write.now,
                event=event,
                window=write.settings.event_window,
                reload_limit=write.settings.auto_reload,
            )
        assert outcome.event is not None
        return RecordUsagePayload(status=outcome.status, event=outcome.event)

    @strawberry.mutation(
        description="Record up to 1000 usage events in one transaction, answering for each: "
        "inserted, duplicate or refused with a code. A refused event never loses the others."
    )
    async def record_usage_batch(
        self,
        info: Info,
        events: Annotated[
            list[UsageEventInput], strawberry.argument(description="The events, in order.")
        ],
    ) -> UsageBatchResult:
        values = [event.to_value() for event in events]
        async with open_write(info) as write:
            result = await usage_recording.record_usage_batch(
                write.session,
                write.principal,
                write.now,
                events=values,
                window=write.settings.event_window,
                reload_limit=write.settings.auto_reload,
            )
        return UsageBatchResult(result=result)


@strawberry.type(description="The usage write that hides a user's own events from reports.")
class ForgetUsageMutations:
    @strawberry.mutation(
        description="Hide your own usage events from the usage reports (they still count for "
        "caps, billing and the ledger). Super may name another user."
    )
    async def forget_usage(
        self,
        info: Info,
        input: Annotated[ForgetUsageInput, strawberry.argument(description=INPUT)],
    ) -> ForgetUsagePayload:
        ids = [int(i) for i in input.ids] if input.ids is not None else None
        async with open_write(info) as write:
            result = await directory_writes.forget_usage(
                write.session,
                write.principal,
                write.now,
                event_ids=ids,
                before=input.before,
                user_id=input.user_id,
            )
        return ForgetUsagePayload(
            user_id=result.user_id,
            forgotten_count=len(result.forgotten_ids),
            forgotten_ids=[BigInt(i) for i in result.forgotten_ids],
        )
