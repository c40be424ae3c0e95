"""A bounded map that forgets its least recently used entry: the per-process caches of the
GraphQL path (validation, shape and cost checks, compiled plans and statements) keep what a
client repeats, and a stream of distinct queries cannot grow memory without end."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RecentlyUsed(Generic[K, V]):
    """At most `capacity` entries; a read or a write makes its entry the most recent."""

    def __init__(self, capacity: int) -> None:
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, key: K) -> bool:
        if key in self._entries:
            self._entries.move_to_end(key)
            return True
        return False

    def get(self, key: K) -> V | None:
        """The kept value, or None."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def keep(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The kept value (None included), else `make()`'s, kept."""
        if key in self:
            return self._entries[key]
        value = make()
        self.keep(key, value)
        return value

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
