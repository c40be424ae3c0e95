"""How a mutation runs its write: what every write resolver is given, opened per call.

Each mutation opens a `Write` and calls its resolver (`resolvers.metering`,
`resolvers.wallet_operations`, `resolvers.administration`) with the write's session, caller and
clock, and its own values by name:

    async with open_write(info) as write:
        movement = await wallet_operations.credit_wallet(
            write.session, write.principal, write.now, user_id=input.user_id, ...
        )

The resolver holds every rule and runs the write in one transaction (`datasources.transactions`);
the session is closed before the mutation renders the result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph.auth.principal import Principal
from usagegraph.schema.context import Info
from usagegraph.settings import Settings

INPUT = "The operation's input."
"""The description of every mutation's `input` argument."""


@dataclass(frozen=True, slots=True)
class Write:
    """One write of this request: a fresh session, the caller, the request's clock, and the
    deployment's settings (the limits some writes apply)."""

    session: AsyncSession
    principal: Principal
    now: datetime
    settings: Settings


@asynccontextmanager
async def open_write(info: Info) -> AsyncIterator[Write]:
    """A fresh session for one write, with this request's caller, clock and settings."""
    context = info.context
    async with context.sessions() as session:
        yield Write(
            session=session,
            principal=context.principal,
            now=context.now,
            settings=context.settings,
        )
