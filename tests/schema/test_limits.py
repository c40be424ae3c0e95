"""GraphQL limits: tokens, depth, aliases, cost, batches, introspection, GraphiQL, caches.

Each limit is checked at its boundary (the last accepted request and the first refused one,
counted by hand in a comment) on the defaults of `GraphQLLimits`, and once with a smaller
setting to show the setting is what decides. Every refusal is coded INVALID_REQUEST.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query, parse
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.extensions import SchemaExtension
from strawberry.extensions.parser_cache import _get_parse_cache

from tests.conftest import TEST_JWT_SECRET, client_of
from tests.fixtures.factories import add_institution, add_user
from tests.schema.graph import error_codes, graphql
from usagegraph.auth.tokens import mint_token
from usagegraph.schema.limits import CACHE_SIZE, VALIDATIONS_RUN, within_cost
from usagegraph.schema.root import build_schema, schema
from usagegraph.settings import GraphQLLimits, Settings

ACME = "65f1c0ffee0000000000000a"


@asynccontextmanager
async def client_with(
    settings: Settings, limits: GraphQLLimits
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an app whose settings carry `limits`."""
    async with client_of(dataclasses.replace(settings, graphql=limits)) as client:
        yield client


async def _super(engine: AsyncEngine) -> int:
    await add_institution(engine, institution_id=ACME, name="Acme")
    return await add_user(engine, email="root@ug.io", role="super", member_of={ACME: "admin"})


def _message(body: dict[str, Any]) -> str:
    return body["errors"][0]["message"]


# --- tokens ----------------------------------------------------------------------------


def _accounts_query(ids: int) -> str:
    return "{ userStats(input: {accounts: [" + ", ".join(["1"] * ids) + "]}) { truncated } }"


