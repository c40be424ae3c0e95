"""What every resolver gets: the caller, the clock, the database, this request's loaders and
the deployment's settings (the limits writes apply)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.types import Info as StrawberryInfo

from usagegraph.auth.principal import Principal
from usagegraph.cache import Cache
from usagegraph.datasources.loaders import Loaders
from usagegraph.settings import Settings


@dataclass(slots=True)
class GraphQLContext:
    """Built once per request by the endpoint; never shared between requests."""

    principal: Principal
    sessions: async_sessionmaker[AsyncSession]
    request_id: str
    now: datetime
    loaders: Loaders
    cache: Cache | None  # the usage-history response cache (shared with the REST shim)
    settings: Settings


Info = StrawberryInfo[GraphQLContext, None]
