"""What every resolver gets: the caller and a way to the database, built per request."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.types import Info as StrawberryInfo

from usagegraph.auth.principal import Principal


@dataclass(slots=True)
class GraphQLContext:
    """Built once per request by the endpoint; never shared between requests."""

    principal: Principal
    sessions: async_sessionmaker[AsyncSession]
    request_id: str


Info = StrawberryInfo[GraphQLContext, None]
