"""Schemathesis over the GraphQL schema, against a real `usagegraph serve`.

Every query and mutation field gets generated operations (arguments, input objects, nested
selections) sent as a super user, as a plain member and as an institution's API key. Bounded
(a fixed number of examples per field and caller) so CI stays fast. Every answer must be a
non-5xx JSON response whose errors all carry a code, none of them INTERNAL: a masked internal
error is a crash, however politely it is worded (a null in a non-null field, an Int out of
range and a database error all end up there).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.core.transport import Response
from schemathesis.graphql import nodes

from tests.cli.running import cli_env, run_cli, serving
from tests.databases import TestDatabase
from usagegraph.schema.root import schema as graph

# Bounded for CI; raise it locally (USAGEGRAPH_FUZZ_EXAMPLES=500) for a deeper search.
EXAMPLES_PER_OPERATION = int(os.environ.get("USAGEGRAPH_FUZZ_EXAMPLES", "15"))
DATA = Path(__file__).parents[1] / "data"
SUPER_USER = "1"
PLAIN_USER = "9"  # Grace, a member of Acme (tests/data/every_kind.ndjson)
API_KEY = "ug_live_example_only"


def _register_scalars() -> None:
    """Strategies for the graph's own scalars (Date and DateTime are built in).

    BigInt and Decimal reach past what the databases hold: the input rules (`input_ids`,
    `money_range`) refuse such values as INVALID_REQUEST.
    """
    schemathesis.graphql.scalar("BigInt", st.integers().map(nodes.Int))
    decimals = st.decimals(allow_nan=False, allow_infinity=False, places=6, max_value=10**15)
    schemathesis.graphql.scalar(
        "Decimal",
        st.one_of(
            decimals.map(lambda d: nodes.String(str(d))),
            st.integers(min_value=-(10**9), max_value=10**9).map(nodes.Int),
            st.text(max_size=12).map(nodes.String),
        ),
    )
    schemathesis.graphql.scalar(
        "JSON",
        st.one_of(
            st.text(max_size=20).map(nodes.String),
            st.integers().map(nodes.Int),
            st.booleans().map(nodes.Boolean),
            st.just(nodes.Null),
        ),
    )


_register_scalars()


@pytest.fixture
def server(database: TestDatabase, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A real server on the test database: every kind of row, a super user, no rate limit."""
    data = tmp_path / "world.ndjson"
    super_user = '{"kind":"user","id":1,"email":"root@ug.io","role":"super"}\n'
    data.write_text(super_user + (DATA / "every_kind.ndjson").read_text())
    env = cli_env(tmp_path, database.url_string, USAGEGRAPH_RATE_LIMIT_PER_MINUTE="0")
    imported = run_cli(env, "import", str(data))
    assert imported.returncode == 0, imported.stderr
    tokens = {
        user: run_cli(env, "token", "--user", user).stdout.strip()
        for user in (SUPER_USER, PLAIN_USER)
    }
    with serving(env) as base:
        yield base, tokens


def _internal_errors(response: Response) -> list[Any]:
    """Errors without a code, or coded INTERNAL, in a (possibly batched) GraphQL body."""
    [content_type] = response.headers["content-type"]
    assert content_type.startswith("application/json"), response.text
    body = response.json()
    results = body if isinstance(body, list) else [body]
    return [
        error
        for result in results
        for error in result.get("errors") or []
        if (error.get("extensions") or {}).get("code") in (None, "INTERNAL")
    ]


def _fuzz(operation: Any, base: str, headers: dict[str, str], counter: list[int]) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy())
    def run(case: schemathesis.Case) -> None:
        counter[0] += 1
        response = case.call(base_url=base, headers=headers)
        # Not schemathesis' GraphQL check: it counts every error (a coded FORBIDDEN too) as
        # the server's; here a client error is an answer, only 5xx and INTERNAL are crashes.
        assert response.status_code < 500, (case.body, response.text)
        assert _internal_errors(response) == [], (case.body, response.text)

    run()


def test_generated_operations_never_crash(server: tuple[str, dict[str, str]]) -> None:
    base, tokens = server
    fuzzed = schemathesis.graphql.from_file(graph.as_str())
    operations = [result.ok() for result in fuzzed.get_all_operations()]
    # Every field of Query and Mutation is an operation of its own.
    assert len(operations) == len(graph._schema.query_type.fields) + len(
        graph._schema.mutation_type.fields
    )
    callers = {
        "super": {"Authorization": f"Bearer {tokens[SUPER_USER]}"},
        "member": {"Authorization": f"Bearer {tokens[PLAIN_USER]}"},
        "api-key": {"Authorization": f"Bearer {API_KEY}"},
    }
    counter = [0]  # cases
    for headers in callers.values():
        for operation in operations:
            _fuzz(operation, f"{base}/graphql", headers, counter)
    print(  # the numbers for the closing note (pytest -s)
        f"\nGraphQL fuzz: {counter[0]} cases over {len(operations)} fields and "
        f"{len(callers)} callers"
    )
    assert counter[0] >= len(operations) * len(callers)
