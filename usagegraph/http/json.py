"""JSON bodies for the REST shims: Decimals as exact JSON numbers, times as ISO 8601 `Z`."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response


def decimal_number(value: Decimal) -> orjson.Fragment:
    """An exact JSON number (`3.5`, `12`), never routed through a binary float.

    The same digits as `canonical_money` (no trailing zeros, no exponent), by trimming the
    fixed-point text: a 5,000-row extract renders some 20,000 of them.
    """
    if not value.is_finite():
        raise TypeError(f"{value} is not a JSON number")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return orjson.Fragment(text)


def iso_timestamp(moment: datetime, *, milliseconds: bool = True) -> str:
    """`2026-05-01T00:00:00.000Z` (seed 000's form), or `2026-05-01T00:00:00Z` (seed 001's)."""
    moment = moment.astimezone(UTC)
    # %Y does not zero-pad years before 1000 on every platform; spell the year out.
    text = f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%S")
    return text + ("Z" if not milliseconds else f".{moment.microsecond // 1000:03d}Z")


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_number(value)
    if isinstance(value, datetime):
        return iso_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


class JSON(Response):
    """A JSON response rendered with `dumps`."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
