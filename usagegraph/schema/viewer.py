"""The `viewer` entry point: who the graph thinks is calling."""

from __future__ import annotations

import strawberry

from usagegraph.auth.principal import CallerKind as CallerKindValue
from usagegraph.db.models import User
from usagegraph.schema.context import Info

CallerKind = strawberry.enum(
    CallerKindValue,
    name="CallerKind",
    description="The kind of credential that identified the caller.",
)


@strawberry.type(description="The caller of this request, as the database describes them.")
class Viewer:
    kind: CallerKindValue = strawberry.field(
        description="`USER` for a valid JWT, `ANONYMOUS` without valid credentials."
    )
    user_id: int | None = strawberry.field(description="The caller's user id, when a user.")
    role: str | None = strawberry.field(
        description="The caller's role (`user`, `admin` or `super`), read from the database."
    )
    email: str | None = strawberry.field(description="The caller's email address, when a user.")


async def resolve_viewer(info: Info) -> Viewer:
    principal = info.context.principal
    email = None
    if principal.user_id is not None:
        async with info.context.sessions() as session:
            user = await session.get(User, principal.user_id)
        email = user.email if user else None
    return Viewer(kind=principal.kind, user_id=principal.user_id, role=principal.role, email=email)
