"""Driving the server with wrk: one generated Lua script per scenario, results as JSON.

wrk is the load generator because it is C on epoll: on a 2-core machine a Python client would
measure itself. What wrk reports by default is not enough for a benchmark whose requests need
credentials, so the generated script also:

- rotates over the scenario's requests (several users, paths or bodies), each thread starting
  at a different one;
- counts every status code (a benchmark of 401s is worthless) and, for GraphQL, answers with
  an `errors` member, which arrive with status 200;
- for ingestion, builds each body itself (GraphQL mutations, or CloudEvents for
  `POST /v1/events`): every event gets a unique idempotency key (or CloudEvent id) made of a
  random run prefix, the thread number and a counter, and the script counts the events the
  server says it inserted (events/s come from those, not from requests);
- prints one JSON line from `done()` with latency percentiles and the counts, parsed here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "
# wrk's own default (2 s) would count a slow answer as a socket timeout, not as latency.
TIMEOUT_SECONDS = 60


class Check(StrEnum):
    """What a 200 must also satisfy to count as a success."""

    STATUS = "status"  # REST: the status code says it all
    GRAPHQL = "graphql"  # no top-level `errors` member


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str  # with its query string
    headers: Mapping[str, str]
    body: str | None = None


@dataclass(frozen=True, slots=True)
class IngestLoad:
    """Events written by an institution's key: through the graph, recordUsage (batch None)
    or recordUsageBatch; with `cloud_events`, POST /v1/events, one CloudEvent per request
    (batch None) or a CloudEvents batch."""

    api_key: str
    instance: str  # the institution the events are recorded in
    users: tuple[int, ...]  # its members, round-robin
    batch: int | None = None
    cloud_events: bool = False

    @property
    def events_per_request(self) -> int:
        return self.batch or 1


RECORD_USAGE = (
    "mutation Record($input: UsageEventInput!) "
    "{ recordUsage(input: $input) { status event { eventId } } }"
)
RECORD_USAGE_BATCH = (
    "mutation RecordBatch($events: [UsageEventInput!]!) "
    "{ recordUsageBatch(events: $events) { inserted duplicates refused } }"
)


@dataclass(frozen=True, slots=True)
class WrkResult:
    threads: int
    connections: int
    requests: int
    seconds: float
    latency_ms: dict[str, float]  # p50, p90, p99, max, mean
    statuses: dict[int, int]
    socket_errors: dict[str, int]  # connect, read, write, timeout
    graphql_errors: int
    events: int  # events the server reported inserted (ingestion only)
    bytes_read: int

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def failures(self) -> int:
        """Every request that did not succeed: non-2xx, GraphQL errors, socket errors."""
        return self.non_2xx + self.graphql_errors + sum(self.socket_errors.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "connections": self.connections,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "requests_per_second": round(self.requests_per_second, 1),
            "events": self.events,
            "events_per_second": round(self.events_per_second, 1),
            "latency_ms": self.latency_ms,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "non_2xx": self.non_2xx,
            "graphql_errors": self.graphql_errors,
            "socket_errors": self.socket_errors,
            "bytes_read": self.bytes_read,
        }


class WrkError(RuntimeError):
    pass


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk is not installed (apt-get install wrk); scripts/bench installs it")
    return path


def _lua_string(value: str) -> str:
    """A Lua long-bracket literal holding `value` verbatim."""
    level = 0
    while f"]{'=' * level}]" in value:
        level += 1
    return f"[{'=' * level}[{value}]{'=' * level}]"


def _lua_headers(headers: Mapping[str, str]) -> str:
    items = ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items())
    return "{" + items + "}"


def _lua_request(request: HttpRequest) -> str:
    body = _lua_string(request.body) if request.body is not None else "nil"
    return (
        f"  {{method = {_lua_string(request.method)}, path = {_lua_string(request.path)}, "
        f"headers = {_lua_headers(request.headers)}, body = {body}}},"
    )


def _lua_ingest(load: IngestLoad | None) -> str:
    if load is None:
        return "nil"
    if load.cloud_events:
        media = "cloudevents-batch+json" if load.batch else "cloudevents+json"
        headers = {"X-API-Key": load.api_key, "Content-Type": f"application/{media}"}
        query = ""
    else:
        headers = {"Authorization": f"Bearer {load.api_key}", "Content-Type": "application/json"}
        query = json.dumps(RECORD_USAGE_BATCH if load.batch else RECORD_USAGE)
    users = ", ".join(str(u) for u in load.users)
    return (
        f"{{query = {_lua_string(query)}, headers = {_lua_headers(headers)}, "
        f"instance = {_lua_string(load.instance)}, users = {{{users}}}, "
        f"batch = {load.batch or 0}, prefix = {_lua_string('bench-' + uuid.uuid4().hex[:12])}, "
        f"cloud = {'true' if load.cloud_events else 'false'}}}"
    )


_SCRIPT = r"""-- Generated by bench/wrk.py for one scenario (see its docstring).
local REQUESTS = {
%(requests)s
}
local CHECK = %(check)s
local INGEST = %(ingest)s

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  statuses, graphql_errors, events, sent = {}, 0, 0, 0
  formatted = {}
  for i, r in ipairs(REQUESTS) do
    formatted[i] = wrk.format(r.method, r.path, r.headers, r.body)
  end
end

