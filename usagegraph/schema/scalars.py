"""Custom scalars: exact decimals for money and credits, a faster DateTime parser, and the
storable range of `iso_dates` on every DateTime and Date (wired in through `SCALAR_MAP`)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import NewType

import dateutil.parser
import strawberry
from strawberry.schema.types.base_scalars import isoformat, wrap_parser

from usagegraph.input_ids import MAX_ID, parse_integer
from usagegraph.iso_dates import INSTANT_BOUNDS, OutOfRange, storable_day, storable_instant
from usagegraph.money import canonical_money


def _serialize(value: Decimal) -> str:
    return format(canonical_money(value), "f")


def _parse(value: object) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a decimal number") from exc
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return amount


def _parse_datetime(value: str) -> datetime:
    """ISO 8601 with a UTC offset, in the forms Strawberry's DateTime accepts (dateutil's
    isoparse), in the storable range (`iso_dates`); the value keeps the offset it was given.

    An offset is required (as RFC 3339 requires one): a naive value named no instant, and
    every field either refused it (the writes) or failed comparing it with aware times.
    The standard library parser answers the same for every form it knows and is about 50
    times faster; ingestion parses one date-time per event. dateutil handles the few forms
    it lacks (24:00, a lowercase z), and its error is the one reported.
    """
    try:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = dateutil.parser.isoparse(value)
    except OverflowError as exc:  # 9999-12-31T24:00:00 is in the year 10000
        raise ValueError(f"DateTime values must lie {INSTANT_BOUNDS}") from exc
    if parsed.tzinfo is None:
        raise ValueError("DateTime values must carry a UTC offset (Z or +hh:mm)")
    try:
        return storable_instant(parsed)
    except OutOfRange as exc:
        raise ValueError(f"DateTime values must lie {exc.bounds}") from None


def _parse_date(value: str) -> date:
    """ISO 8601 dates as Strawberry's Date takes them, in the storable range."""
    try:
        return storable_day(date.fromisoformat(value))
    except OutOfRange as exc:
        raise ValueError(f"Date values must lie {exc.bounds}") from None


# GraphQL's Int is 32-bit; byte counts are not. A JSON number (exact up to 2^53 in JS).
BigInt = NewType("BigInt", int)


def _parse_big_int(value: object) -> int:
    """Integers the database can hold (64-bit), as a number or a string of ASCII digits
    (`input_ids.parse_integer`); anything else is the client's error."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not an integer")
    if isinstance(value, str):
        return parse_integer(value)
    if not -MAX_ID - 1 <= value <= MAX_ID:
        raise ValueError("BigInt values must fit in 64 bits")
    return value


SCALAR_MAP = {
    datetime: strawberry.scalar(
        name="DateTime",
        description="Date with time (isoformat)",  # Strawberry's own: the SDL is unchanged
        serialize=isoformat,
        parse_value=wrap_parser(_parse_datetime, "DateTime"),
    ),
    date: strawberry.scalar(
        name="Date",
        description="Date (isoformat)",  # Strawberry's own: the SDL is unchanged
        serialize=isoformat,
        parse_value=wrap_parser(_parse_date, "Date"),
    ),
    BigInt: strawberry.scalar(
        name="BigInt",
        description="An integer beyond GraphQL's 32-bit Int (byte and object counts).",
        serialize=int,
        parse_value=_parse_big_int,
    ),
    Decimal: strawberry.scalar(
        name="Decimal",
        description=(
            "An exact decimal number (money, credits), serialized as a string such as "
            '"3.5" so no client parses it through a binary float.'
        ),
        serialize=_serialize,
        parse_value=_parse,
    ),
}
