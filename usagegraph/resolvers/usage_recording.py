"""Usage ingestion: who may record what, idempotency, wallet debits and member caps.

Rules (CONTRACT.md, issue 5):
- An institution's API key records usage for members of that institution, in that instance
  only; super records anything; every other caller is FORBIDDEN (anonymous: UNAUTHORIZED).
- Each event is validated on its own: credits >= 0 with at most 6 decimals, messages >= 0,
  status success/failed, an aware occurred_at inside the acceptance window
  (`resolvers.event_time_window`: by default the last 35 days up to 5 minutes ahead, for
  every caller, super included), instance `personal` or a 24-hex institution id, endpoint
  <= 200 and key 1..255 characters.
- An idempotency key is scoped to the event's user. Within KEY_TTL of its first use a replay
  writes nothing and answers DUPLICATE with the first event (same id, same over_cap flag);
  a key used for another instance of that user is refused (INVALID_REQUEST) rather than
  answered with an event of another instance. Only inserted events claim keys: a refused
  event wrote nothing, so sending it again (after a top-up, say) is judged afresh.
- Personal usage debits the user's wallet in the same transaction (entry amount = credits,
  reference = the event id; no entry for 0 credits); without enough available credits the
  event is refused with INSUFFICIENT_CREDITS. The debit may trigger auto-reload, within the
  wallet's limit of reloads per period (`resolvers.wallet_operations`).
- Institution usage never touches a wallet. Its cap is the membership's cap_limit, else the
  institution's default_cap (none: no limit). When the member's lifetime credits there
  (forgotten usage included) plus this event's credits exceed the cap, the event is refused
  with CAP_REACHED if the institution enforces caps, else recorded with over_cap = true.
- No user's lifetime credits in an instance may pass `money_range.MAX_STORED` (the rollups
  are parts of that sum): an event that would take them past it is refused with
  INVALID_REQUEST, like an event past an enforced cap.
- A batch holds at most MAX_BATCH events and answers per event (inserted, duplicate, or
  refused with a code); events are judged in order, each against what the accepted ones
  before it left (balance, lifetime credits), and a refused event never loses the others.

Concurrency: the batch runs in one transaction. Wallets of personal events and the
memberships of capped institution events are locked (in key order) before anything is read
for a decision, so concurrent writers to one wallet or one member's cap serialise. Keys are
claimed through the primary key (user_id, key): if a concurrent transaction claimed one first,
the whole batch is rolled back and judged again, and the key then reads as a duplicate.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph import money_range
from usagegraph.auth.access import acts_for_institution, is_super
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.datasources import usage_writes
from usagegraph.datasources.transactions import WriteConflict, run_write
from usagegraph.datasources.usage_writes import (
    ClaimedKey,
    KeyRef,
    MemberCap,
    MemberKey,
    UsageKey,
)
from usagegraph.datasources.wallet_writes import LedgerBook, Posting, lock_wallets
from usagegraph.db.models import PERSONAL_INSTANCE, UsageEvent
from usagegraph.db.models.usage import USAGE_STATUSES
from usagegraph.errors import (
    ErrorCode,
    UsageGraphError,
    forbidden,
    invalid,
    unauthorized,
)
from usagegraph.input_ids import INSTITUTION_ID_PATTERN, is_id
from usagegraph.input_text import NUL, NUL_REFUSED
from usagegraph.money import canonical_money
from usagegraph.observability.metrics import count_usage_outcomes
from usagegraph.resolvers import alerts
from usagegraph.resolvers.event_time_window import (
    EventTimeBounds,
    check_event_time,
    online_bounds,
)
from usagegraph.resolvers.wallet_operations import open_book, spend
from usagegraph.settings import AutoReloadLimit, EventTimeWindow
from usagegraph.shapes import described

MAX_BATCH = 1000
DEFAULT_WINDOW = EventTimeWindow()
DEFAULT_RELOAD_LIMIT = AutoReloadLimit()
KEY_TTL = timedelta(days=30)
MAX_MESSAGES = 2**31 - 1
MAX_ENDPOINT = 200
MAX_KEY = 255
USAGE_DESCRIPTION = "Usage"
_INSTITUTION_ID = re.compile(INSTITUTION_ID_PATTERN)


class OutcomeStatus(StrEnum):
    INSERTED = "inserted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class UsageEventInput:
    """One event as a client sends it (already parsed into Python types)."""

    user_id: int
    instance: str  # `personal` or an institution id
    occurred_at: datetime
    credits: Decimal = Decimal(0)
    messages: int = 1
    endpoint: str | None = None
    status: str = "success"
    idempotency_key: str | None = None

    @property
    def institution_id(self) -> str | None:
        return None if self.instance == PERSONAL_INSTANCE else self.instance


@dataclass(frozen=True, slots=True)
class RecordedUsage:
    """A stored usage event."""

    id: int = described("The event's id.", graph_name="event_id")
    user_id: int = described("The user who made the call.")
    instance: str = described("`personal` or the institution id.")
    occurred_at: datetime = described("When the call happened.")
    credits: Decimal = described("Credits it cost.")
    messages: int = described("Messages it counts.")
    endpoint: str | None = described("The endpoint called.")
    status: str = described("`success` or `failed`.")
    over_cap: bool = described(
        "Recorded although it took the member past their cap (the institution flags instead "
        "of enforcing)."
    )
    forgotten: bool = described("Hidden from usage reports by its user.")
    created_at: datetime = described("When it was recorded.")


@dataclass(frozen=True, slots=True)
class UsageOutcome:
    """What became of one event: its stored event (inserted or the first of a duplicate), or
    the refusal's code and message."""

    index: int
    status: OutcomeStatus
    event: RecordedUsage | None = None
    code: ErrorCode | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class UsageBatchResult:
    outcomes: tuple[UsageOutcome, ...]

    def count(self, status: OutcomeStatus) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status is status)

    @property
    def inserted(self) -> int:
        return self.count(OutcomeStatus.INSERTED)

    @property
    def duplicates(self) -> int:
        return self.count(OutcomeStatus.DUPLICATE)

    @property
    def refused(self) -> int:
        return self.count(OutcomeStatus.REFUSED)


