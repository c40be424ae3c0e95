"""The benchmark suite: `./scripts/bench` (or `python -m bench.suite`); `--help` for options.

One run answers issue 7's performance questions on this machine, end to end:

1. a demo data set on PostgreSQL, made with the real CLI (`migrate`, `demo`) and reused
   across runs (bench/dataset.py);
2. `usagegraph serve --workers W` as a subprocess (bench/server.py), driven by wrk on
   loopback at 1 and 32 connections, after a warm-up (bench/wrk.py), for every REST shim,
   the nested GraphQL read and usage-history through GraphQL, cache off, then the
   usage-history read again with the cache on (bench/scenarios.py);
3. SQL statements per request, counted in-process, and the raw SQL floor of the usage read
   (bench/sql.py);
4. with `--compare-events M`, the usage-history reads again on an M-event data set, as a
   ratio to the main one (the target is that 10x the events costs at most 1.3x the time);
5. ingestion last, on a throwaway copy of the data set, so the reads' data never changes;
6. a table on stdout and everything as JSON (bench/report.py).

The server is always stopped; the data sets are kept for the next run unless `--drop`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import report
from bench.dataset import (
    ADMIN_URL,
    Actors,
    Dataset,
    DemoShape,
    active_queries,
    clone_dataset,
    database_url,
    drop_database,
    ensure_dataset,
    pick_actors,
    server_version,
    table_sizes,
)
from bench.report import Measured
from bench.scenarios import (
    RATIO_TARGETS,
    Credentials,
    Scenario,
    cache_on_scenarios,
    compare_answers,
    ingest_scenarios,
    read_scenarios,
    verify,
)
from bench.server import JWT_SECRET, RunningServer, create_api_key, serving
from bench.sql import Floor, sql_floor, statements_per_request
from bench.wrk import WrkRunner, find_wrk, lua_script
from usagegraph.auth.tokens import mint_token

ROOT = Path(__file__).resolve().parents[1]
# Long enough for a 10M build plus every scenario.
TOKEN_TTL_SECONDS = 6 * 3600
FLOOR_SCENARIO = "rest.usage_history"
# CPUs busier than this before the start mean the machine is not idle.
BUSY_CPU_FRACTION = 0.15
# The server is idle when it uses less CPU than this per sample, and no statement runs.
IDLE_SAMPLE_SECONDS = 0.25
IDLE_CPU_SECONDS = 0.01
DRAIN_TIMEOUT_SECONDS = 300


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark usagegraph on PostgreSQL with wrk (see README, Benchmarks).",
    )
    add = parser.add_argument
    add(
        "--events",
        type=int,
        default=1_000_000,
        help="usage events in the main data set (default 1000000)",
    )
    add(
        "--compare-events",
        type=int,
        metavar="M",
        help="also run the usage-history reads on "
        "an M-event data set and print p50 at M / p50 at --events (e.g. 10000000)",
    )
    add("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    add("--warmup", type=float, default=2, help="seconds of warm-up per scenario (default 2)")
    add("--connections", default="1,32", help="connection levels (default 1,32)")
    add("--threads", type=int, default=2, help="wrk threads, at most one per connection")
    add("--workers", type=int, default=2, help="usagegraph serve --workers (default 2)")
    add("--batch-size", type=int, default=100, help="events per recordUsageBatch (default 100)")
    add("--floor-repeats", type=int, default=200, help="runs of the SQL floor statement")
    add(
        "--ratio-rounds",
        type=int,
        default=4,
        help="alternating rounds of each two-scenario ratio target at 1 connection "
        "(default 4; 0: none)",
    )
    add("--ratio-seconds", type=float, default=3, help="seconds per side of a round (default 3)")
    add("--only", default="", help="comma-separated substrings of scenario keys to run")
    add("--no-cache-on", action="store_true", help="skip the cache-on usage-history row")
    add("--no-ingest", action="store_true", help="skip the ingestion scenarios")
    add("--rebuild", action="store_true", help="regenerate the data sets even if reusable")
    add("--max-age-days", type=float, default=3, help="regenerate older data sets (default 3)")
    add("--drop", action="store_true", help="drop the bench databases at the end")
    add(
        "--json",
        type=Path,
        default=ROOT / "bench" / "results" / "latest.json",
        help="where to write every result (default bench/results/latest.json)",
    )
    args = parser.parse_args(argv)
    args.connection_levels = [int(c) for c in args.connections.split(",") if c.strip()]
    args.only_keys = [k.strip() for k in args.only.split(",") if k.strip()]
    return args


@dataclass
class Run:
    """Everything one invocation measured, in the order it happened."""

    args: argparse.Namespace
    wrk: str
    work_dir: Path
    measured: list[Measured] = field(default_factory=list)
    floors: dict[str, Floor | None] = field(default_factory=dict)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Per RatioTarget label, on the main data set: how its two scenarios' answers differed,
    # and the (numerator, denominator) p50s of its alternating rounds.
    comparisons: dict[str, list[str]] = field(default_factory=dict)
    rounds: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def wanted(self, scenarios: Sequence[Scenario]) -> list[Scenario]:
        keys = self.args.only_keys
        return [s for s in scenarios if not keys or any(k in s.key for k in keys)]


# ---- one data set ------------------------------------------------------------------------------


def credentials(dataset: Dataset, actors: Actors, data_dir: Path) -> Credentials:
    """Tokens signed with the server's secret, and an API key made by `usagegraph apikey`."""

    def token(user_id: int) -> str:
        return mint_token(user_id, JWT_SECRET, TOKEN_TTL_SECONDS)

    return Credentials(
        super_token=token(actors.super_user),
        admin_token=token(actors.admin) if actors.admin is not None else None,
        member_tokens={m.user_id: token(m.user_id) for m in actors.members},
        api_key=create_api_key(dataset.url, data_dir, actors.institution),
    )


