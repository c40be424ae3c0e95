"""Copying a resolver's result dataclass into the Strawberry type that shows it."""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any


def fields_of(result: Any) -> dict[str, Any]:
    """The result's fields by name, values as they are.

    Not `dataclasses.asdict`: that deep-copies every value (metadata dicts included), and
    for a page of 50 members with 10 ledger entries each the copying cost more than the SQL.
    """
    return {name: getattr(result, name) for name in _field_names(type(result))}


@cache
def _field_names(shape: type) -> tuple[str, ...]:
    """Looked up once per shape: `dataclasses.fields` builds a tuple on every call, and a
    page of 500 events called it 500 times."""
    return tuple(field.name for field in dataclasses.fields(shape))
