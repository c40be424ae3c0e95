"""Billing periods: an institution's calendar months (UTC), newest first, one page at a time.

A billing period is derived, never stored: the messages of one institution in one calendar
month (forgotten and failed usage included, because a period is money), the institution's
plan limit, and the overage above it. The months run from the current one back to the
institution's first month: the month of its creation or of its first usage, whichever is
earlier. Only the months of the requested page are ever aggregated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from usagegraph.datasources.loaders import BillingMonthsKey
from usagegraph.errors import invalid, not_found
from usagegraph.input_ids import MAX_ID as MAX_BIGINT
from usagegraph.resolvers.calendar import Granularity, period_start, shift_period
from usagegraph.resolvers.request_context import RequestContext
from usagegraph.shapes import described

DEFAULT_LIMIT = 12
MAX_LIMIT = 24


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """One calendar month of one institution. `period_end` is the month's last day."""

    period_start: date = described("The month's first day.")
    period_end: date = described("The month's last day.")
    message_count: int = described("Messages that month (forgotten and failed included).")
    plan_limit: int | None = described("Messages included; null: unlimited.")
    overage_count: int = described("Messages beyond the plan limit.")


@dataclass(frozen=True, slots=True)
class BillingPeriodPage:
    """A page of billing periods, newest first, and where it sits in the whole history."""

    periods: tuple[BillingPeriod, ...] = described("The months of this page.")
    total: int = described("Months from the current back to the first.")
    limit: int = described("The page size used.")
    offset: int = described("Months skipped.")

    @property
    def has_more(self) -> bool:
        """Whether older months follow."""
        return self.offset + len(self.periods) < self.total


def page_bounds(limit: int | None, offset: int | None) -> tuple[int, int]:
    """The effective (limit, offset): defaults 12 and 0; out of range is refused, not clamped."""
    limit = DEFAULT_LIMIT if limit is None else limit
    offset = 0 if offset is None else offset
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid(f"limit must be an integer between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise invalid("offset must be a non-negative integer")
    if offset > MAX_BIGINT:
        raise invalid(f"offset must be at most {MAX_BIGINT}")
    return limit, offset


def overage(message_count: int, plan_limit: int | None) -> int:
    """Messages above the plan limit; an unlimited plan (None) never has overage."""
    if plan_limit is None:
        return 0
    return max(0, message_count - plan_limit)


def month_count(first: datetime, now: datetime) -> int:
    """Months from `first`'s month through `now`'s, inclusive; at least 1 (the current one).

    A first moment after now (a clock ahead of ours) still leaves the current month listed.
    """
    first, now = first.astimezone(UTC), now.astimezone(UTC)
    months = (now.year - first.year) * 12 + (now.month - first.month) + 1
    return max(1, months)


def first_moment(created_at: datetime, first_usage_at: datetime | None) -> datetime:
    """Where the history starts: creation or first usage, whichever is earlier."""
    if first_usage_at is None:
        return created_at
    return min(created_at, first_usage_at)


def month_boundaries(now: datetime, offset: int, count: int) -> list[datetime]:
    """count + 1 ascending month starts covering the page: months offset .. offset+count-1
    back from the current month (0 = the current month)."""
    current = period_start(now, Granularity.MONTH)
    oldest = shift_period(current, Granularity.MONTH, -(offset + count - 1))
    return [shift_period(oldest, Granularity.MONTH, step) for step in range(count + 1)]


def _period(start: datetime, end: datetime, messages: int, plan_limit: int | None) -> BillingPeriod:
    return BillingPeriod(
        period_start=start.date(),
        period_end=(end - timedelta(days=1)).date(),
        message_count=messages,
        plan_limit=plan_limit,
        overage_count=overage(messages, plan_limit),
    )


async def billing_periods(
    context: RequestContext,
    institution_id: str,
    *,
    limit: int | None = None,
    offset: int | None = None,
) -> BillingPeriodPage:
    """A page of the institution's billing periods, newest first.

    Readable by the institution's API key, its administrators and super; anyone else gets
    the same not-found answer as for an unknown institution.
    """
    limit, offset = page_bounds(limit, offset)
    loaders = context.loaders
    # Through the request's loaders: the billing periods of every institution of a list are
    # read in two statements (their facts, then their months), not two per institution.
    facts = await loaders.billing_facts.load(institution_id)
    if facts is None:
        raise not_found("Institution not found")
    total = month_count(first_moment(facts.created_at, facts.first_usage_at), context.now)
    count = max(0, min(limit, total - offset))
    if count == 0:
        return BillingPeriodPage(periods=(), total=total, limit=limit, offset=offset)
    boundaries = month_boundaries(context.now, offset, count)
    messages = await loaders.billing_months.load(
        BillingMonthsKey(institution_id=institution_id, boundaries=tuple(boundaries))
    )
    ascending = [
        _period(boundaries[i], boundaries[i + 1], messages[i], facts.plan_limit)
        for i in range(count)
    ]
    return BillingPeriodPage(
        periods=tuple(reversed(ascending)), total=total, limit=limit, offset=offset
    )
