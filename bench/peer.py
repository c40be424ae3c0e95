"""usagegraph next to stock PostGraphile v5: `./scripts/bench peer` (or `python -m bench.peer`).

Two questions (`--question`), each asked of both servers on the same PostgreSQL database in
the same run, so the machine's noise (2 shared cores) hits both alike:
- `events` (issue 14): 5 institutions x 20 members x each member's 5 newest usage events,
  500 events per answer;
- `nested` (issue 15): an institution's 50 members with role, cap, email, wallet and 10
  newest ledger entries with their count (`bench.scenarios.NESTED_MEMBERS`; the peer's body
  is the one `peer nested-query INSTITUTION` prints).
`--with-resolvers` adds a third server: usagegraph with USAGEGRAPH_GRAPHQL_COMPILE=false,
the resolver path, so the compiled read's gain is measured in the same run too.

1. the data set from bench/dataset.py (made by `usagegraph demo`, kept for reuse), in its own
   database `usagegraph_peer_<events>` unless `--database` names one: the suite of another
   checkout rebuilds `usagegraph_bench_<events>` when its migrations differ, which would
   pull the database from under a running peer;
2. `usagegraph serve --workers 2`, cache off, as the suite runs it (bench/server.py), and
   the peer started with its own script (`peer start URL PORT`, stopped with `peer stop`);
3. each answer is checked once before any load: status 200, no GraphQL errors, and exactly
   5 x 20 x 5 events on both sides (otherwise the two numbers measure different work);
4. a warm-up per server, then `--rounds` rounds; each round runs every connection level on
   both servers one after the other, the order flipping every round (ABBA), so a drift in
   the machine's load does not always favour the same side; the server and the database are
   left to go idle after every run (bench.suite.drain);
5. per round and level, p50/p90 and req/s of both and the p50 ratio usagegraph/PostGraphile,
   with the load average just before each run; everything as JSON in `--json`.

wrk's percentiles are over the requests that finished within the run (`done`); the ones it
abandons at the end are not in them. When a server answers only a handful of requests in a
run (usagegraph at 32 connections on a big history), its p50 is of those few and flatters
it: read it with `done` and req/s beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import report
from bench.dataset import Dataset, DemoShape, ensure_dataset, pick_actors
from bench.scenarios import (
    EVENTS_PER_MEMBER,
    INSTITUTIONS,
    MEMBERS,
    Scenario,
    Verification,
    expect_events,
    institutions_members_events,
    nested_members,
    verify,
)
from bench.server import JWT_SECRET, RunningServer, free_port, serving
from bench.sql import sql_floor, statements_per_request
from bench.suite import ROOT, TOKEN_TTL_SECONDS, drain, postgres_version, warn_if_busy
from bench.wrk import Check, HttpRequest, WrkResult, WrkRunner, find_wrk, lua_script
from usagegraph.auth.tokens import mint_token

# Where the repository's sibling `shared/` folder keeps the peer (issue 14 names it so).
DEFAULT_PEER = ROOT.parent / "shared" / "peers" / "postgraphile" / "peer"
USAGEGRAPH, POSTGRAPHILE, RESOLVERS = "usagegraph", "postgraphile", "ug-resolvers"

# The same question in PostGraphile's Amber names. Members are ordered by user id and events
# newest first, as usagegraph orders them, so both sides read the same kind of page.
PEER_QUERY = f"""query InstitutionsMembersEvents {{
  allInstitutions(first: {INSTITUTIONS}) {{ edges {{ node {{
    membershipsByInstitutionId(first: {MEMBERS}, orderBy: USER_ID_ASC) {{ edges {{ node {{
      role
      userByUserId {{
        email
        usageEventsByUserId(first: {EVENTS_PER_MEMBER}, orderBy: OCCURRED_AT_DESC) {{
          edges {{ node {{ occurredAt credits messages }} }}
        }}
      }}
    }} }} }}
  }} }} }}
}}"""


def _edges(connection: Any) -> list[Any]:
    return [edge["node"] for edge in (connection or {}).get("edges") or []]


def peer_shape(body: Any) -> tuple[int, int, int]:
    """(institutions, members, events) of a PEER_QUERY answer."""
    institutions = _edges(body["data"]["allInstitutions"])
    members = [m for i in institutions for m in _edges(i["membershipsByInstitutionId"])]
    events = [
        e
        for m in members
        if m["userByUserId"]
        for e in _edges(m["userByUserId"]["usageEventsByUserId"])
    ]
    return len(institutions), len(members), len(events)


def peer_scenario() -> Scenario:
    """The peer's side: no credentials (the peer serves the public schema as it is)."""
    body = json.dumps({"query": PEER_QUERY, "variables": {}})
    return Scenario(
        key="postgraphile.institutions_members_events",
        title="PostGraphile v5: allInstitutions x memberships x usageEventsByUserId",
        requests=(HttpRequest("POST", "/graphql", {"Content-Type": "application/json"}, body),),
        check=Check.GRAPHQL,
        describe=lambda b: "{} institutions, {} members, {} events".format(*peer_shape(b)),
        expect=expect_events(peer_shape),
        count_sql=False,
    )