# --- pure rules ----------------------------------------------------------------------------


def require_usage_recorder(principal: Principal) -> None:
    """API keys and super record usage; users (admins included) do not."""
    if not principal.is_authenticated:
        raise unauthorized()
    if principal.kind is CallerKind.INSTITUTION or is_super(principal):
        return
    raise forbidden("only an institution's API key or a super user may record usage")


def _credits(value: Decimal) -> Decimal:
    """The credits, checked (`money_range.amount`, and not negative); the very object given
    when it already was an exact Decimal."""
    checked = money_range.amount(value, "credits")
    credits = value if isinstance(value, Decimal) else checked
    if credits < 0:
        raise invalid("credits must not be negative")
    return credits


def validate_event(event: UsageEventInput, bounds: EventTimeBounds) -> UsageEventInput:
    """The event with its values checked (INVALID_REQUEST naming the first bad field);
    `bounds` is the acceptance window of event times at this request's now."""
    if event.instance != PERSONAL_INSTANCE and not _INSTITUTION_ID.fullmatch(event.instance):
        raise invalid("instance must be `personal` or a 24-character lowercase hex id")
    if not is_id(event.user_id):
        raise invalid("userId must be a positive integer")
    check_event_time(event.occurred_at, bounds, "occurredAt")
    if not 0 <= event.messages <= MAX_MESSAGES:
        raise invalid(f"messages must be an integer from 0 to {MAX_MESSAGES}")
    if event.status not in USAGE_STATUSES:
        raise invalid("status must be success or failed")
    if event.endpoint is not None and len(event.endpoint) > MAX_ENDPOINT:
        raise invalid(f"endpoint is longer than {MAX_ENDPOINT} characters")
    if event.endpoint is not None and NUL in event.endpoint:
        raise invalid(f"endpoint {NUL_REFUSED}")
    key = event.idempotency_key
    if key is not None and not 1 <= len(key) <= MAX_KEY:
        raise invalid(f"idempotencyKey must be 1 to {MAX_KEY} characters")
    credits = _credits(event.credits)
    return event if credits is event.credits else replace(event, credits=credits)


def over_cap(cap: MemberCap | None, lifetime: Decimal, credits: Decimal) -> bool:
    """This event would take the member past their cap (never without a cap)."""
    return cap is not None and cap.cap is not None and lifetime + credits > cap.cap