async def test_a_document_of_2000_tokens_parses_and_one_more_is_refused(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    super_id = await _super(engine)
    # Tokens: { userStats ( input : { accounts : [ <N ints> ] } ) { truncated } } = 16 + N.
    body = await graphql(client, _accounts_query(1984), user_id=super_id)
    assert "errors" not in body, body
    assert body["data"]["userStats"]["truncated"] is False
    body = await graphql(client, _accounts_query(1985), user_id=super_id)
    assert error_codes(body) == ["INVALID_REQUEST"]
    assert _message(body) == (
        "Syntax Error: Document contains more than 2000 tokens. Parsing aborted."
    )


async def test_the_token_limit_is_a_setting(settings: Settings) -> None:
    async with client_with(settings, GraphQLLimits(max_tokens=20)) as client:
        # 16 + 4 = 20 tokens: parsed (then refused to an anonymous caller: it ran).
        assert error_codes(await graphql(client, _accounts_query(4))) == ["UNAUTHORIZED"]
        body = await graphql(client, _accounts_query(5))
        assert "more than 20 tokens" in _message(body)
        assert error_codes(body) == ["INVALID_REQUEST"]


# --- depth -----------------------------------------------------------------------------

# Nested selection sets, counted from the root field: institution 1, members 2, edges 3,
# node 4, user 5, memberships 6, institution 7, members 8, edges 9, node 10.
DEPTH_10 = """query($id: String!) { institution(id: $id) { members(first: 1) { edges { node {
  user { memberships { institution { members(first: 1) { edges { node { role } } } } } }
} } } } }"""
# One more level: `node { user { email } }` puts a leaf under 11 selection sets.
DEPTH_11 = DEPTH_10.replace("node { role }", "node { user { email } }")


async def test_depth_10_answers_and_depth_11_is_refused(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    super_id = await _super(engine)
    body = await graphql(client, DEPTH_10, user_id=super_id, variables={"id": ACME})
    assert "errors" not in body, body
    inner = body["data"]["institution"]["members"]["edges"][0]["node"]["user"]["memberships"]
    assert inner[0]["institution"]["members"]["edges"] == [{"node": {"role": "admin"}}]
    body = await graphql(client, DEPTH_11, user_id=super_id, variables={"id": ACME})
    assert body["data"] is None
    assert error_codes(body) == ["INVALID_REQUEST"]
    assert _message(body) == "'anonymous' exceeds maximum operation depth of 10"


async def test_the_depth_limit_is_a_setting(settings: Settings) -> None:
    async with client_with(settings, GraphQLLimits(max_depth=2)) as client:
        # viewer 1 (its fields are leaves at depth 1): accepted.
        assert "errors" not in await graphql(client, "{ viewer { kind } }")
        # institutions 1, edges 2, node 3: refused before anything runs.
        body = await graphql(client, "{ institutions { edges { node { name } } } }")
        assert _message(body) == "'anonymous' exceeds maximum operation depth of 2"
        assert error_codes(body) == ["INVALID_REQUEST"]


async def test_an_unknown_fragment_is_a_coded_client_error_not_a_crash(
    client: httpx.AsyncClient,
) -> None:
    # The depth rule walks fragments by name; graphql-core reports the unknown one instead.
    body = await graphql(client, "{ viewer { ...Missing } }")
    assert error_codes(body) == ["INVALID_REQUEST"]
    assert _message(body) == "Unknown fragment 'Missing'."


# --- aliases ---------------------------------------------------------------------------


def _aliased(count: int) -> str:
    return "{ " + " ".join(f"a{n}: viewer {{ kind }}" for n in range(count)) + " }"


async def test_15_aliases_answer_and_16_are_refused(client: httpx.AsyncClient) -> None:
    body = await graphql(client, _aliased(15))
    assert body["data"]["a14"] == {"kind": "ANONYMOUS"}
    body = await graphql(client, _aliased(16))
    assert body["data"] is None
    assert error_codes(body) == ["INVALID_REQUEST"]
    assert _message(body) == "16 aliases found. Allowed: 15"


async def test_the_alias_limit_is_a_setting(settings: Settings) -> None:
    async with client_with(settings, GraphQLLimits(max_aliases=1)) as client:
        assert "errors" not in await graphql(client, _aliased(1))
        assert _message(await graphql(client, _aliased(2))) == "2 aliases found. Allowed: 1"


# --- cost ------------------------------------------------------------------------------

# members(first: N) of each of M institutions, with each member's user:
#   user { email } = 1 (an object; its scalars are free)
#   node { user } = 1 + 1 = 2;  edges { node } = 1 + 2 = 3 (the list inside a page: x1)
#   members(first: N) = 1 + N x 3;  node { members } = 1 + members;  edges = 1 + node
#   institutions(first: M) = 1 + M x edges
NESTED_PAGES = """query($m: Int, $n: Int) { institutions(first: $m) { totalCount edges {
  node { name members(first: $n) { edges { node { user { email } } } } } } } }"""


def _nested_cost(institutions: int, members: int) -> int:
    members_cost = 1 + members * 3
    return 1 + institutions * (1 + (1 + members_cost))


def _within(query: str, variables: dict[str, Any], max_cost: int) -> bool:
    document = parse(query)
    operation = document.definitions[0]
    return within_cost(schema._schema, document, operation, variables, max_cost)  # type: ignore[arg-type]


@pytest.mark.parametrize(("m", "n"), [(None, None), (20, 20), (100, 3), (7, 100)])
def test_the_cost_of_nested_pages_is_pages_times_their_items(m: int | None, n: int | None) -> None:
    # Absent first: the default page of 20.
    cost = _nested_cost(20 if m is None else m, 20 if n is None else n)
    variables = {"m": m, "n": n}
    assert _within(NESTED_PAGES, variables, cost)
    assert not _within(NESTED_PAGES, variables, cost - 1)


def test_cost_hand_counted_for_lists_without_pages_and_fragments() -> None:
    # institution { name } = 1; memberships, a list without a page (20 items) = 1 + 20 x 1;
    # user = 1 + 21 = 22. memberships is spread twice through the fragment and selected once
    # more: merged by response key it counts once (unmerged it would be 1 + 3 x 21 = 64).
    # Scalars and __typename are free.
    query = """query { user(id: 1) { __typename ...F ...F memberships { role } } }
      fragment F on User { email memberships { institution { name } } }"""
    assert _within(query, {}, 22)
    assert not _within(query, {}, 21)


def test_a_page_size_in_a_variable_default_or_literal_counts() -> None:
    # institutions(first: 3) { edges { node { buckets { bucketId } } } }:
    # buckets 1 (a list without a page: 20 x 0, scalars only) -> node 2 -> edges 3
    # -> institutions 1 + 3 x 3 = 10.
    literal = "{ institutions(first: 3) { edges { node { buckets { bucketId } } } } }"
    by_default = """query($n: Int = 3) {
      institutions(first: $n) { edges { node { buckets { bucketId } } } } }"""
    for query in (literal, by_default):
        assert _within(query, {}, 10)
        assert not _within(query, {}, 9)
    # The variable's value wins over its default; first above 100 counts as 100.
    assert not _within(by_default, {"n": 4}, 10)
    assert _within(by_default, {"n": 1000}, 1 + 100 * 3)


@pytest.mark.parametrize(("users", "within"), [(99, True), (101, False)])
def test_the_cost_walk_bounds_its_own_work(users: int, within: bool) -> None:
    # A fragment of 1,000 scalars spread under N users: the cost is only N (scalars are
    # free), but the walk visits N + N x 1,000 field nodes; past 100,000 it refuses.
    fragment = " fragment L on User { " + "email " * 1000 + "}"
    fields = " ".join(f"a{n}: user(id: 1) {{ ...L }}" for n in range(users))
    assert _within("{ " + fields + " }" + fragment, {}, 10**6) is within


async def test_a_query_over_the_cost_limit_is_refused_before_it_runs(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    super_id = await _super(engine)
    # 20 x 20 members: 1 + 20 x (2 + 61) = 1261 <= 5000, answered.
    body = await graphql(client, NESTED_PAGES, user_id=super_id)
    assert "errors" not in body, body
    assert body["data"]["institutions"]["totalCount"] == 1
    # 100 x 100: 1 + 100 x (2 + 301) = 30301 > 5000, refused; variables decide the size.
    variables = {"m": 100, "n": 100}
    body = await graphql(client, NESTED_PAGES, user_id=super_id, variables=variables)
    assert body["data"] is None
    assert error_codes(body) == ["INVALID_REQUEST"]
    assert _message(body) == (
        "The query is too expensive: its estimated cost exceeds 5000. Ask for smaller pages "
        "(first, limit) or fewer nested lists."
    )


async def test_the_cost_limit_is_a_setting(engine: AsyncEngine, settings: Settings) -> None:
    super_id = await _super(engine)
    async with client_with(settings, GraphQLLimits(max_cost=_nested_cost(2, 2))) as client:
        ok = await graphql(client, NESTED_PAGES, user_id=super_id, variables={"m": 2, "n": 2})
        assert "errors" not in ok
        refused = await graphql(client, NESTED_PAGES, user_id=super_id, variables={"m": 2, "n": 3})
        assert "exceeds 19" in _message(refused)  # 1 + 2 x (2 + 7) = 19


# --- batches ---------------------------------------------------------------------------


async def _post(client: httpx.AsyncClient, body: Any, **headers: str) -> httpx.Response:
    return await client.post("/graphql", json=body, headers=headers)


async def test_a_batch_answers_each_operation_in_order(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    super_id = await _super(engine)
    token = mint_token(super_id, TEST_JWT_SECRET)
    batch = [
        {"query": "{ viewer { userId } }"},
        {
            "query": "query($id: String!) { institution(id: $id) { name } }",
            "variables": {"id": ACME},
        },
        {"query": "{ viewr }"},
    ]
    response = await _post(client, batch, Authorization=f"Bearer {token}")
    assert response.status_code == 200
    first, second, third = response.json()
    assert first == {"data": {"viewer": {"userId": super_id}}}
    assert second == {"data": {"institution": {"name": "Acme"}}}
    assert error_codes(third) == ["INVALID_REQUEST"]


@pytest.mark.parametrize(("size", "accepted"), [(10, True), (11, False), (0, False)])
async def test_a_batch_holds_1_to_10_operations(
    client: httpx.AsyncClient, size: int, accepted: bool
) -> None:
    response = await _post(client, [{"query": "{ viewer { kind } }"}] * size)
    if accepted:
        assert response.status_code == 200
        assert len(response.json()) == size
        return
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "message": f"A batch must hold 1 to 10 operations; this one holds {size}",
                "extensions": {"code": "INVALID_REQUEST"},
            }
        ]
    }


async def test_the_batch_cap_is_a_setting(settings: Settings) -> None:
    async with client_with(settings, GraphQLLimits(max_operations=2)) as client:
        assert (await _post(client, [{"query": "{ viewer { kind } }"}] * 2)).status_code == 200
        response = await _post(client, [{"query": "{ viewer { kind } }"}] * 3)
        assert response.status_code == 400
        assert "1 to 2 operations" in response.json()["errors"][0]["message"]


async def test_each_operation_of_a_batch_has_its_own_limits(client: httpx.AsyncClient) -> None:
    response = await _post(client, [{"query": _aliased(15)}, {"query": _aliased(15)}])
    assert [item["data"]["a14"] for item in response.json()] == [{"kind": "ANONYMOUS"}] * 2


# --- bodies refused before anything runs ---------------------------------------------------


NOT_AN_OPERATION = "The body must be an operation object or an array of them"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "Unable to parse request body as JSON"),
        (b"5", NOT_AN_OPERATION),
        (b"null", NOT_AN_OPERATION),
        (b'"{ viewer { kind } }"', NOT_AN_OPERATION),
        (b'[{"query": "{ viewer { kind } }"}, 7]', NOT_AN_OPERATION),
        (b'[{"query": 5}]', "The operation's `query` must be a string or null"),
        (
            b'[{"query": "{ viewer { kind } }", "variables": []}]',
            "The operation's `variables` must be an object or null",
        ),
        (
            b'{"query": "{ viewer { kind } }", "operationName": 3}',
            "The operation's `operationName` must be a string or null",
        ),
        (b"{}", "No GraphQL query found in the request"),
    ],
)
async def test_malformed_bodies_get_a_coded_400(
    client: httpx.AsyncClient, content: bytes, message: str
) -> None:
    response = await client.post(
        "/graphql", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "errors": [{"message": message, "extensions": {"code": "INVALID_REQUEST"}}]
    }