def _script_for(runner: WrkRunner, scenario: Scenario, tag: str) -> Path:
    """A fresh script per run: ingestion keys must never repeat across runs."""
    text = lua_script(scenario.requests, scenario.check, scenario.ingest)
    return runner.script(f"{scenario.key}-{tag}-{time.monotonic_ns()}", text)


def drain(server: RunningServer, dataset: Dataset) -> float:
    """Wait until the server and its database are idle; the seconds it took.

    wrk stops mid-request at the end of a run, and the server finishes what it had accepted:
    a slow scenario at 32 connections leaves seconds of abandoned work, which must not be
    billed to the next run.
    """
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_TIMEOUT_SECONDS:
        before = server.cpu_seconds()
        time.sleep(IDLE_SAMPLE_SECONDS)
        busy = server.cpu_seconds() - before > IDLE_CPU_SECONDS
        if not busy and asyncio.run(active_queries(dataset)) == 0:
            break
    waited = time.monotonic() - started
    if waited > 2:
        print(f"  (waited {waited:.0f} s for the server to finish requests wrk abandoned)")
    return waited


def _load(run: Run, server: RunningServer, runner: WrkRunner, item: Measured) -> None:
    """Warm up, then one measured wrk run per connection level, printing rows as they come."""
    args = run.args
    dataset = item.dataset
    if args.warmup > 0:
        runner.run(
            _script_for(runner, item.scenario, "warmup"),
            threads=1,
            connections=min(4, max(args.connection_levels)),
            seconds=args.warmup,
        )
        drain(server, dataset)
    for connections in args.connection_levels:
        result = runner.run(
            _script_for(runner, item.scenario, str(connections)),
            threads=min(args.threads, connections),
            connections=connections,
            seconds=args.duration,
        )
        item.runs.append(result)
        print(report.rows(item)[-1 if len(item.runs) > 1 else 0], flush=True)
        item.drain_seconds.append(round(drain(server, dataset), 1))


def measure(
    run: Run,
    server: RunningServer,
    dataset: Dataset,
    scenarios: Sequence[Scenario],
    *,
    cache: bool,
    statements: dict[str, Any] | None = None,
) -> list[Measured]:
    """Check, then load every scenario against the running server."""
    runner = WrkRunner(run.wrk, server.base_url, run.work_dir)
    done = []
    for scenario in scenarios:
        item = Measured(scenario, dataset, cache)
        item.statements = (statements or {}).get(scenario.key)
        try:
            item.verification = verify(server.base_url, scenario)
            if item.verification.ok:
                _load(run, server, runner, item)
            else:
                print(f"FAILED {scenario.key}:", *item.verification.problems, sep="\n  ")
        except Exception as exc:  # one broken scenario must not hide the others' numbers
            item.error = f"{type(exc).__name__}: {exc}"
            print(f"FAILED {scenario.key}: {item.error}", flush=True)
        done.append(item)
        run.measured.append(item)
    return done


