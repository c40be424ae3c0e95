"""Schemathesis against a real server: generated requests for every documented operation.

Bounded (a fixed number of examples per operation) so CI stays fast. Every answer must be
a non-5xx response whose status, content type and body the OpenAPI document allows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.cli.running import cli_env, run_cli, serving
from tests.databases import TestDatabase
from usagegraph.rest.openapi import openapi_document

# Bounded for CI; raise it locally (USAGEGRAPH_FUZZ_EXAMPLES=500) for a deeper search.
EXAMPLES_PER_OPERATION = int(os.environ.get("USAGEGRAPH_FUZZ_EXAMPLES", "40"))
DATA = Path(__file__).parents[1] / "data"
API_KEY = "ug_live_example_only"  # from tests/data/every_kind.ndjson
ADMIN_USER = "7"


@pytest.fixture
def server(database: TestDatabase, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real `usagegraph serve` on the test database holding every kind of row."""
    # The limiter is tested on its own; here it would only cut the run short with 429s.
    env = cli_env(tmp_path, database.url_string, USAGEGRAPH_RATE_LIMIT_PER_MINUTE="0")
    assert run_cli(env, "import", str(DATA / "every_kind.ndjson")).returncode == 0
    token = run_cli(env, "token", "--user", ADMIN_USER).stdout.strip()
    with serving(env) as base:
        yield base, token


def _credentials(path: str, token: str) -> dict[str, str]:
    if path.startswith("/v1/"):
        return {"X-API-Key": API_KEY}
    if path.startswith("/api/v1/clients/"):
        return {"Authorization": f"Bearer {token}"}
    if path.startswith("/api/"):
        return {"x-access-token": token}
    return {"Authorization": f"Bearer {token}"}


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _fuzz(operation: Any, base: str, headers: dict[str, str]) -> None:
    """Run the bounded examples of one operation against the server."""

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy())
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)

    run()


def test_generated_requests_get_documented_answers(server: tuple[str, str]) -> None:
    base, token = server
    schema = schemathesis.openapi.from_dict(openapi_document())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9
    for operation in operations:
        _fuzz(operation, base, _credentials(operation.path, token))
