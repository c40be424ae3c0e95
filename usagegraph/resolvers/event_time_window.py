"""When a usage event may say it happened: the one check every usage write path makes.

Without a bound, a client could backdate usage to any month since year 1 (each month then
got a partition of its own on PostgreSQL, and year 1 was stored as `-infinity`) or date it
far ahead. So every path that writes usage events checks `occurred_at` here, with its own
bounds:

- online writes (`recordUsage`, `recordUsageBatch`; API keys and super alike): the
  acceptance window of the settings, by default the last 35 days up to 5 minutes ahead of
  the server's clock (`EventTimeWindow`, as Stripe's meter events);
- `usagegraph import` (history an operator loads): from 1970-01-01T00:00:00Z up to the
  same few minutes ahead. Nothing imported happens in the future either.

Both bounds are inclusive. Comparing aware datetimes never converts them, so even a time at
the edge of what Python can represent (year 1 with a positive offset) is judged, not
overflowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from usagegraph.errors import invalid
from usagegraph.settings import EventTimeWindow

# The earliest usage any path stores: the Unix epoch, well before any metered API call.
EARLIEST_HISTORY = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class EventTimeBounds:
    """The earliest and latest acceptable event time, and how a refusal names the window."""

    earliest: datetime
    latest: datetime
    window: str  # e.g. "the last 35 days up to 300 seconds ahead"


def online_bounds(window: EventTimeWindow, now: datetime) -> EventTimeBounds:
    """The acceptance window of online usage writes at `now`."""
    return EventTimeBounds(
        earliest=now - window.max_age,
        latest=now + window.max_future,
        window=(
            f"the last {_count(window.max_age_days, 'day')} up to "
            f"{_count(window.max_future_seconds, 'second')} ahead; older usage is loaded with "
            "`usagegraph import`"
        ),
    )


def import_bounds(window: EventTimeWindow, now: datetime) -> EventTimeBounds:
    """What `usagegraph import` accepts at `now`: any history since 1970, nothing ahead of
    the online window's allowance for clock skew."""
    return EventTimeBounds(
        earliest=EARLIEST_HISTORY,
        latest=now + window.max_future,
        window=f"history from 1970 up to {_count(window.max_future_seconds, 'second')} ahead",
    )


def check_event_time(occurred_at: datetime, bounds: EventTimeBounds, name: str) -> None:
    """Refuse (INVALID_REQUEST) an event time outside `bounds`, naming the window and its
    two ends; `name` is the field as the caller spells it (occurredAt, occurred_at)."""
    if occurred_at.tzinfo is None:
        raise invalid(f"{name} must carry a time zone (e.g. 2026-05-01T10:00:00Z)")
    if not bounds.earliest <= occurred_at <= bounds.latest:
        raise invalid(
            f"{name} must be between {_iso(bounds.earliest)} and {_iso(bounds.latest)} "
            f"({bounds.window})"
        )


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