def _server_log(run: Run, name: str) -> Path:
    """Where a server's output goes: beside the JSON, kept for when a scenario failed."""
    path = run.args.json.parent / f"serve-{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def measure_reads(
    run: Run,
    dataset: Dataset,
    pick: Callable[[list[Scenario]], list[Scenario]],
    *,
    cache_on: bool,
    compare: bool = False,
) -> list[Measured]:
    """The read scenarios on one data set, cache off (then, if asked, the cache-on row); their
    statements and the SQL floor; with `compare`, whether the scenarios of each RatioTarget
    ask the same question."""
    label = report.events_label(dataset.shape.events)
    data_dir = run.work_dir
    actors = asyncio.run(pick_actors(dataset))
    creds = credentials(dataset, actors, data_dir)
    scenarios = run.wanted(pick(read_scenarios(actors, creds, dataset.shape.days)))
    run.datasets.append(_dataset_json(dataset, actors))
    print(f"\ncounting SQL statements per request in-process ({dataset.name})", flush=True)
    statements = asyncio.run(statements_per_request(dataset, scenarios, data_dir))
    if FLOOR_SCENARIO in statements:
        run.floors[dataset.name] = asyncio.run(
            sql_floor(dataset, statements[FLOOR_SCENARIO], run.args.floor_repeats)
        )
    print(f"\n{label}: {dataset.name}, cache off, serve --workers {run.args.workers}")
    report.print_header()
    log = _server_log(run, f"{dataset.name}-cache-off")
    with serving(dataset.url, data_dir, log, workers=run.args.workers) as server:
        if compare:
            compare_pairs(run, server, scenarios)
        measured = measure(run, server, dataset, scenarios, cache=False, statements=statements)
        if compare:
            alternate_pairs(run, server, dataset, measured)
    if not cache_on or not run.wanted(cache_on_scenarios(actors, creds)):
        return measured
    print(f"\n{label}: {dataset.name}, cache ON (in-process, per worker)")
    log = _server_log(run, f"{dataset.name}-cache-on")
    with serving(dataset.url, data_dir, log, workers=run.args.workers, cache=True) as server:
        measure(run, server, dataset, run.wanted(cache_on_scenarios(actors, creds)), cache=True)
    return measured


def compare_pairs(run: Run, server: RunningServer, scenarios: Sequence[Scenario]) -> None:
    """Before a ratio of two scenarios is measured: do they ask the same question? Each
    pair of requests is sent once and the answers compared (RatioTarget.same_answer)."""
    by_key = {s.key: s for s in scenarios}
    for target in RATIO_TARGETS:
        numerator, denominator = by_key.get(target.numerator), by_key.get(target.denominator)
        if numerator is None or denominator is None:
            continue
        problems = compare_answers(server.base_url, target, numerator, denominator)
        run.comparisons[target.label] = problems
        verdict = (
            "the same answers" if not problems else "DIFFERENT answers: " + "; ".join(problems[:3])
        )
        print(f"{target.label}: {len(numerator.requests)} request pairs, {verdict}")


