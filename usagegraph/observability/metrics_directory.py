"""The directory where the workers of one `serve` share their metrics.

Kept apart from metrics.py on purpose: importing prometheus-client's metrics fixes where
their values live, and the `serve` process must set the directory up before that happens
(in its workers) without recording any values of its own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

MULTIPROC_DIR_VAR = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def multiprocess_directory(workers: int) -> Iterator[Path | None]:
    """Where the workers of one `serve` write their metrics, emptied for this run.

    A PROMETHEUS_MULTIPROC_DIR set by the operator is used (its old files removed: values of
    a previous run's processes would be added to this one's); otherwise several workers get
    a fresh temporary directory, removed when `serve` ends. One worker needs none. It must
    be set before the workers start: prometheus-client picks its storage when imported.
    """
    configured = os.environ.get(MULTIPROC_DIR_VAR, "").strip()
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            old.unlink(missing_ok=True)
        yield path
        return
    if workers < 2:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="usagegraph-metrics-"))
    os.environ[MULTIPROC_DIR_VAR] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_DIR_VAR, None)
        shutil.rmtree(path, ignore_errors=True)
