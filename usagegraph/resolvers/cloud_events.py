"""Usage as CloudEvents (`POST /v1/events`): decoding, the mapping, and the shared write.

The mapping (docs/api-reference.md, "POST /v1/events"):

- `id` (required, 1..255 characters) and `source` (required, 1..1024) name the event: the
  pair is its idempotency key, scoped to the subject like recordUsage's keys are to a user;
- `specversion` must be `1.0`; `type` is required (1..255) and is not stored;
- `subject` is the user id (decimal digits, as CloudEvents attributes are strings);
- `time` is occurredAt and must carry an offset (`Z` or `+02:00`);
- `data` holds recordUsage's other fields: `instance`, `credits` (a JSON number or a string,
  read exactly as a Decimal), `messages`, `endpoint`, `status`;
- `datacontenttype` (only `application/json`) and `dataschema` are allowed; any other
  attribute, extensions included, refuses the event.

Decoding is msgspec's, strict, straight from the request's bytes into typed structs: no
intermediate dicts, no coercion of `"5"` into 5. A batch is first split into raw elements
(`msgspec.Raw`, no parsing of their insides) so each event is judged on its own: one bad
event is refused with its index and the others go on.

Writing goes through `usage_recording.record_usage_batch` (by way of `usage_group_commit`,
which lets small requests of one caller share a transaction), the function the graph's
recordUsageBatch calls, so caps, wallet debits, rollups and idempotency cannot disagree
between the two APIs. CloudEvent keys live `EVENT_KEY_TTL` (35 days, or the acceptance window
when it is longer): at least as long as an event may still be accepted, so no replay that is
inside the window can be recorded twice. They are stored hashed with their source (a
`ce:`-prefixed digest), apart from the graph's own keys (whose 30 days are unchanged).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from usagegraph.auth.principal import Principal
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.resolvers.event_time_window import (
    EventTimeBounds,
    check_event_time,
    online_bounds,
)
from usagegraph.resolvers.usage_group_commit import UsageGroupCommit
from usagegraph.resolvers.usage_recording import (
    MAX_BATCH,
    OutcomeStatus,
    UsageEventInput,
    require_usage_recorder,
)
from usagegraph.settings import Settings

EVENT_KEY_TTL = timedelta(days=35)
MAX_ID = 255
MAX_SOURCE = 1024
MAX_TYPE = 255
KEY_PREFIX = "ce:"

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
_Source = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SOURCE)]
_Type = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TYPE)]
_Subject = Annotated[str, msgspec.Meta(pattern=r"^[1-9][0-9]{0,17}$")]
_Time = Annotated[datetime, msgspec.Meta(tz=True)]


class UsageData(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`data`: what recordUsage takes besides the user, the time and the key."""

    instance: str
    credits: Decimal
    messages: int = 1
    endpoint: str | None = None
    status: str = "success"


class CloudEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One CloudEvent 1.0 in structured mode, as this API accepts it."""

    id: _Id
    source: _Source
    specversion: Literal["1.0"]
    type: _Type
    subject: _Subject
    time: _Time
    data: UsageData
    datacontenttype: Literal["application/json"] | None = None
    dataschema: str | None = None


class _IdOnly(msgspec.Struct):
    """What a refused event's answer can still say about it: its id, if it had a string one."""

    id: Any = None


_EVENT = msgspec.json.Decoder(CloudEvent, strict=True)
_ID_ONLY = msgspec.json.Decoder(_IdOnly)
_BATCH = msgspec.json.Decoder(list[msgspec.Raw])


@dataclass(frozen=True, slots=True)
class Refusal:
    """An event that was not recorded: where it was, its id (when it had one), and why."""

    index: int
    id: str | None
    code: ErrorCode
    message: str


@dataclass(slots=True)
class EventsAnswer:
    """The counts of one request and each refused event, in request order."""

    inserted: int = 0
    duplicates: int = 0
    refusals: list[Refusal] | None = None

    def refuse(self, refusal: Refusal) -> None:
        if self.refusals is None:
            self.refusals = []
        self.refusals.append(refusal)

    @property
    def refused(self) -> int:
        return len(self.refusals or ())


@dataclass(frozen=True, slots=True)
class MappedEvent:
    """A decoded event ready for the write path, with what its answer needs."""

    index: int
    id: str
    source: str
    event: UsageEventInput


def idempotency_key(source: str, event_id: str) -> str:
    """The stored key of (source, id): CloudEvents ids are unique per source, so both make
    the key; hashed so any source length fits the key column, prefixed apart from the graph's
    client-chosen keys."""
    digest = hashlib.sha256(source.encode() + b"\x00" + event_id.encode()).hexdigest()
    return KEY_PREFIX + digest


