"""Which institution an API key acts for, remembered per process for `POST /v1/events`.

A key's institution never changes, only whether the key is still live. Reading the key on
every ingestion request cost the workers a statement each (about a quarter of their CPU for
single events). The events route therefore takes the institution of a key this process has
already verified from here, and leaves the liveness check to the write: the grouped
transaction that writes the request's events reads every unchecked key of the group in one
statement and refuses the requests of a revoked key with 401 (resolvers/usage_group_commit.py).
A revoked key is thus refused from the first request after the revocation, as everywhere
else; only when its 401 comes differs: after the request's own 4xx checks (media type, size,
decoding), where a key read up front answers 401 first.

Only keys the database has confirmed are remembered, so a caller cannot fill this with made-up
keys; the oldest entry goes when it is full.
"""

from __future__ import annotations

# Far more keys than one deployment's ingesting clients; an entry is two short strings.
DEFAULT_CAPACITY = 10_000


class KnownKeys:
    """API key digests this process has seen live, and the institution each acts for."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._institutions: dict[str, str] = {}

    def institution_of(self, digest: str) -> str | None:
        return self._institutions.get(digest)

    def remember(self, digest: str, institution_id: str) -> None:
        if digest not in self._institutions and len(self._institutions) >= self.capacity:
            del self._institutions[next(iter(self._institutions))]  # the oldest
        self._institutions[digest] = institution_id

    def forget(self, digests: set[str] | frozenset[str]) -> None:
        """Revoked keys: the next request with one reads it again (and is refused)."""
        for digest in digests:
            self._institutions.pop(digest, None)
