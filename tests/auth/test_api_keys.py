"""API keys are stored only as hashes and verified against them."""

from __future__ import annotations

import hashlib

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import add_institution
from usagegraph.auth.api_keys import create_api_key, institution_for_api_key
from usagegraph.db.engine import session_factory
from usagegraph.db.models import ApiKey, utcnow

ACME = "aaaaaaaaaaaaaaaaaaaaaaaa"
OTHER = "bbbbbbbbbbbbbbbbbbbbbbbb"


async def test_created_key_is_stored_only_as_its_hash(engine: AsyncEngine) -> None:
    await add_institution(engine, institution_id=ACME, name="Acme")
    async with session_factory(engine)() as session, session.begin():
        _row, key = await create_api_key(session, ACME, "reporting")
    async with session_factory(engine)() as session:
        stored = (await session.scalars(select(ApiKey))).one()
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    columns = [getattr(stored, c.key) for c in ApiKey.__table__.columns]
    assert key not in [str(value) for value in columns]
    assert key.startswith(stored.display_prefix)


async def test_key_identifies_only_its_institution(engine: AsyncEngine) -> None:
    await add_institution(engine, institution_id=ACME, name="Acme")
    await add_institution(engine, institution_id=OTHER, name="Other")
    async with session_factory(engine)() as session, session.begin():
        _row, acme_key = await create_api_key(session, ACME)
        _row, other_key = await create_api_key(session, OTHER)
    async with session_factory(engine)() as session:
        assert await institution_for_api_key(session, acme_key) == ACME
        assert await institution_for_api_key(session, other_key) == OTHER
        assert await institution_for_api_key(session, acme_key + "x") is None
        assert await institution_for_api_key(session, "") is None


async def test_revoked_key_is_refused(engine: AsyncEngine) -> None:
    await add_institution(engine, institution_id=ACME, name="Acme")
    async with session_factory(engine)() as session, session.begin():
        _row, key = await create_api_key(session, ACME)
    async with session_factory(engine)() as session, session.begin():
        await session.execute(update(ApiKey).values(revoked_at=utcnow()))
    async with session_factory(engine)() as session:
        assert await institution_for_api_key(session, key) is None
