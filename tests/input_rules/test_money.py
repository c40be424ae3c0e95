"""The money rule (`money_range`): one amount is at most 10^12 either way with at most six
decimal places; no stored sum (balance, reserved, balance_after, a user's usage in an
instance and every rollup of it) passes 9223372036854.775807, what both databases hold.
Past either bound a write is INVALID_REQUEST naming the field and the bound, and writes
nothing; it is never a database overflow (INTERNAL).

The property test draws amounts around both bounds and sends each to every mutation that
takes money, again and again in one world, so the accepted ones add up towards the largest
sums stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.input_rules.world import (
    ACME,
    RECENT,
    World,
    api_key_header,
    assert_no_crash,
    assert_refused,
    bearer,
    call_every_entry_point,
    money_values,
    post_graphql,
    property_test,
)

MAX_AMOUNT = Decimal(10**12)
MAX_STORED = Decimal("9223372036854.775807")


def a_valid_amount(text: str) -> bool:
    """The rule for one amount, stated independently of the code."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return False
    if not value.is_finite() or abs(value) > MAX_AMOUNT:
        return False
    return value == value.quantize(Decimal("0.000001"))


EDGES = [
    "1000000000000",
    "999999999999.999999",
    "1000000000000.000001",
    "9223372036854.775807",
    "9223372036854.775808",
    "99999999999999.999999",
    "100000000000000",
    "1e12",
    "1E+13",
    "1e999",
    "-1000000000000",
    "0.0000001",
    "0",
    "-0",
    "NaN",
    "Infinity",
]
amounts = st.one_of(
    st.sampled_from(EDGES),
    st.decimals(min_value=0, max_value=10**15, places=6, allow_nan=False).map(str),
    st.integers(min_value=-(10**16), max_value=10**16).map(str),
)

Call = Callable[[httpx.AsyncClient, World, str], Awaitable[None]]


def _mutation(
    query: str, variables: Callable[[World, str], dict[str, Any]], caller: str = "super"
) -> Call:
    """A mutation taking the amount: refused with INVALID_REQUEST when the amount breaks the
    rule for one amount; any other answer coded (a refused sum is INVALID_REQUEST too)."""

    async def call(client: httpx.AsyncClient, world: World, text: str) -> None:
        headers = bearer(world.super_id) if caller == "super" else api_key_header(world.api_key)
        response = await post_graphql(client, query, headers, variables(world, text))
        if a_valid_amount(text):
            assert_no_crash(response)
        else:
            assert_refused(response)

    return call


def _usage(world: World, instance: str, credits: str) -> dict[str, Any]:
    return {"userId": world.ada_id, "instance": instance, "occurredAt": RECENT, "credits": credits}


RECORD = "mutation($e: UsageEventInput!) { recordUsage(input: $e) { status } }"


async def _batch(client: httpx.AsyncClient, world: World, text: str) -> None:
    """Five events of the amount in one batch: each one judged, the sum never overflowing."""
    query = (
        "mutation($e: [UsageEventInput!]!) { recordUsageBatch(events: $e) "
        "{ inserted refused outcomes { code message } } }"
    )
    events = [_usage(world, ACME, text)] * 5
    response = await post_graphql(client, query, api_key_header(world.api_key), {"e": events})
    assert_no_crash(response)
    if a_valid_amount(text):
        return
    data = response.json()["data"]
    if data is None:  # the scalar refused the value: the whole request
        assert_refused(response)
        return
    outcomes = data["recordUsageBatch"]["outcomes"]
    assert {outcome["code"] for outcome in outcomes} == {"INVALID_REQUEST"}, response.text


