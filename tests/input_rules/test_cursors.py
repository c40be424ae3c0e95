"""Forged cursors: whatever a client puts in `after`, every connection answers it or refuses it
with INVALID_REQUEST "after is not a valid cursor", never INTERNAL.

Cursors are base64 of a JSON array the graph issued; a client can send anything instead:
arbitrary JSON of any shape, bytes that are not JSON, text that is not base64.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.input_rules.world import (
    ACME,
    BUCKET,
    World,
    assert_no_crash,
    bearer,
    post_graphql,
    property_test,
)

# Every connection of the graph that takes `after`, as a caller who may read it.
CONNECTIONS = {
    "User.ledger": "query($after: String) { user(id: 3) { ledger(after: $after) { totalCount } } }",
    "User.usageEvents": (
        "query($after: String) { user(id: 3) { usageEvents(after: $after) { totalCount } } }"
    ),
    "Institution.members": (
        f'query($after: String) {{ institution(id: "{ACME}") '
        "{ members(after: $after) { totalCount } } }"
    ),
    "institutions": "query($after: String) { institutions(after: $after) { totalCount } }",
    "ClientBucket.snapshots": (
        f'query($after: String) {{ bucket(id: "{BUCKET}") '
        "{ snapshots(after: $after) { edges { cursor } } } }"
    ),
}
NOT_A_CURSOR = "after is not a valid cursor"
NUL_REFUSED = "Text may not contain the NUL character (U+0000)"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["2030-01-01", "2030-01-01T00:00:00", "2030-01-01T00:00:00Z", "nope"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


def _encoded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


forged_cursors = st.one_of(
    json_values.map(lambda value: _encoded(json.dumps(value).encode())),
    st.binary(max_size=40).map(_encoded),
    st.text(max_size=40),
)


async def _assert_answered_or_refused(client: httpx.AsyncClient, world: World, after: str) -> None:
    for name, query in CONNECTIONS.items():
        response = await post_graphql(client, query, bearer(world.super_id), {"after": after})
        codes = assert_no_crash(response)
        assert set(codes) <= {"INVALID_REQUEST"}, (name, after, response.text)
        if codes:  # a NUL character is refused before any cursor is read
            message = response.json()["errors"][0]["message"]
            assert message in (NOT_A_CURSOR, NUL_REFUSED), (name, after, message)


@property_test
@given(after=forged_cursors)
async def test_any_forged_cursor_is_answered_or_refused_never_internal(
    engine: AsyncEngine, client: httpx.AsyncClient, world: World, after: str
) -> None:
    await _assert_answered_or_refused(client, world, after)


REPORTED: list[list[Any]] = [
    ["nope", 1],
    ["2030-01-01", 1],
    ["2030-01-01T00:00:00Z", "x"],
    ["2030-01-01T00:00:00", 1],  # a naive time
    ["2030-01-01T00:00:00Z", 10**30],
    [10**30],
]


async def test_the_reported_cursors_are_not_valid_cursors(
    client: httpx.AsyncClient, world: World
) -> None:
    for key in REPORTED:
        after = _encoded(json.dumps(key).encode())
        for name in ("User.ledger", "User.usageEvents"):
            response = await post_graphql(
                client, CONNECTIONS[name], bearer(world.super_id), {"after": after}
            )
            body = response.json()
            assert body["errors"][0]["extensions"]["code"] == "INVALID_REQUEST", (name, key)
            assert body["errors"][0]["message"] == NOT_A_CURSOR