def _nodes(connection: Any) -> list[Any]:
    return list((connection or {}).get("nodes") or [])


def peer_nested_shape(body: Any) -> str:
    """What a `peer nested-query` answer holds, said as `_nested_members` says ours."""
    members = _nodes(body["data"]["institutionByRowId"]["membershipsByInstitutionId"])
    ledger = sum(
        len(_nodes(m["userByUserId"]["ledgerEntriesByUserId"]))
        for m in members
        if m["userByUserId"]
    )
    return f"{len(members)} members, {ledger} ledger entries"


def peer_nested_scenario(script: Path, institution: str) -> Scenario:
    """The peer's nested read, its body as the peer script prints it."""
    printed = subprocess.run(
        [str(script), "nested-query", institution], capture_output=True, text=True, check=True
    )
    body = printed.stdout.strip()
    return Scenario(
        key="postgraphile.nested_members",
        title="PostGraphile v5: institutionByRowId x memberships x wallet, ledgerEntries",
        requests=(HttpRequest("POST", "/graphql", {"Content-Type": "application/json"}, body),),
        check=Check.GRAPHQL,
        describe=peer_nested_shape,
        count_sql=False,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench peer",
        description="Issue 14's nested read on usagegraph and on stock PostGraphile v5, "
        "side by side on one database (see README, Benchmarks).",
    )
    add = parser.add_argument
    add("--events", type=int, default=1_000_000, help="usage events (default 1000000)")
    add(
        "--question",
        choices=("events", "nested"),
        default="events",
        help="events: issue 14's institutions x members x events; nested: issue 15's members "
        "with wallets and ledgers (default events)",
    )
    add(
        "--with-resolvers",
        action="store_true",
        help="also measure usagegraph with compiled reads off (the resolver path)",
    )
    add("--connections", default="1,32", help="connection levels (default 1,32)")
    add("--duration", type=float, default=8, help="seconds per measured run (default 8)")
    add("--warmup", type=float, default=2, help="seconds of warm-up per server (default 2)")
    add("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    add("--threads", type=int, default=2, help="wrk threads, at most one per connection")
    add("--workers", type=int, default=2, help="usagegraph serve --workers (default 2)")
    add("--floor-repeats", type=int, default=50, help="runs of the SQL floor statement")
    add("--database", help="database of the data set (default usagegraph_peer_<events>)")
    add("--peer", type=Path, default=DEFAULT_PEER, help=f"the peer script (default {DEFAULT_PEER})")
    add("--rebuild", action="store_true", help="regenerate the data set even if reusable")
    add("--max-age-days", type=float, default=3, help="regenerate older data sets (default 3)")
    add(
        "--json",
        type=Path,
        help="where to write every result (default bench/results/peer-<N>.json)",
    )
    args = parser.parse_args(argv)
    args.connection_levels = [int(c) for c in args.connections.split(",") if c.strip()]
    label = report.events_label(args.events)
    suffix = "" if args.question == "events" else f"-{args.question}"
    args.json = args.json or ROOT / "bench" / "results" / f"peer-{label}{suffix}.json"
    return args


# ---- the peer process -----------------------------------------------------------------------


@contextlib.contextmanager
def peer_serving(script: Path, dataset: Dataset, log_path: Path) -> Iterator[RunningServer]:
    """The peer on a free loopback port until the block ends, stopped by its own script.

    `peer start` runs in a new session, so the node server it leaves behind has a process
    group of its own: the idle check counts that group's CPU as it does uvicorn's.
    """
    port = free_port()
    started = subprocess.run(
        [str(script), "start", dataset.plain_url, str(port)],
        capture_output=True,
        text=True,
        check=False,
        start_new_session=True,
    )
    log_path.write_text(started.stdout + started.stderr)
    match = re.search(r"^PID=(\d+)$", started.stdout, re.MULTILINE)
    if started.returncode != 0 or match is None:
        raise RuntimeError(f"{script} start failed:\n{started.stdout}{started.stderr}")
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", os.getpgid(int(match.group(1))))
    finally:
        subprocess.run([str(script), "stop", str(port)], check=False)


# ---- measuring ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Side:
    name: str
    scenario: Scenario
    server: RunningServer
    runner: WrkRunner


@dataclass(frozen=True, slots=True)
class Measurement:
    round: int
    side: str
    connections: int
    load_before: tuple[float, float, float]  # os.getloadavg() just before the run
    result: WrkResult
    drain_seconds: float

    @property
    def truncated(self) -> bool:
        """Fewer answers than connections: some connection never got one within the run, so
        the percentiles leave out exactly the slowest requests and flatter the server."""
        return self.result.requests < self.connections

    @property
    def p50(self) -> float | None:
        """None when no request finished within the run (wrk has no latency then)."""
        return self.result.latency_ms["p50"] if self.result.requests else None

    def as_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "side": self.side,
            "connections": self.connections,
            "load_average_before": [round(x, 2) for x in self.load_before],
            "drain_seconds": round(self.drain_seconds, 1),
            "p50_of_survivors_only": self.truncated,
            **self.result.as_json(),
        }


