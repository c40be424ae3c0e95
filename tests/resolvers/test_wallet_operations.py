"""Credit ledger rules: top-ups, debits, adjustments, reservations, auto-reload; super only."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import add_institution, add_user
from tests.fixtures.usage_recording_data import (
    ACME,
    ANONYMOUS,
    API_ACME,
    EDIT,
    NOW,
    assert_chain,
    ledger,
    principal,
    reservation,
    run,
    wallet,
)
from usagegraph.auth.principal import Principal
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.resolvers import wallet_operations as ops
from usagegraph.resolvers.wallet_ledger import LedgerType
from usagegraph.resolvers.wallet_operations import ReservationStatus
from usagegraph.settings import AutoReloadLimit


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    return {
        "super": await add_user(engine, email="root@ug.io", role="super"),
        "ada": await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"}),
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


async def credit(
    engine: AsyncEngine, who: Principal, user_id: int, amount: str
) -> ops.WalletMovement:
    return await run(
        engine, lambda s: ops.credit_wallet(s, who, NOW, user_id=user_id, amount=Decimal(amount))
    )


async def debit(
    engine: AsyncEngine, who: Principal, user_id: int, amount: str
) -> ops.WalletMovement:
    return await run(
        engine, lambda s: ops.debit_wallet(s, who, NOW, user_id=user_id, amount=Decimal(amount))
    )


async def adjust(
    engine: AsyncEngine, who: Principal, user_id: int, amount: str, reason: str = "goodwill"
) -> ops.WalletMovement:
    return await run(
        engine,
        lambda s: ops.adjust_wallet(
            s, who, NOW, user_id=user_id, amount=Decimal(amount), reason=reason
        ),
    )


async def auto_reload(
    engine: AsyncEngine, who: Principal, user_id: int, threshold: str, amount: str
) -> None:
    await run(
        engine,
        lambda s: ops.set_auto_reload(
            s,
            who,
            NOW,
            user_id=user_id,
            enabled=True,
            threshold=Decimal(threshold),
            amount=Decimal(amount),
        ),
    )


async def test_credit_debit_adjust_chain_balances(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    first = await credit(engine, root, ada, "100")
    assert first.entry.type is LedgerType.CREDIT
    assert first.entry.balance_after == Decimal(100)
    assert first.entry.description == "Top-up"
    second = await debit(engine, root, ada, "30.5")  # 100 - 30.5 = 69.5
    assert second.entry.balance_after == Decimal("69.5")
    assert second.wallet.available == Decimal("69.5")
    third = await adjust(engine, root, ada, "-70")  # 69.5 - 70 = -0.5: adjustments may
    assert third.entry.type is LedgerType.ADJUSTMENT
    assert third.entry.amount == Decimal(-70)
    assert third.entry.description == "goodwill"
    assert third.wallet.balance == Decimal("-0.5")
    entries = await ledger(engine, ada)
    assert [e.id for e in entries] == [first.entry.id, second.entry.id, third.entry.id]
    assert assert_chain(entries) == Decimal("-0.5")
    stored = await wallet(engine, ada)
    assert stored is not None
    assert stored.balance == Decimal("-0.5")
    assert all(e.created_at == NOW for e in entries)


async def test_debit_beyond_available_is_refused_and_writes_nothing(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await credit(engine, root, ada, "10")
    with pytest.raises(UsageGraphError) as refused:
        await debit(engine, root, ada, "10.000001")
    assert refused.value.code is ErrorCode.INSUFFICIENT_CREDITS
    assert len(await ledger(engine, ada)) == 1
    exact = await debit(engine, root, ada, "10")  # exactly what is available is fine
    assert exact.wallet.available == Decimal(0)


async def test_debit_without_a_wallet_is_insufficient_and_creates_nothing(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    with pytest.raises(UsageGraphError) as refused:
        await debit(engine, root, people["ada"], "1")
    assert refused.value.code is ErrorCode.INSUFFICIENT_CREDITS
    assert await wallet(engine, people["ada"]) is None


@pytest.mark.parametrize("who", ["ada", "admin", "api_key"])
async def test_only_super_moves_credits(
    engine: AsyncEngine, people: dict[str, int], root: Principal, who: str
) -> None:
    caller = API_ACME if who == "api_key" else await principal(engine, people[who])
    await credit(engine, root, people["ada"], "5")
    for attempt in (
        credit(engine, caller, people["ada"], "5"),
        debit(engine, caller, people["ada"], "1"),
        adjust(engine, caller, people["ada"], "1"),
        auto_reload(engine, caller, people["ada"], "1", "1"),
    ):
        with pytest.raises(UsageGraphError) as refused:
            await attempt
        assert refused.value.code is ErrorCode.FORBIDDEN
    assert len(await ledger(engine, people["ada"])) == 1


async def test_anonymous_is_unauthorized(engine: AsyncEngine, people: dict[str, int]) -> None:
    with pytest.raises(UsageGraphError) as refused:
        await credit(engine, ANONYMOUS, people["ada"], "5")
    assert refused.value.code is ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize("amount", ["0", "-1", "0.0000001", "1000000000001"])
async def test_credit_and_debit_amounts_must_be_positive_exact_and_bounded(
    engine: AsyncEngine, people: dict[str, int], root: Principal, amount: str
) -> None:
    for attempt in (
        credit(engine, root, people["ada"], amount),
        debit(engine, root, people["ada"], amount),
    ):
        with pytest.raises(UsageGraphError) as refused:
            await attempt
        assert refused.value.code is ErrorCode.INVALID_REQUEST


async def test_adjustment_needs_a_reason_and_a_non_zero_amount(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    for amount, reason in (("1", "  "), ("0", "typo")):
        with pytest.raises(UsageGraphError) as refused:
            await adjust(engine, root, people["ada"], amount, reason)
        assert refused.value.code is ErrorCode.INVALID_REQUEST
    assert await ledger(engine, people["ada"]) == []


async def test_unknown_user_is_not_found(engine: AsyncEngine, root: Principal) -> None:
    with pytest.raises(UsageGraphError) as refused:
        await credit(engine, root, 9999, "5")
    assert refused.value.code is ErrorCode.NOT_FOUND


async def test_reservation_holds_then_captures_part_and_releases_the_rest(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await credit(engine, root, ada, "100")
    held = await run(
        engine, lambda s: ops.reserve_credits(s, root, NOW, user_id=ada, amount=Decimal(40))
    )
    # balance 100, reserved 40, available 60; no ledger entry for a hold
    assert (held.wallet.balance, held.wallet.reserved, held.wallet.available) == (100, 40, 60)
    assert held.reservation.status is ReservationStatus.HELD
    assert len(await ledger(engine, ada)) == 1
    with pytest.raises(UsageGraphError) as refused:
        await debit(engine, root, ada, "60.01")  # only 60 available
    assert refused.value.code is ErrorCode.INSUFFICIENT_CREDITS
    rid = held.reservation.id
    captured = await run(
        engine,
        lambda s: ops.capture_reservation(s, root, NOW, reservation_id=rid, amount=Decimal(25)),
    )
    # debit 25: balance 75, the whole hold (40) released: reserved 0, available 75
    assert captured.entry is not None
    assert captured.entry.type is LedgerType.DEBIT
    assert captured.entry.amount == Decimal(25)
    assert captured.entry.reference == f"reservation:{rid}"
    assert (captured.wallet.balance, captured.wallet.reserved) == (75, 0)
    assert captured.reservation.status is ReservationStatus.CAPTURED
    assert captured.reservation.captured_amount == Decimal(25)
    assert_chain(await ledger(engine, ada))


async def test_a_reservation_is_settled_once(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await credit(engine, root, ada, "10")
    held = await run(
        engine, lambda s: ops.reserve_credits(s, root, NOW, user_id=ada, amount=Decimal(4))
    )
    rid = held.reservation.id
    released = await run(
        engine, lambda s: ops.release_reservation(s, root, NOW, reservation_id=rid)
    )
    assert released.reservation.status is ReservationStatus.RELEASED
    assert released.wallet.reserved == 0
    for again in (
        ops.release_reservation,
        lambda s, p, n, reservation_id: ops.capture_reservation(
            s, p, n, reservation_id=reservation_id
        ),
    ):
        with pytest.raises(UsageGraphError) as refused:
            await run(engine, lambda s, again=again: again(s, root, NOW, reservation_id=rid))
        assert refused.value.code is ErrorCode.INVALID_REQUEST
        assert "already released" in refused.value.message
    assert len(await ledger(engine, ada)) == 1  # the top-up only
    stored = await wallet(engine, ada)
    assert stored is not None
    assert (stored.balance, stored.reserved) == (10, 0)


async def test_capture_defaults_to_all_and_refuses_more_than_held(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await credit(engine, root, ada, "10")
    held = await run(
        engine, lambda s: ops.reserve_credits(s, root, NOW, user_id=ada, amount=Decimal(4))
    )
    rid = held.reservation.id
    with pytest.raises(UsageGraphError) as refused:
        await run(
            engine,
            lambda s: ops.capture_reservation(s, root, NOW, reservation_id=rid, amount=Decimal(5)),
        )
    assert refused.value.code is ErrorCode.INVALID_REQUEST
    captured = await run(
        engine, lambda s: ops.capture_reservation(s, root, NOW, reservation_id=rid)
    )
    assert captured.entry is not None
    assert captured.entry.amount == Decimal(4)
    assert (captured.wallet.balance, captured.wallet.reserved) == (6, 0)
    stored = await reservation(engine, rid)
    assert stored is not None
    assert (stored.status, stored.captured_amount) == ("captured", Decimal(4))


async def test_reserving_more_than_available_is_refused(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await credit(engine, root, ada, "10")
    await run(engine, lambda s: ops.reserve_credits(s, root, NOW, user_id=ada, amount=Decimal(7)))
    with pytest.raises(UsageGraphError) as refused:  # 10 - 7 = 3 available
        await run(
            engine, lambda s: ops.reserve_credits(s, root, NOW, user_id=ada, amount=Decimal(4))
        )
    assert refused.value.code is ErrorCode.INSUFFICIENT_CREDITS
    stored = await wallet(engine, ada)
    assert stored is not None
    assert stored.reserved == Decimal(7)


async def test_unknown_reservation_is_not_found(engine: AsyncEngine, root: Principal) -> None:
    with pytest.raises(UsageGraphError) as refused:
        await run(engine, lambda s: ops.release_reservation(s, root, NOW, reservation_id=77))
    assert refused.value.code is ErrorCode.NOT_FOUND


async def test_auto_reload_fires_once_per_downward_crossing(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await credit(engine, root, ada, "30")
    await auto_reload(engine, root, ada, threshold="10", amount="3")
    steps = [
        await debit(engine, root, ada, "15"),  # 30 -> 15: still >= 10, no reload
        await debit(engine, root, ada, "10"),  # 15 -> 5: crossed, reload 3 -> 8
        await debit(engine, root, ada, "1"),  # 8 -> 7: already below, no reload
        await debit(engine, root, ada, "1"),  # 7 -> 6: no reload
    ]
    await credit(engine, root, ada, "10")  # 6 -> 16: back above the threshold
    steps.append(await debit(engine, root, ada, "7"))  # 16 -> 9: crossed again, reload -> 12
    reloads = [step.auto_reload for step in steps]
    assert [r is not None for r in reloads] == [False, True, False, False, True]
    first = reloads[1]
    assert first is not None
    assert (first.type, first.amount, first.balance_after) == (LedgerType.CREDIT, 3, 8)
    assert first.description == "Auto-reload"
    entries = await ledger(engine, ada)
    assert assert_chain(entries) == Decimal(12)
    assert [e.description for e in entries].count("Auto-reload") == 2


async def test_a_reservation_crossing_the_threshold_reloads(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await credit(engine, root, ada, "20")
    await auto_reload(engine, root, ada, threshold="10", amount="50")
    held = await run(
        engine, lambda s: ops.reserve_credits(s, root, NOW, user_id=ada, amount=Decimal(15))
    )
    # available 20 -> 5 (crossed): reload 50 -> balance 70, reserved 15, available 55
    assert held.auto_reload is not None
    assert (held.wallet.balance, held.wallet.available) == (70, 55)


async def test_a_disabled_or_adjusted_wallet_does_not_reload(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    ada = people["ada"]
    await credit(engine, root, ada, "20")
    await auto_reload(engine, root, ada, threshold="10", amount="50")
    assert (await adjust(engine, root, ada, "-15")).auto_reload is None  # adjustments never
    await credit(engine, root, ada, "10")  # 5 -> 15
    await run(
        engine,
        lambda s: ops.set_auto_reload(
            s, root, NOW, user_id=ada, enabled=False, threshold=None, amount=None
        ),
    )
    assert (await debit(engine, root, ada, "10")).auto_reload is None  # 15 -> 5, disabled


async def test_enabling_auto_reload_needs_threshold_and_amount(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    for threshold, amount in ((None, Decimal(5)), (Decimal(5), None), (Decimal(-1), Decimal(5))):
        with pytest.raises(UsageGraphError) as refused:
            await run(
                engine,
                lambda s, t=threshold, a=amount: ops.set_auto_reload(
                    s, root, NOW, user_id=people["ada"], enabled=True, threshold=t, amount=a
                ),
            )
        assert refused.value.code is ErrorCode.INVALID_REQUEST


async def test_metadata_must_be_an_object(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    with pytest.raises(UsageGraphError) as refused:
        await run(
            engine,
            lambda s: ops.credit_wallet(
                s,
                root,
                NOW,
                user_id=people["ada"],
                amount=Decimal(1),
                metadata=[1, 2],  # type: ignore[arg-type]
            ),
        )
    assert refused.value.code is ErrorCode.INVALID_REQUEST


async def test_reloads_are_limited_per_rolling_period(
    engine: AsyncEngine, people: dict[str, int], root: Principal
) -> None:
    """At most one reload an hour: a second crossing ten minutes after the first reloads
    nothing; one more than an hour after the first reloads again."""
    ada = people["ada"]
    limit = AutoReloadLimit(max_reloads=1, period_seconds=3600)
    await credit(engine, root, ada, "20")
    await auto_reload(engine, root, ada, threshold="10", amount="5")

    async def debit_at(minutes: int, amount: str) -> ops.WalletMovement:
        at = NOW + timedelta(minutes=minutes)
        return await run(
            engine,
            lambda s: ops.debit_wallet(
                s, root, at, user_id=ada, amount=Decimal(amount), reload_limit=limit
            ),
        )

    assert (await debit_at(0, "11")).auto_reload is not None  # 20 -> 9, reload -> 14
    second = await debit_at(10, "5")  # 14 -> 9: crossed, but the hour's reload is used
    assert second.auto_reload is None
    assert second.wallet.available == Decimal(9)
    await credit(engine, root, ada, "5")  # 9 -> 14: above the threshold again
    assert (await debit_at(61, "5")).auto_reload is not None  # the first is an hour old
    assert [e.description for e in await ledger(engine, ada)].count("Auto-reload") == 2
