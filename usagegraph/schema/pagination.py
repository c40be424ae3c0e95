"""Relay pagination: opaque cursors and the page-size rule (SQL does the paging).

A cursor comes back from the client, so what it holds is input like any other: each kind of
cursor is decoded into typed keys by the id and date-time rules (`input_ids`, `iso_dates`),
and one that does not decode is INVALID_REQUEST, never a key handed to a query unchecked.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

import strawberry
from strawberry import relay

from usagegraph.errors import UsageGraphError, invalid
from usagegraph.input_ids import is_id, is_institution_id
from usagegraph.iso_dates import parse_date, storable_instant

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
T = TypeVar("T")

FirstArgument = Annotated[
    int | None, strawberry.argument(description="Page size (default 20, at most 100).")
]
AfterArgument = Annotated[
    str | None, strawberry.argument(description="The cursor to continue after.")
]


def page_size(first: int | None) -> int:
    """`first` defaults to 20 and may not exceed 100 (the hard cap on any connection)."""
    if first is None:
        return DEFAULT_PAGE_SIZE
    if first < 0 or first > MAX_PAGE_SIZE:
        raise invalid(f"first must be between 0 and {MAX_PAGE_SIZE}")
    return first


def encode_cursor(*key: Any) -> str:
    """An opaque cursor for a row's sort key."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def decode_cursor(cursor: str | None, length: int) -> list[Any] | None:
    """The sort key inside `cursor`; a cursor we did not make is a client error."""
    if cursor is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise _not_a_cursor() from exc
    if not isinstance(key, list) or len(key) != length:
        raise _not_a_cursor()
    return key


def _not_a_cursor() -> UsageGraphError:
    return invalid("after is not a valid cursor")


def _cursor_id(value: object) -> int:
    if not is_id(value):
        raise _not_a_cursor()
    assert isinstance(value, int)
    return value


def moment_id_cursor(cursor: str | None) -> tuple[datetime, int] | tuple[None, None]:
    """The (time, id) key of a newest-first list (ledger entries, usage events); (None, None)
    without a cursor."""
    key = decode_cursor(cursor, 2)
    if key is None:
        return None, None
    moment, row_id = key
    try:
        parsed = datetime.fromisoformat(moment) if isinstance(moment, str) else None
        if parsed is None or parsed.tzinfo is None:
            raise ValueError("not an aware ISO 8601 date-time")
        return storable_instant(parsed), _cursor_id(row_id)
    except ValueError as exc:
        raise _not_a_cursor() from exc


def id_cursor(cursor: str | None) -> int | None:
    """The integer id key of a list ordered by id (an institution's members)."""
    key = decode_cursor(cursor, 1)
    return None if key is None else _cursor_id(key[0])


def institution_cursor(cursor: str | None) -> str | None:
    """The institution id key of the institutions list."""
    key = decode_cursor(cursor, 1)
    if key is None:
        return None
    if not is_institution_id(key[0]):
        raise _not_a_cursor()
    return key[0]


def day_cursor(cursor: str | None) -> date | None:
    """The day key of a newest-first list of days (a bucket's snapshots)."""
    key = decode_cursor(cursor, 1)
    if key is None:
        return None
    if not isinstance(key[0], str):
        raise _not_a_cursor()
    try:
        return parse_date(key[0])
    except ValueError as exc:
        raise _not_a_cursor() from exc


def page_info(
    rows: Sequence[T], size: int, cursor_of: Callable[[T], str], *, after: str | None
) -> relay.PageInfo:
    """Page info for `rows` fetched with one extra row beyond `size`."""
    return LazyPageInfo(
        rows[:size], has_next_page=len(rows) > size, after=after, cursor_of=cursor_of
    )


class LazyPageInfo(relay.PageInfo):
    """Relay page info whose start and end cursors are encoded only if the query selects
    them: a nested read of 100 connections that asks for none would otherwise encode 200.
    To Strawberry this is a `PageInfo`; only where the cursors come from differs."""

    def __init__(
        self,
        shown: Sequence[Any],
        *,
        has_next_page: bool,
        after: str | None,
        cursor_of: Callable[[Any], str],
    ) -> None:
        self.has_next_page = has_next_page
        self.has_previous_page = after is not None
        self._shown = shown
        self._cursor_of = cursor_of

    @property  # type: ignore[override]
    def start_cursor(self) -> str | None:
        return self._cursor_of(self._shown[0]) if self._shown else None

    @property  # type: ignore[override]
    def end_cursor(self) -> str | None:
        return self._cursor_of(self._shown[-1]) if self._shown else None