def alternate_pairs(
    run: Run, server: RunningServer, dataset: Dataset, measured: Sequence[Measured]
) -> None:
    """Each ratio target's two scenarios again, in short alternating runs at 1 connection
    (the order flips every round): on a shared machine the load drifts over the minute
    between a scenario's row and the other's, and a ratio of two far-apart runs measures
    the drift as much as the service. Per-round ratios see the same conditions on both
    sides; the summary reports them and their median."""
    rounds = run.args.ratio_rounds
    if rounds <= 0:
        return
    runner = WrkRunner(run.wrk, server.base_url, run.work_dir)
    by_key = {m.scenario.key: m for m in measured if not m.failed and m.runs}
    for target in RATIO_TARGETS:
        pair = (by_key.get(target.numerator), by_key.get(target.denominator))
        if pair[0] is None or pair[1] is None:
            continue
        found: list[tuple[float, float]] = []
        for index in range(rounds):
            p50: dict[str, float] = {}
            for item in pair if index % 2 == 0 else pair[::-1]:
                result = runner.run(
                    _script_for(runner, item.scenario, f"round{index}"),
                    threads=1,
                    connections=1,
                    seconds=run.args.ratio_seconds,
                )
                drain(server, dataset)
                if result.requests and not result.failures:
                    p50[item.scenario.key] = result.latency_ms["p50"]
            if len(p50) == 2:
                found.append((p50[target.numerator], p50[target.denominator]))
                top, bottom = found[-1]
                print(
                    f"{target.label}, round {index + 1}: {top:.2f} / {bottom:.2f} ms = "
                    f"{top / bottom:.2f}",
                    flush=True,
                )
        run.rounds[target.label] = found


def measure_ingestion(run: Run, dataset: Dataset) -> None:
    """Ingestion on a copy of the data set (dropped afterwards): the reads' data stays put."""
    clone = asyncio.run(clone_dataset(dataset, "ingest"))
    copy = Dataset(
        name=clone,
        url=database_url(clone),
        shape=dataset.shape,
        revision=dataset.revision,
        generated_at=dataset.generated_at,
        reused=True,
        build_seconds=None,
    )
    try:
        actors = asyncio.run(pick_actors(copy))
        creds = credentials(copy, actors, run.work_dir)
        scenarios = run.wanted(ingest_scenarios(actors, creds, run.args.batch_size))
        print(
            f"\ningestion: a copy of {dataset.name} ({clone}), into institution "
            f"{actors.institution} for {len(actors.writers)} members"
        )
        report.print_header()
        with serving(
            copy.url, run.work_dir, _server_log(run, clone), workers=run.args.workers
        ) as server:
            measure(run, server, copy, scenarios, cache=False)
    finally:
        asyncio.run(drop_database(clone))


def _dataset_json(dataset: Dataset, actors: Actors) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "spec": asdict(dataset.shape),
        "schema_revision": dataset.revision,
        "generated_at": dataset.generated_at.isoformat(),
        "reused": dataset.reused,
        "build_seconds": dataset.build_seconds,
        "rows": asyncio.run(table_sizes(dataset)),
        "actors": {
            "super_user": actors.super_user,
            "institution": actors.institution,
            "institution_members": actors.institution_members,
            "admin": actors.admin,
            "members": [asdict(m) for m in actors.members],
            "bucket": actors.bucket,
            "bucket_snapshots": actors.bucket_snapshots,
        },
    }


# ---- the whole run -----------------------------------------------------------------------------


def _phase(run: Run, name: str, work: Callable[[], Any]) -> Any:
    """Run one phase; a failure is reported loudly and recorded, and the next phase runs."""
    try:
        return work()
    except Exception as exc:
        message = f"{name} failed: {type(exc).__name__}: {exc}"
        print(f"\nERROR {message}", file=sys.stderr)
        traceback.print_exc()
        run.errors.append(message)
        return None


def _summary(
    run: Run,
    main: Dataset,
    compare: Dataset | None,
    main_rows: list[Measured],
    compare_rows: list[Measured],
) -> dict[str, Any]:
    """Print the final table, floors and ratios; the JSON payload."""
    label = report.events_label(main.shape.events)
    report.print_table(
        run.measured,
        f"usagegraph bench: {label} events ({main.shape.users} users, {main.shape.institutions} "
        f"institutions, {main.shape.days} days), serve --workers {run.args.workers}, "
        f"{run.args.duration:g} s per row, cache off unless marked, wrk on loopback",
    )
    print()
    for name, floor in run.floors.items():
        rows = compare_rows if compare and name == compare.name else main_rows
        request = next((m.run_at(1) for m in rows if m.scenario.key == FLOOR_SCENARIO), None)
        for line in report.floor_lines(f"[{name}] usage-history usage read", floor, request):
            print(line)
    pair_ratios = report.pair_ratios(main_rows, run.comparisons, run.rounds)
    lines = report.issue15_lines(main_rows, pair_ratios)
    if lines:
        print()
        for line in lines:
            print(line)
    ratios = report.scale_ratios(main_rows, compare_rows) if compare else []
    if compare:
        print()
        for line in report.ratio_lines(ratios, main.shape.events, compare.shape.events):
            print(line)
        floors = report.floor_ratio_line(run.floors.get(main.name), run.floors.get(compare.name))
        if floors:
            print(floors)
    return {
        "scenarios": [m.as_json() for m in run.measured],
        "sql_floor": {k: v.as_json() if v else None for k, v in run.floors.items()},
        "scale": [r.as_json() for r in ratios],
        "ratios": [r.as_json() for r in pair_ratios],
        "peer": "PostGraphile v5 is measured side by side by ./scripts/bench peer",
    }


