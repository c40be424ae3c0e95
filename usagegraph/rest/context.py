"""What a REST shim reads from its request: the caller, the clock and the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from usagegraph.auth.principal import Principal


def principal_of(request: Request) -> Principal:
    """The caller, resolved once by PrincipalMiddleware."""
    return request.state.principal


def now_of(request: Request) -> datetime:
    """The app's current time (a fixed clock in tests)."""
    return request.app.state.clock()


def sessions_of(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.app.state.sessions
