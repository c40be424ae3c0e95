"""Counting work, not time: the Python function calls made while a block runs.

A machine that is busy makes wall-clock budgets flaky; a count of calls is the same on every
machine. `call_budget(n)` raises `WorkBudgetExceeded` as soon as the block has made more than
`n` calls in this thread, so an exponential step fails the test at once instead of hanging it.
It derives from BaseException so that no `except Exception` on the way (graphql-core,
Strawberry, Starlette) turns it into an ordinary error answer.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any


class WorkBudgetExceeded(BaseException):
    """The block made more function calls than its budget."""


@dataclass
class CallCount:
    budget: int
    calls: int = 0


@contextmanager
def call_budget(budget: int) -> Iterator[CallCount]:
    """Count Python and C calls made by this thread inside the block; fail past `budget`."""
    count = CallCount(budget)

    def profile(_frame: FrameType, event: str, _arg: Any) -> None:
        if event in ("call", "c_call"):
            count.calls += 1
            if count.calls > budget:
                sys.setprofile(None)
                raise WorkBudgetExceeded(f"more than {budget} calls")

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield count
    finally:
        sys.setprofile(previous)