def recorded(row: UsageEvent) -> RecordedUsage:
    return RecordedUsage(
        id=row.id,
        user_id=row.user_id,
        instance=row.institution_id or PERSONAL_INSTANCE,
        occurred_at=row.occurred_at,
        credits=row.credits,
        messages=row.messages,
        endpoint=row.endpoint,
        status=row.status,
        over_cap=bool(row.over_cap),
        forgotten=bool(row.forgotten),
        created_at=row.created_at,
    )


def _refused(index: int, error: UsageGraphError) -> UsageOutcome:
    return UsageOutcome(index, OutcomeStatus.REFUSED, code=error.code, message=error.message)


def _lifetime_after(facts: _Facts, event: UsageEventInput) -> tuple[UsageKey, Decimal]:
    """The user's lifetime credits in the event's instance once it is counted; INVALID_REQUEST
    when that would pass the largest sum stored (every rollup of the pair is a part of it).
    The caller records the new total only once the event is accepted."""
    key = (event.user_id, event.instance)
    lifetime = facts.lifetime.get(key, Decimal(0)) + event.credits
    what = f"the lifetime usage of user {event.user_id} in {event.instance}"
    return key, money_range.stored_sum(lifetime, "credits", what)


# --- one transaction over a batch ----------------------------------------------------------


@dataclass(slots=True)
class _Accepted:
    """An event that will be inserted; `debit` is its wallet entry (personal, credits > 0)."""

    index: int
    event: UsageEventInput
    over_cap: bool
    debit: Posting | None
    id: int | None = None


def payload_digest(event: UsageEventInput) -> str:
    """SHA-256 of what an event says, in canonical form, to tell a replay from a reuse.

    Two spellings of one event digest alike: the same instant in another offset, `1.5` and
    `1.50` credits. Anything that would store a different event differs.
    """
    canonical = [
        event.user_id,
        event.instance,
        event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        str(canonical_money(event.credits)),
        event.messages,
        event.endpoint,
        event.status,
    ]
    return hashlib.sha256(orjson.dumps(canonical)).hexdigest()


def key_reused(key: str) -> UsageGraphError:
    return UsageGraphError(
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        f"idempotencyKey {key!r} was already used for a different event of this user; "
        "a retry must send the same event, a new event a new key",
    )


@dataclass(slots=True)
class _Facts:
    """What the transaction read (after locking) to judge the events; `lifetime` holds each
    (user, instance)'s all-time credits, which the events judged so far add to."""

    members: dict[MemberKey, MemberCap]
    lifetime: dict[UsageKey, Decimal]
    keys: dict[KeyRef, ClaimedKey]  # live keys whose first event still exists
    users: set[int]
    institutions: set[str]


@dataclass(slots=True)
class _Judgement:
    """Events judged so far in batch order, and the keys claimed by accepted ones."""

    accepted: list[_Accepted] = field(default_factory=list)
    outcomes: dict[int, UsageOutcome] = field(default_factory=dict)
    claimed: dict[KeyRef, _Accepted] = field(default_factory=dict)
    duplicates_of: dict[int, _Accepted] = field(default_factory=dict)


