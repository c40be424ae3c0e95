"""The Grafana dashboard (deploy/grafana/usagegraph.json) is a well-formed dashboard model,
and every metric and label its PromQL names exists in the /metrics of a real
`serve --workers 2` under load: a renamed metric breaks this test, not a panel nobody
looks at until an incident."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.databases import TestDatabase
from tests.observability.served_run import served_run

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "usagegraph.json"
GRID_COLUMNS = 24

# What the dashboard must show (issue 17): requests and latency by route, errors (HTTP and
# GraphQL), ingestion, the pool, and the cheap extras (cache, rate limits, timeouts).
REQUIRED_SERIES = {
    "usagegraph_http_requests_total",
    "usagegraph_http_request_duration_seconds_bucket",
    "usagegraph_graphql_operation_errors_total",
    "usagegraph_usage_events_total",
    "usagegraph_db_pool_connections",
    "usagegraph_cache_lookups_total",
    "usagegraph_rate_limit_rejections_total",
    "usagegraph_request_timeouts_total",
}
# Labels Prometheus adds when it scrapes; /metrics itself never has them.
TARGET_LABELS = {"job", "instance"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """The metric (series) names and the label names a PromQL expression uses.

    A small lexer, enough for dashboards: strings are blanked first (so a `{` in a regex
    cannot confuse it), label names are read from selectors and `by (…)`-style groupings,
    and what is left are identifiers that are neither functions (followed by `(`),
    keywords, Grafana variables (`$job`), nor parts of numbers (`1e3`).
    """
    text = _STRING.sub('""', expr)
    labels: set[str] = set()
    for match in _SELECTOR.finditer(text):
        labels.update(_MATCHER_LABEL.findall(match.group(2)))
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text)
    for match in _GROUPING.finditer(text):
        labels.update(part.strip() for part in match.group(1).split(",") if part.strip())
    text = _GROUPING.sub(" ", _RANGE.sub(" ", text))
    metrics = set()
    for match in _IDENTIFIER.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end() :].lstrip()[:1]
        if before in "$.0123456789" or after == "(" or match.group() in _KEYWORDS:
            continue
        metrics.add(match.group())
    return metrics, labels


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in model["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(model: dict[str, Any]) -> Iterator[tuple[str, str, set[str], set[str]]]:
    """(where, expression, metric names, label names) of every PromQL the dashboard runs:
    the panels' targets and the template variables' queries."""
    for panel in panels(model):
        for target in panel.get("targets", []):
            metrics, labels = promql_names(target["expr"])
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"], metrics, labels
    for variable in model["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        expr = query["query"] if isinstance(query, dict) else query
        found = _LABEL_VALUES.match(expr)
        if found:
            metrics, labels = promql_names(found.group(1))
            labels.add(found.group(2))
        else:
            metrics, labels = promql_names(expr)
        yield f"variable {variable['name']!r}", expr, metrics, labels


def test_the_lexer_finds_metric_and_label_names_and_nothing_else() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (route, le) (rate(usagegraph_http_request_duration"
        '_seconds_bucket{job=~"$job", status=~"5..|{x}"}[$__rate_interval]))) / on (route) '
        "group_left sum(usagegraph_up offset 5m) > bool 1e3"
    )
    assert promql_names(expr) == (
        {"usagegraph_http_request_duration_seconds_bucket", "usagegraph_up"},
        {"route", "le", "job", "status"},
    )


def test_the_dashboard_is_a_grafana_model_over_a_chosen_prometheus() -> None:
    model = dashboard()
    assert model["title"]
    assert model["uid"]
    assert model["schemaVersion"] >= 36
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    ids = [panel["id"] for panel in panels(model)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels(model):
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= GRID_COLUMNS, panel["title"]
        covered = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not covered & cells, f"panel {panel['title']!r} overlaps another"
        cells |= covered
        if panel["type"] == "row":
            continue
        # Every query goes to the data source the viewer picked, never a fixed one.
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["refId"], panel["title"]
            assert target["datasource"]["uid"] == "${datasource}"

    used = set().union(*(metrics for _where, _expr, metrics, _labels in queries(model)))
    assert used >= REQUIRED_SERIES, REQUIRED_SERIES - used


def exposed_series(text: str) -> dict[str, set[str]]:
    """Series name -> its label names, as Prometheus would store them from this scrape.

    Sample names, not family names: the parser names a counter's family without `_total`
    and a histogram's without `_bucket`/`_count`/`_sum`, but PromQL queries the samples.
    """
    series: dict[str, set[str]] = defaultdict(set)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[sample.name] |= set(sample.labels)
    return series


# One backend is enough: the names do not depend on it (test_metrics_served runs both).
@pytest.mark.parametrize("migrated_database", ["sqlite"], indirect=True)
def test_every_metric_and_label_of_the_dashboard_is_in_the_live_exposition(
    database: TestDatabase, tmp_path: Path
) -> None:
    with served_run(database, tmp_path) as run:
        series = exposed_series(run.metrics_text)

    # The check bites: family names without their sample suffix are not series.
    assert "usagegraph_http_requests" not in series
    assert "usagegraph_http_request_duration_seconds" not in series
    assert "usagegraph_http_request_duration_seconds_bucket" in series

    problems = []
    for where, expr, metrics, labels in queries(dashboard()):
        problems += [f"{where}: no metric {name} in {expr}" for name in metrics - series.keys()]
        known = set().union(*(series.get(name, set()) for name in metrics)) | TARGET_LABELS
        problems += [f"{where}: no label {label} in {expr}" for label in labels - known]
    assert not problems, "\n".join(problems)
