"""Turn a presented credential into a Principal, reading roles from the database."""

from __future__ import annotations

from dataclasses import dataclass

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
    select(User, Membership.institution_id, Membership.role)
    .outerjoin(Membership, Membership.user_id == User.id)
    .where(User.id == bindparam("user_id"))
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called, and for a user, the row their principal was read from.

    The row rides along because the graph's `viewer { user }` asks for exactly it: reading it
    again cost a GraphQL request a second statement (about 1 ms of ORM and SQL work).
    """

    principal: Principal
    user: User | None = None


async def load_user_caller(session: AsyncSession, user_id: int) -> Caller | None:
    """The caller of an existing user, or None when the user does not exist.

    One statement (the user joined to their memberships, a row per membership or one with
    none): every authenticated request pays for it.
    """
    rows = (await session.execute(_USER_WITH_MEMBERSHIPS, {"user_id": user_id})).all()
    if not rows:
        return None
    user: User = rows[0][0]
    principal = Principal.for_user(
        user_id=user_id,
        role=user.role,
        permissions=frozenset(user.permissions or ()),
        memberships={
            institution: member_role for _, institution, member_role in rows if institution
        },
    )
    return Caller(principal, user)


async def load_user_principal(session: AsyncSession, user_id: int) -> Principal | None:
    """The principal of an existing user, or None when the user does not exist."""
    caller = await load_user_caller(session, user_id)
    return caller.principal if caller is not None else None


async def resolve_caller(
    sessions: async_sessionmaker[AsyncSession],
    jwt_secret: str,
    credential: PresentedCredential | None,
    token_rules: TokenRules = DEFAULT_RULES,
) -> Caller:
    """Anonymous (with a reason) unless the credential is valid and its subject exists."""
    if credential is None:
        return Caller(Principal.anonymous())
    if not credential.is_jwt:
        return Caller(await _principal_for_api_key(sessions, credential.value))
    return await _caller_for_token(sessions, credential.value, jwt_secret, token_rules)


async def resolve_principal(
    sessions: async_sessionmaker[AsyncSession],
    jwt_secret: str,
    credential: PresentedCredential | None,
    token_rules: TokenRules = DEFAULT_RULES,
) -> Principal:
    """`resolve_caller` for whoever needs only the principal (a subscription's re-checks)."""
    return (await resolve_caller(sessions, jwt_secret, credential, token_rules)).principal


async def _principal_for_api_key(sessions: async_sessionmaker[AsyncSession], key: str) -> Principal:
    async with sessions() as session:
        institution_id = await institution_for_api_key(session, key)
    if institution_id is None:
        return Principal.anonymous(rejection="invalid API key")
    return Principal.for_institution(institution_id)


async def _caller_for_token(
    sessions: async_sessionmaker[AsyncSession],
    token: str,
    jwt_secret: str,
    token_rules: TokenRules,
) -> Caller:
    """The token is verified before the database is read, so a forged one costs no query; a
    valid token of a user who no longer exists is refused like any other invalid one."""
    try:
        user_id = user_id_from_token(token, jwt_secret, token_rules)
    except InvalidTokenError as exc:
        return Caller(Principal.anonymous(rejection=str(exc)))
    async with sessions() as session:
        caller = await load_user_caller(session, user_id)
    return caller or Caller(Principal.anonymous(rejection="unknown user"))
