"""The id rule (`input_ids`): ids are ASCII digits naming 1 .. 2^63 - 1; integers in query
strings are ASCII digits (optional `-`) within 64 bits. Anything else names nothing: null,
401, 404 or INVALID_REQUEST as each route documents, never a 500 or INTERNAL.

The property test draws id texts (huge, negative, zero, other scripts' digits, signs and
spaces) and sends each to every place an id or an integer arrives: token subjects, global
ids of every node type, cursors, id arguments and filters, REST paths and query strings.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.input_rules.world import (
    ACME,
    BUCKET,
    World,
    access_token,
    api_key_header,
    assert_no_crash,
    assert_refused,
    assert_rest_answer,
    bearer,
    call_every_entry_point,
    cursor,
    global_id,
    post_graphql,
    property_test,
    token_with_subject,
)

MAX_ID = 2**63 - 1
USERS = {1, 2, 3}  # the world's users


def names_id(text: str) -> bool:
    """The rule, stated independently of the code: ASCII digits for 1 .. 2^63 - 1."""
    return re.fullmatch(r"[0-9]{1,19}", text) is not None and 1 <= int(text) <= MAX_ID


def is_integer_text(text: str) -> bool:
    """An integer of a query string: ASCII digits, an optional `-`, within 64 bits."""
    return re.fullmatch(r"-?[0-9]{1,19}", text) is not None and -MAX_ID - 1 <= int(text) <= MAX_ID


EDGES = [
    "0",
    "-1",
    "1",
    "3",
    "٣",  # ARABIC-INDIC DIGIT THREE
    "３",  # FULLWIDTH DIGIT THREE  # noqa: RUF001
    "𝟑",  # MATHEMATICAL BOLD DIGIT THREE  # noqa: RUF001
    "+3",
    " 3",
    "3 ",
    "3_0",
    "0x3",
    "1e3",
    "3.0",
    "",
    "0000000000000000003",
    "00000000000000000003",
    str(MAX_ID),
    str(MAX_ID + 1),
    str(2**64),
    "9" * 40,
    str(-MAX_ID - 1),
    str(-MAX_ID - 2),
]
id_texts = st.one_of(
    st.sampled_from(EDGES),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.text(alphabet=st.characters(categories=["Nd"]), min_size=1, max_size=22),
)

Call = Callable[[httpx.AsyncClient, World, str], Awaitable[None]]


# --- token subjects -------------------------------------------------------------------------


def _token_call(path: str, header: str, envelope: str) -> Call:
    async def call(client: httpx.AsyncClient, world: World, text: str) -> None:
        token = token_with_subject(text)
        value = f"Bearer {token}" if header == "authorization" else token
        response = await client.get(path, headers={header: value})
        assert_rest_answer(response, envelope)
        known = names_id(text) and int(text) in USERS
        assert (response.status_code != 401) == known, (text, response.text)

    return call


async def _token_in_graph(client: httpx.AsyncClient, world: World, text: str) -> None:
    headers = {"Authorization": f"Bearer {token_with_subject(text)}"}
    response = await post_graphql(client, "{ viewer { kind userId } }", headers)
    assert_no_crash(response)
    if names_id(text) and int(text) in USERS:
        assert response.json()["data"]["viewer"] == {"kind": "USER", "userId": int(text)}
    else:  # a token that names nobody is a refused credential
        assert response.status_code == 401, (text, response.text)
        assert response.json()["errors"][0]["extensions"] == {"code": "UNAUTHORIZED"}


# --- global ids ------------------------------------------------------------------------------


def _node(type_name: str, key: Callable[[str], str]) -> Call:
    async def call(client: httpx.AsyncClient, world: World, text: str) -> None:
        query = "query($id: ID!) { node(id: $id) { id } }"
        variables = {"id": global_id(type_name, key(text))}
        response = await post_graphql(client, query, bearer(world.super_id), variables)
        assert assert_no_crash(response) == [], response.text  # null, never an error
        if not names_id(text):
            assert response.json()["data"]["node"] is None

    return call


# --- cursors ---------------------------------------------------------------------------------


def _json_value(text: str) -> Any:
    """The text as a cursor would carry it: a JSON number when it reads as one."""
    return int(text) if re.fullmatch(r"-?[0-9]+", text) else text


def _cursor_call(query: str, key: Callable[[str], list[Any]], caller: str = "super") -> Call:
    async def call(client: httpx.AsyncClient, world: World, text: str) -> None:
        headers = bearer(world.super_id if caller == "super" else world.ada_id)
        variables = {"after": cursor(*key(text))}
        response = await post_graphql(client, query, headers, variables)
        codes = assert_no_crash(response)
        assert set(codes) <= {"INVALID_REQUEST"}, response.text

    return call


MOMENT = "2026-05-20T14:00:00+00:00"


# --- arguments and filters ------------------------------------------------------------------


def _graph_argument(query: str, variable: Callable[[str], Any], caller: str = "super") -> Call:
    """An id argument of the graph, sent as the JSON value a client would send."""

    async def call(client: httpx.AsyncClient, world: World, text: str) -> None:
        headers = {
            "super": bearer(world.super_id),
            "ada": bearer(world.ada_id),
            "api-key": api_key_header(world.api_key),
        }[caller]
        response = await post_graphql(client, query, headers, {"v": variable(text)})
        assert_no_crash(response)

    return call


def _big_int_argument(query: str, variable: Callable[[str], Any]) -> Call:
    """A BigInt id sent as a string: refused unless it is a 64-bit integer in ASCII."""

    async def call(client: httpx.AsyncClient, world: World, text: str) -> None:
        response = await post_graphql(client, query, bearer(world.super_id), {"v": variable(text)})
        codes = assert_no_crash(response)
        if not is_integer_text(text):
            assert codes == ["INVALID_REQUEST"], response.text

    return call


# --- REST -------------------------------------------------------------------------------------


async def _user_stats_account(client: httpx.AsyncClient, world: World, text: str) -> None:
    response = await client.post(
        "/api/admin/histories/charts/user-stats",
        json={"account": text},
        headers=access_token(world.super_id),
    )
    assert_rest_answer(response, "legacy")
    tokens = text.split()
    if tokens and not all(names_id(token) for token in tokens):
        assert response.status_code == 400, response.text


async def _bucket_path(client: httpx.AsyncClient, world: World, text: str) -> None:
    path = f"/api/v1/clients/{urllib.parse.quote(text, safe='')}/history"
    response = await client.get(path, headers=bearer(world.ada_id))
    assert_rest_answer(response, "clients")


def _query_integer(path: str, name: str, envelope: str, headers: str) -> Call:
    """An integer query parameter: not an integer by the rule → 400."""

    async def call(client: httpx.AsyncClient, world: World, text: str) -> None:
        credential = {
            "api-key": {"X-API-Key": world.api_key},
            "bearer": bearer(world.ada_id),
        }[headers]
        response = await client.get(path, params={name: text}, headers=credential)
        assert_rest_answer(response, envelope)
        if text.strip() and not is_integer_text(text.strip()):
            assert response.status_code == 400, response.text

    return call


async def _usage_history_window(client: httpx.AsyncClient, world: World, text: str) -> None:
    """`window` falls back to 30 for anything that is not one of its values (seed 000)."""
    response = await client.get(
        "/api/user/usage-history",
        params={"instanceId": "personal", "window": text},
        headers=access_token(world.ada_id),
    )
    assert_rest_answer(response, "legacy")
    assert response.status_code == 200, response.text
    window = int(text) if text in ("7", "14", "30", "90", "180") else 30
    assert response.json()["window"] == window


def _int_or_text(text: str) -> Any:
    return int(text) if re.fullmatch(r"-?[0-9]+", text) else text


ENTRY_POINTS: dict[str, Call] = {
    "token sub, GET /auth/account/credits": _token_call(
        "/auth/account/credits", "authorization", "coded"
    ),
    "token sub, GET /api/user/usage-history": _token_call(
        "/api/user/usage-history?instanceId=personal", "x-access-token", "legacy"
    ),
    "token sub, GET /api/v1/clients/{bucket_id}/history": _token_call(
        f"/api/v1/clients/{BUCKET}/history", "authorization", "clients"
    ),
    "token sub, /graphql viewer": _token_in_graph,
    "node(User)": _node("User", lambda t: t),
    "node(LedgerEntry)": _node("LedgerEntry", lambda t: t),
    "node(UsageEvent)": _node("UsageEvent", lambda t: t),
    "node(Membership)": _node("Membership", lambda t: f"{t}:{ACME}"),
    "node(Institution)": _node("Institution", lambda t: t),
    "node(ClientBucket)": _node("ClientBucket", lambda t: t),
    "node(Snapshot)": _node("Snapshot", lambda t: f"{t}:2026-05-01"),
    "User.ledger after": _cursor_call(
        "query($after: String) { user(id: 3) { ledger(after: $after) { totalCount } } }",
        lambda t: [MOMENT, _json_value(t)],
    ),
    "User.usageEvents after": _cursor_call(
        "query($after: String) { user(id: 3) { usageEvents(after: $after) { totalCount } } }",
        lambda t: [MOMENT, _json_value(t)],
    ),
    "Institution.members after": _cursor_call(
        f'query($after: String) {{ institution(id: "{ACME}") '
        "{ members(after: $after) { totalCount } } }",
        lambda t: [_json_value(t)],
    ),
    "institutions after": _cursor_call(
        "query($after: String) { institutions(after: $after) { totalCount } }",
        lambda t: [_json_value(t)],
    ),
    "ClientBucket.snapshots after": _cursor_call(
        f'query($after: String) {{ bucket(id: "{BUCKET}") '
        "{ snapshots(after: $after) { edges { cursor } } } }",
        lambda t: [_json_value(t)],
    ),
    "user(id)": _graph_argument("query($v: Int!) { user(id: $v) { id } }", _int_or_text),
    "userStats accounts": _graph_argument(
        "query($v: Int!) { userStats(input: {accounts: [$v]}) { truncated } }", _int_or_text
    ),
    "recordUsage userId": _graph_argument(
        'mutation($v: Int!) { recordUsage(input: {userId: $v, instance: "' + ACME + '", '
        'occurredAt: "2026-05-20T14:00:00Z", credits: "0"}) { status } }',
        _int_or_text,
        caller="api-key",
    ),
    "creditWallet userId": _graph_argument(
        'mutation($v: Int!) { creditWallet(input: {userId: $v, amount: "1"}) { __typename } }',
        _int_or_text,
    ),
    # As a plain member (FORBIDDEN): super would revoke the world's own key, id 1.
    "revokeApiKey apiKeyId": _graph_argument(
        "mutation($v: Int!) { revokeApiKey(apiKeyId: $v) { apiKeyId } }",
        _int_or_text,
        caller="ada",
    ),
    "releaseReservation reservationId": _big_int_argument(
        "mutation($v: BigInt!) { releaseReservation(reservationId: $v) { __typename } }",
        lambda t: t,
    ),
    "forgetUsage ids": _big_int_argument(
        "mutation($v: BigInt!) { forgetUsage(input: {ids: [$v]}) { forgottenCount } }",
        lambda t: t,
    ),
    "REST user-stats account": _user_stats_account,
    "REST clients bucket_id": _bucket_path,
    "REST /v1/billing/usage-history limit": _query_integer(
        "/v1/billing/usage-history", "limit", "coded", "api-key"
    ),
    "REST /v1/billing/usage-history offset": _query_integer(
        "/v1/billing/usage-history", "offset", "coded", "api-key"
    ),
    "REST /auth/account/ledger limit": _query_integer(
        "/auth/account/ledger", "limit", "coded", "bearer"
    ),
    "REST /auth/account/ledger offset": _query_integer(
        "/auth/account/ledger", "offset", "coded", "bearer"
    ),
    "REST clients history limit": _query_integer(
        f"/api/v1/clients/{BUCKET}/history", "limit", "clients", "bearer"
    ),
    "REST /api/user/usage-history window": _usage_history_window,
}


@property_test
@given(text=id_texts)
async def test_every_id_input_names_nothing_outside_the_rule(
    engine: AsyncEngine, client: httpx.AsyncClient, world: World, text: str
) -> None:
    await call_every_entry_point(ENTRY_POINTS, client, world, text, text)


async def test_a_big_int_in_another_scripts_digits_is_refused(
    client: httpx.AsyncClient, world: World
) -> None:
    """Before the rule the BigInt scalar read "٣" as 3 (int() takes any script's digits)."""
    query = "mutation($v: BigInt!) { releaseReservation(reservationId: $v) { __typename } }"
    response = await post_graphql(client, query, bearer(world.super_id), {"v": "٣"})
    assert_refused(response)
