"""A request may not hold its worker: overruns are interrupted, and SIGTERM always ends it.

A worker serves every request on one event loop. The request budget (`availability.py`) is
enforced by the loop itself, so a request that computes without ever awaiting cannot be
cancelled: while it runs, no other request is answered, `/healthz` included, and uvicorn's
SIGTERM handler only sets a flag the busy loop never reads.

The watchdog is a thread that watches a heartbeat the loop writes every `TICK_SECONDS`. When
the loop has not beaten for `max_blocking_seconds`, it signals the main thread (SIGALRM). The
signal handler runs between two bytecodes of whatever holds the loop; if that is a request
(a task `AvailabilityMiddleware` registered with `watch_request`), it raises `RequestOverrun`
there. The exception unwinds that request alone, which is answered 503 like any request over
its budget, and the loop serves the others again. Anything else holding the loop is left
alone: the watchdog interrupts requests, never the server's own work.

On SIGTERM the handler interrupts a request holding the loop the same way (so the graceful
shutdown can start at once), then calls uvicorn's handler; and if the process is still alive
`graceful_shutdown_seconds` later, the watchdog ends it with `os._exit`, so a stuck worker
can never outlive its shutdown window.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
import weakref
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1
# The exit status of a worker ended because it did not stop within its shutdown window.
FORCED_EXIT_STATUS = 70

# Tasks running a request, which the watchdog may interrupt.
_requests: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()


class RequestOverrun(BaseException):
    """Raised inside a request that held the event loop past the allowed time.

    A BaseException, like CancelledError: the `except Exception` handlers on the way
    (graphql-core's per-field errors, Strawberry, Starlette) must not turn it into an ordinary
    answer and carry on computing.
    """


def watch_request(task: asyncio.Task[Any]) -> None:
    """Let the watchdog interrupt `task` when it holds the loop too long."""
    _requests.add(task)


class LoopWatchdog:
    """The heartbeat, the watching thread and the signal handlers of one worker process."""

    def __init__(self, max_blocking_seconds: float, graceful_shutdown_seconds: float) -> None:
        self.max_blocking_seconds = max_blocking_seconds
        self.graceful_shutdown_seconds = graceful_shutdown_seconds
        self._last_beat = time.monotonic()
        self._stop = threading.Event()
        self._terminate_at: float | None = None
        self._thread: threading.Thread | None = None
        self._beat: asyncio.TimerHandle | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._signalled_beat: float | None = None

    @property
    def installed(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start watching the running loop; a no-op off the main thread (signals need it)."""
        if threading.current_thread() is not threading.main_thread():
            log.info("loop watchdog not started: the event loop is not on the main thread")
            return
        loop = asyncio.get_running_loop()
        self._heartbeat(loop)
        self._previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_terminate)
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and give the signals back. The thread is stopped first, so it can
        never signal a process whose handlers are gone. After SIGTERM nothing is given back:
        the thread stays to end the process on time if its shutdown hangs."""
        if self._thread is None:
            return
        if self._beat is not None:
            self._beat.cancel()
        if self._terminate_at is None:
            self._stop.set()
            self._thread.join()
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        self._thread = None

    def blocked_for(self) -> float:
        return time.monotonic() - self._last_beat

    def _heartbeat(self, loop: asyncio.AbstractEventLoop) -> None:
        self._last_beat = time.monotonic()
        self._beat = loop.call_later(TICK_SECONDS, self._heartbeat, loop)

    def _watch(self) -> None:
        main = threading.main_thread().ident
        assert main is not None
        while not self._stop.wait(TICK_SECONDS):
            if self._terminate_at is not None and time.monotonic() >= self._terminate_at:
                log.error("worker did not stop within its shutdown window; exiting")
                os._exit(FORCED_EXIT_STATUS)
            beat = self._last_beat
            if beat != self._signalled_beat and self.blocked_for() > self.max_blocking_seconds:
                self._signalled_beat = beat  # once per blocked stretch
                signal.pthread_kill(main, signal.SIGALRM)

    def _on_alarm(self, _signum: int, _frame: FrameType | None) -> None:
        if self.blocked_for() > self.max_blocking_seconds:
            self._interrupt_current_request(
                f"held the event loop for more than {self.max_blocking_seconds:g} s"
            )

    def _on_terminate(self, signum: int, frame: FrameType | None) -> None:
        if self._terminate_at is None:
            self._terminate_at = time.monotonic() + self.graceful_shutdown_seconds
        previous = self._previous.get(signal.SIGTERM)
        if not callable(previous):  # nobody else handles it: the default, end the process
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        previous(signum, frame)
        if self.blocked_for() > TICK_SECONDS * 2:
            self._interrupt_current_request("was running when the worker was asked to stop")

    def _interrupt_current_request(self, reason: str) -> None:
        """Raise `RequestOverrun` in the running task if it is a request; else do nothing.

        The blocked stretch ends here: the next request may take the loop before the
        heartbeat runs again, and it is measured from now, not from the last beat.
        """
        task = _current_task()
        if task is None or task not in _requests:
            log.warning("event loop blocked outside any request; not interrupted")
            return
        log.warning("interrupting a request that %s", reason)
        self._last_beat = time.monotonic()
        raise RequestOverrun(reason)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return None
