"""The `viewer` entry point: who the graph thinks is calling."""

from __future__ import annotations

from collections.abc import Awaitable
from inspect import isawaitable

import strawberry

from usagegraph.auth.principal import CallerKind as CallerKindValue
from usagegraph.schema.context import Info
from usagegraph.schema.directory import User, user_at_once

CallerKind = strawberry.enum(
    CallerKindValue,
    name="CallerKind",
    description="The kind of credential that identified the caller.",
)


@strawberry.type(description="The caller of this request, as the database describes them.")
class Viewer:
    kind: CallerKindValue = strawberry.field(
        description="`USER` for a valid JWT, `INSTITUTION` for an API key, `ANONYMOUS` "
        "without valid credentials."
    )
    user_id: int | None = strawberry.field(description="The caller's user id, when a user.")
    role: str | None = strawberry.field(
        description="The caller's role (`user`, `admin` or `super`), read from the database."
    )
    institution_id: str | None = strawberry.field(
        description="The institution an API key acts for, when one."
    )

    @strawberry.field(description="The caller's email address, when a user.")
    async def email(self, info: Info) -> str | None:
        user = self.user(info)
        user = await user if isawaitable(user) else user
        return user.email if user else None

    @strawberry.field(
        description="The caller as a User: the way into their own account.",
        graphql_type=User | None,
    )
    def user(self, info: Info) -> User | Awaitable[User | None] | None:
        """The caller's row was read with their credentials, so this answers at once (not a
        coroutine: graphql-core's completion of an awaitable costs more than the field)."""
        return None if self.user_id is None else user_at_once(info, self.user_id)


def resolve_viewer(info: Info) -> Viewer:
    principal = info.context.principal
    return Viewer(
        kind=principal.kind,
        user_id=principal.user_id,
        role=principal.role,
        institution_id=principal.institution_id,
    )