def _run(side: Side, dataset: Dataset, connections: int, seconds: float, threads: int) -> WrkResult:
    script = side.runner.script(
        f"{side.name}-{connections}-{time.monotonic_ns()}",
        lua_script(side.scenario.requests, side.scenario.check),
    )
    return side.runner.run(
        script, threads=min(threads, connections), connections=connections, seconds=seconds
    )


def _line(m: Measurement) -> str:
    r = m.result
    if r.requests:
        latency = (
            f"{r.latency_ms['p50']:9.2f} {r.latency_ms['p90']:9.2f} {r.latency_ms['p99']:9.2f}"
        )
    else:
        latency = f"{'-':>9} {'-':>9} {'-':>9}"
    return (
        f"{m.round:>5} {m.connections:>5}  {m.side:<13}{latency} {r.requests_per_second:8.1f} "
        f"{r.requests:>6} {r.failures:>5}  {m.load_before[0]:5.2f}"
        + ("  * p50 of survivors" if m.truncated else "")
    )


HEADER = (
    f"{'round':>5} {'conns':>5}  {'server':<13}{'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} "
    f"{'req/s':>8} {'done':>6} {'fail':>5}  {'load1':>5}"
)


def ratio(
    measured: Sequence[Measurement],
    round_: int,
    connections: int,
    metric: Callable[[Measurement], float | None] = lambda m: m.p50,
    side: str = USAGEGRAPH,
) -> float | None:
    """`metric` of usagegraph (or `side`) / the same of PostGraphile in one round at one level
    (default p50; None if either has none)."""
    values = {
        m.side: metric(m) for m in measured if m.round == round_ and m.connections == connections
    }
    ours, theirs = values.get(side), values.get(POSTGRAPHILE)
    return ours / theirs if ours is not None and theirs else None


