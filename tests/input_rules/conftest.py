"""The world of the input-rule tests, built once per test function.

A Hypothesis test runs all its examples in one call of the test function, so they share
this world: values that a write accepts accumulate (which is how the money test reaches the
largest sums stored).
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.input_rules.world import World, build_world


@pytest.fixture
async def world(engine: AsyncEngine, client: httpx.AsyncClient) -> World:
    return await build_world(engine, client)
