"""The logs of a real `serve --workers 2` under load: JSON lines, one access line per request
with the id its answer carried, and no credential anywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_JWT_SECRET
from tests.databases import TestDatabase
from tests.observability.served_run import API_KEY, METRICS_TOKEN, ServedRun, served_run

ACCESS_FIELDS = {
    "time",
    "level",
    "logger",
    "message",
    "request_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "principal_kind",
    "principal_id",
    "graphql_operation",
    "sql_statements",
}


@pytest.fixture
def run(database: TestDatabase, tmp_path: Path) -> Iterator[ServedRun]:
    with served_run(database, tmp_path) as served:
        yield served


def test_logs_are_json_lines_with_the_request_ids_clients_saw(run: ServedRun) -> None:
    lines = [line for line in run.log_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any("serving on" in r["message"] for r in records)
    access = {r["request_id"]: r for r in records if r["logger"] == "usagegraph.access"}
    for request_id in run.request_ids:
        assert request_id in access, request_id
        assert set(access[request_id]) >= ACCESS_FIELDS
    by_route = [r for r in access.values() if r["graphql_operation"] == "Viewer"]
    assert len(by_route) == 4
    viewer = by_route[0]
    assert (viewer["method"], viewer["route"], viewer["status"]) == ("POST", "/graphql", 200)
    assert (viewer["principal_kind"], viewer["principal_id"]) == ("user", "7")
    assert viewer["sql_statements"] >= 1
    assert isinstance(viewer["duration_ms"], float)
    bucket = [r for r in access.values() if "clients" in r["route"]]
    assert {r["route"] for r in bucket} == {"/api/v1/clients/{bucket_id:anytext}/history"}
    assert {r["principal_kind"] for r in bucket} == {"institution"}


def test_no_credential_reaches_the_logs(run: ServedRun) -> None:
    text = run.log_text()
    for secret in (run.token, API_KEY, METRICS_TOKEN, TEST_JWT_SECRET, "ug_live_"):
        assert secret not in text
