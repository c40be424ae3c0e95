"""Institution API keys: shown once at creation, stored only as a SHA-256 hash.

The keys are 256-bit random strings, so a fast unsalted hash is safe (nothing to brute-force)
and lets us look a key up by its hash; the final comparison is constant-time all the same.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from usagegraph.db.models import ApiKey

KEY_PREFIX = "ug_live_"
MIN_KEY_LENGTH = 16
_DISPLAY_PREFIX_LENGTH = 12


def generate_api_key() -> str:
    """A new random key; `.` is never in it, so it cannot be mistaken for a JWT."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key_row(institution_id: str, key: str, name: str | None = None) -> ApiKey:
    """The row to store for `key` (which itself is not stored)."""
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"an API key must be at least {MIN_KEY_LENGTH} characters")
    return ApiKey(
        institution_id=institution_id,
        name=name,
        key_hash=hash_api_key(key),
        display_prefix=key[:_DISPLAY_PREFIX_LENGTH],
    )


async def create_api_key(
    session: AsyncSession, institution_id: str, name: str | None = None
) -> tuple[ApiKey, str]:
    """Store a new key for the institution; return the row and the key (shown only now)."""
    key = generate_api_key()
    row = new_api_key_row(institution_id, key, name)
    session.add(row)
    await session.flush()
    return row, key


# Built once: every API-key request runs it, and building costs more than running it. Core
# columns, so it runs on a session or on a request's read connection alike.
_KEYS = ApiKey.__table__
_LIVE_KEY_BY_HASH = select(_KEYS.c.key_hash, _KEYS.c.institution_id).where(
    _KEYS.c.key_hash == bindparam("digest"), _KEYS.c.revoked_at.is_(None)
)


async def institution_for_api_key(reader: AsyncSession | AsyncConnection, key: str) -> str | None:
    """The institution a live key acts for, or None for an unknown or revoked key."""
    return await institution_for_digest(reader, hash_api_key(key))


async def institution_for_digest(reader: AsyncSession | AsyncConnection, digest: str) -> str | None:
    """`institution_for_api_key`, for a key already hashed."""
    row = (await reader.execute(_LIVE_KEY_BY_HASH, {"digest": digest})).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return row.institution_id


# Built once too: every grouped write of POST /v1/events with a key from memory runs it.
_LIVE_DIGESTS = select(_KEYS.c.key_hash).where(
    _KEYS.c.key_hash.in_(bindparam("digests", expanding=True)), _KEYS.c.revoked_at.is_(None)
)


class RevokedKeys(Exception):
    """Keys a write found no longer live (`require_live_digests`), to refuse their requests."""

    def __init__(self, digests: frozenset[str]) -> None:
        super().__init__(f"{len(digests)} API key(s) revoked")
        self.digests = digests


async def require_live_digests(session: AsyncSession, digests: frozenset[str]) -> None:
    """Raise RevokedKeys with those of `digests` that are unknown or revoked now; one
    statement, inside the caller's transaction (the write that trusted them)."""
    if not digests:
        return
    live = set(await session.scalars(_LIVE_DIGESTS, {"digests": sorted(digests)}))
    if len(live) < len(digests):
        raise RevokedKeys(frozenset(digests - live))