def _p99(m: Measurement) -> float | None:
    return m.result.latency_ms["p99"] if m.result.requests else None


def _req_s(m: Measurement) -> float | None:
    return m.result.requests_per_second


def measure(args: argparse.Namespace, dataset: Dataset, sides: Sequence[Side]) -> list[Measurement]:
    """Warm both up, then the alternating rounds; rows are printed as they come."""
    for side in sides:
        if args.warmup > 0:
            _run(side, dataset, min(4, max(args.connection_levels)), args.warmup, args.threads)
            drain(side.server, dataset)
    print(HEADER)
    print("-" * len(HEADER), flush=True)
    measured: list[Measurement] = []
    for round_ in range(1, args.rounds + 1):
        order = sides if round_ % 2 else list(reversed(sides))
        for connections in args.connection_levels:
            for side in order:
                load = os.getloadavg()
                result = _run(side, dataset, connections, args.duration, args.threads)
                waited = drain(side.server, dataset)
                measured.append(Measurement(round_, side.name, connections, load, result, waited))
                print(_line(measured[-1]), flush=True)
            value = ratio(measured, round_, connections)
            shown = f"{value:.2f}" if value is not None else "- (no usagegraph p50)"
            print(f"{'':>12}p50 usagegraph / PostGraphile = {shown}", flush=True)
    return measured


