"""The pool each worker keeps to PostgreSQL is the one USAGEGRAPH_DATABASE_POOL_SIZE asks
for: a request beyond it pays a new connection, so its size is an operator's decision."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import FIXED_NOW
from usagegraph.app import create_app
from usagegraph.settings import DATABASE_POOL_OVERFLOW, Settings


async def test_the_app_pools_as_many_connections_as_configured(settings: Settings) -> None:
    if settings.backend != "postgresql":
        pytest.skip("SQLite is a file in the process: no pool of server connections to size")
    app = create_app(replace(settings, database_pool_size=7), clock=lambda: FIXED_NOW)
    async with app.router.lifespan_context(app):
        pool: Any = app.state.engine.pool
        assert (pool.size(), pool._max_overflow) == (7, DATABASE_POOL_OVERFLOW)
