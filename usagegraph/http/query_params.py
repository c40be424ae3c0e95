"""A REST route's query parameters, read by one set of rules and worded per API family.

The rules are the same on every route: integers are strict 64-bit ASCII integers
(`input_ids.parse_integer`), dates and date-times are ISO 8601 within the supported years
(`iso_dates`). What differs is how each documented API words a refusal, so each shim passes
its `Wording`; every refusal is a 400 `INVALID_REQUEST` in that family's envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import TypeVar

from starlette.requests import Request

from usagegraph.errors import invalid
from usagegraph.input_ids import parse_integer
from usagegraph.iso_dates import OutOfRange, parse_date, parse_moment

_Choice = TypeVar("_Choice", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class Wording:
    """An API family's refusals; `{name}` is the parameter, `{problem}` the range rule broken.

    `repeated` None means a repeated parameter is not refused: its last value counts (as
    Starlette reads it). `blank_is_absent` reads `?type=` as not given.
    """

    not_integer: str
    bad_date: str = "{name} must be a date"
    bad_moment: str = "{name} must be a date-time"
    bad_choice: str = "{name} must be one of {allowed}"
    out_of_range: str = "{name} {problem}"
    repeated: str | None = None
    blank_is_absent: bool = False


class QueryParameters:
    """The query parameters of one request, read under one family's wording."""

    def __init__(self, request: Request, wording: Wording) -> None:
        self._params = request.query_params
        self._wording = wording

    def text(self, name: str) -> str | None:
        """The parameter's value; None when absent (or blank, where blank means absent)."""
        values = self._params.getlist(name)
        if not values:
            return None
        if len(values) > 1 and self._wording.repeated is not None:
            raise invalid(self._wording.repeated.format(name=name))
        value = values[-1]
        if self._wording.blank_is_absent:
            value = value.strip()
            return value or None
        return value

    def integer(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return parse_integer(value)
        except ValueError:
            raise invalid(self._wording.not_integer.format(name=name)) from None

    def date(self, name: str) -> date | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return parse_date(value)
        except OutOfRange as exc:
            raise invalid(self._wording.out_of_range.format(name=name, problem=exc)) from None
        except ValueError:
            raise invalid(self._wording.bad_date.format(name=name)) from None

    def moment(self, name: str) -> datetime | None:
        """An ISO 8601 date-time (no offset = UTC), or a date meaning 00:00 UTC that day."""
        value = self.text(name)
        if value is None:
            return None
        try:
            return parse_moment(value)
        except OutOfRange as exc:
            raise invalid(self._wording.out_of_range.format(name=name, problem=exc)) from None
        except ValueError:
            raise invalid(self._wording.bad_moment.format(name=name)) from None

    def choice(self, name: str, choices: type[_Choice]) -> _Choice | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return choices(value)
        except ValueError:
            allowed = ", ".join(choice.value for choice in choices)
            raise invalid(self._wording.bad_choice.format(name=name, allowed=allowed)) from None
