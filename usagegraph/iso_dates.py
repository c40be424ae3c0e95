"""Strict parsing of the ISO 8601 dates and times the APIs and the importer accept."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_date(value: str) -> date:
    """`YYYY-MM-DD` only; a day that does not exist (2024-02-30) is malformed."""
    if not _DATE.match(value):
        raise ValueError(f"{value!r} is not a YYYY-MM-DD date")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date") from exc


def parse_datetime(value: str) -> datetime:
    """An ISO 8601 timestamp, returned in UTC; one without an offset is taken as UTC."""
    if not _DATETIME.match(value):
        raise ValueError(f"{value!r} is not an ISO 8601 date-time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date-time") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
