"""How much money an input may name, and how large a stored sum may grow.

Money is NUMERIC(20, 6) on PostgreSQL, which holds up to 99999999999999.999999, and 64-bit
integer micro-units on SQLite, which hold up to 9223372036854.775807 (`db.types.Money`).
The smaller is the bound on both databases, so an API answers the same whichever one it
runs on: `MAX_STORED`.

- One amount (credits of a usage event, a top-up, a debit, an adjustment, a reservation,
  a cap, an auto-reload threshold or amount) is exact, has at most 6 decimal places and is
  at most `MAX_AMOUNT` (10^12) either way: `amount()`.
- Every sum the databases keep (a wallet's balance and reserved credits, a ledger entry's
  balance_after, a user's usage in an instance: the lifetime total and every rollup slot,
  which are parts of it) stays within ±`MAX_STORED`: `stored_sum()`. A write that would
  take one past it is refused with INVALID_REQUEST naming the field and the bound, before
  anything is written (a batch refuses just the events that would); a stored value never
  overflows into a database error.
"""

from __future__ import annotations

from decimal import Decimal

from usagegraph.errors import invalid
from usagegraph.input_ids import MAX_ID
from usagegraph.money import MONEY_SCALE, MoneyPrecisionError, to_money

MAX_AMOUNT = Decimal(10**12)
MAX_STORED = Decimal(MAX_ID).scaleb(-MONEY_SCALE)  # 9223372036854.775807


def amount(value: Decimal, name: str) -> Decimal:
    """An exact amount with at most 6 decimal places, no larger than MAX_AMOUNT either way."""
    try:
        checked = to_money(value)
    except (MoneyPrecisionError, ArithmeticError) as exc:
        raise invalid(f"{name} must be a decimal number with at most 6 decimal places") from exc
    if abs(checked) > MAX_AMOUNT:
        raise invalid(f"{name} must not exceed {MAX_AMOUNT} in size")
    return checked


def stored_sum(total: Decimal, name: str, what: str) -> Decimal:
    """`total` when the databases can store it; else INVALID_REQUEST naming `name` (the input
    that would cause it) and `what` the total is."""
    if abs(total) > MAX_STORED:
        raise invalid(f"{name} would take {what} past {MAX_STORED}, the largest amount stored")
    return total