def _datasets(run: Run) -> tuple[Dataset, Dataset | None]:
    """The main data set and the --compare-events one, made or reused."""
    args = run.args
    max_age = timedelta(days=args.max_age_days)

    def ensure(events: int) -> Dataset:
        shape = DemoShape(events)
        return asyncio.run(
            ensure_dataset(shape, run.work_dir, rebuild=args.rebuild, max_age=max_age)
        )

    main_set = ensure(args.events)
    return main_set, ensure(args.compare_events) if args.compare_events else None


def _measure_all(run: Run, main_set: Dataset, compare: Dataset | None) -> dict[str, Any]:
    """Every phase in order (reads, scale reads, ingestion last); the summary payload."""
    main_rows = _phase(
        run,
        "reads",
        lambda: measure_reads(run, main_set, list, cache_on=not run.args.no_cache_on, compare=True),
    )
    compare_rows = []
    if compare is not None:
        compare_rows = _phase(
            run,
            "scale reads",
            lambda: measure_reads(
                run, compare, lambda s: [x for x in s if x.scale], cache_on=False
            ),
        )
    if not run.args.no_ingest:
        _phase(run, "ingestion", lambda: measure_ingestion(run, main_set))
    return _summary(run, main_set, compare, main_rows or [], compare_rows or [])


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (Linux)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def warn_if_busy() -> float | None:
    """How busy the CPUs were over the last second, before the bench does anything; a warning
    when something else is running (its numbers would be noisy). None off Linux."""
    try:
        busy_before, total_before = _cpu_times()
        time.sleep(1)
        busy_after, total_after = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    busy = (busy_after - busy_before) / max(1, total_after - total_before)
    if busy > BUSY_CPU_FRACTION:
        print(
            f"warning: the CPUs were {busy:.0%} busy before the bench started: something else "
            "is running, so the numbers will be noisy",
            file=sys.stderr,
        )
    return round(busy, 3)


def postgres_version() -> str:
    """The server's version; a clear exit when there is no PostgreSQL to benchmark on."""
    try:
        return asyncio.run(server_version())
    except OSError as exc:
        raise SystemExit(
            f"PostgreSQL is not reachable at {ADMIN_URL} ({exc}); start it, or set "
            "USAGEGRAPH_TEST_POSTGRES_URL to an admin URL"
        ) from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    started = time.monotonic()
    wrk = find_wrk()
    busy_at_start = warn_if_busy()
    # Before anything runs: the commit is the code under test, even if it moves meanwhile.
    machine = report.machine_info(ROOT, postgres_version(), wrk, busy_at_start)
    with tempfile.TemporaryDirectory(prefix="usagegraph-bench-") as tmp:
        run = Run(args, wrk, Path(tmp))
        main_set, compare = _datasets(run)
        results = _measure_all(run, main_set, compare)
        wall = time.monotonic() - started
        report.write_json(
            args.json,
            {
                "started_at": started_at.isoformat(),
                "wall_seconds": round(wall, 1),
                "options": {k: v for k, v in vars(args).items() if k != "json"},
                "machine": {**machine, "load_average_at_end": os.getloadavg()},
                "datasets": run.datasets,
                "errors": run.errors,
                **results,
            },
        )
        if args.drop:
            for dataset in filter(None, (main_set, compare)):
                asyncio.run(drop_database(dataset.name))
    failed = [m.scenario.key for m in run.measured if m.failed]
    print(f"\nwall time {wall:.0f} s; results in {args.json}, server logs beside it")
    if failed or run.errors:
        print(f"FAILURES: {', '.join(failed + run.errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