async def test_a_mutation_over_get_is_a_coded_400(client: httpx.AsyncClient) -> None:
    query = "mutation { __typename }"
    response = await client.get("/graphql", params={"query": query})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == {"code": "INVALID_REQUEST"}


# --- suggestions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables", "message"),
    [
        ("{ viewr { kind } }", {}, "Cannot query field 'viewr' on type 'Query'."),
        (
            "{ institutions(frist: 1) { totalCount } }",
            {},
            "Unknown argument 'frist' on field 'Query.institutions'.",
        ),
        ("query($w: Windw) { user(id: $w) { email } }", {}, "Unknown type 'Windw'."),
        (
            "query($p: AccountPeriod!) { user(id: 1) { usage(period: $p) { userId } } }",
            {"p": "MONTHY"},
            "Variable '$p' has invalid value: Value 'MONTHY' does not exist in "
            "'AccountPeriod' enum.",
        ),
    ],
)
async def test_without_introspection_errors_do_not_suggest_names(
    settings: Settings, query: str, variables: dict[str, Any], message: str
) -> None:
    async with client_with(settings, GraphQLLimits(introspection=False)) as client:
        body = await graphql(client, query, variables=variables)
    assert [error["message"] for error in body["errors"]][:1] == [message]
    assert "Did you mean" not in str(body)
    assert error_codes(body)[0] == "INVALID_REQUEST"


