"""Concurrent writers against one wallet, one key and one cap: nothing lost, nothing twice.

Every task runs on its own session (its own pooled connection), so the database, not the
event loop, decides the interleaving. PostgreSQL is the backend these guarantees are about
(row locks); the same tests run on SQLite too, where `BEGIN IMMEDIATE` serialises writers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.fixtures.factories import add_institution, add_user
from tests.fixtures.usage_recording_data import (
    ACME,
    API_ACME,
    NOW,
    assert_chain,
    event,
    key_rows,
    ledger,
    principal,
    run,
    set_caps,
    usage_rows,
    wallet,
)
from tests.fixtures.wallet_invariants import wallets_miscounting_their_ledger
from usagegraph.auth.principal import Principal
from usagegraph.db.models import signed_amount
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.resolvers import wallet_operations as ops
from usagegraph.resolvers.usage_recording import OutcomeStatus, record_usage, record_usage_batch
from usagegraph.settings import AutoReloadLimit

T = TypeVar("T")


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    return {
        "super": await add_user(engine, email="root@ug.io", role="super"),
        "ada": await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"}),
    }


@pytest.fixture
async def root(engine: AsyncEngine, people: dict[str, int]) -> Principal:
    return await principal(engine, people["super"])


async def gather_outcomes(
    calls: list[Callable[[], Awaitable[T]]],
) -> list[T | UsageGraphError]:
    """Start every call at once; collect results and expected refusals (anything else fails)."""

    async def one(call: Callable[[], Awaitable[T]]) -> T | UsageGraphError:
        try:
            return await call()
        except UsageGraphError as error:
            return error

    return await asyncio.gather(*(one(call) for call in calls))


async def fund(engine: AsyncEngine, root: Principal, user_id: int, amount: str) -> None:
    await run(
        engine, lambda s: ops.credit_wallet(s, root, NOW, user_id=user_id, amount=Decimal(amount))
    )


async def test_200_concurrent_debits_never_overdraw_or_lose_an_update(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await fund(engine, root, ada, "150.5")
    # 200 debits of 0.75, 1 or 1.25 (66 + 67 + 67 = 200; 200 credits asked in all)
    amounts = [Decimal(("0.75", "1", "1.25")[i % 3]) for i in range(200)]

    def debit(amount: Decimal) -> Callable[[], Awaitable[ops.WalletMovement]]:
        return lambda: run(
            engine, lambda s: ops.debit_wallet(s, root, NOW, user_id=ada, amount=amount)
        )

    results = await gather_outcomes([debit(amount) for amount in amounts])
    accepted = [r for r in results if isinstance(r, ops.WalletMovement)]
    refused = [
        amount for amount, r in zip(amounts, results, strict=True) if isinstance(r, UsageGraphError)
    ]
    assert all(
        r.code is ErrorCode.INSUFFICIENT_CREDITS for r in results if isinstance(r, UsageGraphError)
    )
    entries = await ledger(engine, ada)
    # the ledger holds the top-up and exactly the accepted debits, chained entry by entry
    assert len(entries) == 1 + len(accepted)
    assert {e.id for e in entries[1:]} == {m.entry.id for m in accepted}
    closing = assert_chain(entries)
    stored = await wallet(engine, ada)
    assert stored is not None
    assert stored.balance == closing == Decimal("150.5") - sum(m.entry.amount for m in accepted)
    assert stored.balance >= 0
    assert all(e.balance_after >= 0 for e in entries)
    # Funds only ever go down here, so a debit refused at any moment could not be paid from
    # what is left at the end either: refusals happened exactly when funds ran out.
    assert refused, "200 credits were asked of 150.5: some must be refused"
    assert all(amount > stored.balance for amount in refused)
    assert stored.balance < max(amounts)
    # and the wallet counted exactly the entries that were written
    assert await wallets_miscounting_their_ledger(engine) == []


async def test_equal_concurrent_debits_accept_exactly_what_the_funds_cover(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await fund(engine, root, ada, "150.5")
    calls = [
        lambda: run(
            engine, lambda s: ops.debit_wallet(s, root, NOW, user_id=ada, amount=Decimal(1))
        )
        for _ in range(200)
    ]
    results = await gather_outcomes(calls)
    # 150.5 covers exactly 150 debits of 1; the other 50 are refused; 0.5 is left
    assert sum(isinstance(r, ops.WalletMovement) for r in results) == 150
    assert sum(isinstance(r, UsageGraphError) for r in results) == 50
    assert assert_chain(await ledger(engine, ada)) == Decimal("0.5")


async def test_concurrent_personal_usage_debits_are_serialised(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await fund(engine, root, ada, "60")
    calls = [
        lambda: run(engine, lambda s: record_usage(s, root, NOW, event(ada, "personal", "1")))
        for _ in range(100)
    ]
    results = await gather_outcomes(calls)
    inserted = [r for r in results if not isinstance(r, UsageGraphError)]
    assert len(inserted) == 60  # 60 credits pay 60 events of 1
    assert len(await usage_rows(engine, ada)) == 60
    assert assert_chain(await ledger(engine, ada)) == Decimal(0)


@pytest.mark.parametrize(
    "case",
    [
        "personal",  # the wallet lock serialises the writers
        "personal-no-wallet",  # 0 credits, no wallet: nothing locked, the key's PK decides
        "institution",  # no cap, so no lock either: the PK decides
    ],
)
async def test_the_same_key_sent_50_times_at_once_writes_once(
    engine: AsyncEngine, people: dict[str, int], root: Principal, case: str
) -> None:
    ada = people["ada"]
    if case == "personal":
        await fund(engine, root, ada, "100")
    instance, credits, caller = {
        "personal": ("personal", "1", root),
        "personal-no-wallet": ("personal", "0", root),
        "institution": (ACME, "1", API_ACME),
    }[case]
    item = event(ada, instance, credits, key="same-key")
    calls = [lambda: run(engine, lambda s: record_usage(s, caller, NOW, item)) for _ in range(50)]
    results = await gather_outcomes(calls)
    assert not [r for r in results if isinstance(r, UsageGraphError)]
    statuses = [r.status for r in results]  # type: ignore[union-attr]
    assert statuses.count(OutcomeStatus.INSERTED) == 1
    assert statuses.count(OutcomeStatus.DUPLICATE) == 49
    (row,) = await usage_rows(engine, ada)
    assert {r.event.id for r in results} == {row.id}  # type: ignore[union-attr]
    assert len(await key_rows(engine)) == 1
    if case == "personal":
        assert assert_chain(await ledger(engine, ada)) == Decimal(99)


async def test_one_key_sent_at_once_with_two_payloads_writes_one_and_refuses_the_other(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    """20 first uses of one key, half of them with other credits: one event is written; the
    calls that sent the winner's payload are its duplicates, the others IDEMPOTENCY_KEY_REUSED,
    whichever wins the race."""
    ada = people["ada"]
    one, other = event(ada, ACME, "1", key="raced"), event(ada, ACME, "2", key="raced")
    items = [one, other] * 10
    calls = [
        (lambda item=item: run(engine, lambda s: record_usage(s, API_ACME, NOW, item)))
        for item in items
    ]
    results = await gather_outcomes(calls)
    (row,) = await usage_rows(engine, ada)
    winner = one if row.credits == Decimal(1) else other
    for item, result in zip(items, results, strict=True):
        if item is winner:
            assert not isinstance(result, UsageGraphError), result
            assert result.status in (OutcomeStatus.INSERTED, OutcomeStatus.DUPLICATE)
            assert result.event is not None
            assert result.event.id == row.id
        else:
            assert isinstance(result, UsageGraphError), result
            assert result.code is ErrorCode.IDEMPOTENCY_KEY_REUSED
    statuses = [r.status for r in results if not isinstance(r, UsageGraphError)]
    assert statuses.count(OutcomeStatus.INSERTED) == 1
    assert len(await key_rows(engine)) == 1


async def test_auto_reload_fires_exactly_once_per_crossing_under_concurrency(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await fund(engine, root, ada, "25")
    await run(
        engine,
        lambda s: ops.set_auto_reload(
            s, root, NOW, user_id=ada, enabled=True, threshold=Decimal(10), amount=Decimal(12)
        ),
    )
    # This test pins the crossing rule, not the limit on reloads per period: room for all 8.
    roomy = AutoReloadLimit(max_reloads=100)
    calls = [
        lambda: run(
            engine,
            lambda s: ops.debit_wallet(
                s, root, NOW, user_id=ada, amount=Decimal(1), reload_limit=roomy
            ),
        )
        for _ in range(100)
    ]
    results = await gather_outcomes(calls)
    assert not [r for r in results if isinstance(r, UsageGraphError)]  # reloads keep it funded
    entries = await ledger(engine, ada)
    assert_chain(entries)
    # Walk the chain: a reload must follow every debit that took the balance from >= 10 to
    # < 10, and nothing else may be a reload.
    balance = Decimal(0)
    expected_reloads = 0
    for previous, entry in zip([None, *entries], entries, strict=False):
        if entry.description == "Auto-reload":
            assert previous is not None
            assert previous.type == "debit"
            assert previous.balance_after < 10 <= previous.balance_after + previous.amount
        if entry.type == "debit" and entry.balance_after < 10 <= balance:
            expected_reloads += 1
        balance += signed_amount(entry.type, entry.amount)
    reloads = [e for e in entries if e.description == "Auto-reload"]
    # 25 -> 9 after 16 debits (reload -> 21), then every 12 debits: 21 -> 9 (reload)...
    # 100 debits: 16 + 12k <= 100 -> k = 0..7: 8 crossings
    assert len(reloads) == expected_reloads == 8
    assert await wallets_miscounting_their_ledger(engine) == []


async def test_concurrent_batches_never_exceed_an_enforced_cap(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    ada = people["ada"]
    await set_caps(engine, ACME, default_cap="50", enforce=True)
    batch = [event(ada, ACME, "1") for _ in range(10)]
    calls = [
        lambda: run(engine, lambda s: record_usage_batch(s, API_ACME, NOW, batch))
        for _ in range(10)
    ]
    results = await gather_outcomes(calls)
    inserted = sum(r.inserted for r in results)  # type: ignore[union-attr]
    refused = sum(r.refused for r in results)  # type: ignore[union-attr]
    # 100 events of 1 against a cap of 50: exactly 50 fit
    assert (inserted, refused) == (50, 50)
    assert sum(row.credits for row in await usage_rows(engine, ada)) == Decimal(50)


@pytest.mark.parametrize("movement", ["debit", "reservation", "personal-usage"])
async def test_a_burst_fires_no_more_reloads_than_the_limit(
    engine: AsyncEngine, people: dict[str, int], root: Principal, movement: str
) -> None:
    """Issue 11's burst: a reload of 5 against a threshold of 10 lifts `available` back above
    the threshold, so every fifth debit crossed it again and minted 5 more credits (26 reloads
    in one burst). With at most 3 reloads per period, 30 concurrent movements of 1 credit
    against 12 credits fire exactly 3 reloads: 12 + 3 x 5 = 27 credits pay 27 of them and the
    other 3 are refused, as without auto-reload."""
    ada = people["ada"]
    await fund(engine, root, ada, "12")
    await run(
        engine,
        lambda s: ops.set_auto_reload(
            s, root, NOW, user_id=ada, enabled=True, threshold=Decimal(10), amount=Decimal(5)
        ),
    )
    limit = AutoReloadLimit(max_reloads=3, period_seconds=3600)
    one = Decimal(1)
    moves: dict[str, Callable[[AsyncSession], Awaitable[object]]] = {
        "debit": lambda s: ops.debit_wallet(
            s, root, NOW, user_id=ada, amount=one, reload_limit=limit
        ),
        "reservation": lambda s: ops.reserve_credits(
            s, root, NOW, user_id=ada, amount=one, reload_limit=limit
        ),
        "personal-usage": lambda s: record_usage(
            s, root, NOW, event(ada, "personal", "1"), reload_limit=limit
        ),
    }
    move = moves[movement]
    results = await gather_outcomes([lambda: run(engine, move) for _ in range(30)])
    refused = [r for r in results if isinstance(r, UsageGraphError)]
    assert [r.code for r in refused] == [ErrorCode.INSUFFICIENT_CREDITS] * 3
    entries = await ledger(engine, ada)
    assert_chain(entries)
    assert [e.description for e in entries].count("Auto-reload") == 3
    stored = await wallet(engine, ada)
    assert stored is not None
    assert stored.balance - stored.reserved == 0
