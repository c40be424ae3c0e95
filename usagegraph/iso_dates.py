"""Strict parsing of the ISO 8601 dates and times the APIs and the importer accept, and the
one range every date and date-time must lie in.

The storable range: instants from 1970-01-01T00:00:00Z up to, not including,
9999-01-01T00:00:00Z (the years 1970 to 9998 in UTC); days from 1970-01-01 to 9998-12-31.
Python's datetime stops at the years 1 and 9999, so a value near either end overflows as soon
as it is converted to UTC or a report adds a day, a week or a month to it (a 500 before this
rule); PostgreSQL's driver stores the very first and last instants as `-infinity` and
`infinity`. Usage, ledgers and snapshots began long after 1970, and a year of headroom below
9999 leaves every period arithmetic (the month or year after the last one) inside datetime.
Every parser of client input applies the range: these functions (REST shims and the
importer), the GraphQL `DateTime` and `Date` scalars and the pagination cursors. A value
outside it is `OutOfRange`, a `ValueError`, so each caller's malformed-value answer
(INVALID_REQUEST, an importer line error) covers it too.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_DATETIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?$"
)

EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
END_OF_INSTANTS = datetime(9999, 1, 1, tzinfo=UTC)  # exclusive
EARLIEST_DAY = EARLIEST_INSTANT.date()
LATEST_DAY = date(9998, 12, 31)
INSTANT_BOUNDS = "between 1970-01-01T00:00:00Z and 9998-12-31T23:59:59Z"
DAY_BOUNDS = "between 1970-01-01 and 9998-12-31"


class OutOfRange(ValueError):
    """A well-formed date or date-time outside the storable range; `bounds` words the range
    for a message ("<field> must lie <bounds>")."""

    def __init__(self, bounds: str) -> None:
        super().__init__(f"must lie {bounds}")
        self.bounds = bounds


def storable_instant(moment: datetime) -> datetime:
    """`moment` itself when it lies in the storable range (a naive one is read as UTC).

    Raises OutOfRange otherwise, also when the conversion to UTC itself overflows
    (0001-01-01T00:00:00+05:00 is a moment of the year 0).
    """
    try:
        utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise OutOfRange(INSTANT_BOUNDS) from None
    if not EARLIEST_INSTANT <= utc < END_OF_INSTANTS:
        raise OutOfRange(INSTANT_BOUNDS)
    return moment


def storable_day(day: date) -> date:
    """`day` itself when it lies in the storable range; OutOfRange otherwise."""
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise OutOfRange(DAY_BOUNDS)
    return day


def parse_date(value: str) -> date:
    """`YYYY-MM-DD` only, in the storable range; a day that does not exist (2024-02-30) is
    malformed."""
    if not _DATE.match(value):
        raise ValueError(f"{value!r} is not a YYYY-MM-DD date")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date") from exc
    return storable_day(day)


def parse_datetime(value: str) -> datetime:
    """An ISO 8601 timestamp in the storable range, returned in UTC; one without an offset is
    taken as UTC."""
    if not _DATETIME.match(value):
        raise ValueError(f"{value!r} is not an ISO 8601 date-time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date-time") from exc
    storable_instant(parsed)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_moment(value: str) -> datetime:
    """An ISO 8601 date-time, or a bare `YYYY-MM-DD` meaning 00:00 UTC that day (what the
    REST APIs take wherever a date-time is expected), in UTC and in the storable range."""
    if _DATE.match(value):
        return datetime.combine(parse_date(value), time(0), tzinfo=UTC)
    return parse_datetime(value)