def split_batch(body: bytes) -> list[msgspec.Raw]:
    """The elements of a batch body (a JSON array), still raw; INVALID_REQUEST if the body is
    not a JSON array at all (nothing can be answered per event then)."""
    try:
        return _BATCH.decode(body)
    except msgspec.DecodeError as error:
        raise UsageGraphError(
            ErrorCode.INVALID_REQUEST, f"the body is not a JSON array of CloudEvents: {error}"
        ) from None


def _id_of(raw: bytes | msgspec.Raw) -> str | None:
    try:
        found = _ID_ONLY.decode(raw).id
    except msgspec.DecodeError:
        return None
    return found if isinstance(found, str) else None


def map_event(
    index: int, raw: bytes | msgspec.Raw, bounds: EventTimeBounds
) -> MappedEvent | Refusal:
    """The event at `index` decoded and mapped, or its refusal (INVALID_REQUEST); `bounds`
    is the request's acceptance window (computed once per request, not per event)."""
    try:
        cloud = _EVENT.decode(raw)
    except msgspec.DecodeError as error:
        message = f"invalid CloudEvent: {error}"
        return Refusal(index, _id_of(raw), ErrorCode.INVALID_REQUEST, message)
    try:
        check_event_time(cloud.time, bounds, "time")
    except UsageGraphError as error:
        return Refusal(index, cloud.id, error.code, error.message)
    data = cloud.data
    event = UsageEventInput(
        user_id=int(cloud.subject),
        instance=data.instance,
        occurred_at=cloud.time,
        credits=data.credits,
        messages=data.messages,
        endpoint=data.endpoint,
        status=data.status,
        idempotency_key=idempotency_key(cloud.source, cloud.id),
    )
    return MappedEvent(index, cloud.id, cloud.source, event)


def key_ttl(settings: Settings) -> timedelta:
    """How long a CloudEvent's key is remembered: 35 days, or the acceptance window when an
    operator made it longer (a replay the window accepts must still read as a duplicate)."""
    return max(EVENT_KEY_TTL, settings.event_window.max_age)


def _outcome_message(item: MappedEvent, code: ErrorCode, message: str) -> str:
    """The graph's wording, put in this API's terms where it names the key."""
    if code is ErrorCode.IDEMPOTENCY_KEY_REUSED:
        return (
            f"id {item.id!r} from source {item.source!r} was already used for a different "
            "event of this subject; a retry must send the same event, a new event a new id"
        )
    return message.replace("userId", "subject").replace("occurredAt", "time")


class EventWriter:
    """Collects mapped events and writes them in chunks of at most MAX_BATCH through the
    shared write path (a small request's chunk may share its transaction with other
    requests of the same caller: `usage_group_commit`); the answer accumulates across
    chunks."""

    def __init__(
        self,
        writes: UsageGroupCommit,
        principal: Principal,
        now: datetime,
        settings: Settings,
    ) -> None:
        require_usage_recorder(principal)  # refuse the whole request before reading it
        self.writes = writes
        self.principal = principal
        self.settings = settings
        self.bounds = online_bounds(settings.event_window, now)
        self.answer = EventsAnswer()
        self.pending: list[MappedEvent] = []
        self.refusals: list[Refusal] = []
        self.written = False  # whether a chunk went to the write (which checks the key)

    async def add(self, index: int, raw: bytes | msgspec.Raw) -> None:
        mapped = map_event(index, raw, self.bounds)
        if isinstance(mapped, Refusal):
            self.refusals.append(mapped)
            return
        self.pending.append(mapped)
        if len(self.pending) >= MAX_BATCH:
            await self.flush()

    async def flush(self) -> None:
        """Write the pending events (one transaction) and count what became of them."""
        items, self.pending = self.pending, []
        if not items:
            return
        events = [item.event for item in items]
        outcomes = await self.writes.record(self.principal, events, key_ttl(self.settings))
        self.written = True
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome.status is OutcomeStatus.INSERTED:
                self.answer.inserted += 1
            elif outcome.status is OutcomeStatus.DUPLICATE:
                self.answer.duplicates += 1
            else:
                assert outcome.code is not None
                message = _outcome_message(item, outcome.code, outcome.message or "")
                self.refusals.append(Refusal(item.index, item.id, outcome.code, message))

    async def finish(self) -> EventsAnswer:
        await self.flush()
        if not self.written and self.principal.unchecked_key is not None:
            # Nothing to write (every event refused on reading): the key is checked all the
            # same, so a revoked key is never answered 200.
            await self.writes.record(self.principal, [], key_ttl(self.settings))
        for refusal in sorted(self.refusals, key=lambda r: r.index):
            self.answer.refuse(refusal)
        return self.answer


__all__ = [
    "EVENT_KEY_TTL",
    "CloudEvent",
    "EventWriter",
    "EventsAnswer",
    "Refusal",
    "UsageData",
    "idempotency_key",
    "split_batch",
]