local function event_json(n, i, when)
  local user = INGEST.users[((n * 7 + i) %% #INGEST.users) + 1]
  return string.format(
    '{"userId":%%d,"instance":"%%s","occurredAt":"%%s","credits":"0.25","messages":1,' ..
    '"endpoint":"/v1/bench","idempotencyKey":"%%s-%%d-%%d-%%d"}',
    user, INGEST.instance, when, INGEST.prefix, tid, n, i)
end

local function cloud_event_json(n, i, when)
  local user = INGEST.users[((n * 7 + i) %% #INGEST.users) + 1]
  return string.format(
    '{"specversion":"1.0","id":"%%s-%%d-%%d-%%d","source":"//bench/wrk","type":"usage",' ..
    '"subject":"%%d","time":"%%s","data":{"instance":"%%s","credits":0.25,' ..
    '"endpoint":"/v1/bench"}}',
    INGEST.prefix, tid, n, i, user, when, INGEST.instance)
end

local function cloud_request(when)
  local body
  if INGEST.batch > 0 then
    local items = {}
    for i = 1, INGEST.batch do items[i] = cloud_event_json(sent, i, when) end
    body = "[" .. table.concat(items, ",") .. "]"
  else
    body = cloud_event_json(sent, 0, when)
  end
  return wrk.format("POST", "/v1/events", INGEST.headers, body)
end

local function ingest_request()
  local when = os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ", os.time() - 60)
  if INGEST.cloud then return cloud_request(when) end
  local body
  if INGEST.batch > 0 then
    local items = {}
    for i = 1, INGEST.batch do items[i] = event_json(sent, i, when) end
    body = '{"query":' .. INGEST.query .. ',"variables":{"events":[' ..
      table.concat(items, ",") .. ']}}'
  else
    body = '{"query":' .. INGEST.query .. ',"variables":{"input":' ..
      event_json(sent, 0, when) .. '}}'
  end
  return wrk.format("POST", "/graphql", INGEST.headers, body)
end

function request()
  sent = sent + 1
  if INGEST then return ingest_request() end
  return formatted[((sent + tid) %% #formatted) + 1]
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status ~= 200 then return end
  if CHECK == "graphql" and body:find('"errors"', 1, true) then
    graphql_errors = graphql_errors + 1
  end
  if INGEST then
    if INGEST.batch > 0 or INGEST.cloud then
      local n = body:match('"inserted":(%%d+)')
      if n then events = events + tonumber(n) end
    elseif body:find('"INSERTED"', 1, true) then
      events = events + 1
    end
  end
end

function done(summary, latency, requests)
  local all, gql, ev = {}, 0, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do all[k] = (all[k] or 0) + v end
    gql = gql + t:get("graphql_errors")
    ev = ev + t:get("events")
  end
  local parts = {}
  for k, v in pairs(all) do parts[#parts + 1] = string.format('"%%s":%%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    '%(prefix)s{"requests":%%d,"duration_us":%%.0f,"bytes":%%.0f,' ..
    '"latency_us":{"p50":%%.0f,"p90":%%.0f,"p99":%%.0f,"max":%%.0f,"mean":%%.1f},' ..
    '"errors":{"connect":%%d,"read":%%d,"write":%%d,"timeout":%%d},' ..
    '"statuses":{%%s},"graphql_errors":%%d,"events":%%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout,
    table.concat(parts, ","), gql, ev))
end
"""


def lua_script(
    requests: Sequence[HttpRequest], check: Check, ingest: IngestLoad | None = None
) -> str:
    """The wrk script for a scenario: its requests in rotation, or generated ingestion."""
    if not requests and ingest is None:
        raise ValueError("a scenario needs requests or an ingestion load")
    return _SCRIPT % {
        "requests": "\n".join(_lua_request(r) for r in requests),
        "check": _lua_string(_ingest_check(ingest) if ingest is not None else check.value),
        "ingest": _lua_ingest(ingest),
        "prefix": RESULT_PREFIX,
    }


def _ingest_check(load: IngestLoad) -> str:
    return Check.STATUS.value if load.cloud_events else Check.GRAPHQL.value


@dataclass
class WrkRunner:
    """Runs wrk against one server; a script file per scenario in `work_dir`."""

    wrk: str
    base_url: str
    work_dir: Path
    scripts: dict[str, Path] = field(default_factory=dict)

    def script(self, key: str, text: str) -> Path:
        path = self.work_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.lua"
        path.write_text(text)
        self.scripts[key] = path
        return path

    def run(self, script: Path, *, threads: int, connections: int, seconds: float) -> WrkResult:
        command = [
            self.wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={TIMEOUT_SECONDS}s",
            "-s",
            str(script),
            self.base_url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        # wrk reports a broken script on stderr and then runs without it: never a result.
        if done.returncode != 0 or done.stderr.strip():
            raise WrkError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
        return parse_result(done.stdout, threads=threads, connections=connections)


def parse_result(output: str, *, threads: int, connections: int) -> WrkResult:
    line = next((ln for ln in output.splitlines() if ln.startswith(RESULT_PREFIX)), None)
    if line is None:
        raise WrkError(f"wrk printed no result line:\n{output}")
    data = json.loads(line[len(RESULT_PREFIX) :])
    latency = {k: round(v / 1000, 3) for k, v in data["latency_us"].items()}
    return WrkResult(
        threads=threads,
        connections=connections,
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        latency_ms=latency,
        statuses={int(k): v for k, v in data["statuses"].items()},
        socket_errors=data["errors"],
        graphql_errors=data["graphql_errors"],
        events=data["events"],
        bytes_read=int(data["bytes"]),
    )
