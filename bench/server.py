"""The usagegraph processes the bench runs: CLI commands and `usagegraph serve`, as a user would.

Everything goes through the installed `usagegraph` command with settings in the environment,
so the numbers include what a deployment pays (uvicorn, middleware, the worker processes).
Two settings differ from a default deployment, both on purpose:

- USAGEGRAPH_RATE_LIMIT_PER_MINUTE=0: throughput is measured, not the limiter.
- USAGEGRAPH_CACHE=off for the read numbers: every usage-history request computes its answer.
  With `cache=True` the server keeps its default in-process cache (one per worker).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import URL

# HS256 secret of every bench server (tokens are minted with it too).
JWT_SECRET = "usagegraph-bench-secret-long-enough-for-hs256-0123456789"
STARTUP_TIMEOUT_SECONDS = 60.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class CommandError(RuntimeError):
    """A usagegraph command failed; the message holds its output."""


def usagegraph_command() -> list[str]:
    """The `usagegraph` console script beside this interpreter (the venv's), else `-m`."""
    script = Path(sys.executable).parent / "usagegraph"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "usagegraph"]


def service_env(
    url: URL, data_dir: Path, *, cache: bool = False, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of every usagegraph process on `url` (other USAGEGRAPH_* vars dropped;
    `extra` added, e.g. USAGEGRAPH_REDIS_URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGEGRAPH_")}
    env.update(
        USAGEGRAPH_DATABASE_URL=url.render_as_string(hide_password=False),
        USAGEGRAPH_JWT_SECRET=JWT_SECRET,
        USAGEGRAPH_DATA_DIR=str(data_dir),
        USAGEGRAPH_RATE_LIMIT_PER_MINUTE="0",
    )
    if not cache:
        env["USAGEGRAPH_CACHE"] = "off"
    env.update(extra or {})
    return env


def run_cli(args: list[str], url: URL, data_dir: Path, *, show_output: bool = False) -> str:
    """Run `usagegraph <args>` on the database; its stdout, or CommandError with its output."""
    completed = subprocess.run(
        [*usagegraph_command(), *args],
        env=service_env(url, data_dir),
        stdout=None if show_output else subprocess.PIPE,
        stderr=None if show_output else subprocess.PIPE,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise CommandError(
            f"usagegraph {' '.join(args)} exited with {completed.returncode}:\n"
            f"{completed.stdout or ''}{completed.stderr or ''}"
        )
    return completed.stdout or ""


def create_api_key(url: URL, data_dir: Path, institution_id: str) -> str:
    """A new API key for the institution, from `usagegraph apikey create` (one row per run)."""
    output = run_cli(
        ["apikey", "create", "--institution", institution_id, "--name", "bench"], url, data_dir
    )
    return output.strip().splitlines()[-1].strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(base: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until /readyz answers 200 several times in a row (every worker up), or fail."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    ready_in_a_row = 0
    while ready_in_a_row < 5:
        if process.poll() is not None:
            raise CommandError(f"usagegraph serve exited early:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            raise CommandError(f"usagegraph serve not ready in time; see {log_path}")
        try:
            ok = httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            ok = False
        ready_in_a_row = ready_in_a_row + 1 if ok else 0
        time.sleep(0.1 if ok else 0.3)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (uvicorn and its workers), then SIGKILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@dataclass(frozen=True, slots=True)
class RunningServer:
    base_url: str
    process_group: int  # uvicorn's supervisor and its workers

    def cpu_seconds(self) -> float:
        """CPU time used so far by every process of the server (Linux /proc; 0 elsewhere)."""
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            fields = stat_fields(stat)
            if fields is not None and int(fields[2]) == self.process_group:  # field 5: pgid
                total += cpu_seconds_of(fields)
        return total


def stat_fields(stat: Path) -> list[str] | None:
    """The fields of a /proc/<pid>/stat after the command name (which may hold spaces; the
    fields after it are fixed), or None once the process is gone."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds_of(fields: list[str]) -> float:
    """User plus system CPU seconds of a process, from its `stat_fields` (fields 14, 15)."""
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


@contextlib.contextmanager
def serving(
    url: URL,
    data_dir: Path,
    log_path: Path,
    *,
    workers: int,
    cache: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Iterator[RunningServer]:
    """`usagegraph serve --workers N` on a free loopback port until the block ends; its URL.

    The server runs in its own process group (whose id is its pid), so stopping it stops its
    workers too, whatever happened inside the block. Its output goes to `log_path`.
    """
    port = free_port()
    command = [*usagegraph_command(), "serve", "--port", str(port), "--workers", str(workers)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env=service_env(url, data_dir, cache=cache, extra=extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, log_path)
        yield RunningServer(base, process.pid)
    finally:
        _stop(process)
