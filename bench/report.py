"""The suite's output: a table on stdout and every number as JSON, with the machine it ran on.

One row per scenario and connection level. Failures (non-2xx, GraphQL errors, socket errors)
sit next to the latency they came with, so a fast row that failed is visibly worthless. Targets
are issue 7's; PostGraphile is measured side by side by `./scripts/bench peer`, which the table
points to.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.dataset import Dataset
from bench.scenarios import (
    RATIO_TARGETS,
    USER_STATS_5000,
    RatioTarget,
    Scenario,
    Verification,
)
from bench.sql import Captured, Floor
from bench.wrk import WrkResult

SCALE_RATIO_TARGET = 1.3
_TITLE = 60


@dataclass
class Measured:
    """One scenario on one data set: its check, its wrk runs, its statements."""

    scenario: Scenario
    dataset: Dataset
    cache: bool
    verification: Verification | None = None
    runs: list[WrkResult] = field(default_factory=list)
    statements: list[Captured] | None = None
    error: str | None = None
    # Seconds the server needed after each run to finish requests wrk abandoned.
    drain_seconds: list[float] = field(default_factory=list)

    @property
    def events(self) -> int:
        return self.dataset.shape.events

    @property
    def failed(self) -> bool:
        return (
            self.error is not None
            or (self.verification is not None and not self.verification.ok)
            or any(r.failures for r in self.runs)
        )

    def run_at(self, connections: int) -> WrkResult | None:
        return next((r for r in self.runs if r.connections == connections), None)

    def as_json(self) -> dict[str, Any]:
        scenario = self.scenario
        return {
            "key": scenario.key,
            "title": scenario.title,
            "dataset": self.dataset.name,
            "events": self.events,
            "cache": "on" if self.cache else "off",
            "answer": self.verification.detail if self.verification else None,
            "response_bytes": self.verification.response_bytes if self.verification else None,
            "problems": self.verification.problems if self.verification else [],
            "error": self.error,
            "sql_statements": len(self.statements) if self.statements is not None else None,
            "sql": [c.statement for c in self.statements or []],
            "requests": [
                {"method": r.method, "path": r.path, "body": r.body} for r in scenario.requests
            ],
            "runs": [
                {**run.as_json(), "targets": _targets_json(scenario, run)} for run in self.runs
            ],
            "drain_seconds_after_runs": self.drain_seconds,
        }


def _targets_json(scenario: Scenario, run: WrkResult) -> list[dict[str, Any]]:
    return [
        {"target": t.label, "met": t.met(run)}
        for t in scenario.targets
        if t.applies(run.connections)
    ]


def events_label(events: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if events >= size and events % size == 0:
            return f"{events // size}{suffix}"
    return f"{events:,}"


# ---- the table ---------------------------------------------------------------------------------

_HEADER = (
    f"{'scenario':<{_TITLE}} {'data':>5} {'conns':>5} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'req/s':>8} {'events/s':>9} {'fail':>5} {'SQL':>4}  target"
)


def _target_text(scenario: Scenario, run: WrkResult) -> str:
    parts = [
        f"{t.label}: {'met' if t.met(run) else 'MISSED'}"
        for t in scenario.targets
        if t.applies(run.connections)
    ]
    return "; ".join(parts)


def _row(title: str, measured: Measured, run: WrkResult) -> str:
    sql = str(len(measured.statements)) if measured.statements is not None else "-"
    events = f"{run.events_per_second:,.0f}" if measured.scenario.ingest else "-"
    if run.requests:
        p50, p99 = f"{run.latency_ms['p50']:.2f}", f"{run.latency_ms['p99']:.2f}"
        target = _target_text(measured.scenario, run)
    else:  # every request outlived the run: wrk has no latency to report
        p50 = p99 = "-"
        target = "no request completed within the run"
    return (
        f"{title[:_TITLE]:<{_TITLE}} {events_label(measured.events):>5} {run.connections:>5} "
        f"{p50:>8} {p99:>8} {run.requests_per_second:>8,.1f} {events:>9} {run.failures:>5} "
        f"{sql:>4}  {target}"
    )


def rows(measured: Measured) -> list[str]:
    """The lines of one scenario: one per run; its answer under the title."""
    title = measured.scenario.title
    answer = measured.verification.detail if measured.verification else ""
    problems = measured.verification.problems if measured.verification else []
    if measured.error or problems:
        problem = measured.error or "; ".join(problems)
        return [f"{title[:_TITLE]:<{_TITLE}} FAILED: {problem}"]
    lines = []
    for index, run in enumerate(measured.runs):
        label = title if index == 0 else (f"  -> {answer}" if index == 1 and answer else "")
        lines.append(_row(label, measured, run))
    if len(measured.runs) == 1 and answer:
        lines.append(f"  -> {answer}")
    return lines


def print_header(stream: Any = sys.stdout) -> None:
    print(_HEADER, file=stream)
    print("-" * len(_HEADER), file=stream, flush=True)


def print_table(measured: Iterable[Measured], heading: str) -> None:
    print()
    print(heading)
    print_header()
    for item in measured:
        for line in rows(item):
            print(line)
    print(
        "PostGraphile v5 answering the same reads, measured in the same run: "
        "./scripts/bench peer --question nested (or events)"
    )


# ---- the SQL floor and the 10x check -----------------------------------------------------------


def floor_lines(label: str, floor: Floor | None, request: WrkResult | None) -> list[str]:
    if floor is None:
        return [f"SQL floor {label}: no usage-reading statement captured"]
    line = (
        f"SQL floor {label}: p50 {floor.p50_ms:.2f} ms, p90 {floor.p90_ms:.2f} ms "
        f"({len(floor.statements)} statement(s), {floor.rows} rows, {floor.repeats} runs via "
        f"asyncpg)"
    )
    if request is not None:
        overhead = request.latency_ms["p50"] - floor.p50_ms
        line += f"; request p50 at 1 conn {request.latency_ms['p50']:.2f} ms (+{overhead:.2f} ms)"
    return [line]


@dataclass(frozen=True, slots=True)
class Ratio:
    key: str
    title: str
    connections: int
    base_ms: float
    scaled_ms: float

    @property
    def ratio(self) -> float:
        return self.scaled_ms / self.base_ms if self.base_ms else float("inf")

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "connections": self.connections,
            "base_p50_ms": self.base_ms,
            "scaled_p50_ms": self.scaled_ms,
            "ratio": round(self.ratio, 3),
            "target": f"≤ {SCALE_RATIO_TARGET}",
            "met": self.ratio <= SCALE_RATIO_TARGET,
        }


def scale_ratios(base: Sequence[Measured], scaled: Sequence[Measured]) -> list[Ratio]:
    """p50 on the bigger data set over p50 on the main one, per scenario and level."""
    by_key = {m.scenario.key: m for m in base}
    ratios = []
    for big in scaled:
        small = by_key.get(big.scenario.key)
        if small is None:
            continue
        for run in big.runs:
            reference = small.run_at(run.connections)
            # A run in which no request completed has no latency to compare.
            if reference is not None and reference.requests and run.requests:
                ratios.append(
                    Ratio(
                        big.scenario.key,
                        big.scenario.title,
                        run.connections,
                        reference.latency_ms["p50"],
                        run.latency_ms["p50"],
                    )
                )
    return ratios


def floor_ratio_line(base: Floor | None, scaled: Floor | None) -> str | None:
    if base is None or scaled is None or not base.p50_ms:
        return None
    return (
        f"  SQL floor: {base.p50_ms:.2f} ms -> {scaled.p50_ms:.2f} ms = "
        f"{scaled.p50_ms / base.p50_ms:.2f}"
    )


def ratio_lines(ratios: Sequence[Ratio], base_events: int, scaled_events: int) -> list[str]:
    big, small = events_label(scaled_events), events_label(base_events)
    lines = [f"p50 at {big} / p50 at {small} (target ≤ {SCALE_RATIO_TARGET} for usage-history):"]
    for r in ratios:
        verdict = "met" if r.ratio <= SCALE_RATIO_TARGET else "MISSED"
        lines.append(
            f"  {r.title[:_TITLE]:<{_TITLE}} {r.connections:>3} conns: {r.base_ms:7.2f} ms -> "
            f"{r.scaled_ms:7.2f} ms = {r.ratio:5.2f}  {verdict}"
        )
    return lines


# ---- issue 15's targets: one scenario against another, and user-stats at 5,000 rows --------

# The scenario whose p50 at one connection answers "user-stats with 5,000 rows ≤ 300 ms".
USER_STATS_5000_KEY = "rest.user_stats_5000"


@dataclass(frozen=True, slots=True)
class PairRatio:
    """One RatioTarget as measured: both p50s at one connection, and whether both scenarios
    answered the same (`problems` empty) when checked before the load (None: not checked)."""

    target: RatioTarget
    numerator_ms: float
    denominator_ms: float
    problems: list[str] | None
    # (numerator, denominator) p50 of each alternating round (`--ratio-rounds`).
    rounds: list[tuple[float, float]] = field(default_factory=list)

    @property
    def round_ratios(self) -> list[float]:
        return [top / bottom for top, bottom in self.rounds if bottom]

    @property
    def median_round_ratio(self) -> float | None:
        ratios = self.round_ratios
        return statistics.median(ratios) if ratios else None

    @property
    def ratio(self) -> float:
        return self.numerator_ms / self.denominator_ms if self.denominator_ms else float("inf")

    @property
    def comparable(self) -> bool:
        return self.problems == []

    @property
    def met(self) -> bool:
        """Judged on the median of the alternating rounds when there are any (the ratio of
        the two table rows otherwise)."""
        median = self.median_round_ratio
        judged = median if median is not None else self.ratio
        return self.comparable and judged <= self.target.at_most

    def as_json(self) -> dict[str, Any]:
        return {
            "target": f"{self.target.label} ≤ {self.target.at_most}",
            "numerator": self.target.numerator,
            "denominator": self.target.denominator,
            "numerator_p50_ms": self.numerator_ms,
            "denominator_p50_ms": self.denominator_ms,
            "ratio": round(self.ratio, 3),
            "rounds": [
                {"numerator_p50_ms": top, "denominator_p50_ms": bottom}
                for top, bottom in self.rounds
            ],
            "round_ratios": [round(r, 3) for r in self.round_ratios],
            "median_round_ratio": self.median_round_ratio,
            "same_question": self.comparable,
            "differences": self.problems,
            "met": self.met,
        }


def _p50_at_one(measured: Sequence[Measured], key: str) -> float | None:
    item = next((m for m in measured if m.scenario.key == key and not m.cache), None)
    run = item.run_at(1) if item is not None and not item.failed else None
    return run.latency_ms["p50"] if run is not None and run.requests else None


def pair_ratios(
    measured: Sequence[Measured],
    comparisons: dict[str, list[str]],
    rounds: dict[str, list[tuple[float, float]]],
) -> list[PairRatio]:
    """Every RatioTarget whose two scenarios both have a p50 at one connection."""
    ratios = []
    for target in RATIO_TARGETS:
        top = _p50_at_one(measured, target.numerator)
        bottom = _p50_at_one(measured, target.denominator)
        if top is not None and bottom is not None:
            problems = comparisons.get(target.label)
            found = rounds.get(target.label, [])
            ratios.append(PairRatio(target, top, bottom, problems, found))
    return ratios


def issue15_lines(measured: Sequence[Measured], ratios: Sequence[PairRatio]) -> list[str]:
    """The usage-history ratio and user-stats at 5,000 rows, each against its target."""
    lines = ["issue 15 targets (p50 at 1 connection, cache off):"]
    for r in ratios:
        if r.problems is None:
            verdict = "not checked to ask the same question"
        elif r.problems:
            verdict = f"NOT COMPARABLE: {'; '.join(r.problems[:3])}"
        else:
            verdict = "met" if r.met else "MISSED"
        median = r.median_round_ratio
        rounds = ", ".join(f"{ratio:.2f}" for ratio in r.round_ratios)
        judged = f"; alternating rounds {rounds}, median {median:.2f}" if median else ""
        lines.append(
            f"  {r.target.label}: table rows {r.numerator_ms:.2f} / {r.denominator_ms:.2f} ms"
            f" = {r.ratio:.2f}{judged} (target ≤ {r.target.at_most}): {verdict}"
        )
    stats = _p50_at_one(measured, USER_STATS_5000_KEY)
    if stats is not None and USER_STATS_5000.at_most is not None:
        bound = USER_STATS_5000.at_most
        verdict = "met" if stats <= bound else "MISSED"
        lines.append(
            f"  user-stats {USER_STATS_5000.label}: p50 {stats:.1f} ms = "
            f"{stats / bound:.2f} x the target: {verdict}"
        )
    return lines if len(lines) > 1 else []


# ---- where it ran ------------------------------------------------------------------------------


def _command_output(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout or done.stderr).strip() or None


def _git(root: Path) -> dict[str, Any]:
    """The commit, and whether the working tree differs from it (read-only git commands)."""
    commit = _command_output(["git", "-C", str(root), "rev-parse", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(root), "diff-index", "--quiet", "HEAD", "--"],
        capture_output=True,
        check=False,
    ).returncode
    return {"commit": commit, "uncommitted_changes": dirty == 1}


def machine_info(
    root: Path, pg_version: str, wrk: str, busy_at_start: float | None
) -> dict[str, Any]:
    wrk_version = _command_output([wrk, "-v"]) or ""
    return {
        "cpus": os.cpu_count(),
        "cpu_busy_fraction_before_start": busy_at_start,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "postgresql": pg_version,
        "wrk": wrk_version.splitlines()[0] if wrk_version else None,
        **_git(root),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
