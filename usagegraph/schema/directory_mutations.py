"""The directory writes: institution members, their caps, and the institutions' API keys.

Each runs its `resolvers.administration` function (an institution's admins, or super), which
holds every rule and writes in one transaction. In an update, an omitted field keeps the
stored value and an explicit null clears it, where clearing is allowed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import strawberry

from usagegraph.errors import invalid
from usagegraph.resolvers import directory_writes
from usagegraph.schema.context import Info
from usagegraph.schema.directory import Membership
from usagegraph.schema.shape_types import graph_type_of
from usagegraph.schema.writes import INPUT, open_write


def _keep(value: Any) -> Any:
    """An omitted optional input keeps the stored value; an explicit null clears it."""
    return directory_writes.KEEP if value is strawberry.UNSET else value


def _keep_not_null(value: Any, name: str) -> Any:
    """Like `_keep`, for settings that cannot be cleared: an explicit null is refused."""
    if value is None:
        raise invalid(f"{name} must not be null")
    return _keep(value)


ApiKey = graph_type_of(
    directory_writes.ApiKeyInfo,
    name="ApiKey",
    description="An institution's API key, as listed (never the key itself).",
)


@strawberry.type(description="A new API key: the key is shown this once, never again.")
class CreatedApiKey:
    key: str = strawberry.field(description="The key (send as `Authorization: Bearer <key>`).")
    api_key: ApiKey = strawberry.field(description="The stored key's details.")


@strawberry.input(description="A new API key for an institution.")
class CreateApiKeyInput:
    institution_id: str = strawberry.field(description="The institution it acts for.")
    name: str | None = strawberry.field(default=None, description="A label.")


@strawberry.input(description="Add a user to an institution.")
class AddMemberInput:
    institution_id: str = strawberry.field(description="The institution.")
    email: str = strawberry.field(
        description="The user's email address (any case); see addMember for whom it finds."
    )
    role: str = strawberry.field(default="user", description="`user` or `admin` inside it.")
    cap_limit: Decimal | None = strawberry.field(
        default=None, description="Their own cap (default: the institution's default_cap)."
    )


@strawberry.input(description="Change a member; omitted fields stay as they are.")
class UpdateMemberInput:
    institution_id: str = strawberry.field(description="The institution.")
    user_id: int = strawberry.field(description="The member.")
    role: str | None = strawberry.field(
        default=strawberry.UNSET, description="`user` or `admin` inside the institution."
    )
    cap_limit: Decimal | None = strawberry.field(
        default=strawberry.UNSET,
        description="Their cap (>= 0); null falls back to the institution's default_cap.",
    )


@strawberry.input(description="Change an institution's cap settings; omitted fields stay.")
class UpdateInstitutionCapsInput:
    institution_id: str = strawberry.field(description="The institution.")
    default_cap: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="Credits per member (>= 0); null: no cap."
    )
    enforce_caps: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="true: usage past a cap is refused (CAP_REACHED); false: recorded and "
        "flagged overCap.",
    )


InstitutionCaps = graph_type_of(
    directory_writes.InstitutionCaps,
    name="InstitutionCaps",
    description="An institution's cap settings.",
)


@strawberry.type(description="Whether a membership was removed.")
class RemoveMemberPayload:
    removed: bool = strawberry.field(description="false when the user was not a member.")


def _member(result: directory_writes.MemberInfo) -> Membership:
    return Membership(
        user_id=result.user_id,
        institution_id=result.institution_id,
        role=result.role,
        cap_limit=result.cap_limit,
    )


@strawberry.type(description="The directory writes.")
class DirectoryMutations:
    @strawberry.mutation(description="Create an API key for an institution (its admins, super).")
    async def create_api_key(
        self,
        info: Info,
        input: Annotated[CreateApiKeyInput, strawberry.argument(description=INPUT)],
    ) -> CreatedApiKey:
        async with open_write(info) as write:
            result = await directory_writes.create_api_key(
                write.session,
                write.principal,
                write.now,
                institution_id=input.institution_id,
                name=input.name,
            )
        return CreatedApiKey(key=result.key, api_key=result.api_key)

    @strawberry.mutation(
        description="Revoke an API key at once (admins of its institution, super); revoking a "
        "revoked key changes nothing."
    )
    async def revoke_api_key(
        self,
        info: Info,
        api_key_id: Annotated[int, strawberry.argument(description="The key's id.")],
    ) -> ApiKey:
        async with open_write(info) as write:
            result = await directory_writes.revoke_api_key(
                write.session, write.principal, write.now, api_key_id=api_key_id
            )
        return result

    @strawberry.mutation(
        description="Add a user, found by email, to an institution (its admins, super). An "
        "admin may add only people they can already see (members of institutions they "
        "administer); any other email, whether an account has it or not, is NOT_FOUND alike."
    )
    async def add_member(
        self, info: Info, input: Annotated[AddMemberInput, strawberry.argument(description=INPUT)]
    ) -> Membership:
        async with open_write(info) as write:
            result = await directory_writes.add_member(
                write.session,
                write.principal,
                write.now,
                institution_id=input.institution_id,
                email=input.email,
                role=input.role,
                cap_limit=input.cap_limit,
            )
        return _member(result)

    @strawberry.mutation(
        description="Change a member's role or cap in an institution (its admins, super)."
    )
    async def update_member(
        self,
        info: Info,
        input: Annotated[UpdateMemberInput, strawberry.argument(description=INPUT)],
    ) -> Membership:
        role = _keep_not_null(input.role, "role")
        async with open_write(info) as write:
            result = await directory_writes.update_member(
                write.session,
                write.principal,
                write.now,
                institution_id=input.institution_id,
                user_id=input.user_id,
                role=role,
                cap_limit=_keep(input.cap_limit),
            )
        return _member(result)

    @strawberry.mutation(description="Remove a user from an institution (its admins, super).")
    async def remove_member(
        self,
        info: Info,
        institution_id: Annotated[str, strawberry.argument(description="The institution.")],
        user_id: Annotated[int, strawberry.argument(description="The member.")],
    ) -> RemoveMemberPayload:
        async with open_write(info) as write:
            removed = await directory_writes.remove_member(
                write.session,
                write.principal,
                write.now,
                institution_id=institution_id,
                user_id=user_id,
            )
        return RemoveMemberPayload(removed=removed)

    @strawberry.mutation(
        description="Set an institution's default member cap and whether caps are enforced "
        "(its admins, super)."
    )
    async def update_institution_caps(
        self,
        info: Info,
        input: Annotated[UpdateInstitutionCapsInput, strawberry.argument(description=INPUT)],
    ) -> InstitutionCaps:
        enforce = _keep_not_null(input.enforce_caps, "enforceCaps")
        async with open_write(info) as write:
            result = await directory_writes.update_institution_caps(
                write.session,
                write.principal,
                write.now,
                institution_id=input.institution_id,
                default_cap=_keep(input.default_cap),
                enforce_caps=enforce,
            )
        return result
