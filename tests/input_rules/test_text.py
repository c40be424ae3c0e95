"""The text rule (`input_text`): request bytes are UTF-8 and JSON is RFC 8259, or the request
is refused with a 400 in its API's envelope; never a 500.

The property test draws bytes (valid UTF-8 or not, JSON escapes of lone surrogates, deep
nesting) and sends them as GraphQL bodies, GraphQL query strings and REST bodies.
"""

from __future__ import annotations

import urllib.parse

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.input_rules.world import World, access_token, assert_rest_answer, bearer, graphql_codes

GRAPH_NOISE = [
    b"\xff",
    b"\xc3",  # a truncated two-byte sequence
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate
    b"\\ud800",  # a JSON escape of a lone surrogate
    b"\\udc00x",
    b"\xef\xbb\xbf",
    b"\x00",
    b"\xe2\x82\xac",  # the euro sign: valid UTF-8
]
noise = st.one_of(st.sampled_from(GRAPH_NOISE), st.binary(max_size=12))


def _graph_bodies(piece: bytes) -> list[bytes]:
    """The piece in the query text, in a variable, as the whole body, and as a body that is
    nested deeper than any parser should follow."""
    return [
        b'{"query":"{ viewer { kind } }' + piece + b'"}',
        b'{"query":"query($i: String!) { institution(id: $i) { name } }","variables":{"i":"'
        + piece
        + b'"}}',
        piece,
        b'{"query":"{ viewer { kind } }","variables":' + b"[" * 3000 + piece + b"]" * 3000 + b"}",
    ]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(piece=noise)
async def test_no_bytes_crash_a_graphql_or_rest_request(
    client: httpx.AsyncClient, world: World, piece: bytes
) -> None:
    graph_headers = {**bearer(world.super_id), "content-type": "application/json"}
    for body in _graph_bodies(piece):
        response = await client.post("/graphql", content=body, headers=graph_headers)
        codes = graphql_codes(response)
        assert None not in codes, (body[:80], response.text)
        assert "INTERNAL" not in codes, (body[:80], response.text)
        if not _utf8(body):
            assert response.status_code == 400, (body[:80], response.text)
    query = urllib.parse.quote_from_bytes(b'{ institution(id: "' + piece + b'") { name } }')
    response = await client.get(f"/graphql?query={query}", headers=bearer(world.super_id))
    codes = graphql_codes(response)
    assert "INTERNAL" not in codes, response.text
    if not _utf8(piece):
        assert response.status_code == 400, response.text
    response = await client.post(
        "/api/admin/histories/charts/user-stats",
        content=b'{"usersearch": "' + piece + b'"}',
        headers={**access_token(world.super_id), "content-type": "application/json"},
    )
    assert_rest_answer(response, "legacy")


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
