"""Answer 503 instead of 500 or a hang: database outages and requests that overran their time.

Every request except the probes runs under `Settings.request_timeout_seconds`. When it
overruns, its work is cancelled (with it the database statement it awaits) and the caller
gets 503. When it meets a database outage — an exception that propagates, or one recorded by
the engine while something swallowed it (see outages.py) — the caller gets 503 as well. A
request that computes without awaiting cannot be cancelled by the loop it holds: the loop
watchdog (loop_watchdog.py) interrupts it instead, and it is answered 503 the same way. All
these answers are coded `SERVICE_UNAVAILABLE` and use the envelope of the route's API family.

It sits outside the principal middleware, so an outage while resolving the caller is covered.
A response that has already started cannot be replaced; such a failure is re-raised. A
client that hung up before its request body arrived gets nothing (there is no one to answer)
and leaves no server error in the log.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from usagegraph.errors import unavailable
from usagegraph.http.envelopes import error_response_for
from usagegraph.http.health import PROBE_PATHS
from usagegraph.http.loop_watchdog import RequestOverrun, watch_request
from usagegraph.observability.metrics import count_timeout
from usagegraph.outages import MESSAGES, OutageRecord, Unavailability, classify, recording

log = logging.getLogger(__name__)


class AvailabilityMiddleware:
    """Pure ASGI; reads the time budget from the app's settings at call time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        budget = scope["app"].state.settings.request_timeout_seconds
        with recording() as record:
            response = _GuardedResponse(scope, send, record)
            # The work runs as a task of its own so that the answer leaves at the deadline:
            # cancelled work may still need a moment to clean up (SQLAlchemy gives a broken
            # PostgreSQL connection up to 2 s to close), and the caller need not wait for it.
            work = asyncio.create_task(self.app(scope, receive, response.send))
            watch_request(work)
            try:
                done, _ = await asyncio.wait({work}, timeout=budget)
            except asyncio.CancelledError:
                work.cancel()
                raise
            if not done:
                work.cancel()
                _let_finish(work)
                count_timeout()
                await response.fail(Unavailability.TIMEOUT, None)
                return
            await _settle(work, response)


async def _settle(work: asyncio.Task[None], response: _GuardedResponse) -> None:
    """Pass on what the finished work raised, unless it means the service is unavailable."""
    exc = work.exception()
    if exc is None:
        return
    if isinstance(exc, ClientDisconnect):  # nobody is left to answer; not a server error
        return
    if isinstance(exc, RequestOverrun):  # interrupted by the loop watchdog: over its budget
        count_timeout()
        await response.fail(Unavailability.TIMEOUT, None)
        return
    if response.answered:
        log.warning("request failed after its 503 was sent: %s", type(exc).__name__)
        return
    kind = classify(exc)
    if kind is None:
        raise exc
    await response.fail(kind, exc)


# Cancelled work still cleaning up; kept here so that it is not garbage-collected meanwhile.
_lingering: set[asyncio.Task[None]] = set()


def _let_finish(work: asyncio.Task[None]) -> None:
    _lingering.add(work)
    work.add_done_callback(_forget)


async def settle_cancelled_work(timeout_seconds: float = 5.0) -> None:
    """Wait (a bounded while) for cancelled requests of this loop to finish cleaning up.

    Called when the app shuts down, before the engine closes: a cancelled request may still be
    handing its connection back, and cancelling that cleanup in turn can leave it waiting on a
    driver that has already stopped.
    """
    loop = asyncio.get_running_loop()
    pending = {work for work in _lingering if work.get_loop() is loop}
    if pending:
        await asyncio.wait(pending, timeout=timeout_seconds)


def _forget(work: asyncio.Task[None]) -> None:
    _lingering.discard(work)
    if not work.cancelled() and work.exception() is not None:
        log.info("cancelled request ended with %s", type(work.exception()).__name__)


class _GuardedResponse:
    """Passes the app's response through unless the request met an unavailability."""

    def __init__(self, scope: Scope, send: Send, record: OutageRecord) -> None:
        self._scope = scope
        self._send = send
        self._record = record
        self._started = False  # the app's own response has started
        self._answered = False  # we answered 503 in its place

    @property
    def answered(self) -> bool:
        return self._answered

    async def send(self, message: Message) -> None:
        if self._answered:
            return  # the rest of a response we replaced
        if message["type"] == "http.response.start":
            if self._record.met is not None:
                await self._answer(self._record.met, reason="recorded by the engine")
                return
            self._started = True
        await self._send(message)

    async def fail(self, kind: Unavailability, exc: BaseException | None) -> None:
        """Answer 503 (for `exc`, or for the deadline), unless an answer already started."""
        if self._answered:
            return
        if self._started:
            raise exc or TimeoutError("the request overran its budget mid-response")
        await self._answer(kind, reason=type(exc).__name__ if exc else "over budget")

    async def _answer(self, kind: Unavailability, reason: str) -> None:
        self._answered = True
        path = self._scope["path"]
        request_id = self._scope.get("state", {}).get("request_id", "unknown")
        log.warning("request %s to %s answered 503: %s (%s)", request_id, path, kind, reason)
        response = error_response_for(path, unavailable(MESSAGES[kind]), request_id)
        await response(self._scope, _no_receive, self._send)


async def _no_receive() -> Message:
    """Our 503 never reads the request body (the app may already have consumed it)."""
    return {"type": "http.disconnect"}
