"""The write side of the graph: usage ingestion, the credit ledger and administration.

Each mutation parses its Strawberry input into the plain values of a resolver
(`resolvers.metering`, `resolvers.wallet_operations`, `resolvers.administration`), which
holds every rule and runs the write in one transaction; the result objects are rendered
here. Refusals of a single write are GraphQL errors whose `extensions.code` says why
(FORBIDDEN, INSUFFICIENT_CREDITS, CAP_REACHED, INVALID_REQUEST, ...); a batch answers per
event instead, so one refusal never hides the outcome of the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.scalars import JSON
from strawberry.types.arguments import InputContext

from usagegraph.auth.principal import Principal
from usagegraph.errors import invalid
from usagegraph.resolvers import administration, metering, wallet_operations
from usagegraph.resolvers.account import CreditBalance as CreditBalanceResult
from usagegraph.resolvers.ledger import CreditLedgerEntry
from usagegraph.resolvers.snapshots import PrefixStorage as PrefixStorageResult
from usagegraph.resolvers.snapshots import SnapshotStorage as SnapshotStorageResult
from usagegraph.schema.account import CreditBalance, LedgerEntry
from usagegraph.schema.buckets import Snapshot
from usagegraph.schema.context import Info
from usagegraph.schema.directory import Membership
from usagegraph.schema.fields import fields_of
from usagegraph.schema.scalars import BigInt

T = TypeVar("T")


async def _write(
    info: Info, call: Callable[[AsyncSession, Principal, datetime], Awaitable[T]]
) -> T:
    """Run a resolver with this request's caller, clock and a fresh session."""
    async with info.context.sessions() as session:
        return await call(session, info.context.principal, info.context.now)


async def _write_input(
    info: Info, operation: Callable[..., Awaitable[T]], input: object, **settings: Any
) -> T:
    """Run a write whose keyword arguments are the input's fields, name for name (the wallet
    operations' inputs mirror their signatures), plus any `settings` it applies."""
    return await _write(info, lambda s, p, n: operation(s, p, n, **fields_of(input), **settings))


def _usage_limits(info: Info) -> dict[str, Any]:
    """The deployment's limits a usage write applies: its event-time window and the
    auto-reload limit of the wallets it debits."""
    settings = info.context.settings
    return {"window": settings.event_window, "reload_limit": settings.auto_reload}


def _keep(value: Any) -> Any:
    """An omitted optional input keeps the stored value; an explicit null clears it."""
    return administration.KEEP if value is strawberry.UNSET else value


def _keep_not_null(value: Any, name: str) -> Any:
    """Like `_keep`, for settings that cannot be cleared: an explicit null is refused."""
    if value is None:
        raise invalid(f"{name} must not be null")
    return _keep(value)


def _entry(entry: CreditLedgerEntry | None) -> LedgerEntry | None:
    return LedgerEntry.from_result(entry) if entry is not None else None


def _balance(balance: CreditBalanceResult) -> CreditBalance:
    return CreditBalance(**fields_of(balance))


# --- usage ---------------------------------------------------------------------------------

