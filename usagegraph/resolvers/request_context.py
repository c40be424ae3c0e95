"""One context per request, for the graph and the REST shims alike.

The caller (resolved once by the principal middleware), the moment the request is judged at,
the database, this request's loaders, the shared cache, the request id and the settings.
It is built on first use and kept on the request, so a REST route and a GraphQL field of the
same request would see the same caller, clock and loaders; it is never shared between
requests (the loaders cache what this caller may read).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from usagegraph.auth.middleware import CALLER_USER_STATE
from usagegraph.auth.principal import Principal
from usagegraph.cache import Cache
from usagegraph.datasources.loaders import Loaders
from usagegraph.datasources.read_connection import ReadConnection
from usagegraph.http.request_resources import RESOURCES_KEY, request_reads
from usagegraph.settings import Settings

_STATE_KEY = "context"


@dataclass(slots=True)
class RequestContext:
    """What every rule of one request reads."""

    principal: Principal
    sessions: async_sessionmaker[AsyncSession]
    request_id: str
    now: datetime
    loaders: Loaders
    cache: Cache | None  # the usage-history response cache (shared by both APIs)
    settings: Settings

    def read_session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session for rules that only read: on the request's autocommit read connection
        (shared with the loaders, no BEGIN/ROLLBACK round trips), else a session of its own.
        Writes keep `sessions`, whose transaction they need."""
        return self.loaders.read_session()


def context_of(connection: HTTPConnection) -> RequestContext:
    """This request's context, built the first time it is asked for."""
    request_state: Any = connection.state
    context = getattr(request_state, _STATE_KEY, None)
    if context is None:
        app_state: Any = connection.app.state
        principal = request_state.principal
        # Released at the end of the request by http.request_resources.
        reads = request_reads(connection.scope.setdefault("state", {}), app_state)
        if reads is None:
            reads = ReadConnection(app_state.engine)
            connection.scope["state"].setdefault(RESOURCES_KEY, []).append(reads)
        loaders = Loaders(
            app_state.sessions,
            principal,
            reads,
            caller_user=getattr(request_state, CALLER_USER_STATE, None),
        )
        # Emptied at the end of the request by http.request_resources (see Loaders.close).
        connection.scope["state"].setdefault(RESOURCES_KEY, []).append(loaders)
        context = RequestContext(
            principal=principal,
            sessions=app_state.sessions,
            request_id=request_state.request_id,
            now=app_state.clock(),
            loaders=loaders,
            cache=getattr(app_state, "cache", None),
            settings=app_state.settings,
        )
        setattr(request_state, _STATE_KEY, context)
    return context
