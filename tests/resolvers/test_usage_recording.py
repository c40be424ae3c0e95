"""Usage ingestion rules: who may record, idempotency, wallet debits, caps, batches."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import add_institution, add_user
from tests.fixtures.usage_recording_data import (
    ACME,
    ANONYMOUS,
    API_ACME,
    EDIT,
    NOW,
    OTHER,
    add_usage,
    assert_chain,
    count_rows,
    event,
    key_rows,
    ledger,
    principal,
    run,
    set_caps,
    usage_rows,
    wallet,
)
from usagegraph.auth.principal import Principal
from usagegraph.db.engine import session_factory
from usagegraph.db.models import LedgerEntry, UsageEvent
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.resolvers import wallet_operations as ops
from usagegraph.resolvers.usage_recording import (
    MAX_BATCH,
    OutcomeStatus,
    UsageBatchResult,
    UsageEventInput,
    UsageOutcome,
    record_usage,
    record_usage_batch,
)


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    await add_institution(engine, institution_id=OTHER, name="Other")
    return {
        "super": await add_user(engine, email="root@ug.io", role="super"),
        "ada": await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"}),
        "bob": await add_user(engine, email="bob@acme.edu", member_of={ACME: "user"}),
        "olga": await add_user(engine, email="olga@other.edu", member_of={OTHER: "user"}),
        "admin": await add_user(
            engine,
            email="admin@acme.edu",
            role="admin",
            permissions=EDIT,
            member_of={ACME: "admin"},
        ),
    }


@pytest.fixture
async def root(engine: AsyncEngine, people: dict[str, int]) -> Principal:
    return await principal(engine, people["super"])


async def record(
    engine: AsyncEngine, who: Principal, item: UsageEventInput, now: datetime = NOW
) -> UsageOutcome:
    return await run(engine, lambda s: record_usage(s, who, now, item))


async def batch(
    engine: AsyncEngine, who: Principal, items: list[UsageEventInput]
) -> UsageBatchResult:
    return await run(engine, lambda s: record_usage_batch(s, who, NOW, items))


async def refusal(engine: AsyncEngine, who: Principal, item: UsageEventInput) -> UsageGraphError:
    with pytest.raises(UsageGraphError) as refused:
        await record(engine, who, item)
    return refused.value


async def top_up(engine: AsyncEngine, root: Principal, user_id: int, amount: str) -> None:
    await run(
        engine, lambda s: ops.credit_wallet(s, root, NOW, user_id=user_id, amount=Decimal(amount))
    )


# --- who may record ------------------------------------------------------------------------


async def test_api_key_records_usage_of_its_members(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    item = event(people["ada"], ACME, "2.5", endpoint="/v1/chat", messages=3, status="failed")
    outcome = await record(engine, API_ACME, item)
    assert outcome.status is OutcomeStatus.INSERTED
    assert outcome.event is not None
    (row,) = await usage_rows(engine)
    assert row.id == outcome.event.id
    assert (row.user_id, row.institution_id, row.credits, row.messages) == (
        people["ada"],
        ACME,
        Decimal("2.5"),
        3,
    )
    assert (row.endpoint, row.status, row.over_cap, row.forgotten) == (
        "/v1/chat",
        "failed",
        False,
        False,
    )
    assert row.occurred_at == item.occurred_at
    assert await wallet(engine, people["ada"]) is None  # institution usage never touches it


@pytest.mark.parametrize(
    ("user", "instance"),
    [("olga", ACME), ("olga", OTHER), ("ada", OTHER), ("ada", "personal"), ("super", ACME)],
)
async def test_api_key_may_not_record_outside_its_members_and_institution(
    engine: AsyncEngine, people: dict[str, int], user: str, instance: str
) -> None:
    error = await refusal(engine, API_ACME, event(people[user], instance))
    assert error.code is ErrorCode.FORBIDDEN
    assert await count_rows(engine, UsageEvent) == 0


async def test_api_key_for_an_unknown_user_is_forbidden_like_a_non_member(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    error = await refusal(engine, API_ACME, event(424242, ACME))
    assert error.code is ErrorCode.FORBIDDEN
    assert error.message == "the user is not a member of this institution"


@pytest.mark.parametrize("who", ["ada", "admin"])
async def test_users_and_admins_may_not_record_usage(
    engine: AsyncEngine, people: dict[str, int], who: str
) -> None:
    caller = await principal(engine, people[who])
    error = await refusal(engine, caller, event(people["ada"], ACME))
    assert error.code is ErrorCode.FORBIDDEN
    with pytest.raises(UsageGraphError) as refused:
        await batch(engine, caller, [event(people["ada"], ACME)])
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert await count_rows(engine, UsageEvent) == 0


async def test_anonymous_may_not_record_usage(engine: AsyncEngine, people: dict[str, int]) -> None:
    assert (
        await refusal(engine, ANONYMOUS, event(people["ada"], ACME))
    ).code is ErrorCode.UNAUTHORIZED


async def test_super_records_anywhere_but_only_for_existing_members(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    assert (
        await record(engine, root, event(people["olga"], OTHER))
    ).status is OutcomeStatus.INSERTED
    for item, message in (
        (event(9999, "personal", "0"), "user 9999 does not exist"),
        (event(people["ada"], "c" * 24), f"institution {'c' * 24} does not exist"),
        (event(people["ada"], OTHER), f"user {people['ada']} is not a member of {OTHER}"),
    ):
        error = await refusal(engine, root, item)
        assert (error.code, error.message) == (ErrorCode.INVALID_REQUEST, message)


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"credits": Decimal("-0.5")},
        {"credits": Decimal("0.0000001")},
        {"credits": Decimal("NaN")},
        {"messages": -1},
        {"status": "ok"},
        {"instance": "ACME"},
        {"instance": "a" * 23},
        {"occurred_at": datetime(2026, 5, 20, 10)},  # naive
        {"occurred_at": NOW + timedelta(minutes=6)},
        {"endpoint": "/" * 201},
        {"idempotency_key": ""},
        {"idempotency_key": "k" * 256},
    ],
)
async def test_invalid_events_are_refused(
    engine: AsyncEngine, people: dict[str, int], change: dict[str, object]
) -> None:
    item = replace(event(people["ada"], ACME), **change)  # type: ignore[arg-type]
    assert (await refusal(engine, API_ACME, item)).code is ErrorCode.INVALID_REQUEST
    assert await count_rows(engine, UsageEvent) == 0


async def test_zero_credits_and_zero_messages_are_allowed(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    item = event(people["ada"], ACME, "0", messages=0, minutes_ago=0)
    assert (await record(engine, API_ACME, item)).status is OutcomeStatus.INSERTED


# --- personal usage debits the wallet ------------------------------------------------------


async def test_personal_usage_debits_the_wallet_in_the_same_write(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await top_up(engine, root, ada, "10")
    outcome = await record(engine, root, event(ada, "personal", "2.25", endpoint="/v1/chat"))
    assert outcome.event is not None
    entries = await ledger(engine, ada)
    debit = entries[-1]
    # 10 - 2.25 = 7.75
    assert (debit.type, debit.amount, debit.balance_after) == (
        "debit",
        Decimal("2.25"),
        Decimal("7.75"),
    )
    assert debit.reference == str(outcome.event.id)
    assert debit.metadata_ == {"endpoint": "/v1/chat", "usage_event_id": outcome.event.id}
    stored = await wallet(engine, ada)
    assert stored is not None
    assert stored.balance == Decimal("7.75")


async def test_personal_usage_beyond_available_writes_nothing(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await top_up(engine, root, ada, "10")
    await run(engine, lambda s: ops.reserve_credits(s, root, NOW, user_id=ada, amount=Decimal(8)))
    error = await refusal(engine, root, event(ada, "personal", "2.5", key="k1"))  # 2 available
    assert error.code is ErrorCode.INSUFFICIENT_CREDITS
    assert await usage_rows(engine) == []
    assert len(await ledger(engine, ada)) == 1
    assert await key_rows(engine) == []  # a refusal claims no key: a retry is judged afresh
    await top_up(engine, root, ada, "1")
    retried = await record(engine, root, event(ada, "personal", "2.5", key="k1"))
    assert retried.status is OutcomeStatus.INSERTED


async def test_personal_zero_credit_usage_needs_no_wallet(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    outcome = await record(engine, root, event(people["bob"], "personal", "0"))
    assert outcome.status is OutcomeStatus.INSERTED
    assert await ledger(engine, people["bob"]) == []


async def test_personal_usage_triggers_auto_reload(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await top_up(engine, root, ada, "12")
    await run(
        engine,
        lambda s: ops.set_auto_reload(
            s, root, NOW, user_id=ada, enabled=True, threshold=Decimal(10), amount=Decimal(20)
        ),
    )
    await record(engine, root, event(ada, "personal", "1"))  # 12 -> 11
    await record(engine, root, event(ada, "personal", "2"))  # 11 -> 9, reload -> 29
    entries = await ledger(engine, ada)
    assert [(e.type, e.balance_after) for e in entries] == [
        ("credit", Decimal(12)),
        ("debit", Decimal(11)),
        ("debit", Decimal(9)),
        ("credit", Decimal(29)),
    ]
    assert entries[-1].description == "Auto-reload"


# --- idempotency ---------------------------------------------------------------------------


async def test_a_replayed_key_returns_the_first_event_and_writes_nothing(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await top_up(engine, root, ada, "10")
    first = await record(engine, root, event(ada, "personal", "3", key="evt-1"))
    # The same event spelled differently (1 decimal more, another offset) is a replay.
    sent = event(ada, "personal", "3.000", key="evt-1")
    respelled = replace(sent, occurred_at=sent.occurred_at.astimezone(timezone(timedelta(hours=5))))
    again = await record(engine, root, respelled)
    assert again.status is OutcomeStatus.DUPLICATE
    assert again.event == first.event
    assert len(await usage_rows(engine)) == 1
    assert [e.balance_after for e in await ledger(engine, ada)] == [10, 7]  # one debit only


@pytest.mark.parametrize(
    "changed",
    [
        {"credits": Decimal("4")},
        {"messages": 2},
        {"endpoint": "/other"},
        {"status": "failed"},
        {"occurred_at": NOW - timedelta(minutes=5)},
    ],
    ids=["credits", "messages", "endpoint", "status", "occurred_at"],
)
async def test_a_key_reused_for_another_event_is_refused_and_writes_nothing(
    engine: AsyncEngine, people: dict[str, int], root: Principal, changed: dict[str, object]
) -> None:
    ada = people["ada"]
    await top_up(engine, root, ada, "10")
    sent = event(ada, "personal", "3", key="evt-1")
    await record(engine, root, sent)
    error = await refusal(engine, root, replace(sent, **changed))
    assert error.code is ErrorCode.IDEMPOTENCY_KEY_REUSED
    assert "'evt-1'" in error.message
    assert len(await usage_rows(engine)) == 1
    assert [e.balance_after for e in await ledger(engine, ada)] == [10, 7]


async def test_keys_are_scoped_to_the_events_user(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    one = await record(engine, API_ACME, event(people["ada"], ACME, key="shared"))
    two = await record(engine, API_ACME, event(people["bob"], ACME, key="shared"))
    assert (one.status, two.status) == (OutcomeStatus.INSERTED, OutcomeStatus.INSERTED)
    assert one.event is not None
    assert two.event is not None
    assert one.event.id != two.event.id


async def test_a_key_of_another_instance_is_refused_not_revealed(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    await record(engine, root, event(people["ada"], "personal", "0", key="evt-9"))
    error = await refusal(engine, API_ACME, event(people["ada"], ACME, key="evt-9"))
    assert error.code is ErrorCode.IDEMPOTENCY_KEY_REUSED  # another event: nothing of it shown
    assert error.message.startswith("idempotencyKey 'evt-9' was already used")
    assert len(await usage_rows(engine)) == 1


async def test_a_key_older_than_30_days_no_longer_matches(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    ada = people["ada"]
    old_now = NOW - timedelta(days=30, seconds=1)
    old_event = replace(event(ada, ACME, key="evt-old"), occurred_at=old_now)
    old = await record(engine, API_ACME, old_event, now=old_now)
    within = NOW - timedelta(days=30)
    new_event = replace(event(ada, ACME, key="evt-new"), occurred_at=within)
    kept = await record(engine, API_ACME, new_event, now=within)
    # evt-new was claimed exactly 30 days ago: still live
    assert (await record(engine, API_ACME, new_event)).status is OutcomeStatus.DUPLICATE
    fresh = await record(engine, API_ACME, event(ada, ACME, key="evt-old"))
    assert fresh.status is OutcomeStatus.INSERTED
    assert fresh.event is not None
    assert old.event is not None
    assert kept.event is not None
    assert fresh.event.id != old.event.id
    keys = {row.key: row for row in await key_rows(engine)}
    assert keys["evt-old"].usage_event_id == fresh.event.id  # the key now names the new event
    assert keys["evt-old"].created_at == NOW


async def test_a_key_whose_event_is_gone_can_be_used_again(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    """Deleting an institution deletes its usage but not the keys (kept apart from events)."""
    first = await record(engine, API_ACME, event(people["ada"], ACME, key="evt-gone"))
    assert first.event is not None
    async with session_factory(engine)() as session, session.begin():
        await session.execute(delete(UsageEvent).where(UsageEvent.id == first.event.id))
    again = await record(engine, API_ACME, event(people["ada"], ACME, key="evt-gone"))
    assert again.status is OutcomeStatus.INSERTED
    assert again.event is not None
    (key,) = await key_rows(engine)
    assert key.usage_event_id == again.event.id


# --- caps ----------------------------------------------------------------------------------


async def test_usage_past_the_cap_is_flagged_when_caps_are_not_enforced(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    ada = people["ada"]
    await set_caps(engine, ACME, default_cap="10", enforce=False)
    await add_usage(engine, ada, ACME, "6", forgotten=True)  # forgotten usage still counts
    under = await record(engine, API_ACME, event(ada, ACME, "4"))  # 6 + 4 = 10: at, not past
    over = await record(engine, API_ACME, event(ada, ACME, "0.000001"))  # 10.000001 > 10
    assert under.event is not None
    assert over.event is not None
    assert (under.event.over_cap, over.event.over_cap) == (False, True)
    assert [row.over_cap for row in await usage_rows(engine, ada)] == [False, False, True]


async def test_usage_past_the_cap_is_refused_when_caps_are_enforced(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    ada, bob = people["ada"], people["bob"]
    # default 10; Ada's own cap_limit of 5 overrides it
    await set_caps(engine, ACME, default_cap="10", enforce=True, member_caps={ada: "5"})
    await add_usage(engine, ada, ACME, "3")
    await add_usage(engine, ada, None, "100")  # personal usage is not institution usage
    assert (await record(engine, API_ACME, event(ada, ACME, "2"))).status is OutcomeStatus.INSERTED
    error = await refusal(engine, API_ACME, event(ada, ACME, "0.5"))  # 3 + 2 + 0.5 > 5
    assert error.code is ErrorCode.CAP_REACHED
    zero = await record(engine, API_ACME, event(ada, ACME, "0"))  # 5 + 0 does not exceed 5
    assert zero.status is OutcomeStatus.INSERTED
    assert (await record(engine, API_ACME, event(bob, ACME, "10"))).status is OutcomeStatus.INSERTED
    assert len(await usage_rows(engine, ada)) == 4


async def test_no_cap_means_no_limit(engine: AsyncEngine, people: dict[str, int]) -> None:
    await set_caps(engine, ACME, default_cap=None, enforce=True)
    outcome = await record(engine, API_ACME, event(people["ada"], ACME, "999999"))
    assert outcome.event is not None
    assert outcome.event.over_cap is False


# --- batches -------------------------------------------------------------------------------


async def test_batch_reports_inserted_duplicate_and_refused_per_event(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada, bob, olga = people["ada"], people["bob"], people["olga"]
    await set_caps(engine, ACME, enforce=True, member_caps={bob: "5"})
    await top_up(engine, root, ada, "5")
    earlier = await record(engine, root, event(ada, "personal", "1", key="seen"))  # 5 -> 4
    items = [
        event(ada, "personal", "3", key="a"),  # 0 inserted: 4 -> 1
        event(ada, "personal", "1", key="seen"),  # 1 duplicate of the earlier event
        event(ada, "personal", "3", key="a"),  # 2 duplicate of event 0
        event(ada, "personal", "2"),  # 3 refused: 1 available
        event(bob, ACME, "4"),  # 4 inserted: bob 4 of 5
        event(bob, ACME, "2"),  # 5 refused: 4 + 2 > 5
        event(bob, ACME, "1", key="b"),  # 6 inserted: exactly 5
        event(olga, OTHER, "1"),  # 7 inserted (super may record in any institution)
        replace(event(ada, "personal"), status="bogus"),  # 8 refused: invalid
        event(ada, "personal", "1"),  # 9 inserted: 1 -> 0
        event(ada, "personal", "0.000001"),  # 10 refused: 0 available
    ]
    result = await batch(engine, root, items)
    statuses = [o.status.value[0].upper() for o in result.outcomes]
    assert "".join(statuses) == "IDDRIRIIRIR"
    assert [o.index for o in result.outcomes] == list(range(11))
    codes = {o.index: o.code for o in result.outcomes if o.code}
    assert codes == {
        3: ErrorCode.INSUFFICIENT_CREDITS,
        5: ErrorCode.CAP_REACHED,
        8: ErrorCode.INVALID_REQUEST,
        10: ErrorCode.INSUFFICIENT_CREDITS,
    }
    assert (result.inserted, result.duplicates, result.refused) == (5, 2, 4)
    outcomes = result.outcomes
    assert outcomes[1].event == earlier.event
    assert outcomes[2].event == outcomes[0].event
    assert outcomes[0].event is not None
    stored = {row.id for row in await usage_rows(engine)}
    inserted = {o.event.id for o in outcomes if o.status is OutcomeStatus.INSERTED and o.event}
    assert stored == inserted | {earlier.event.id}  # type: ignore[union-attr]
    entries = await ledger(engine, ada)
    assert assert_chain(entries) == Decimal(0)  # 5 - 1 - 3 - 1
    assert [e.reference for e in entries[1:]] == [
        str(earlier.event.id),  # type: ignore[union-attr]
        str(outcomes[0].event.id),
        str(outcomes[9].event.id),  # type: ignore[union-attr]
    ]


async def test_an_invalid_or_forbidden_event_does_not_lose_the_valid_ones(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    ada, olga = people["ada"], people["olga"]
    items = [
        event(ada, ACME, "1"),
        replace(event(ada, ACME), occurred_at=datetime(2026, 5, 1)),  # naive: invalid
        event(olga, OTHER, "1"),  # another institution: forbidden for this key
        event(ada, ACME, "2", key="x"),
    ]
    result = await batch(engine, API_ACME, items)
    assert [(o.status, o.code) for o in result.outcomes] == [
        (OutcomeStatus.INSERTED, None),
        (OutcomeStatus.REFUSED, ErrorCode.INVALID_REQUEST),
        (OutcomeStatus.REFUSED, ErrorCode.FORBIDDEN),
        (OutcomeStatus.INSERTED, None),
    ]
    assert [row.credits for row in await usage_rows(engine)] == [Decimal(1), Decimal(2)]


async def test_a_batch_of_refusals_only_writes_nothing(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    result = await batch(engine, API_ACME, [event(people["olga"], OTHER)] * 3)
    assert result.refused == 3
    assert await count_rows(engine, UsageEvent) == 0


async def test_a_batch_holds_at_most_1000_events(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    with pytest.raises(UsageGraphError) as refused:
        await batch(engine, API_ACME, [event(people["ada"], ACME, "0")] * (MAX_BATCH + 1))
    assert refused.value.code is ErrorCode.INVALID_REQUEST
    full = await batch(engine, API_ACME, [event(people["ada"], ACME, "0")] * MAX_BATCH)
    assert full.inserted == MAX_BATCH
    assert await count_rows(engine, UsageEvent) == MAX_BATCH


async def test_an_empty_batch_answers_nothing(engine: AsyncEngine, people: dict[str, int]) -> None:
    result = await batch(engine, API_ACME, [])
    assert result.outcomes == ()
    assert await count_rows(engine, LedgerEntry) == 0


async def test_batch_events_are_stored_with_the_request_time(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    await batch(engine, API_ACME, [event(people["ada"], ACME, "1", minutes_ago=90)])
    (row,) = await usage_rows(engine)
    assert row.created_at == NOW
    assert row.occurred_at == datetime(2026, 5, 20, 14, 0, tzinfo=UTC)