WALLET = "{ __typename }"
ENTRY_POINTS: dict[str, Call] = {
    "recordUsage credits (institution)": _mutation(
        RECORD, lambda w, t: {"e": _usage(w, ACME, t)}, caller="api-key"
    ),
    "recordUsage credits (personal)": _mutation(
        RECORD, lambda w, t: {"e": _usage(w, "personal", t)}
    ),
    "recordUsageBatch credits": _batch,
    "creditWallet amount": _mutation(
        f"mutation($u: Int!, $a: Decimal!) {{ creditWallet(input: {{userId: $u, amount: $a}}) "
        f"{WALLET} }}",
        lambda w, t: {"u": w.ada_id, "a": t},
    ),
    "debitWallet amount": _mutation(
        f"mutation($u: Int!, $a: Decimal!) {{ debitWallet(input: {{userId: $u, amount: $a}}) "
        f"{WALLET} }}",
        lambda w, t: {"u": w.ada_id, "a": t},
    ),
    "adjustWallet amount": _mutation(
        "mutation($u: Int!, $a: Decimal!) { adjustWallet(input: {userId: $u, amount: $a, "
        f'reason: "test"}}) {WALLET} }}',
        lambda w, t: {"u": w.ada_id, "a": t},
    ),
    "adjustWallet negative amount": _mutation(
        "mutation($u: Int!, $a: Decimal!) { adjustWallet(input: {userId: $u, amount: $a, "
        f'reason: "test"}}) {WALLET} }}',
        lambda w, t: {"u": w.ada_id, "a": t[1:] if t.startswith("-") else "-" + t},
    ),
    "reserveCredits amount": _mutation(
        f"mutation($u: Int!, $a: Decimal!) {{ reserveCredits(input: {{userId: $u, amount: $a}}) "
        f"{WALLET} }}",
        lambda w, t: {"u": w.ada_id, "a": t},
    ),
    "captureReservation amount": _mutation(
        "mutation($r: BigInt!, $a: Decimal) { captureReservation(input: {reservationId: $r, "
        f"amount: $a}}) {WALLET} }}",
        lambda w, t: {"r": w.reservation_id, "a": t},
    ),
    "setAutoReload threshold": _mutation(
        "mutation($u: Int!, $a: Decimal) { setAutoReload(input: {userId: $u, enabled: true, "
        f'threshold: $a, amount: "5"}}) {WALLET} }}',
        lambda w, t: {"u": w.ada_id, "a": t},
    ),
    "setAutoReload amount": _mutation(
        "mutation($u: Int!, $a: Decimal) { setAutoReload(input: {userId: $u, enabled: true, "
        f'threshold: "1", amount: $a}}) {WALLET} }}',
        lambda w, t: {"u": w.ada_id, "a": t},
    ),
    "addMember capLimit": _mutation(
        f'mutation($a: Decimal) {{ addMember(input: {{institutionId: "{ACME}", '
        'email: "root@ug.io", capLimit: $a}) { __typename } }',
        lambda w, t: {"a": t},
    ),
    "updateMember capLimit": _mutation(
        f'mutation($u: Int!, $a: Decimal) {{ updateMember(input: {{institutionId: "{ACME}", '
        "userId: $u, capLimit: $a}) { __typename } }",
        lambda w, t: {"u": w.ada_id, "a": t},
    ),
    "updateInstitutionCaps defaultCap": _mutation(
        "mutation($a: Decimal) { updateInstitutionCaps(input: "
        f'{{institutionId: "{ACME}", defaultCap: $a}}) {{ __typename }} }}',
        lambda w, t: {"a": t},
    ),
}


async def stored_sums_within_bounds(engine: AsyncEngine) -> None:
    """Every stored sum is one both databases hold."""
    columns = {
        "wallets": ("balance", "reserved"),
        "ledger_entries": ("balance_after",),
        "usage_totals": ("credits",),
        "usage_rollups_quarter_hour": ("credits",),
        "usage_rollups_day": ("credits",),
    }
    for table, names in columns.items():
        for column in names:
            for value in await money_values(engine, table, column):
                assert abs(value) <= MAX_STORED, f"{table}.{column} = {value}"


@property_test
@given(text=amounts)
async def test_every_money_input_stays_within_what_is_stored(
    engine: AsyncEngine, client: httpx.AsyncClient, world: World, text: str
) -> None:
    # Caps are lifted after each example, so usage keeps adding up towards the bound.
    await call_every_entry_point(ENTRY_POINTS, client, world, text, text)
    await _uncap(client, world)
    await stored_sums_within_bounds(engine)


async def _uncap(client: httpx.AsyncClient, world: World) -> None:
    query = (
        f'mutation($u: Int!) {{ updateMember(input: {{institutionId: "{ACME}", userId: $u, '
        "capLimit: null}) { __typename } } "
        f'updateInstitutionCaps(input: {{institutionId: "{ACME}", defaultCap: null}}) '
        "{ __typename } }"
    )
    response = await post_graphql(client, query, bearer(world.super_id), {"u": world.ada_id})
    assert_no_crash(response)