UsageEventStatus = strawberry.enum(
    StrEnum("UsageEventStatus", {"SUCCESS": "success", "FAILED": "failed"}),
    description="Whether the metered call succeeded; failed calls count like any other.",
)
UsageOutcomeStatus = strawberry.enum(
    metering.OutcomeStatus,
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

    def to_value(self) -> metering.UsageEventInput:
        return metering.UsageEventInput(
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


@strawberry.type(description="A stored usage event.")
class RecordedUsageEvent:
    event_id: BigInt = strawberry.field(description="The event's id.")
    user_id: int = strawberry.field(description="The user who made the call.")
    instance: str = strawberry.field(description="`personal` or the institution id.")
    occurred_at: datetime = strawberry.field(description="When the call happened.")
    credits: Decimal = strawberry.field(description="Credits it cost.")
    messages: int = strawberry.field(description="Messages it counts.")
    endpoint: str | None = strawberry.field(description="The endpoint called.")
    status: str = strawberry.field(description="`success` or `failed`.")
    over_cap: bool = strawberry.field(
        description="Recorded although it took the member past their cap (the institution "
        "flags instead of enforcing)."
    )
    forgotten: bool = strawberry.field(description="Hidden from usage reports by its user.")
    created_at: datetime = strawberry.field(description="When it was recorded.")

    @classmethod
    def from_result(cls, event: metering.RecordedUsage) -> RecordedUsageEvent:
        return cls(
            event_id=BigInt(event.id),
            user_id=event.user_id,
            instance=event.instance,
            occurred_at=event.occurred_at,
            credits=event.credits,
            messages=event.messages,
            endpoint=event.endpoint,
            status=event.status,
            over_cap=event.over_cap,
            forgotten=event.forgotten,
            created_at=event.created_at,
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
    def from_result(cls, outcome: metering.UsageOutcome) -> UsageEventOutcome:
        return cls(
            index=outcome.index,
            status=outcome.status,
            event=RecordedUsageEvent.from_result(outcome.event) if outcome.event else None,
            code=_RefusalCode(outcome.code.value) if outcome.code else None,
            message=outcome.message,
        )


@strawberry.type(description="The result of recordUsageBatch: one outcome per event, in order.")
class UsageBatchResult:
    result: strawberry.Private[metering.UsageBatchResult]

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


# --- wallets -------------------------------------------------------------------------------

ReservationStatus = strawberry.enum(
    wallet_operations.ReservationStatus,
    name="ReservationStatus",
    description="held until settled once: captured (charged) or released.",
)


@strawberry.type(description="What a credit, debit or adjustment wrote.")
class WalletMovement:
    entry: LedgerEntry = strawberry.field(description="The ledger entry written.")
    auto_reload: LedgerEntry | None = strawberry.field(
        description="The auto-reload credit this debit triggered, if any."
    )
    wallet: CreditBalance = strawberry.field(description="The wallet afterwards.")

    @classmethod
    def from_result(cls, movement: wallet_operations.WalletMovement) -> WalletMovement:
        return cls(
            entry=LedgerEntry.from_result(movement.entry),
            auto_reload=_entry(movement.auto_reload),
            wallet=_balance(movement.wallet),
        )


@strawberry.type(description="Credits held for a pending charge.")
class CreditReservation:
    reservation_id: BigInt = strawberry.field(description="The reservation's id.")
    user_id: int = strawberry.field(description="Whose wallet it holds credits of.")
    amount: Decimal = strawberry.field(description="Credits held.")
    status: ReservationStatus = strawberry.field(  # type: ignore[valid-type]
        description="held, captured or released."
    )
    captured_amount: Decimal | None = strawberry.field(
        description="What the capture charged; null unless captured."
    )
    description: str | None = strawberry.field(description="What it is for.")
    created_at: datetime = strawberry.field(description="When it was made.")
    settled_at: datetime | None = strawberry.field(description="When it was captured or released.")

    @classmethod
    def from_result(cls, reservation: wallet_operations.CreditReservation) -> CreditReservation:
        fields = fields_of(reservation)
        return cls(reservation_id=BigInt(fields.pop("id")), **fields)


@strawberry.type(description="A reservation after a write, and what the write did to the wallet.")
class ReservationMovement:
    reservation: CreditReservation = strawberry.field(description="The reservation now.")
    entry: LedgerEntry | None = strawberry.field(
        description="The debit a capture wrote (none for 0 captured, a hold or a release)."
    )
    auto_reload: LedgerEntry | None = strawberry.field(
        description="The auto-reload credit a hold triggered, if any."
    )
    wallet: CreditBalance = strawberry.field(description="The wallet afterwards.")

    @classmethod
    def from_result(cls, movement: wallet_operations.ReservationMovement) -> ReservationMovement:
        return cls(
            reservation=CreditReservation.from_result(movement.reservation),
            entry=_entry(movement.entry),
            auto_reload=_entry(movement.auto_reload),
            wallet=_balance(movement.wallet),
        )


@strawberry.input(description="A top-up of a user's wallet.")
class CreditWalletInput:
    user_id: int = strawberry.field(description="Whose wallet (created on first top-up).")
    amount: Decimal = strawberry.field(description="Credits to add (> 0).")
    description: str | None = strawberry.field(default=None, description="Default `Top-up`.")
    reference: str | None = strawberry.field(
        default=None, description="External reference, e.g. a payment id."
    )
    metadata: JSON | None = strawberry.field(default=None, description="Additional data.")


@strawberry.input(description="A debit of a user's wallet.")
class DebitWalletInput:
    user_id: int = strawberry.field(description="Whose wallet.")
    amount: Decimal = strawberry.field(
        description="Credits to subtract (> 0); INSUFFICIENT_CREDITS when not available."
    )
    description: str | None = strawberry.field(default=None, description="Default `Debit`.")
    reference: str | None = strawberry.field(default=None, description="External reference.")
    metadata: JSON | None = strawberry.field(default=None, description="Additional data.")


@strawberry.input(description="A signed correction of a user's wallet.")
class AdjustWalletInput:
    user_id: int = strawberry.field(description="Whose wallet.")
    amount: Decimal = strawberry.field(
        description="Signed credits (not 0); may take available below zero."
    )
    reason: str = strawberry.field(description="Why (required; stored as the description).")
    reference: str | None = strawberry.field(default=None, description="External reference.")
    metadata: JSON | None = strawberry.field(default=None, description="Additional data.")


@strawberry.input(description="Credits to hold for a pending charge.")
class ReserveCreditsInput:
    user_id: int = strawberry.field(description="Whose wallet.")
    amount: Decimal = strawberry.field(
        description="Credits to hold (> 0); INSUFFICIENT_CREDITS when not available."
    )
    description: str | None = strawberry.field(default=None, description="What it is for.")


@strawberry.input(description="Charge a held reservation.")
class CaptureReservationInput:
    reservation_id: BigInt = strawberry.field(description="The reservation.")
    amount: Decimal | None = strawberry.field(
        default=None,
        description="Credits to charge, 0 to the amount held (default: all); the rest is released.",
    )


@strawberry.input(description="Auto-reload settings of a wallet.")
class SetAutoReloadInput:
    user_id: int = strawberry.field(description="Whose wallet (created if missing).")
    enabled: bool = strawberry.field(description="Turn auto-reload on or off.")
    threshold: Decimal | None = strawberry.field(
        default=None,
        description="Reload when a debit takes available from at or above this to below it "
        "(>= 0; required to enable); at most a configured number of reloads per period "
        "(by default 5 a rolling day).",
    )
    amount: Decimal | None = strawberry.field(
        default=None, description="Credits each reload adds (> 0; required to enable)."
    )


# --- administration ------------------------------------------------------------------------


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


@strawberry.input(description="Objects and bytes under one storage prefix.")
class PrefixStorageInput:
    prefix: str = strawberry.field(description="The prefix, e.g. `docs/`.")
    count: BigInt = strawberry.field(description="Objects under it.")
    bytes: BigInt = strawberry.field(description="Bytes under it.")


@strawberry.input(description="Storage metrics of a bucket on one day.")
class SnapshotStorageInput:
    object_count: BigInt = strawberry.field(description="Total objects.")
    total_bytes: BigInt = strawberry.field(description="Total bytes.")
    by_prefix: list[PrefixStorageInput] = strawberry.field(
        default_factory=list, description="Breakdown by prefix."
    )


@strawberry.input(description="A bucket's snapshot of one day (replaces that day's, if any).")
class RecordSnapshotInput:
    bucket_id: str = strawberry.field(description="The bucket.")
    snapshot_date: date = strawberry.field(description="The day.")
    records: JSON = strawberry.field(
        description='{collection: count}, e.g. {"person": 15000, "payment": 45000}.'
    )
    storage: SnapshotStorageInput = strawberry.field(description="Storage metrics.")
    computed_at: datetime | None = strawberry.field(
        default=None, description="When it was computed (default: now)."
    )

    def storage_value(self) -> SnapshotStorageResult:
        return SnapshotStorageResult(
            object_count=int(self.storage.object_count),
            total_bytes=int(self.storage.total_bytes),
            by_prefix={
                item.prefix: PrefixStorageResult(count=int(item.count), bytes=int(item.bytes))
                for item in self.storage.by_prefix
            },
        )


@strawberry.type(description="An institution's API key, as listed (never the key itself).")
class ApiKey:
    api_key_id: int = strawberry.field(description="The key's id (to revoke it).")
    institution_id: str = strawberry.field(description="The institution it acts for.")
    name: str | None = strawberry.field(description="A label to tell keys apart.")
    display_prefix: str = strawberry.field(description="The key's first characters.")
    created_at: datetime = strawberry.field(description="When it was created.")
    revoked_at: datetime | None = strawberry.field(description="When it was revoked, if it was.")

    @classmethod
    def from_result(cls, info: administration.ApiKeyInfo) -> ApiKey:
        fields = fields_of(info)
        return cls(api_key_id=fields.pop("id"), **fields)


@strawberry.type(description="A new API key: the key is shown this once, never again.")
class CreatedApiKey:
    key: str = strawberry.field(description="The key (send as `Authorization: Bearer <key>`).")
    api_key: ApiKey = strawberry.field(description="The stored key's details.")


@strawberry.input(description="A new API key for an institution.")
class CreateApiKeyInput:
    institution_id: str = strawberry.field(description="The institution it acts for.")
    name: str | None = strawberry.field(default=None, description="A label.")


@strawberry.input(description="Add a user to an institution.")
class AddMemberInput:
    institution_id: str = strawberry.field(description="The institution.")
    email: str = strawberry.field(
        description="The user's email address (any case); see addMember for whom it finds."
    )
    role: str = strawberry.field(default="user", description="`user` or `admin` inside it.")
    cap_limit: Decimal | None = strawberry.field(
        default=None, description="Their own cap (default: the institution's default_cap)."
    )


@strawberry.input(description="Change a member; omitted fields stay as they are.")
class UpdateMemberInput:
    institution_id: str = strawberry.field(description="The institution.")
    user_id: int = strawberry.field(description="The member.")
    role: str | None = strawberry.field(
        default=strawberry.UNSET, description="`user` or `admin` inside the institution."
    )
    cap_limit: Decimal | None = strawberry.field(
        default=strawberry.UNSET,
        description="Their cap (>= 0); null falls back to the institution's default_cap.",
    )


@strawberry.input(description="Change an institution's cap settings; omitted fields stay.")
class UpdateInstitutionCapsInput:
    institution_id: str = strawberry.field(description="The institution.")
    default_cap: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="Credits per member (>= 0); null: no cap."
    )
    enforce_caps: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="true: usage past a cap is refused (CAP_REACHED); false: recorded and "
        "flagged overCap.",
    )


@strawberry.type(description="An institution's cap settings.")
class InstitutionCaps:
    institution_id: str = strawberry.field(description="The institution.")
    default_cap: Decimal | None = strawberry.field(description="Credits per member; null: none.")
    enforce_caps: bool = strawberry.field(
        description="Whether usage past a cap is refused rather than flagged."
    )


@strawberry.type(description="Whether a membership was removed.")
class RemoveMemberPayload:
    removed: bool = strawberry.field(description="false when the user was not a member.")


def _member(result: administration.MemberInfo) -> Membership:
    return Membership(
        user_database_id=result.user_id,
        institution_database_id=result.institution_id,
        role=result.role,
        cap_limit=result.cap_limit,
    )


# --- the Mutation type ---------------------------------------------------------------------

_INPUT = "The operation's input."


@strawberry.type(description="Every write of the usagegraph API; each is one transaction.")
class Mutation:
    @strawberry.mutation(
        description="Record one usage event (an institution's API key for its members, or "
        "super). Refusals are errors: INSUFFICIENT_CREDITS, CAP_REACHED, FORBIDDEN, "
        "INVALID_REQUEST; nothing is written then."
    )
    async def record_usage(
        self, info: Info, input: Annotated[UsageEventInput, strawberry.argument(description=_INPUT)]
    ) -> RecordUsagePayload:
        value = input.to_value()
        limits = _usage_limits(info)
        outcome = await _write(
            info, lambda s, p, n: metering.record_usage(s, p, n, value, **limits)
        )
        assert outcome.event is not None
        return RecordUsagePayload(
            status=outcome.status, event=RecordedUsageEvent.from_result(outcome.event)
        )

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
        limits = _usage_limits(info)
        result = await _write(
            info, lambda s, p, n: metering.record_usage_batch(s, p, n, values, **limits)
        )
        return UsageBatchResult(result=result)

    @strawberry.mutation(description="Add credits to a wallet (super only).")
    async def credit_wallet(
        self,
        info: Info,
        input: Annotated[CreditWalletInput, strawberry.argument(description=_INPUT)],
    ) -> WalletMovement:
        movement = await _write_input(info, wallet_operations.credit_wallet, input)
        return WalletMovement.from_result(movement)

    @strawberry.mutation(
        description="Subtract credits from a wallet (super only); INSUFFICIENT_CREDITS when "
        "fewer are available. May trigger auto-reload (a limited number per period)."
    )
    async def debit_wallet(
        self,
        info: Info,
        input: Annotated[DebitWalletInput, strawberry.argument(description=_INPUT)],
    ) -> WalletMovement:
        limit = info.context.settings.auto_reload
        movement = await _write_input(
            info, wallet_operations.debit_wallet, input, reload_limit=limit
        )
        return WalletMovement.from_result(movement)

    @strawberry.mutation(description="Correct a wallet by a signed amount, with a reason (super).")
    async def adjust_wallet(
        self,
        info: Info,
        input: Annotated[AdjustWalletInput, strawberry.argument(description=_INPUT)],
    ) -> WalletMovement:
        movement = await _write_input(info, wallet_operations.adjust_wallet, input)
        return WalletMovement.from_result(movement)

    @strawberry.mutation(
        description="Hold credits for a pending charge (super only); INSUFFICIENT_CREDITS when "
        "fewer are available. May trigger auto-reload (a limited number per period)."
    )
    async def reserve_credits(
        self,
        info: Info,
        input: Annotated[ReserveCreditsInput, strawberry.argument(description=_INPUT)],
    ) -> ReservationMovement:
        limit = info.context.settings.auto_reload
        movement = await _write_input(
            info, wallet_operations.reserve_credits, input, reload_limit=limit
        )
        return ReservationMovement.from_result(movement)

    @strawberry.mutation(
        description="Charge all or part of a held reservation and release the rest (super "
        "only). A settled reservation cannot be settled again (INVALID_REQUEST)."
    )
    async def capture_reservation(
        self,
        info: Info,
        input: Annotated[CaptureReservationInput, strawberry.argument(description=_INPUT)],
    ) -> ReservationMovement:
        movement = await _write_input(info, wallet_operations.capture_reservation, input)
        return ReservationMovement.from_result(movement)

    @strawberry.mutation(
        description="Release a held reservation without charging (super only). A settled "
        "reservation cannot be settled again (INVALID_REQUEST)."
    )
    async def release_reservation(
        self,
        info: Info,
        reservation_id: Annotated[BigInt, strawberry.argument(description="The reservation.")],
    ) -> ReservationMovement:
        movement = await _write(
            info,
            lambda s, p, n: wallet_operations.release_reservation(
                s, p, n, reservation_id=int(reservation_id)
            ),
        )
        return ReservationMovement.from_result(movement)

    @strawberry.mutation(description="Configure a wallet's auto-reload (super only).")
    async def set_auto_reload(
        self,
        info: Info,
        input: Annotated[SetAutoReloadInput, strawberry.argument(description=_INPUT)],
    ) -> CreditBalance:
        balance = await _write_input(info, wallet_operations.set_auto_reload, input)
        return _balance(balance)

    @strawberry.mutation(
        description="Hide your own usage events from the usage reports (they still count for "
        "caps, billing and the ledger). Super may name another user."
    )
    async def forget_usage(
        self,
        info: Info,
        input: Annotated[ForgetUsageInput, strawberry.argument(description=_INPUT)],
    ) -> ForgetUsagePayload:
        ids = [int(i) for i in input.ids] if input.ids is not None else None
        result = await _write(
            info,
            lambda s, p, n: administration.forget_usage(
                s, p, n, event_ids=ids, before=input.before, user_id=input.user_id
            ),
        )
        return ForgetUsagePayload(
            user_id=result.user_id,
            forgotten_count=len(result.forgotten_ids),
            forgotten_ids=[BigInt(i) for i in result.forgotten_ids],
        )

    @strawberry.mutation(
        description="Store a bucket's snapshot of one day, replacing that day's (super, the "
        "institution's API key, or its admins)."
    )
    async def record_snapshot(
        self,
        info: Info,
        input: Annotated[RecordSnapshotInput, strawberry.argument(description=_INPUT)],
    ) -> Snapshot:
        result = await _write(
            info,
            lambda s, p, n: administration.record_snapshot(
                s,
                p,
                n,
                bucket_id=input.bucket_id,
                snapshot_date=input.snapshot_date,
                records=input.records,
                storage=input.storage_value(),
                computed_at=input.computed_at,
            ),
        )
        return Snapshot.from_result(result)

    @strawberry.mutation(description="Create an API key for an institution (its admins, super).")
    async def create_api_key(
        self,
        info: Info,
        input: Annotated[CreateApiKeyInput, strawberry.argument(description=_INPUT)],
    ) -> CreatedApiKey:
        result = await _write(
            info,
            lambda s, p, n: administration.create_api_key(
                s, p, n, institution_id=input.institution_id, name=input.name
            ),
        )
        return CreatedApiKey(key=result.key, api_key=ApiKey.from_result(result.api_key))

    @strawberry.mutation(
        description="Revoke an API key at once (admins of its institution, super); revoking a "
        "revoked key changes nothing."
    )
    async def revoke_api_key(
        self,
        info: Info,
        api_key_id: Annotated[int, strawberry.argument(description="The key's id.")],
    ) -> ApiKey:
        result = await _write(
            info,
            lambda s, p, n: administration.revoke_api_key(s, p, n, api_key_id=api_key_id),
        )
        return ApiKey.from_result(result)

    @strawberry.mutation(
        description="Add a user, found by email, to an institution (its admins, super). An "
        "admin may add only people they can already see (members of institutions they "
        "administer); any other email, whether an account has it or not, is NOT_FOUND alike."
    )
    async def add_member(
        self, info: Info, input: Annotated[AddMemberInput, strawberry.argument(description=_INPUT)]
    ) -> Membership:
        result = await _write(
            info,
            lambda s, p, n: administration.add_member(
                s,
                p,
                n,
                institution_id=input.institution_id,
                email=input.email,
                role=input.role,
                cap_limit=input.cap_limit,
            ),
        )
        return _member(result)

    @strawberry.mutation(
        description="Change a member's role or cap in an institution (its admins, super)."
    )
    async def update_member(
        self,
        info: Info,
        input: Annotated[UpdateMemberInput, strawberry.argument(description=_INPUT)],
    ) -> Membership:
        role = _keep_not_null(input.role, "role")
        result = await _write(
            info,
            lambda s, p, n: administration.update_member(
                s,
                p,
                n,
                institution_id=input.institution_id,
                user_id=input.user_id,
                role=role,
                cap_limit=_keep(input.cap_limit),
            ),
        )
        return _member(result)

    @strawberry.mutation(description="Remove a user from an institution (its admins, super).")
    async def remove_member(
        self,
        info: Info,
        institution_id: Annotated[str, strawberry.argument(description="The institution.")],
        user_id: Annotated[int, strawberry.argument(description="The member.")],
    ) -> RemoveMemberPayload:
        removed = await _write(
            info,
            lambda s, p, n: administration.remove_member(
                s, p, n, institution_id=institution_id, user_id=user_id
            ),
        )
        return RemoveMemberPayload(removed=removed)

    @strawberry.mutation(
        description="Set an institution's default member cap and whether caps are enforced "
        "(its admins, super)."
    )
    async def update_institution_caps(
        self,
        info: Info,
        input: Annotated[UpdateInstitutionCapsInput, strawberry.argument(description=_INPUT)],
    ) -> InstitutionCaps:
        enforce = _keep_not_null(input.enforce_caps, "enforceCaps")
        result = await _write(
            info,
            lambda s, p, n: administration.update_institution_caps(
                s,
                p,
                n,
                institution_id=input.institution_id,
                default_cap=_keep(input.default_cap),
                enforce_caps=enforce,
            ),
        )
        return InstitutionCaps(**fields_of(result))