def _check(base_url: str, scenario: Scenario) -> Verification:
    """One request before any load; a wrong answer stops the run (nothing to compare)."""
    checked = verify(base_url, scenario)
    if not checked.ok:
        raise SystemExit(f"{scenario.key} failed its check:\n  " + "\n  ".join(checked.problems))
    print(f"  {scenario.key}: {checked.detail}, {checked.response_bytes:,} bytes", flush=True)
    return checked


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.peer.exists():
        raise SystemExit(f"no peer script at {args.peer} (--peer)")
    started_at = datetime.now(UTC)
    wrk = find_wrk()
    busy_at_start = warn_if_busy()
    machine = report.machine_info(ROOT, postgres_version(), wrk, busy_at_start)
    name = args.database or f"usagegraph_peer_{args.events}"
    with tempfile.TemporaryDirectory(prefix="usagegraph-bench-peer-") as tmp:
        work_dir = Path(tmp)
        dataset = asyncio.run(
            ensure_dataset(
                DemoShape(args.events),
                work_dir,
                rebuild=args.rebuild,
                max_age=timedelta(days=args.max_age_days),
                name=name,
            )
        )
        actors = asyncio.run(pick_actors(dataset))
        super_token = mint_token(actors.super_user, JWT_SECRET, TOKEN_TTL_SECONDS)
        if args.question == "nested":
            ours = nested_members(super_token, actors.institution)
            theirs = peer_nested_scenario(args.peer, actors.institution)
        else:
            ours = institutions_members_events(super_token)
            theirs = peer_scenario()
        # In-process, before any server starts: what one usagegraph answer costs in statements.
        captured = asyncio.run(statements_per_request(dataset, [ours], work_dir)).get(ours.key)
        sql = [c.statement for c in captured or []]
        print(f"usagegraph: {len(sql)} SQL statements per request (in-process count)")
        # The event page's own SQL timed alone: tells the database's share of a p50 from the
        # service's, at 1M and at 10M alike.
        floor = asyncio.run(sql_floor(dataset, captured or [], args.floor_repeats))
        if floor is not None:
            print(
                f"usagegraph: its usage-event page statement alone (asyncpg, {floor.repeats} "
                f"runs): p50 {floor.p50_ms:.2f} ms, p90 {floor.p90_ms:.2f} ms, {floor.rows} rows"
            )
        logs = args.json.parent
        logs.mkdir(parents=True, exist_ok=True)
        label = report.events_label(args.events)
        print(
            f"\n{label} events ({dataset.name}): usagegraph serve --workers {args.workers} "
            f"(cache off) and PostGraphile v5 ({args.peer}), {args.duration:g} s per run",
            flush=True,
        )
        with contextlib.ExitStack() as servers:
            server = servers.enter_context(
                serving(
                    dataset.url, work_dir, logs / f"serve-peer-{label}.log", workers=args.workers
                )
            )
            peer = servers.enter_context(
                peer_serving(args.peer, dataset, logs / f"postgraphile-{label}.log")
            )
            checks = {
                USAGEGRAPH: _check(server.base_url, ours),
                POSTGRAPHILE: _check(peer.base_url, theirs),
            }
            sides = [
                Side(USAGEGRAPH, ours, server, WrkRunner(wrk, server.base_url, work_dir)),
                Side(POSTGRAPHILE, theirs, peer, WrkRunner(wrk, peer.base_url, work_dir)),
            ]
            if args.with_resolvers:
                resolvers = servers.enter_context(
                    serving(
                        dataset.url,
                        work_dir,
                        logs / f"serve-resolvers-{label}.log",
                        workers=args.workers,
                        compile_reads=False,
                    )
                )
                checks[RESOLVERS] = _check(resolvers.base_url, ours)
                runner = WrkRunner(wrk, resolvers.base_url, work_dir)
                sides.append(Side(RESOLVERS, ours, resolvers, runner))
            if (
                args.question == "nested"
                and checks[USAGEGRAPH].detail != checks[POSTGRAPHILE].detail
            ):
                raise SystemExit(
                    f"the answers differ: usagegraph {checks[USAGEGRAPH].detail}, "
                    f"PostGraphile {checks[POSTGRAPHILE].detail}"
                )
            measured = measure(args, dataset, sides)
    _summary(measured, args)
    report.write_json(
        args.json,
        {
            "started_at": started_at.isoformat(),
            "options": {k: v for k, v in vars(args).items() if k != "json"},
            "machine": {**machine, "load_average_at_end": os.getloadavg()},
            "dataset": {
                "name": dataset.name,
                "spec": asdict(dataset.shape),
                "schema_revision": dataset.revision,
                "generated_at": dataset.generated_at.isoformat(),
                "reused": dataset.reused,
                "build_seconds": dataset.build_seconds,
            },
            "usagegraph_sql_statements": len(sql),
            "usagegraph_sql": sql,
            "usagegraph_sql_floor": floor.as_json() if floor is not None else None,
            "queries": {USAGEGRAPH: ours.requests[0].body, POSTGRAPHILE: theirs.requests[0].body},
            "answers": {
                side: {"detail": c.detail, "bytes": c.response_bytes} for side, c in checks.items()
            },
            "runs": [m.as_json() for m in measured],
            "p50_ratio_usagegraph_over_postgraphile": [
                {"round": r, "connections": c, "ratio": _rounded(ratio(measured, r, c))}
                for r in range(1, args.rounds + 1)
                for c in args.connection_levels
            ],
        },
    )
    print(f"\nresults in {args.json}, server logs beside it")
    failed = [m for m in measured if m.result.failures]
    if failed:
        print(f"FAILURES in {len(failed)} run(s); see the JSON", file=sys.stderr)
        return 1
    return 0


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _summary(measured: Sequence[Measurement], args: argparse.Namespace) -> None:
    sides = [USAGEGRAPH] + ([RESOLVERS] if args.with_resolvers else [])
    for label, metric in (("p50", lambda m: m.p50), ("p99", _p99), ("req/s", _req_s)):
        for side in sides:
            print(f"\n{label} {side} / PostGraphile per round:")
            for connections in args.connection_levels:
                values = [
                    ratio(measured, r, connections, metric, side) for r in range(1, args.rounds + 1)
                ]
                shown = ", ".join(f"{v:.2f}" if v is not None else "-" for v in values)
                print(f"  {connections:>3} connections: {shown}")


if __name__ == "__main__":
    sys.exit(main())
