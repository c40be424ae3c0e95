"""Persisted queries: Apollo's automatic persisted queries (APQ), and an optional allow-list.

APQ, as Apollo Client, urql and Relay speak it: a request may carry
`extensions.persistedQuery = {"version": 1, "sha256Hash": H}` instead of its query text.
- A hash the server knows runs that document (over GET too, so proxies can cache it).
- An unknown hash answers `PERSISTED_QUERY_NOT_FOUND` (message `PersistedQueryNotFound`, which
  the clients look for); the client then sends the hash with the full text, which is checked
  against the hash and remembered.
The documents live in the process cache, or in Redis when `USAGEGRAPH_REDIS_URL` is set (so
every worker knows a document any of them learned). A remembered document is only text: it
runs with the caller's own credentials and limits like any other.

Allow-list mode (`USAGEGRAPH_GRAPHQL_PERSISTED_ONLY=true`): only the documents of the manifest
(`USAGEGRAPH_GRAPHQL_PERSISTED_MANIFEST`, Apollo's persisted-query manifest, built with the
frontend) run, by hash or by text; nothing is learned from clients, and any other document is
refused with `PERSISTED_QUERY_NOT_ALLOWED`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from strawberry.http import GraphQLRequestData

from usagegraph.cache import Cache, MemoryCache, RedisCache
from usagegraph.errors import ErrorCode, UsageGraphError, invalid
from usagegraph.settings import Settings

APQ_VERSION = 1
# How long a learned document is kept; a client sends it again after a miss anyway.
APQ_TTL_SECONDS = 7 * 24 * 3600
APQ_MEMORY_ENTRIES = 5_000
APQ_REDIS_PREFIX = "usagegraph:apq:"
NOT_FOUND_MESSAGE = "PersistedQueryNotFound"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """The persisted-query manifest cannot be used; the message says why."""


def document_hash(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


@dataclass
class PersistedQueries:
    """Where persisted documents are looked up, learned, or (allow-list) only looked up."""

    # Learned documents (APQ); None in allow-list mode, which learns nothing.
    store: Cache | None
    allow_list: Mapping[str, str] | None = None  # hash -> document, in allow-list mode

    async def resolve(self, request: GraphQLRequestData) -> GraphQLRequestData:
        """The request with its document's text, or `UsageGraphError` when it may not run."""
        requested = _requested_hash(request.extensions)
        if requested is None:
            if self.allow_list is not None and (
                request.query is None or document_hash(request.query) not in self.allow_list
            ):
                raise _not_allowed()
            return request
        if request.query is not None:
            return await self._register(request, requested)
        query = await self._lookup(requested)
        if query is None:
            raise UsageGraphError(ErrorCode.PERSISTED_QUERY_NOT_FOUND, NOT_FOUND_MESSAGE)
        return replace(request, query=query)

    async def _register(self, request: GraphQLRequestData, requested: str) -> GraphQLRequestData:
        assert request.query is not None
        if document_hash(request.query) != requested:
            raise invalid("persistedQuery.sha256Hash is not the SHA-256 of the query")
        if self.store is None:
            if requested not in (self.allow_list or {}):
                raise _not_allowed()
            return request
        await self.store.set(requested, request.query.encode(), APQ_TTL_SECONDS)
        return request

    async def _lookup(self, requested: str) -> str | None:
        if self.store is None:
            return (self.allow_list or {}).get(requested)
        stored = await self.store.get(requested)
        return stored.decode() if stored is not None else None

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()


def _requested_hash(extensions: Mapping[str, Any] | None) -> str | None:
    """The hash of `extensions.persistedQuery`, checked; None when the request has none."""
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    if not isinstance(persisted, dict) or persisted.get("version") != APQ_VERSION:
        raise invalid(f"persistedQuery must be {{version: {APQ_VERSION}, sha256Hash}}")
    requested = persisted.get("sha256Hash")
    if not isinstance(requested, str) or not _SHA256_HEX.match(requested):
        raise invalid("persistedQuery.sha256Hash must be 64 lowercase hex digits")
    return requested


def _not_allowed() -> UsageGraphError:
    return UsageGraphError(
        ErrorCode.PERSISTED_QUERY_NOT_ALLOWED,
        "Only persisted queries run on this server: send the sha256Hash of a registered one",
    )


def create_persisted_queries(settings: Settings) -> PersistedQueries:
    """The store for these settings: the allow-list from the manifest in allow-list mode."""
    limits = settings.graphql
    if limits.persisted_only:
        assert limits.persisted_manifest is not None  # settings require it
        return PersistedQueries(None, allow_list=load_manifest(limits.persisted_manifest))
    if settings.redis_url:
        return PersistedQueries(RedisCache(settings.redis_url, prefix=APQ_REDIS_PREFIX))
    return PersistedQueries(MemoryCache(APQ_MEMORY_ENTRIES))


def load_manifest(path: Path) -> dict[str, str]:
    """hash -> document from an Apollo persisted-query manifest, every id checked."""
    try:
        manifest = json.loads(path.read_text())
        operations = manifest["operations"]
        documents = {operation["id"]: operation["body"] for operation in operations}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path} is not a persisted-query manifest: {exc}") from exc
    for operation_id, body in documents.items():
        if not isinstance(body, str) or document_hash(body) != operation_id:
            raise ManifestError(f"{path}: operation {operation_id!r} is not its body's SHA-256")
    return documents
