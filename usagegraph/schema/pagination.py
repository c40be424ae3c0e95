"""Relay pagination: opaque cursors and the page-size rule (SQL does the paging)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import strawberry
from strawberry import relay

from usagegraph.errors import invalid

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
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise invalid("after is not a valid cursor") from exc
    if not isinstance(key, list) or len(key) != length:
        raise invalid("after is not a valid cursor")
    return key


def page_info(
    rows: Sequence[T], size: int, cursor_of: Callable[[T], str], *, after: str | None
) -> relay.PageInfo:
    """Page info for `rows` fetched with one extra row beyond `size`."""
    shown = rows[:size]
    return relay.PageInfo(
        has_next_page=len(rows) > size,
        has_previous_page=after is not None,
        start_cursor=cursor_of(shown[0]) if shown else None,
        end_cursor=cursor_of(shown[-1]) if shown else None,
    )
