"""A real `usagegraph serve --workers 2` under a short, known load, for the metrics, logs
and dashboard tests: it runs once per backend and keeps what the client saw (each answer's
`X-Request-Id`) beside what the server wrote (its log file)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.cli.running import cli_env, free_port, run_cli, stop
from tests.conftest import TEST_JWT_SECRET
from tests.databases import TestDatabase
from usagegraph.auth.tokens import mint_token

ACME = "65f1c0ffee0000000000000a"
API_KEY = "ug_live_observability_test_key_0001"
METRICS_TOKEN = "metrics-token-for-the-served-run-0123"
SUPER, MEMBER = 1, 7
# Requests per credential stay under the burst; anonymous hammering goes past it.
RATE_LIMIT_BURST = 60
CREDITS_CALLS = 12
ANONYMOUS_CALLS = 2 * RATE_LIMIT_BURST + 20

RECORD = """mutation Record($input: UsageEventInput!) {
  recordUsage(input: $input) { status event { eventId } }
}"""
VIEWER = "query Viewer { viewer { kind userId } }"


@dataclass
class ServedRun:
    """What the load did and what the server said about it."""

    base: str
    log: Path
    token: str
    request_ids: list[str] = field(default_factory=list)
    metrics_text: str = ""

    def log_text(self) -> str:
        return self.log.read_text()


def _data(now: datetime) -> str:
    lines = [
        {"kind": "institution", "id": ACME, "name": "Acme", "default_cap": 500},
        {"kind": "user", "id": SUPER, "email": "root@acme.edu", "role": "super"},
        {"kind": "user", "id": MEMBER, "email": "ada@acme.edu", "fname": "Ada"},
        {"kind": "membership", "user": MEMBER, "institution": ACME},
        {"kind": "wallet", "user": MEMBER},
        {"kind": "ledger", "user": MEMBER, "type": "credit", "amount": "10"},
        {"kind": "bucket", "id": "acme-corp", "institution": ACME},
        {"kind": "api_key", "institution": ACME, "key": API_KEY, "name": "ingest"},
        {
            "kind": "usage",
            "user": MEMBER,
            "instance": ACME,
            "occurred_at": (now - timedelta(days=2)).isoformat(),
            "credits": "1",
        },
    ]
    return "".join(json.dumps(line) + "\n" for line in lines)


@contextlib.contextmanager
def served_run(database: TestDatabase, tmp_path: Path) -> Iterator[ServedRun]:
    """Import a small world, serve it with two workers and JSON logs, apply the load."""
    env = cli_env(
        tmp_path,
        database.url_string,
        USAGEGRAPH_LOG_FORMAT="json",
        USAGEGRAPH_METRICS_TOKEN=METRICS_TOKEN,
        USAGEGRAPH_RATE_LIMIT_BURST=str(RATE_LIMIT_BURST),
        USAGEGRAPH_RATE_LIMIT_PER_MINUTE="60",
    )
    data = tmp_path / "world.ndjson"
    data.write_text(_data(datetime.now(UTC)))
    imported = run_cli(env, "import", str(data))
    assert imported.returncode == 0, imported.stderr
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "usagegraph", "serve", "--port", str(port), "--workers", "2"],
            # Named here, so the test can see that both workers wrote to it.
            env={**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    run = ServedRun(
        base=f"http://127.0.0.1:{port}",
        log=log,
        token=mint_token(MEMBER, TEST_JWT_SECRET, 600),
    )
    try:
        _wait_until_ready(process, run)
        _load(run)
        _wait_for_access_lines(run)
        yield run
    finally:
        stop(process)


def _wait_until_ready(process: subprocess.Popen, run: ServedRun, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited early:\n{run.log_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{run.base}/readyz", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"serve did not start in time:\n{run.log_text()}")
        time.sleep(0.2)


def _wait_for_access_lines(run: ServedRun, timeout: float = 30) -> None:
    """Until the log holds a line for every answered request: a worker writes its access
    line after the answer has gone out, so on a busy machine the client can be faster.
    Past the deadline the tests read what there is, and say which line is missing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = run.log_text()
        if all(request_id in text for request_id in run.request_ids):
            return
        time.sleep(0.1)


def _load(run: ServedRun) -> None:
    """A short load touching every metric family; a fresh connection per request, so both
    workers answer some."""
    now = datetime.now(UTC)
    user = {"Authorization": f"Bearer {run.token}"}
    key = {"Authorization": f"Bearer {API_KEY}"}
    super_user = {"Authorization": f"Bearer {mint_token(SUPER, TEST_JWT_SECRET, 600)}"}
    calls: list[tuple[str, str, dict, dict | None]] = []
    calls += [("GET", "/auth/account/credits", user, None)] * CREDITS_CALLS
    calls += [
        ("GET", "/api/user/usage-history?instanceId=personal", {"x-access-token": run.token}, None)
    ] * 5
    calls += [("GET", "/api/v1/clients/acme-corp/history", key, None)] * 3
    calls += [("GET", "/v1/billing/usage-history", key, None)] * 2
    calls += [("POST", "/graphql", user, {"query": VIEWER})] * 4
    event = {"userId": MEMBER, "instance": ACME, "occurredAt": now.isoformat(), "credits": "1"}
    keyed = {**event, "idempotencyKey": "evt-observed-1"}
    calls += [("POST", "/graphql", key, {"query": RECORD, "variables": {"input": keyed}})] * 2
    calls += [("POST", "/graphql", key, {"query": RECORD, "variables": {"input": event}})]
    broke = {
        "userId": MEMBER,
        "instance": "personal",
        "occurredAt": now.isoformat(),
        "credits": "1000",
    }
    calls += [("POST", "/graphql", super_user, {"query": RECORD, "variables": {"input": broke}})]
    calls += [("GET", "/readyz", {}, None), ("GET", "/nowhere/at/all", {}, None)]
    calls += [("GET", "/v1/billing/usage-history", {}, None)] * ANONYMOUS_CALLS
    for method, path, headers, body in calls:
        answer = httpx.request(method, run.base + path, headers=headers, json=body, timeout=30)
        run.request_ids.append(answer.headers["x-request-id"])
    scrape = httpx.get(
        f"{run.base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    )
    assert scrape.status_code == 200, scrape.text
    run.request_ids.append(scrape.headers["x-request-id"])
    run.metrics_text = scrape.text
