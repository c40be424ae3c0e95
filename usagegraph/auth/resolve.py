"""Turn a presented credential into a Principal, reading roles from the database."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from usagegraph.auth.api_keys import institution_for_api_key
from usagegraph.auth.credentials import PresentedCredential
from usagegraph.auth.principal import Principal
from usagegraph.auth.tokens import InvalidTokenError, user_id_from_token
from usagegraph.db.models import Membership, User


async def load_user_principal(session: AsyncSession, user_id: int) -> Principal | None:
    """The principal of an existing user, or None when the user does not exist."""
    user = await session.get(User, user_id)
    if user is None:
        return None
    rows = await session.execute(
        select(Membership.institution_id, Membership.role).where(Membership.user_id == user_id)
    )
    return Principal.for_user(
        user_id=user.id,
        role=user.role,
        permissions=frozenset(user.permissions or ()),
        memberships={institution_id: role for institution_id, role in rows},
    )


async def resolve_principal(
    sessions: async_sessionmaker[AsyncSession],
    jwt_secret: str,
    credential: PresentedCredential | None,
) -> Principal:
    """Anonymous (with a reason) unless the credential is valid and its subject exists."""
    if credential is None:
        return Principal.anonymous()
    async with sessions() as session:
        if not credential.is_jwt:
            institution_id = await institution_for_api_key(session, credential.value)
            if institution_id is None:
                return Principal.anonymous(rejection="invalid API key")
            return Principal.for_institution(institution_id)
        try:
            user_id = user_id_from_token(credential.value, jwt_secret)
        except InvalidTokenError as exc:
            return Principal.anonymous(rejection=str(exc))
        principal = await load_user_principal(session, user_id)
    return principal or Principal.anonymous(rejection="unknown user")
