"""The Prometheus metrics of usagegraph, and the one way to render them.

Every metric is declared here, so its name, help and labels are read in one place (the
Grafana dashboard in deploy/grafana/ and docs/operations.md are checked against them).
Label values are bounded by construction: route templates (never raw paths), status codes,
error codes, the caller's kind (never who), and GraphQL operation names that pass
`operation_label` (a GraphQL name, and at most MAX_OPERATION_NAMES of them per process).

`usagegraph serve --workers N` runs prometheus-client in multiprocess mode
(`PROMETHEUS_MULTIPROC_DIR`, set up by `serve`): each worker writes its values to files there
and `/metrics`, whichever worker answers it, sums them, so a scrape sees every worker. Gauges
then need a mode saying how workers combine; ours add up the live workers' values (pool
connections) or take the most recent (readiness).
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from usagegraph.observability.metrics_directory import MULTIPROC_DIR_VAR

# Distinct operation names one process labels before the rest count as `other`: names are
# chosen by clients, and every name is a series.
MAX_OPERATION_NAMES = 100
_GRAPHQL_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,63}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CALLER_KINDS = ("anonymous", "user", "institution")
# Refusal codes of usage events that are worth a zero before the first one happens (any other
# code, bounded by the ErrorCode enum, appears when it is first counted).
USAGE_REFUSAL_CODES = (
    "INSUFFICIENT_CREDITS",
    "CAP_REACHED",
    "INVALID_REQUEST",
    "FORBIDDEN",
    "IDEMPOTENCY_KEY_REUSED",
)
WALLET_OPERATIONS = ("usage", "debit", "reservation")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATEMENT_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)

HTTP_REQUESTS = Counter(
    "usagegraph_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "usagegraph_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by method, route template and status.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
GRAPHQL_OPERATIONS = Counter(
    "usagegraph_graphql_operations_total",
    "GraphQL operations run, by operation name and type, and execution path (the resolvers; "
    "a compiled path would be labelled `compiled`).",
    ["operation_name", "operation_type", "execution"],
)
GRAPHQL_ERRORS = Counter(
    "usagegraph_graphql_operation_errors_total",
    "GraphQL operations that answered with at least one error, by operation name and type.",
    ["operation_name", "operation_type"],
)
GRAPHQL_DURATION = Histogram(
    "usagegraph_graphql_operation_duration_seconds",
    "Time to parse, validate and execute one GraphQL operation, by name and type.",
    ["operation_name", "operation_type"],
    buckets=LATENCY_BUCKETS,
)
SQL_STATEMENTS = Histogram(
    "usagegraph_sql_statements_per_request",
    "SQL statements one request sent to the database, by route template.",
    ["route"],
    buckets=STATEMENT_BUCKETS,
)
DB_POOL = Gauge(
    "usagegraph_db_pool_connections",
    "Database pool connections: in_use (checked out), idle (pooled, free) and waiting "
    "(requests queued for one), summed over the live workers.",
    ["state"],
    multiprocess_mode="livesum",
)
USAGE_EVENTS = Counter(
    "usagegraph_usage_events_total",
    "Usage events ingested, by outcome (inserted, duplicate, refused) and the refusal's "
    "error code (`none` unless refused).",
    ["outcome", "reason"],
)
WALLET_DEBITS_REFUSED = Counter(
    "usagegraph_wallet_debits_refused_total",
    "Wallet debits refused for insufficient credits, by what asked for them (usage, a "
    "debit, a reservation).",
    ["operation"],
)
CACHE_LOOKUPS = Counter(
    "usagegraph_cache_lookups_total",
    "Response cache lookups, by backend (memory, redis) and result (hit, miss).",
    ["backend", "result"],
)
RATE_LIMITED = Counter(
    "usagegraph_rate_limit_rejections_total",
    "Requests refused with 429 by the rate limiter, by the kind of caller.",
    ["caller_kind"],
)
TIMEOUTS = Counter(
    "usagegraph_request_timeouts_total",
    "Requests answered 503 because they overran USAGEGRAPH_REQUEST_TIMEOUT_SECONDS (or held "
    "their worker's loop too long).",
)
COMPILED_READS = Counter(
    "usagegraph_graphql_compiled_reads_total",
    "Root fields of GraphQL queries that could be compiled, by how they were answered: "
    "`compiled` (one SQL statement) or `fallback` (the resolver path: a field or caller the "
    "planner does not cover, or an answer that carries an error).",
    ["outcome"],
)
READY = Gauge(
    "usagegraph_ready",
    "1 when the most recent readiness check (/readyz) found the database answering, else 0.",
    multiprocess_mode="livemostrecent",
)
READINESS_CHECKS = Counter(
    "usagegraph_readiness_checks_total",
    "Readiness checks (/readyz), by result (ready, unavailable).",
    ["result"],
)


def _zeroes() -> None:
    """Create the series of known label values at 0, so that dashboards and alerts see them
    (and `rate()` starts) before the first event of their kind."""
    for kind in CALLER_KINDS:
        RATE_LIMITED.labels(kind)
    USAGE_EVENTS.labels("inserted", "none")
    USAGE_EVENTS.labels("duplicate", "none")
    for code in USAGE_REFUSAL_CODES:
        USAGE_EVENTS.labels("refused", code)
    for operation in WALLET_OPERATIONS:
        WALLET_DEBITS_REFUSED.labels(operation)
    for backend in ("memory", "redis"):
        for result in ("hit", "miss"):
            CACHE_LOOKUPS.labels(backend, result)
    for result in ("ready", "unavailable"):
        READINESS_CHECKS.labels(result)
    for state in ("in_use", "idle", "waiting"):
        DB_POOL.labels(state)
    for outcome in ("compiled", "fallback"):
        COMPILED_READS.labels(outcome)


_zeroes()
_operation_names: set[str] = set()


def method_label(method: str) -> str:
    """The HTTP method, or `other` for anything a client made up."""
    return method if method in _METHODS else "other"


def operation_label(name: str | None) -> str:
    """A GraphQL operation name fit for a label: `anonymous` without one, `other` past the
    first MAX_OPERATION_NAMES names (or for anything that is not a GraphQL name)."""
    if not name:
        return "anonymous"
    if name in _operation_names:
        return name
    if not _GRAPHQL_NAME.fullmatch(name) or len(_operation_names) >= MAX_OPERATION_NAMES:
        return "other"
    _operation_names.add(name)
    return name


def observe_request(
    method: str, route: str, status: int, seconds: float, sql_statements: int
) -> None:
    """One answered HTTP request (`route` is its template, `method` already bounded)."""
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route, str(status)).observe(seconds)
    SQL_STATEMENTS.labels(route).observe(sql_statements)


def observe_operation(name: str, operation_type: str, seconds: float, errors: bool) -> None:
    """One GraphQL operation (its name already passed through `operation_label`)."""
    GRAPHQL_OPERATIONS.labels(name, operation_type, "resolver").inc()
    GRAPHQL_DURATION.labels(name, operation_type).observe(seconds)
    if errors:
        GRAPHQL_ERRORS.labels(name, operation_type).inc()


def count_usage_outcomes(outcomes: Iterable[tuple[str, str | None]]) -> None:
    """Usage events judged by one committed batch: (outcome, refusal code or None) each.

    Tallied first, so a batch of a thousand events costs one increment per distinct outcome
    (in multiprocess mode each increment writes the worker's metrics file)."""
    for (outcome, code), count in collections.Counter(outcomes).items():
        USAGE_EVENTS.labels(outcome, code or "none").inc(count)
        if code == "INSUFFICIENT_CREDITS":
            WALLET_DEBITS_REFUSED.labels("usage").inc(count)


def count_refused_debit(operation: str) -> None:
    """A wallet debit or reservation refused for insufficient credits (not usage: usage
    counts through `count_usage_outcomes`)."""
    WALLET_DEBITS_REFUSED.labels(operation).inc()


def count_compiled_read(compiled: bool) -> None:
    COMPILED_READS.labels("compiled" if compiled else "fallback").inc()


def count_cache_lookup(backend: str, hit: bool) -> None:
    CACHE_LOOKUPS.labels(backend, "hit" if hit else "miss").inc()


def count_rate_limited(caller_kind: str) -> None:
    RATE_LIMITED.labels(caller_kind if caller_kind in CALLER_KINDS else "anonymous").inc()


def count_timeout() -> None:
    TIMEOUTS.inc()


def record_readiness(ready: bool) -> None:
    READY.set(1 if ready else 0)
    READINESS_CHECKS.labels("ready" if ready else "unavailable").inc()


def set_pool(in_use: int, idle: int, waiting: int) -> None:
    """This process's pool, as last seen (the workers' values are added up)."""
    DB_POOL.labels("in_use").set(in_use)
    DB_POOL.labels("idle").set(idle)
    DB_POOL.labels("waiting").set(waiting)


def multiprocess_mode() -> bool:
    """Whether this process writes its values to PROMETHEUS_MULTIPROC_DIR (set by `serve`
    for several workers before any of them starts)."""
    return bool(os.environ.get(MULTIPROC_DIR_VAR))


def exposition() -> tuple[bytes, str]:
    """Every metric in the Prometheus text format, and its content type: all workers' in
    multiprocess mode, else this process's (with the client's process and GC metrics)."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def forget_this_process() -> None:
    """A worker that stops takes its live gauges (pool, readiness) with it."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
