"""Fragment fan-out: every limit walks each fragment once, and the expanded size is bounded.

A document of a few hundred bytes can spread fragments into 2^60 fields. These tests pin that
measuring it is linear (visits counted by the walk, and Python calls counted per request: no
wall clock), that such a document is refused with its own code before graphql-core's rules
run, and that random fragment DAGs never cost more than a budget linear in their size.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import httpx
import orjson
import pytest
from graphql import parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FIXED_NOW, client_of
from tests.fixtures.fragment_documents import deep_input_json, fan_out, fragment_dags
from tests.schema.graph import error_codes, graphql
from tests.work_budget import call_budget
from usagegraph.app import create_app
from usagegraph.schema.document_shape import measure
from usagegraph.settings import GraphQLLimits, Settings


def call_allowance(document: str) -> int:
    """Calls one request may make: a fixed part (routing, parsing the body, answering) plus a
    part linear in the document's length. A small query takes ~7,000 calls, and the fan-out
    family at n=60 (2,912 bytes) ~27,000 today; an exponential step takes millions."""
    return 40_000 + 60 * len(document)


@pytest.mark.parametrize("n", range(10, 61))
def test_the_fan_out_family_is_measured_visiting_each_selection_once(n: int) -> None:
    operations, visits = measure(parse(fan_out(n)))
    # viewer; its ...F0; 3 selections in each of F0..F(n-1); userId in Fn.
    assert visits == 1 + 1 + 3 * n + 1
    (operation,) = operations
    # viewer, plus F0's userId and twice everything F1 expands to: 2^(n+1) - 1 userIds.
    assert operation.shape.fields == 1 + 2 ** (n + 1) - 1
    assert operation.shape.depth == 1
    assert operation.shape.aliases == 0


def test_aliases_count_once_per_place_a_spread_puts_them() -> None:
    document = parse(
        "{ viewer { ...A ...A } } fragment A on Viewer { a: userId ...B ...B ...B } "
        "fragment B on Viewer { b: kind c: role }"
    )
    ((operation), *_), _visits = measure(document)
    # A twice: each time 1 alias of its own and 3 x 2 from B.
    assert operation.shape.aliases == 2 * (1 + 3 * 2)
    assert operation.shape.fields == 1 + 2 * (1 + 3 * 2)


def test_unknown_and_cyclic_fragments_measure_nothing() -> None:
    document = parse("{ viewer { ...Missing ...Loop } } fragment Loop on Viewer { userId ...Loop }")
    ((operation), *_), visits = measure(document)
    assert operation.shape.fields == 1 + 1  # viewer, and Loop's userId once
    assert visits == 5


async def test_the_fan_out_family_is_refused_within_a_call_budget(
    client: httpx.AsyncClient,
) -> None:
    for n in range(10, 61):
        document = fan_out(n)
        with call_budget(call_allowance(document)):
            body = await graphql(client, document)
        assert error_codes(body) == ["OPERATION_TOO_LARGE"], n
        assert body["data"] is None
        assert "more than 2000 fields" in body["errors"][0]["message"]


async def test_a_fan_out_within_the_field_limit_is_answered(client: httpx.AsyncClient) -> None:
    # n=9: viewer + 2^10 - 1 userIds = 1,024 fields, under the default 2,000.
    document = fan_out(9)
    with call_budget(call_allowance(document)):
        body = await graphql(client, document)
    assert body == {"data": {"viewer": {"userId": None}}}


async def test_the_field_limit_is_a_setting(settings: Settings) -> None:
    configured = dataclasses.replace(settings, graphql=GraphQLLimits(max_fields=3))
    async with client_of(configured) as client:
        # fan_out(1): viewer + F0's userId + F1's userId twice = 4 fields.
        assert error_codes(await graphql(client, fan_out(1))) == ["OPERATION_TOO_LARGE"]
        # fan_out(0) expands to viewer + F0's userId.
        assert "errors" not in await graphql(client, fan_out(0))


# --- adversarial fuzzing ---------------------------------------------------------------


# One app serves every example of a test: it holds no state between requests that matters here.
FIXTURE_REUSE = [HealthCheck.function_scoped_fixture]


class AppRunner:
    """The real app on one event loop, for hypothesis examples run from a plain function."""

    def __init__(self, configured: Settings) -> None:
        self._runner = asyncio.Runner()
        self._app = create_app(configured, clock=lambda: FIXED_NOW)
        self._lifespan = self._app.router.lifespan_context(self._app)
        self._runner.run(self._lifespan.__aenter__())
        transport = httpx.ASGITransport(app=self._app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://test")

    def post(self, body: bytes) -> httpx.Response:
        headers = {"content-type": "application/json"}
        return self._runner.run(self.client.post("/graphql", content=body, headers=headers))

    def close(self) -> None:
        self._runner.run(self.client.aclose())
        self._runner.run(self._lifespan.__aexit__(None, None, None))
        self._runner.close()


@pytest.fixture
def running_app(settings: Settings) -> Iterator[AppRunner]:
    runner = AppRunner(settings)
    yield runner
    runner.close()


def _assert_refused_or_answered(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    codes = [error.get("extensions", {}).get("code") for error in response.json().get("errors", [])]
    assert "INTERNAL" not in codes, response.text
    assert None not in codes, response.text


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_REUSE)
@given(document=fragment_dags())
def test_fragment_dags_cost_work_linear_in_their_size(
    running_app: AppRunner, document: str
) -> None:
    body = orjson.dumps({"query": document})
    with call_budget(call_allowance(document)):
        response = running_app.post(body)
    _assert_refused_or_answered(response)


@settings(max_examples=20, deadline=None, suppress_health_check=FIXTURE_REUSE)
@given(depth=st.integers(min_value=1, max_value=3000))
def test_deep_input_objects_in_variables_are_refused_cheaply(
    running_app: AppRunner, depth: int
) -> None:
    query = "query($input: UserStatsInput) { userStats(input: $input) { truncated } }"
    text = f'{{"query": "{query}", "variables": {{"input": {deep_input_json(depth)}}}}}'
    with call_budget(call_allowance(text)):
        response = running_app.post(text.encode())
    _assert_refused_or_answered(response)