@pytest.mark.parametrize(
    ("query", "variables", "message"),
    [
        ("{ viewr { kind } }", {}, "Cannot query field 'viewr' on type 'Query'. Did you mean"),
        (
            "{ institutions(frist: 1) { totalCount } }",
            {},
            "Unknown argument 'frist' on field 'Query.institutions'. Did you mean 'first'?",
        ),
        (
            "query($p: AccountPeriod!) { user(id: 1) { usage(period: $p) { userId } } }",
            {"p": "MONTHY"},
            "Variable '$p' has invalid value: Value 'MONTHY' does not exist in 'AccountPeriod' "
            "enum. Did you mean the enum value 'MONTHLY'?",
        ),
    ],
)
async def test_with_introspection_on_errors_keep_their_suggestions(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any], message: str
) -> None:
    """The schema is public then (introspection answers it), so the hints give nothing away
    and spare a developer a trip to the docs."""
    body = await graphql(client, query, variables=variables)
    assert body["errors"][0]["message"].startswith(message), body
    assert error_codes(body)[0] == "INVALID_REQUEST"


# --- introspection and GraphiQL ----------------------------------------------------------


async def test_introspection_can_be_turned_off(settings: Settings) -> None:
    async with client_with(settings, GraphQLLimits(introspection=False)) as client:
        body = await graphql(client, get_introspection_query())
        assert body["data"] is None
        assert error_codes(body)[0] == "INVALID_REQUEST"
        assert _message(body) == (
            "GraphQL introspection has been disabled, but the requested query contained "
            "the field '__schema'."
        )
        body = await graphql(client, '{ __type(name: "User") { name } }')
        assert error_codes(body) == ["INVALID_REQUEST"]
        # __typename is not introspection of the schema: clients rely on it.
        assert await graphql(client, "{ viewer { __typename } }") == {
            "data": {"viewer": {"__typename": "Viewer"}}
        }


