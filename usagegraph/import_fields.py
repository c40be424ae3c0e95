"""Typed, strict reading of one NDJSON import object, with messages that name the field.

JSON has few types and migrations are where typos hide, so unknown fields, booleans posing as
integers and money with too many decimals are all refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from usagegraph.input_ids import MAX_ID as MAX_BIGINT
from usagegraph.input_ids import MIN_INTEGER
from usagegraph.input_text import NUL, NUL_REFUSED
from usagegraph.iso_dates import parse_date, parse_datetime
from usagegraph.money import MoneyPrecisionError, to_money


class FieldError(ValueError):
    """One field of one line is unusable; the message is shown with the line number."""


class FieldReader:
    """Reads fields of one object; refuses fields the kind does not know."""

    def __init__(self, obj: dict[str, Any], allowed: Iterable[str]) -> None:
        allowed_set = {"kind", *allowed}
        unknown = sorted(set(obj) - allowed_set)
        if unknown:
            raise FieldError(f"unknown field(s) {', '.join(unknown)}")
        self.obj = obj

    def _present(self, name: str) -> bool:
        return self.obj.get(name) is not None

    def required(self, name: str) -> Any:
        if not self._present(name):
            raise FieldError(f"{name} is required")
        return self.obj[name]

    def string(self, name: str, *, max_length: int, required: bool = False) -> str | None:
        if not self._present(name):
            if required:
                raise FieldError(f"{name} is required")
            return None
        value = self.obj[name]
        if not isinstance(value, str):
            raise FieldError(f"{name} must be a string")
        if len(value) > max_length:
            raise FieldError(f"{name} is longer than {max_length} characters")
        if NUL in value:
            raise FieldError(f"{name} {NUL_REFUSED}")
        return value

    def required_string(self, name: str, *, max_length: int) -> str:
        value = self.string(name, max_length=max_length, required=True)
        assert value is not None
        if not value:
            raise FieldError(f"{name} must not be empty")
        return value

    def integer(self, name: str, *, minimum: int | None = None) -> int | None:
        if not self._present(name):
            return None
        value = self.obj[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(f"{name} must be an integer")
        if not MIN_INTEGER <= value <= MAX_BIGINT:  # the id and integer rule of `input_ids`
            raise FieldError(f"{name} must fit in 64 bits")
        if minimum is not None and value < minimum:
            raise FieldError(f"{name} must be at least {minimum}")
        return value

    def required_integer(self, name: str, *, minimum: int | None = None) -> int:
        value = self.integer(name, minimum=minimum)
        if value is None:
            raise FieldError(f"{name} is required")
        return value

    def money(self, name: str, *, non_negative: bool = True) -> Decimal | None:
        """A decimal given as a JSON string or number (numbers are parsed exactly)."""
        if not self._present(name):
            return None
        value = self.obj[name]
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            raise FieldError(f"{name} must be a decimal number or a string holding one")
        try:
            amount = to_money(value)
        except (MoneyPrecisionError, ArithmeticError) as exc:
            raise FieldError(f"{name}: {exc}") from exc
        if non_negative and amount < 0:
            raise FieldError(f"{name} must not be negative")
        return amount

    def boolean(self, name: str, *, default: bool) -> bool:
        if not self._present(name):
            return default
        value = self.obj[name]
        if not isinstance(value, bool):
            raise FieldError(f"{name} must be true or false")
        return value

    def timestamp(self, name: str) -> datetime | None:
        if not self._present(name):
            return None
        value = self.obj[name]
        if not isinstance(value, str):
            raise FieldError(f"{name} must be an ISO 8601 string")
        try:
            return parse_datetime(value)
        except ValueError as exc:
            raise FieldError(f"{name}: {exc}") from exc

    def required_timestamp(self, name: str) -> datetime:
        value = self.timestamp(name)
        if value is None:
            raise FieldError(f"{name} is required")
        return value

    def required_date(self, name: str) -> date:
        value = self.required(name)
        if not isinstance(value, str):
            raise FieldError(f"{name} must be a YYYY-MM-DD string")
        try:
            return parse_date(value)
        except ValueError as exc:
            raise FieldError(f"{name}: {exc}") from exc

    def choice(self, name: str, choices: tuple[str, ...], *, default: str) -> str:
        value = self.string(name, max_length=64) or default
        if value not in choices:
            raise FieldError(f"{name} must be one of {', '.join(choices)}")
        return value

    def mapping(self, name: str) -> dict[str, Any]:
        if not self._present(name):
            return {}
        value = self.obj[name]
        if not isinstance(value, dict):
            raise FieldError(f"{name} must be an object")
        return value


def count_mapping(value: dict[str, Any], name: str) -> dict[str, int]:
    """{key: non-negative integer}, as snapshot records are."""
    for key, count in value.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise FieldError(f"{name}.{key} must be a non-negative integer")
    return dict(value)
