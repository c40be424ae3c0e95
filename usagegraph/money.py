"""Money values: exact decimals with at most 6 places, and one canonical text for each.

The same on every path (GraphQL scalars, REST bodies, the database columns of
`db.types.Money`), so it sits below them all and imports nothing of theirs.
"""

from __future__ import annotations

from decimal import Decimal

MONEY_SCALE = 6
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)


_WHOLE = Decimal(1)


class MoneyPrecisionError(ValueError):
    """A money value has more decimal places than the database keeps."""


def to_money(value: Decimal | int | str) -> Decimal:
    """Coerce to a Decimal with at most MONEY_SCALE places, refusing silent rounding."""
    amount = Decimal(value)
    if not amount.is_finite():
        raise MoneyPrecisionError(f"{value!r} is not a finite number")
    if amount != amount.quantize(_QUANTUM):
        raise MoneyPrecisionError(f"{value!r} has more than {MONEY_SCALE} decimal places")
    return amount


def canonical_money(amount: Decimal) -> Decimal:
    """Strip trailing zeros without switching to exponent notation (100, not 1E+2).

    Runs for every money value read from the database; checking for a whole number first
    avoids `normalize().as_tuple()` (a tuple per value), which cost twice as much.
    """
    if amount == amount.to_integral_value():
        return amount.quantize(_WHOLE)
    return amount.normalize()  # not whole: its exponent stays negative, never 1E+2
