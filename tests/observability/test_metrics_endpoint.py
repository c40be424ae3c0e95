"""/metrics in process: off hides it, and the labels stay bounded."""

from __future__ import annotations

import dataclasses

from tests.conftest import client_of
from usagegraph.observability.metrics import MAX_OPERATION_NAMES, operation_label
from usagegraph.settings import Settings


async def test_metrics_off_is_not_found(settings: Settings) -> None:
    async with client_of(dataclasses.replace(settings, metrics_enabled=False)) as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 404


async def test_metrics_on_by_default_without_a_token(settings: Settings) -> None:
    async with client_of(settings) as http:
        await http.get("/healthz")
        answer = await http.get("/metrics")
    assert answer.status_code == 200
    assert 'usagegraph_http_requests_total{method="GET",route="/healthz",status="200"}' in (
        answer.text
    )


def test_settings_read_the_switch_and_the_token(tmp_path: object) -> None:
    env = {"USAGEGRAPH_DATA_DIR": str(tmp_path), "USAGEGRAPH_METRICS": "off"}
    assert Settings.from_env(env).metrics_enabled is False
    token = "a-token-of-sixteen-or-more"
    assert Settings.from_env({**env, "USAGEGRAPH_METRICS_TOKEN": token}).metrics_token == token


def test_operation_names_are_bounded() -> None:
    assert operation_label(None) == "anonymous"
    assert operation_label("not a name {}") == "other"
    for index in range(MAX_OPERATION_NAMES + 5):
        operation_label(f"Op{index}")
    assert operation_label("NeverSeenBefore") == "other"
