"""/metrics of a real `serve --workers 2` after a short load: every family, from both workers,
labelled by route template, parsed by prometheus-client's own parser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.databases import TestDatabase
from tests.observability.served_run import (
    ANONYMOUS_CALLS,
    CREDITS_CALLS,
    METRICS_TOKEN,
    RATE_LIMIT_BURST,
    ServedRun,
    served_run,
)

FAMILIES = {
    "usagegraph_http_requests",
    "usagegraph_http_request_duration_seconds",
    "usagegraph_graphql_operations",
    "usagegraph_graphql_operation_errors",
    "usagegraph_graphql_operation_duration_seconds",
    "usagegraph_sql_statements_per_request",
    "usagegraph_db_pool_connections",
    "usagegraph_usage_events",
    "usagegraph_wallet_debits_refused",
    "usagegraph_cache_lookups",
    "usagegraph_rate_limit_rejections",
    "usagegraph_request_timeouts",
    "usagegraph_ready",
    "usagegraph_readiness_checks",
}


@pytest.fixture
def run(database: TestDatabase, tmp_path: Path) -> Iterator[ServedRun]:
    with served_run(database, tmp_path) as served:
        yield served


def samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_every_family_is_served_summed_over_both_workers(run: ServedRun, tmp_path: Path) -> None:
    text = run.metrics_text
    families = {family.name for family in text_string_to_metric_families(text)}
    assert families >= FAMILIES, FAMILIES - families

    # Both workers wrote values, and the scrape (answered by one of them) added them up.
    pids = {path.stem.rsplit("_", 1)[-1] for path in (tmp_path / "prometheus").glob("*.db")}
    assert len(pids) >= 2, pids
    credits = total(text, "usagegraph_http_requests_total", route="/auth/account/credits")
    assert credits == CREDITS_CALLS

    # Route templates, never raw paths: a bucket id or an unknown path is no label.
    routes = {s.labels["route"] for s in samples(text) if "route" in s.labels}
    assert "/api/v1/clients/{bucket_id:anytext}/history" in routes
    assert "unmatched" in routes
    assert not any("acme-corp" in route or "nowhere" in route for route in routes)

    assert total(text, "usagegraph_usage_events_total", outcome="inserted") == 2
    assert total(text, "usagegraph_usage_events_total", outcome="duplicate") == 1
    refused = total(
        text, "usagegraph_usage_events_total", outcome="refused", reason="INSUFFICIENT_CREDITS"
    )
    assert refused == 1
    assert total(text, "usagegraph_wallet_debits_refused_total", operation="usage") == 1
    assert total(text, "usagegraph_cache_lookups_total", result="hit") >= 1
    assert total(text, "usagegraph_cache_lookups_total", result="miss") >= 1
    # Each worker keeps its own buckets (no Redis here), so how many pass depends on how
    # connections spread over the workers; some pass, some are refused.
    rejected = total(text, "usagegraph_rate_limit_rejections_total", caller_kind="anonymous")
    assert 1 <= rejected < ANONYMOUS_CALLS - RATE_LIMIT_BURST
    assert total(text, "usagegraph_graphql_operations_total", operation_name="Viewer") == 4
    assert total(text, "usagegraph_graphql_operations_total", operation_name="Record") == 4
    errors = total(text, "usagegraph_graphql_operation_errors_total", operation_name="Record")
    assert errors == 1
    assert total(text, "usagegraph_sql_statements_per_request_sum") > 0
    assert total(text, "usagegraph_ready") == 1
    assert total(text, "usagegraph_readiness_checks_total", result="ready") >= 1
    # No user ids, keys or query text in any label.
    for sample in samples(text):
        for value in sample.labels.values():
            assert "ug_live" not in value
            assert "{" not in value or value.startswith("/")


def test_metrics_need_the_token_when_one_is_set(run: ServedRun) -> None:
    assert httpx.get(f"{run.base}/metrics").status_code == 401
    wrong = httpx.get(f"{run.base}/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = httpx.get(f"{run.base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert right.status_code == 200
    assert right.headers["content-type"].startswith("text/plain")