class _BatchWriter:
    """Judges validated events against locked facts and writes the accepted ones."""

    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        now: datetime,
        events: Sequence[tuple[int, UsageEventInput]],
        reload_limit: AutoReloadLimit,
        key_ttl: timedelta,
    ) -> None:
        self.session = session
        self.principal = principal
        self.now = now
        self.events = events
        self.reload_limit = reload_limit
        self.key_ttl = key_ttl

    async def run(self) -> dict[int, UsageOutcome]:
        facts, book = await self._read_locked()
        lifetime_before = dict(facts.lifetime)
        available_before = alerts.available_of(book.wallets)
        judgement = _Judgement()
        for index, event in self.events:
            try:
                self._judge(index, event, facts, book, judgement)
            except UsageGraphError as error:
                judgement.outcomes[index] = _refused(index, error)
        await self._write(judgement, book)
        await self._alert(judgement, facts, lifetime_before, book, available_before)
        return judgement.outcomes

    async def _alert(
        self,
        judgement: _Judgement,
        facts: _Facts,
        lifetime_before: dict[UsageKey, Decimal],
        book: LedgerBook,
        available_before: dict[int, Decimal],
    ) -> None:
        """Crossings this batch caused, checked in its transaction (`resolvers.alerts`):
        capped members' caps (their memberships are locked), the institutions' period
        totals (their rules are locked there), and the debited wallets (locked)."""
        members: dict[UsageKey, alerts.MemberUsage] = {}
        periods: dict[str, set[str]] = {}
        for item in judgement.accepted:
            institution = item.event.institution_id
            if institution is None:
                continue
            periods.setdefault(institution, set()).add(alerts.period_of(item.event.occurred_at))
            key = (item.event.user_id, item.event.instance)
            cap = facts.members.get((item.event.user_id, institution))
            if cap is not None and cap.cap is not None and key not in members:
                members[key] = alerts.MemberUsage(
                    user_id=item.event.user_id,
                    institution_id=institution,
                    cap=cap.cap,
                    before=lifetime_before.get(key, Decimal(0)),
                    after=facts.lifetime.get(key, Decimal(0)),
                )
        if periods:
            await alerts.after_usage(self.session, self.now, members.values(), periods)
        if book.postings:
            await alerts.after_wallet_moves(self.session, self.now, book, available_before)

    # -- reading ----------------------------------------------------------------------------

    def _may_write(self, event: UsageEventInput) -> bool:
        """Whether the caller could write this event at all (an API key: only in its own
        institution). Nothing is read, let alone locked, for the others: they are refused."""
        if self.principal.kind is CallerKind.INSTITUTION:
            return event.institution_id == self.principal.institution_id
        return True

    async def _read_locked(self) -> tuple[_Facts, LedgerBook]:
        session = self.session
        events = [event for _, event in self.events if self._may_write(event)]
        members = {(e.user_id, e.institution_id) for e in events if e.institution_id}
        caps = await usage_writes.member_caps(session, members)
        capped = {key for key, cap in caps.items() if cap.cap is not None}
        # Lock, then re-read the capped memberships: their caps and usage are now stable.
        caps.update(await usage_writes.member_caps(session, capped, lock=True))
        personal = {e.user_id for e in events if e.institution_id is None}
        wallets = await lock_wallets(session, personal)
        refs = {(e.user_id, e.idempotency_key) for e in events if e.idempotency_key}
        keys = await usage_writes.live_keys(session, refs, self.now - self.key_ttl)
        await usage_writes.drop_keys(
            session, [ref for ref, claimed in keys.items() if claimed.event is None]
        )
        # Lifetime credits, for caps and for the largest sum stored: uncapped members' came
        # with their caps; capped members' and personal usage's are read now, under the locks
        # of their memberships and wallets.
        lifetime = {key: cap.lifetime for key, cap in caps.items() if key not in capped}
        spending = {(user, PERSONAL_INSTANCE) for user in personal}
        lifetime.update(await usage_writes.lifetime_credits(session, capped | spending))
        facts = _Facts(
            members=caps,
            lifetime=lifetime,
            keys={ref: claimed for ref, claimed in keys.items() if claimed.event is not None},
            users=set(),
            institutions=set(),
        )
        if is_super(self.principal):  # only super may name users and institutions freely
            facts.users = await usage_writes.existing_users(session, {e.user_id for e in events})
            facts.institutions = await usage_writes.existing_institutions(
                session, {e.institution_id for e in events if e.institution_id}
            )
        return facts, await open_book(session, self.now, wallets, self.reload_limit)

    # -- judging ----------------------------------------------------------------------------

    def _authorize(self, event: UsageEventInput, facts: _Facts) -> None:
        """API keys: members of their own institution only. Super: anything that exists."""
        member = (event.user_id, event.institution_id or "") in facts.members
        if self.principal.kind is CallerKind.INSTITUTION:
            if event.institution_id is None or not acts_for_institution(
                self.principal, event.institution_id
            ):
                raise forbidden("an API key records usage only in its own institution")
            if not member:
                raise forbidden("the user is not a member of this institution")
            return
        if event.user_id not in facts.users:
            raise invalid(f"user {event.user_id} does not exist")
        if event.institution_id is not None:
            if event.institution_id not in facts.institutions:
                raise invalid(f"institution {event.institution_id} does not exist")
            if not member:
                raise invalid(f"user {event.user_id} is not a member of {event.institution_id}")

    def _replay(
        self, index: int, event: UsageEventInput, facts: _Facts, judgement: _Judgement
    ) -> bool:
        """Answer a replayed key (DUPLICATE, or refused for another instance); False if new."""
        if event.idempotency_key is None:
            return False
        ref = (event.user_id, event.idempotency_key)
        claimed = facts.keys.get(ref)
        if claimed is not None:
            assert claimed.event is not None  # keys whose events are gone were dropped
            if claimed.payload_digest is None:  # claimed before digests: the instance decides
                if (claimed.event.institution_id or PERSONAL_INSTANCE) != event.instance:
                    raise key_reused(event.idempotency_key)
            elif claimed.payload_digest != payload_digest(event):
                raise key_reused(event.idempotency_key)
            judgement.outcomes[index] = UsageOutcome(
                index, OutcomeStatus.DUPLICATE, event=recorded(claimed.event)
            )
            return True
        pending = judgement.claimed.get(ref)
        if pending is None:
            return False
        if payload_digest(pending.event) != payload_digest(event):
            raise key_reused(event.idempotency_key)
        judgement.duplicates_of[index] = pending
        return True

    def _judge(
        self,
        index: int,
        event: UsageEventInput,
        facts: _Facts,
        book: LedgerBook,
        judgement: _Judgement,
    ) -> None:
        self._authorize(event, facts)
        if self._replay(index, event, facts, judgement):
            return
        if event.institution_id is None:
            accepted = self._personal(index, event, facts, book)
        else:
            accepted = self._institutional(index, event, facts)
        judgement.accepted.append(accepted)
        if event.idempotency_key is not None:
            judgement.claimed[(event.user_id, event.idempotency_key)] = accepted

    def _personal(
        self, index: int, event: UsageEventInput, facts: _Facts, book: LedgerBook
    ) -> _Accepted:
        key, lifetime = _lifetime_after(facts, event)
        debit = None
        if event.credits > 0:
            debit, _reload = spend(
                book,
                book.wallets.get(event.user_id),
                event.credits,
                description=USAGE_DESCRIPTION,
                metadata={"endpoint": event.endpoint} if event.endpoint else None,
            )
        facts.lifetime[key] = lifetime
        return _Accepted(index, event, over_cap=False, debit=debit)

    def _institutional(self, index: int, event: UsageEventInput, facts: _Facts) -> _Accepted:
        cap = facts.members.get((event.user_id, event.institution_id or ""))
        lifetime = facts.lifetime.get((event.user_id, event.instance), Decimal(0))
        flagged = over_cap(cap, lifetime, event.credits)
        if flagged and cap is not None and cap.enforce:
            raise UsageGraphError(
                ErrorCode.CAP_REACHED,
                f"Cap reached: {lifetime} of {cap.cap} credits used, {event.credits} more "
                "would exceed it",
            )
        key, after = _lifetime_after(facts, event)
        facts.lifetime[key] = after
        return _Accepted(index, event, over_cap=flagged, debit=None)

    # -- writing ----------------------------------------------------------------------------

    async def _write(self, judgement: _Judgement, book: LedgerBook) -> None:
        accepted = judgement.accepted
        rows = [self._row(item) for item in accepted]
        inserted = await usage_writes.insert_uncounted_events(self.session, rows)
        for item, event_id in zip(accepted, inserted.ids, strict=True):
            item.id = event_id
            if item.debit is not None:
                item.debit.reference = str(event_id)
                item.debit.metadata["usage_event_id"] = event_id
        await book.write()
        await self._claim_keys(judgement)
        # Last: the rollup rows of the current slots are what concurrent writers of the same
        # users wait for, from this update to the commit.
        await usage_writes.count_inserted_events(self.session, inserted)
        for item in accepted:
            stored = self._recorded(item)
            judgement.outcomes[item.index] = UsageOutcome(
                item.index, OutcomeStatus.INSERTED, event=stored
            )
        for index, first in judgement.duplicates_of.items():
            original = judgement.outcomes[first.index].event
            judgement.outcomes[index] = UsageOutcome(index, OutcomeStatus.DUPLICATE, event=original)

    async def _claim_keys(self, judgement: _Judgement) -> None:
        rows = [
            {
                "user_id": ref[0],
                "key": ref[1],
                "usage_event_id": item.id,
                "created_at": self.now,
                "payload_digest": payload_digest(item.event),
            }
            for ref, item in judgement.claimed.items()
        ]
        held = await usage_writes.claim_keys(self.session, rows, self.now - self.key_ttl)
        if len(held) != len(rows):
            raise WriteConflict("an idempotency key was claimed by a concurrent request")

    def _row(self, item: _Accepted) -> dict[str, object]:
        event = item.event
        return {
            "user_id": event.user_id,
            "institution_id": event.institution_id,
            "occurred_at": event.occurred_at,
            "credits": event.credits,
            "messages": event.messages,
            "endpoint": event.endpoint,
            "status": event.status,
            "forgotten": False,
            "over_cap": item.over_cap,
            "created_at": self.now,
        }

    def _recorded(self, item: _Accepted) -> RecordedUsage:
        event = item.event
        assert item.id is not None
        return RecordedUsage(
            id=item.id,
            user_id=event.user_id,
            instance=event.instance,
            occurred_at=event.occurred_at,
            credits=event.credits,
            messages=event.messages,
            endpoint=event.endpoint,
            status=event.status,
            over_cap=item.over_cap,
            forgotten=False,
            created_at=self.now,
        )


