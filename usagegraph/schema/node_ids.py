"""The database keys inside global ids (`node(id:)`), by the id rules of `input_ids`.

A global id is base64 of `Type:key`; the key is whatever the client wrote, so it is parsed
like any other id input: one that names nothing (not ASCII digits, beyond 64 bits, not an
institution's or a bucket's pattern, a day outside the storable range) resolves to null
without a lookup, never to a database error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import date
from typing import TypeVar

from usagegraph.input_ids import id_or_none, is_bucket_id, is_institution_id
from usagegraph.iso_dates import parse_date

K = TypeVar("K")
R = TypeVar("R")


def integer_keys(node_ids: Iterable[str]) -> list[int | None]:
    """Users, ledger entries, usage events: the id, or None."""
    return [id_or_none(node_id) for node_id in node_ids]


def institution_keys(node_ids: Iterable[str]) -> list[str | None]:
    return [node_id if is_institution_id(node_id) else None for node_id in node_ids]


def bucket_keys(node_ids: Iterable[str]) -> list[str | None]:
    return [node_id if is_bucket_id(node_id) else None for node_id in node_ids]


def membership_keys(node_ids: Iterable[str]) -> list[tuple[int, str] | None]:
    """`user:institution` ids: both parts must be ids."""
    keys: list[tuple[int, str] | None] = []
    for node_id in node_ids:
        user_part, _, institution_id = node_id.partition(":")
        user_id = id_or_none(user_part)
        valid = user_id is not None and is_institution_id(institution_id)
        keys.append((user_id, institution_id) if valid and user_id is not None else None)
    return keys


def snapshot_key(node_id: str) -> tuple[str, date] | None:
    """`bucket:YYYY-MM-DD` ids (the bucket id holds no colon; the last one splits)."""
    bucket_id, _, day = node_id.rpartition(":")
    if not is_bucket_id(bucket_id):
        return None
    try:
        return bucket_id, parse_date(day)
    except ValueError:
        return None


async def load_keys(
    keys: Sequence[K | None], load_many: Callable[[list[K]], Awaitable[Sequence[R | None]]]
) -> list[R | None]:
    """What `load_many` finds for each key, in order; None for the keys that name nothing,
    which are never looked up."""
    wanted = [key for key in keys if key is not None]
    found = iter(await load_many(wanted)) if wanted else iter(())
    return [next(found) if key is not None else None for key in keys]
