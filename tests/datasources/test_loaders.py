"""A request's loaders are emptied once its answer is sent: what the request loaded is freed
by reference counting, not left as cyclic garbage for the collector's full passes."""

from __future__ import annotations

import gc

import httpx
import pytest
from aiodataloader import DataLoader
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import with_read_path
from tests.schema.graph import graphql
from tests.schema.test_round_trips import NESTED
from tests.schema.test_wallet import ACME, _institution_with_members
from usagegraph.auth.principal import Principal
from usagegraph.datasources.loaders import DataLoader as RequestLoader
from usagegraph.datasources.loaders import Loaders
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Base
from usagegraph.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The resolver path: the one that loads rows and ORM objects through the loaders."""
    return with_read_path(settings, False)


async def test_a_read_leaves_nothing_it_loaded_to_the_cyclic_garbage_collector(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    caller = await _institution_with_members(engine, 20)
    await graphql(client, NESTED, user_id=caller, variables={"id": ACME})  # warm: plans, caches
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a pass finds unreachable is kept, to be looked at
    try:
        body = await graphql(client, NESTED, user_id=caller, variables={"id": ACME})
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, Base | DataLoader)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    members = body["data"]["institution"]["members"]["edges"]
    assert len(members) == 20
    assert all(m["node"]["user"]["ledger"]["edges"] for m in members)
    assert left == []


async def test_a_loader_asked_after_the_close_loads_afresh(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    """Closing empties the loaders rather than breaking them: work that runs after the
    answer (none does today) would read again instead of failing."""
    caller = await _institution_with_members(engine, 1)
    loaders = Loaders(session_factory(engine), Principal.for_user(caller, "super", frozenset(), {}))
    before = await loaders.user.load(caller)
    await loaders.close()
    assert "user" not in vars(loaders)
    after = await loaders.user.load(caller)
    assert before is not None
    assert after is not None
    assert after is not before
    assert after.email == "root@ug.io"


async def test_a_loader_knows_only_the_answers_it_already_holds() -> None:
    """`known` is what lets a field answer without awaiting: a primed or loaded value, never
    a pending one, a failure or a key nobody asked for."""

    async def batch(keys: list[int]) -> list[object]:
        return [ValueError("no") if key == 3 else f"user {key}" for key in keys]

    loader = RequestLoader(batch)
    loader.prime(1, "primed")
    pending = loader.load(2)
    failing = loader.load(3)
    assert loader.known(1) == "primed"
    assert loader.known(2) is None  # asked for, not answered yet
    assert await pending == "user 2"
    assert loader.known(2) == "user 2"
    with pytest.raises(ValueError, match="no"):
        await failing
    assert loader.known(3) is None
    assert loader.known(4) is None