# --- public --------------------------------------------------------------------------------


async def record_usage_batch(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    events: Sequence[UsageEventInput],
    *,
    window: EventTimeWindow = DEFAULT_WINDOW,
    reload_limit: AutoReloadLimit = DEFAULT_RELOAD_LIMIT,
    key_ttl: timedelta = KEY_TTL,
    max_events: int = MAX_BATCH,
    admit: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> UsageBatchResult:
    """Record up to `max_events` events in one transaction, answering for each one; `window`
    and `reload_limit` are the deployment's settings, `key_ttl` how long the keys of these
    events are remembered (the graph's 30 days; CloudEvents keep theirs longer).
    `max_events` is a request's limit (MAX_BATCH) unless the caller groups requests
    (`usage_group_commit`). `admit` runs first in the write's transaction (every attempt),
    even when no event is valid; what it raises ends the write with nothing written (the
    group commit checks unverified API keys there).

    The one write path of usage: the graph's recordUsage and recordUsageBatch and
    `POST /v1/events` (`resolvers.cloud_events`) all end here."""
    require_usage_recorder(principal)
    if len(events) > max_events:
        raise invalid(f"a batch holds at most {max_events} events, got {len(events)}")
    bounds = online_bounds(window, now)
    outcomes: dict[int, UsageOutcome] = {}
    valid: list[tuple[int, UsageEventInput]] = []
    for index, event in enumerate(events):
        try:
            valid.append((index, validate_event(event, bounds)))
        except UsageGraphError as error:
            outcomes[index] = _refused(index, error)
    if valid or admit is not None:

        async def work(session: AsyncSession) -> dict[int, UsageOutcome]:
            if admit is not None:
                await admit(session)
            if not valid:
                return {}
            return await _BatchWriter(session, principal, now, valid, reload_limit, key_ttl).run()

        outcomes.update(await run_write(session, work))
    result = UsageBatchResult(outcomes=tuple(outcomes[i] for i in range(len(events))))
    # Counted once the batch is settled (a retried transaction judged its events again), so
    # every way in (recordUsage, recordUsageBatch, a bulk endpoint) is counted alike.
    count_usage_outcomes(
        (o.status.value, o.code.value if o.code is not None else None) for o in result.outcomes
    )
    return result


async def record_usage(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    event: UsageEventInput,
    *,
    window: EventTimeWindow = DEFAULT_WINDOW,
    reload_limit: AutoReloadLimit = DEFAULT_RELOAD_LIMIT,
) -> UsageOutcome:
    """Record one event: INSERTED or DUPLICATE, or raise the refusal (nothing written)."""
    result = await record_usage_batch(
        session, principal, now, [event], window=window, reload_limit=reload_limit
    )
    outcome = result.outcomes[0]
    if outcome.status is OutcomeStatus.REFUSED:
        assert outcome.code is not None
        assert outcome.message is not None
        raise UsageGraphError(outcome.code, outcome.message)
    return outcome
