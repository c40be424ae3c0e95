"""Turn a presented credential into a Principal, reading roles from the database."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from usagegraph.auth.api_keys import institution_for_api_key
from usagegraph.auth.credentials import PresentedCredential
from usagegraph.auth.principal import Principal
from usagegraph.auth.tokens import DEFAULT_RULES, InvalidTokenError, user_id_from_token
from usagegraph.db.models import Membership, User
from usagegraph.settings import TokenRules

# Built once: every authenticated request runs it.
_USER_WITH_MEMBERSHIPS = (
    select(User.role, User.permissions, Membership.institution_id, Membership.role)
    .outerjoin(Membership, Membership.user_id == User.id)
    .where(User.id == bindparam("user_id"))
)


async def load_user_principal(session: AsyncSession, user_id: int) -> Principal | None:
    """The principal of an existing user, or None when the user does not exist.

    One statement (the user joined to their memberships, a row per membership or one with
    none): every authenticated request pays for it.
    """
    rows = (await session.execute(_USER_WITH_MEMBERSHIPS, {"user_id": user_id})).all()
    if not rows:
        return None
    role, permissions = rows[0][0], rows[0][1]
    return Principal.for_user(
        user_id=user_id,
        role=role,
        permissions=frozenset(permissions or ()),
        memberships={
            institution: member_role for _, _, institution, member_role in rows if institution
        },
    )


async def resolve_principal(
    sessions: async_sessionmaker[AsyncSession],
    jwt_secret: str,
    credential: PresentedCredential | None,
    token_rules: TokenRules = DEFAULT_RULES,
) -> Principal:
    """Anonymous (with a reason) unless the credential is valid and its subject exists."""
    if credential is None:
        return Principal.anonymous()
    if not credential.is_jwt:
        return await _principal_for_api_key(sessions, credential.value)
    return await _principal_for_token(sessions, credential.value, jwt_secret, token_rules)


async def _principal_for_api_key(sessions: async_sessionmaker[AsyncSession], key: str) -> Principal:
    async with sessions() as session:
        institution_id = await institution_for_api_key(session, key)
    if institution_id is None:
        return Principal.anonymous(rejection="invalid API key")
    return Principal.for_institution(institution_id)


async def _principal_for_token(
    sessions: async_sessionmaker[AsyncSession],
    token: str,
    jwt_secret: str,
    token_rules: TokenRules,
) -> Principal:
    """The token is verified before the database is read, so a forged one costs no query; a
    valid token of a user who no longer exists is refused like any other invalid one."""
    try:
        user_id = user_id_from_token(token, jwt_secret, token_rules)
    except InvalidTokenError as exc:
        return Principal.anonymous(rejection=str(exc))
    async with sessions() as session:
        principal = await load_user_principal(session, user_id)
    return principal or Principal.anonymous(rejection="unknown user")
