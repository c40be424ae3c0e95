"""Administrative writes: forgetting usage, snapshots, API keys, members, caps.

Who may do what (CONTRACT.md "Who may call what", issue 5):
- forgetUsage: a user, for their own usage only (super: anyone's). Event ids that are not
  the target user's match nothing; they are neither forgotten nor revealed.
- recordSnapshot: super, the bucket's institution's API key, or an admin of that institution.
- createApiKey / revokeApiKey, members and caps, the institution's enforce_caps setting:
  an admin of the institution (`auth.access.is_institution_admin`: super, or role admin with
  `institutions.edit` who is a member).
- addMember finds the user by email among the users the caller may already see
  (`auth.access.may_see_user`: super sees everyone; an admin, the members of the
  institutions they administer). Any other email, whether an account has it or not, gets the
  same NOT_FOUND, so an admin cannot use it to learn who has an account (issue 11).
Everything else is FORBIDDEN (UNAUTHORIZED without credentials). For callers other than
super, an institution, key or bucket that does not exist is answered exactly like one that
is not theirs (FORBIDDEN), so ids cannot be probed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum

from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph import money_range
from usagegraph.auth.access import (
    acts_for_institution,
    is_institution_admin,
    is_super,
    may_see_user,
)
from usagegraph.auth.api_keys import create_api_key as store_api_key
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.datasources import directory_writes
from usagegraph.datasources.outbox import enqueue
from usagegraph.datasources.transactions import run_write
from usagegraph.datasources.usage_writes import forget_events
from usagegraph.db.models import ApiKey, Membership
from usagegraph.db.models.institutions import INSTITUTION_ROLES
from usagegraph.errors import forbidden, invalid, not_found, unauthorized
from usagegraph.input_ids import INSTITUTION_ID_PATTERN
from usagegraph.input_ids import MAX_ID as MAX_BIGINT
from usagegraph.resolvers.buckets import (
    BucketSnapshot,
    SnapshotStorage,
    to_bucket_snapshot,
    validate_bucket_id,
)
from usagegraph.shapes import described

MAX_FORGET_IDS = 1000
MAX_NAME = 200
MAX_RECORD_KEYS = 200
MAX_RECORD_KEY = 64
# The one answer addMember gives for an email it will not add, whether or not it exists.
NO_SUCH_MEMBER = "no user you may add has that email address"
_INSTITUTION_ID = re.compile(INSTITUTION_ID_PATTERN)


class Keep(Enum):
    """An optional setting that was not given: the stored value stays (null clears it)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class ForgottenUsage:
    user_id: int
    forgotten_ids: tuple[int, ...]  # newly flagged by this call, ascending


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """An API key as listed: never the key itself."""

    id: int = described("The key's id (to revoke it).", graph_name="api_key_id")
    institution_id: str = described("The institution it acts for.")
    name: str | None = described("A label to tell keys apart.")
    display_prefix: str = described("The key's first characters.")
    created_at: datetime = described("When it was created.")
    revoked_at: datetime | None = described("When it was revoked, if it was.")


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    key: str  # shown this once; only its hash is stored
    api_key: ApiKeyInfo


@dataclass(frozen=True, slots=True)
class MemberInfo:
    user_id: int
    institution_id: str
    role: str
    cap_limit: Decimal | None


@dataclass(frozen=True, slots=True)
class InstitutionCaps:
    """An institution's cap settings."""

    institution_id: str = described("The institution.")
    default_cap: Decimal | None = described("Credits per member; null: none.")
    enforce_caps: bool = described("Whether usage past a cap is refused rather than flagged.")


# --- pure rules ----------------------------------------------------------------------------


def require_user(principal: Principal) -> int:
    """The calling user's id; API keys are FORBIDDEN, anonymous callers UNAUTHORIZED."""
    if not principal.is_authenticated:
        raise unauthorized()
    if principal.kind is not CallerKind.USER or principal.user_id is None:
        raise forbidden("only a signed-in user may do this")
    return principal.user_id


def require_institution_admin(principal: Principal, institution_id: str) -> None:
    if not principal.is_authenticated:
        raise unauthorized()
    if not _INSTITUTION_ID.fullmatch(institution_id) or not is_institution_admin(
        principal, institution_id
    ):
        raise forbidden("only an admin of that institution may do this")


def forget_target(principal: Principal, user_id: int | None) -> int:
    """Whose usage to forget: the caller's own; only super may name another user."""
    caller = require_user(principal)
    if user_id is None or user_id == caller:
        return caller
    if not is_super(principal):
        raise forbidden("you may only forget your own usage")
    return user_id


def validate_forget(event_ids: Sequence[int] | None, before: datetime | None) -> None:
    if (event_ids is None) == (before is None):
        raise invalid("give exactly one of ids or before")
    if event_ids is not None and not 1 <= len(event_ids) <= MAX_FORGET_IDS:
        raise invalid(f"ids must hold 1 to {MAX_FORGET_IDS} event ids")
    if before is not None and before.tzinfo is None:
        raise invalid("before must carry a time zone")


