"""Column types that behave the same on SQLite and PostgreSQL.

SQLite has neither a decimal nor a time-zone-aware timestamp type; these decorators make both
backends store and return the same Python values, so no code above the models needs to know
which database it got.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine

# The largest integer either database stores (BIGINT), and so the largest any API accepts.
MAX_BIGINT = 2**63 - 1
MONEY_SCALE = 6
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_SCALE_FACTOR = 10**MONEY_SCALE


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


class Money(TypeDecorator[Decimal]):
    """Exact decimal amounts: NUMERIC on PostgreSQL, scaled integers (micro-units) on SQLite.

    SQLite's NUMERIC affinity would store binary floats; integers keep SUM() exact there.
    """

    impl = Numeric(20, MONEY_SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(20, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = to_money(value)
        if dialect.name == "sqlite":
            return int(amount * _SCALE_FACTOR)
        return amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return canonical_money(Decimal(int(value)) / _SCALE_FACTOR)
        return canonical_money(Decimal(value))

    @property
    def python_type(self) -> type[Decimal]:
        return Decimal


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps that are always aware and in UTC, whatever the backend stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @property
    def python_type(self) -> type[datetime]:
        return datetime
