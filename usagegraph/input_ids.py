"""Ids and integers as clients send them: one rule for every API and the settings.

An integer id (users, usage events, ledger entries, reservations, API keys) is written in
ASCII digits only and lies in 1 .. 2^63 - 1, the databases' BIGINT. `str.isdigit` and `int()`
are not that rule: both take other scripts' digits (`int("٣")` is 3), and `int()` also takes
"+3", " 3" and "3_0". An id outside the range names nothing, so a route answers as it does for
an unknown id (null, 404, 401 for a token's subject) or INVALID_REQUEST where it documents a
refusal; it never reaches a query, where PostgreSQL's driver would fail on it.

String ids name nothing unless they match their pattern too: institutions are 24 lowercase
hex characters, buckets `^[A-Za-z0-9_-]{1,64}$`.

Integers in query strings and settings (limits, offsets, windows) are written the same way,
with an optional leading `-`, and fit in 64 bits; each route then checks its own range.
"""

from __future__ import annotations

import re

# The largest integer either database stores (BIGINT), and so the largest any API accepts.
MAX_ID = 2**63 - 1
MIN_INTEGER = -MAX_ID - 1
# What an institution id and a bucket id look like (the models' columns use these too).
INSTITUTION_ID_PATTERN = r"^[0-9a-f]{24}$"
BUCKET_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_DIGITS = re.compile(r"[0-9]+")
# 19 digits hold every 64-bit integer; longer text is refused before int() works on it.
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_INSTITUTION_ID = re.compile(INSTITUTION_ID_PATTERN)
_BUCKET_ID = re.compile(BUCKET_ID_PATTERN)


def ascii_digits(text: str) -> bool:
    """Whether `text` is one or more ASCII digits and nothing else."""
    return _DIGITS.fullmatch(text) is not None


def parse_integer(text: str) -> int:
    """A 64-bit integer written as ASCII digits with an optional leading `-`.

    ValueError for anything else: "+7", " 7", "7.0", "1e3", "٣", and numbers beyond 64 bits.
    """
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"{text[:40]!r} is not an integer")
    number = int(text)
    if not MIN_INTEGER <= number <= MAX_ID:
        raise ValueError(f"{text!r} does not fit in 64 bits")
    return number


def is_id(value: object) -> bool:
    """Whether `value` is an int that can be an id (1 .. MAX_ID); bools are not ints here."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def parse_id(text: str) -> int:
    """The id `text` names (ASCII digits, 1 .. MAX_ID); ValueError for anything else."""
    if len(text) > 19 or not ascii_digits(text):
        raise ValueError(f"{text[:40]!r} is not an id")
    number = int(text)
    if not is_id(number):
        raise ValueError(f"{text!r} is not an id")
    return number


def id_or_none(text: str) -> int | None:
    """The id `text` names, or None when it names none (for lookups that answer null)."""
    try:
        return parse_id(text)
    except ValueError:
        return None


def is_institution_id(value: object) -> bool:
    """Whether `value` can be an institution's id (24 lowercase hex characters)."""
    return isinstance(value, str) and _INSTITUTION_ID.fullmatch(value) is not None


def is_bucket_id(value: object) -> bool:
    """Whether `value` can be a client bucket's id."""
    return isinstance(value, str) and _BUCKET_ID.fullmatch(value) is not None