async def test_deep_introspection_is_refused_even_when_introspection_is_on(
    client: httpx.AsyncClient,
) -> None:
    query = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    body = await graphql(client, query)
    assert _message(body) == "Maximum introspection depth exceeded"
    assert set(error_codes(body)) == {"INVALID_REQUEST"}


async def test_graphiql_is_served_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "GraphiQL" in response.text


async def test_graphiql_can_be_turned_off(settings: Settings) -> None:
    async with client_with(settings, GraphQLLimits(graphiql=False)) as client:
        response = await client.get("/graphql", headers={"accept": "text/html"})
        assert response.status_code == 404
        assert response.json() == {
            "errors": [{"message": "Not Found", "extensions": {"code": "NOT_FOUND"}}]
        }
        # The API itself still answers, over GET too.
        response = await client.get("/graphql", params={"query": "{ viewer { kind } }"})
        assert response.json() == {"data": {"viewer": {"kind": "ANONYMOUS"}}}


# --- how the extensions are given ----------------------------------------------------------


def test_extensions_are_classes_or_factories_never_shared_instances() -> None:
    for built in (schema, build_schema(GraphQLLimits(introspection=False))):
        assert built.extensions
        assert not any(isinstance(extension, SchemaExtension) for extension in built.extensions)
        first = [extension() for extension in built.extensions]
        second = [extension() for extension in built.extensions]
        assert all(a is not b for a, b in zip(first, second, strict=True))


def test_schemas_of_different_settings_do_not_share_limits() -> None:
    strict = build_schema(GraphQLLimits(max_operations=2))
    assert strict.config.batching_config == {"max_operations": 2}
    assert schema.config.batching_config == {"max_operations": 10}
    assert strict.as_str() == schema.as_str()


async def test_a_repeated_query_skips_parsing_and_validation(client: httpx.AsyncClient) -> None:
    query = "{ viewer { kind role } }  # cached"
    await graphql(client, query)
    parsed, validated = _get_parse_cache(CACHE_SIZE).cache_info().hits, VALIDATIONS_RUN[0]
    await graphql(client, query)
    assert _get_parse_cache(CACHE_SIZE).cache_info().hits == parsed + 1
    # Validated once, kept by the document's text (limits.ShapedValidation).
    assert VALIDATIONS_RUN[0] == validated