def cap_value(value: Decimal | None, name: str) -> Decimal | None:
    if value is None:
        return None
    amount = money_range.amount(value, name)
    if amount < 0:
        raise invalid(f"{name} must not be negative")
    return amount


def validate_role(role: str) -> str:
    if role not in INSTITUTION_ROLES:
        raise invalid(f"role must be one of {', '.join(INSTITUTION_ROLES)}")
    return role


def validate_records(records: object) -> dict[str, int]:
    """{collection: count}: names of 1..64 characters, counts whole numbers 0..2^63-1."""
    if not isinstance(records, Mapping):
        raise invalid("records must be an object of {collection: count}")
    if len(records) > MAX_RECORD_KEYS:
        raise invalid(f"records may hold at most {MAX_RECORD_KEYS} collections")
    checked: dict[str, int] = {}
    for name, count in records.items():
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_RECORD_KEY:
            raise invalid(f"record names must be 1 to {MAX_RECORD_KEY} characters")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_BIGINT:
            raise invalid(f"records.{name} must be a whole number from 0 to {MAX_BIGINT}")
        checked[name] = count
    return checked


def validate_storage(storage: SnapshotStorage) -> dict[str, object]:
    """The storage columns of a snapshot row, every count within 0..2^63-1."""
    counts = [storage.object_count, storage.total_bytes]
    for item in storage.by_prefix.values():
        counts += [item.count, item.bytes]
    if any(not 0 <= count <= MAX_BIGINT for count in counts):
        raise invalid(f"storage counts must be whole numbers from 0 to {MAX_BIGINT}")
    if any(not prefix or len(prefix) > MAX_NAME for prefix in storage.by_prefix):
        raise invalid(f"storage prefixes must be 1 to {MAX_NAME} characters")
    return {
        "object_count": storage.object_count,
        "total_bytes": storage.total_bytes,
        "by_prefix": {
            prefix: {"count": item.count, "bytes": item.bytes}
            for prefix, item in sorted(storage.by_prefix.items())
        },
    }


def may_write_snapshots(principal: Principal, institution_id: str) -> bool:
    return acts_for_institution(principal, institution_id) or is_institution_admin(
        principal, institution_id
    )


def api_key_info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        institution_id=row.institution_id,
        name=row.name,
        display_prefix=row.display_prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def member_info(row: Membership) -> MemberInfo:
    return MemberInfo(
        user_id=row.user_id,
        institution_id=row.institution_id,
        role=row.role,
        cap_limit=row.cap_limit,
    )


# --- usage ---------------------------------------------------------------------------------


async def forget_usage(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    event_ids: Sequence[int] | None = None,
    before: datetime | None = None,
    user_id: int | None = None,
) -> ForgottenUsage:
    """Flag the target's usage as forgotten: by event ids, or every event before a time.

    Forgotten usage leaves the reporting endpoints but still counts for money. Already
    forgotten events and ids that are not the target's are left alone and not listed.
    """
    target = forget_target(principal, user_id)
    validate_forget(event_ids, before)

    async def work(session: AsyncSession) -> ForgottenUsage:
        ids = await forget_events(session, target, event_ids=event_ids, before=before)
        return ForgottenUsage(user_id=target, forgotten_ids=tuple(ids))

    return await run_write(session, work)


# --- snapshots -----------------------------------------------------------------------------


async def record_snapshot(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    bucket_id: str,
    snapshot_date: date,
    records: object,
    storage: SnapshotStorage,
    computed_at: datetime | None = None,
) -> BucketSnapshot:
    """Store a bucket's snapshot of one day, replacing the one already stored for that day."""
    if not principal.is_authenticated:
        raise unauthorized()
    validate_bucket_id(bucket_id)
    if computed_at is not None and computed_at.tzinfo is None:
        raise invalid("computedAt must carry a time zone")
    values = {
        "records": validate_records(records),
        **validate_storage(storage),
        "computed_at": computed_at or now,
    }

    async def work(session: AsyncSession) -> BucketSnapshot:
        row = await directory_writes.bucket(session, bucket_id)
        if row is None and is_super(principal):
            raise not_found(f"bucket {bucket_id} does not exist")
        if row is None or not may_write_snapshots(principal, row.institution_id):
            raise forbidden("you may not record snapshots of that bucket")
        stored = await directory_writes.upsert_snapshot(session, bucket_id, snapshot_date, values)
        return to_bucket_snapshot(stored)

    return await run_write(session, work)


# --- API keys ------------------------------------------------------------------------------


async def create_api_key(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    institution_id: str,
    name: str | None = None,
) -> CreatedApiKey:
    """A new key for the institution, returned once in clear (only its hash is kept)."""
    require_institution_admin(principal, institution_id)
    if name is not None and len(name) > MAX_NAME:
        raise invalid(f"name is longer than {MAX_NAME} characters")

    async def work(session: AsyncSession) -> CreatedApiKey:
        if await directory_writes.institution_for_update(session, institution_id) is None:
            raise not_found(f"institution {institution_id} does not exist")
        row, key = await store_api_key(session, institution_id, name)
        row.created_at = now
        await session.flush()
        await enqueue(
            session,
            now,
            "api_key.created",
            {"api_key_id": row.id, "institution_id": institution_id, "name": row.name},
            institution_id=institution_id,
        )
        return CreatedApiKey(key=key, api_key=api_key_info(row))

    return await run_write(session, work)


