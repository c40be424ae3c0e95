"""A subscriber's inbox of notes, and the coalescing of notes into messages.

The inbox never blocks a publisher and never grows without bound: a note is only a reason to
read again, so past MAX_PENDING notes the inbox keeps a single "anything may have changed".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from usagegraph.live.channels import Payload

MAX_PENDING = 100
# At most one message per second per subscription (issue 18).
MIN_INTERVAL_SECONDS = 1.0

Note = tuple[str, Payload]


class Feed:
    """The notes delivered to one subscription and not yet read."""

    def __init__(self) -> None:
        self._pending: list[Note] = []
        self._ready = asyncio.Event()

    def push(self, channel: str, payload: Payload) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._pending = [(channel, {"users": None})]
        else:
            self._pending.append((channel, payload))
        self._ready.set()

    def drain(self) -> list[Note]:
        """The pending notes, now; the inbox is empty afterwards."""
        notes, self._pending = self._pending, []
        self._ready.clear()
        return notes

    async def next_notes(self) -> list[Note]:
        """Wait for at least one note, then take every pending one."""
        await self._ready.wait()
        return self.drain()


async def coalesced(
    feed: Feed,
    relevant: Callable[[str, Payload], bool],
    *,
    min_interval: float = MIN_INTERVAL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[None]:
    """Yield once per "read again", at most once per `min_interval`.

    The first relevant note after a quiet second is answered at once (a lone write is pushed
    without delay); notes arriving within a second of the previous message wait for that
    second to end and are answered together, by one read that sees all their writes. The
    interval counts from when the consumer asks for the next turn, i.e. after the previous
    message was read and sent.
    """
    last = clock()
    while True:
        notes = await feed.next_notes()
        if not any(relevant(channel, payload) for channel, payload in notes):
            continue
        wait = last + min_interval - clock()
        if wait > 0:
            await asyncio.sleep(wait)
            feed.drain()  # these writes are committed too: the read below sees them
        yield
        last = clock()
