"""The directory's reads: users, institutions and memberships, as the caller may see them.

Visibility is the datasources' readable statements (members see their institutions and
fellow members, super sees all); the rules that go beyond visibility live here, once: only
an institution's admins list its members, and `institution(id)` answers FORBIDDEN for any
institution the caller is not a member of, known or not. Rows become the shapes below, which
the graph's User, Institution and Membership types show.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial

from usagegraph.auth.access import is_institution_admin, is_member
from usagegraph.datasources import directory
from usagegraph.datasources.loaders import MemberPageKey
from usagegraph.db import models
from usagegraph.errors import forbidden
from usagegraph.resolvers.request_context import RequestContext
from usagegraph.shapes import described

NOT_A_MEMBER_MESSAGE = "you are not a member of that institution"


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """A person who uses the service."""

    id: int = described("The user's integer id, as the REST APIs show it.")
    email: str = described("Email address (unique, case-insensitive).")
    fname: str | None = described("First name.")
    lname: str | None = described("Last name.")
    role: str = described("`user`, `admin` or `super`.")
    permissions: tuple[str, ...] = described("Granted permissions.")
    created_at: datetime = described("When the account was created.")
    last_login_at: datetime | None = described("The last sign-in, if any.")


@dataclass(frozen=True, slots=True)
class DirectoryInstitution:
    """A tenant: an organisation whose members use the service."""

    id: str = described("The 24-hex institution id, as the REST APIs show it.")
    name: str = described("Display name.")
    ai_name: str | None = described("The name of its assistant, if any.")
    currency: str = described("Billing currency, e.g. `usd`.")
    plan_limit: int | None = described(
        "Messages included per calendar month; null means unlimited."
    )
    default_cap: Decimal | None = described(
        "Credits each member may spend unless their membership says otherwise."
    )
    created_at: datetime = described("When the institution was created.")


@dataclass(frozen=True, slots=True)
class DirectoryMembership:
    """A user's place in an institution."""

    user_id: int = described("The member's user id.")
    institution_id: str = described("The institution's id.")
    role: str = described("`user` or `admin` inside the institution.")
    cap_limit: Decimal | None = described(
        "This member's own credit cap, overriding the institution's default_cap."
    )


def _user(row: models.User | directory.UserRow) -> DirectoryUser:
    return DirectoryUser(
        id=row.id,
        email=row.email,
        fname=row.fname,
        lname=row.lname,
        role=row.role,
        permissions=tuple(row.permissions or ()),
        created_at=row.created_at,
        last_login_at=row.last_login_at,
    )


def _institution(row: models.Institution) -> DirectoryInstitution:
    return DirectoryInstitution(
        id=row.id,
        name=row.name,
        ai_name=row.ai_name,
        currency=row.currency,
        plan_limit=row.plan_limit,
        default_cap=row.default_cap,
        created_at=row.created_at,
    )


def _membership(row: models.Membership | directory.MembershipRow) -> DirectoryMembership:
    return DirectoryMembership(
        user_id=row.user_id,
        institution_id=row.institution_id,
        role=row.role,
        cap_limit=row.cap_limit,
    )


# --- by id (the graph's `node`, `user`, and the links between objects) ---------------------


async def users_by_id(context: RequestContext, ids: Sequence[int]) -> list[DirectoryUser | None]:
    """Each user the caller may see; None for the others."""
    rows = await context.loaders.user.load_many(ids)
    return [_user(row) if row else None for row in rows]


async def user_by_id(context: RequestContext, user_id: int) -> DirectoryUser | None:
    row = await context.loaders.user.load(user_id)
    return _user(row) if row else None


def known_user(context: RequestContext, user_id: int) -> DirectoryUser | None:
    """The user when this request has read them already (the caller, a member listed with
    their page), else None: `user_by_id` then reads them, or finds they may not be read."""
    row = context.loaders.user.known(user_id)
    return _user(row) if row else None


async def institutions_by_id(
    context: RequestContext, ids: Sequence[str]
) -> list[DirectoryInstitution | None]:
    """Each institution the caller may see; None for the others."""
    rows = await context.loaders.institution.load_many(ids)
    return [_institution(row) if row else None for row in rows]


async def institution_by_id(
    context: RequestContext, institution_id: str
) -> DirectoryInstitution | None:
    row = await context.loaders.institution.load(institution_id)
    return _institution(row) if row else None


async def member_institution(context: RequestContext, institution_id: str) -> DirectoryInstitution:
    """An institution the caller belongs to; FORBIDDEN for any other id, known or not."""
    if not is_member(context.principal, institution_id):
        raise forbidden(NOT_A_MEMBER_MESSAGE)
    institution = await institution_by_id(context, institution_id)
    if institution is None:
        raise forbidden(NOT_A_MEMBER_MESSAGE)
    return institution


async def memberships_by_key(
    context: RequestContext, keys: Sequence[tuple[int, str]]
) -> list[DirectoryMembership | None]:
    """Memberships by (user id, institution id), each only if the caller may see it."""
    rows = await context.loaders.membership.load_many(keys)
    return [_membership(row) if row else None for row in rows]


async def memberships_of_user(context: RequestContext, user_id: int) -> list[DirectoryMembership]:
    """The user's memberships in the institutions the caller may see."""
    rows = await context.loaders.memberships_of_user.load(user_id)
    return [_membership(row) for row in rows]


# --- pages ---------------------------------------------------------------------------------


async def member_page(
    context: RequestContext, institution_id: str, *, size: int, after_user_id: int | None
) -> tuple[list[DirectoryMembership], Callable[[], Awaitable[int]]]:
    """An institution's members after `after_user_id` by user id, `size + 1` of them, and how
    to count them (awaited only when asked for). Only its admins (and super) list them."""
    if not is_institution_admin(context.principal, institution_id):
        raise forbidden("only the institution's admins may list its members")
    loaders = context.loaders
    rows = await loaders.member_page.load(
        MemberPageKey(institution_id=institution_id, first=size, after_user_id=after_user_id)
    )
    return [_membership(row) for row in rows], partial(loaders.member_count.load, institution_id)


async def institutions_page(
    context: RequestContext, *, size: int, after_id: str | None
) -> tuple[list[DirectoryInstitution], Callable[[], Awaitable[int]]]:
    """The caller's institutions after `after_id` by id, `size + 1` of them (the extra one
    tells there is a next page), and how to count all the caller sees (only if asked).
    Both only read: on the request's read connection, with no BEGIN/ROLLBACK around them."""
    async with context.read_session() as session:
        rows = await directory.institution_page(
            session, context.principal, first=size, after_id=after_id
        )

    async def count() -> int:
        async with context.read_session() as session:
            return await directory.institution_count(session, context.principal)

    return [_institution(row) for row in rows], count