async def revoke_api_key(
    session: AsyncSession, principal: Principal, now: datetime, *, api_key_id: int
) -> ApiKeyInfo:
    """Revoke a key at once (it stops working on the next request). Revoking a revoked key
    changes nothing and answers it as it is."""
    if not principal.is_authenticated:
        raise unauthorized()

    async def work(session: AsyncSession) -> ApiKeyInfo:
        row = await directory_writes.api_key_for_update(session, api_key_id)
        if row is None and is_super(principal):
            raise not_found(f"API key {api_key_id} does not exist")
        if row is None or not is_institution_admin(principal, row.institution_id):
            raise forbidden("only an admin of the key's institution may revoke it")
        if row.revoked_at is None:
            row.revoked_at = now
            await session.flush()
            await enqueue(
                session,
                now,
                "api_key.revoked",
                {"api_key_id": row.id, "institution_id": row.institution_id, "name": row.name},
                institution_id=row.institution_id,
            )
        return api_key_info(row)

    return await run_write(session, work)


# --- members and caps ----------------------------------------------------------------------


async def add_member(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    institution_id: str,
    email: str,
    role: str = "user",
    cap_limit: Decimal | None = None,
) -> MemberInfo:
    """Add the user with this email to the institution (by email, so an admin cannot pull in
    arbitrary user ids and read who they are). Only a user the caller may already see can be
    added: a stranger's email and an unknown one are answered alike (NO_SUCH_MEMBER)."""
    require_institution_admin(principal, institution_id)
    role = validate_role(role)
    cap_limit = cap_value(cap_limit, "capLimit")

    async def work(session: AsyncSession) -> MemberInfo:
        if await directory_writes.institution_for_update(session, institution_id) is None:
            raise not_found(f"institution {institution_id} does not exist")
        found = await directory_writes.user_by_email(session, email)
        if found is None or not may_see_user(principal, found[0].id, found[1]):
            raise not_found(NO_SUCH_MEMBER)
        user = found[0]
        row = await directory_writes.insert_membership(
            session,
            {
                "user_id": user.id,
                "institution_id": institution_id,
                "role": role,
                "cap_limit": cap_limit,
                "created_at": now,
            },
        )
        if row is None:
            raise invalid("that user is already a member of the institution")
        return member_info(row)

    return await run_write(session, work)


async def update_member(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    institution_id: str,
    user_id: int,
    role: str | Keep = KEEP,
    cap_limit: Decimal | Keep | None = KEEP,
) -> MemberInfo:
    """Change a member's role inside the institution and/or their cap (null: back to the
    institution's default_cap). A lowered cap applies to the next event; usage already
    recorded stays."""
    require_institution_admin(principal, institution_id)
    if not isinstance(role, Keep):
        role = validate_role(role)
    if not isinstance(cap_limit, Keep):
        cap_limit = cap_value(cap_limit, "capLimit")

    async def work(session: AsyncSession) -> MemberInfo:
        row = await directory_writes.membership_for_update(session, user_id, institution_id)
        if row is None:
            raise not_found(f"user {user_id} is not a member of this institution")
        if not isinstance(role, Keep):
            row.role = role
        if not isinstance(cap_limit, Keep):
            row.cap_limit = cap_limit
        await session.flush()
        return member_info(row)

    return await run_write(session, work)


async def remove_member(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    institution_id: str,
    user_id: int,
) -> bool:
    """Remove a membership; their usage in the institution stays (it was spent). False when
    the user was not a member."""
    require_institution_admin(principal, institution_id)

    async def work(session: AsyncSession) -> bool:
        return await directory_writes.delete_membership(session, user_id, institution_id)

    return await run_write(session, work)


async def update_institution_caps(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    institution_id: str,
    default_cap: Decimal | Keep | None = KEEP,
    enforce_caps: bool | Keep = KEEP,
) -> InstitutionCaps:
    """Set the institution's default member cap (null: none) and whether caps are enforced
    (refuse with CAP_REACHED) or only flagged (record with over_cap)."""
    require_institution_admin(principal, institution_id)
    if not isinstance(default_cap, Keep):
        default_cap = cap_value(default_cap, "defaultCap")

    async def work(session: AsyncSession) -> InstitutionCaps:
        row = await directory_writes.institution_for_update(session, institution_id)
        if row is None:
            raise not_found(f"institution {institution_id} does not exist")
        if not isinstance(default_cap, Keep):
            row.default_cap = default_cap
        if not isinstance(enforce_caps, Keep):
            row.enforce_caps = enforce_caps
        await session.flush()
        return InstitutionCaps(
            institution_id=row.id, default_cap=row.default_cap, enforce_caps=row.enforce_caps
        )

    return await run_write(session, work)
