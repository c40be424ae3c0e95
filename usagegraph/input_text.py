"""Text as clients send it: UTF-8 bytes, and JSON as RFC 8259 defines it.

A request body or query string is bytes; what is not UTF-8 is refused rather than decoded
with replacement characters (a `%FF` inside a GraphQL string would otherwise reach a query
as U+FFFD, a value the client never sent). JSON is parsed strictly (orjson, as every REST
body is): no byte order mark, no NaN or Infinity, no lone surrogate escape such as
"\\ud800" (no database can store one: PostgreSQL's driver fails on it), nesting at most 1024
deep (the standard library's parser recurses until Python's stack overflows).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

# No database stores U+0000 in text (PostgreSQL refuses it in `text` and in JSON), so no
# text field of any request may hold it: refused where each kind of input is checked.
NUL = "\x00"
NUL_REFUSED = "may not contain the NUL character (U+0000)"


class NotUtf8(ValueError):
    """The bytes are not UTF-8 text."""


class NotJson(ValueError):
    """The text is not one JSON value by RFC 8259."""


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def query_string_is_utf8(raw: bytes) -> bool:
    """Whether a raw query string is UTF-8 once percent-decoded. The whole string at once is
    enough: `&`, `=` and `+` are ASCII, so no UTF-8 sequence spans a separator."""
    return is_utf8(unquote_to_bytes(raw))


def json_value(data: str | bytes) -> Any:
    """The JSON value of `data`; NotUtf8 or NotJson when it is neither."""
    if isinstance(data, bytes) and not is_utf8(data):
        raise NotUtf8("the text is not valid UTF-8")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise NotJson(str(exc)) from exc
