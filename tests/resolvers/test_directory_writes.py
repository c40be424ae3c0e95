"""Administrative writes: forgetting usage, snapshots, API keys, members and caps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.fixtures.factories import add_institution, add_user
from tests.fixtures.usage_recording_data import (
    ACME,
    ANONYMOUS,
    API_ACME,
    API_OTHER,
    EDIT,
    NOW,
    OTHER,
    add_usage,
    event,
    principal,
    run,
    usage_rows,
)
from usagegraph.auth.api_keys import institution_for_api_key
from usagegraph.auth.principal import Principal
from usagegraph.db.engine import session_factory
from usagegraph.db.models import ClientBucket, Institution, Membership, Snapshot
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.resolvers import directory_writes as admin
from usagegraph.resolvers.buckets import BucketSnapshot, PrefixStorage, SnapshotStorage
from usagegraph.resolvers.usage_recording import OutcomeStatus, record_usage


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    await add_institution(engine, institution_id=OTHER, name="Other")
    async with session_factory(engine)() as session, session.begin():
        session.add_all(
            [
                ClientBucket(id="acme-corp", institution_id=ACME),
                ClientBucket(id="other-corp", institution_id=OTHER),
            ]
        )
    return {
        "super": await add_user(engine, email="root@ug.io", role="super"),
        "admin": await add_user(
            engine,
            email="admin@acme.edu",
            role="admin",
            permissions=EDIT,
            member_of={ACME: "admin"},
        ),
        # an institution-level admin without the global admin role and permission: not enough
        "local_admin": await add_user(engine, email="local@acme.edu", member_of={ACME: "admin"}),
        "ada": await add_user(engine, email="Ada@Acme.edu", member_of={ACME: "user"}),
        "bob": await add_user(engine, email="bob@acme.edu", member_of={ACME: "user"}),
        "newbie": await add_user(engine, email="newbie@example.com"),
    }


async def as_user(engine: AsyncEngine, people: dict[str, int], who: str) -> Principal:
    return await principal(engine, people[who])


async def refused(call: object) -> UsageGraphError:
    with pytest.raises(UsageGraphError) as error:
        await call  # type: ignore[misc]
    return error.value


# --- forgetUsage ---------------------------------------------------------------------------


async def test_a_user_forgets_their_own_events_by_id(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    ada, bob = people["ada"], people["bob"]
    mine = [await add_usage(engine, ada, ACME, "1") for _ in range(3)]
    theirs = await add_usage(engine, bob, ACME, "1")
    caller = await as_user(engine, people, "ada")
    result = await run(
        engine,
        lambda s: admin.forget_usage(s, caller, NOW, event_ids=[mine[0], mine[2], theirs, 999]),
    )
    # Bob's event and the unknown id match nothing, and are not listed
    assert result.forgotten_ids == (mine[0], mine[2])
    assert [row.forgotten for row in await usage_rows(engine, ada)] == [True, False, True]
    assert [row.forgotten for row in await usage_rows(engine, bob)] == [False]
    again = await run(engine, lambda s: admin.forget_usage(s, caller, NOW, event_ids=[mine[0]]))
    assert again.forgotten_ids == ()  # already forgotten: nothing new


async def test_a_user_forgets_everything_before_a_time(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    ada = people["ada"]
    old = await add_usage(engine, ada, None, "1")  # three days ago
    caller = await as_user(engine, people, "ada")
    root = await as_user(engine, people, "super")
    recent = await run(engine, lambda s: record_usage(s, root, NOW, event(ada, "personal", "0")))
    result = await run(
        engine, lambda s: admin.forget_usage(s, caller, NOW, before=NOW - timedelta(days=1))
    )
    assert result.forgotten_ids == (old,)
    assert recent.event is not None
    assert {row.id: row.forgotten for row in await usage_rows(engine)} == {
        old: True,
        recent.event.id: False,
    }


async def test_forgotten_usage_still_counts_against_the_cap(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    ada = people["ada"]
    root = await as_user(engine, people, "super")
    await run(
        engine,
        lambda s: admin.update_institution_caps(
            s, root, NOW, institution_id=ACME, default_cap=Decimal(5), enforce_caps=True
        ),
    )
    spent = await add_usage(engine, ada, ACME, "5")
    caller = await as_user(engine, people, "ada")
    await run(engine, lambda s: admin.forget_usage(s, caller, NOW, event_ids=[spent]))
    error = await refused(
        run(engine, lambda s: record_usage(s, API_ACME, NOW, event(ada, ACME, "1")))
    )
    assert error.code is ErrorCode.CAP_REACHED


async def test_only_super_forgets_someone_elses_usage(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    bobs = await add_usage(engine, people["bob"], ACME, "1")
    for who in ("ada", "admin"):
        caller = await as_user(engine, people, who)
        error = await refused(
            run(
                engine,
                lambda s, c=caller: admin.forget_usage(
                    s, c, NOW, event_ids=[bobs], user_id=people["bob"]
                ),
            )
        )
        assert error.code is ErrorCode.FORBIDDEN
    root = await as_user(engine, people, "super")
    result = await run(
        engine,
        lambda s: admin.forget_usage(s, root, NOW, event_ids=[bobs], user_id=people["bob"]),
    )
    assert result.forgotten_ids == (bobs,)


async def test_api_keys_and_anonymous_callers_forget_nothing(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    assert (
        await refused(run(engine, lambda s: admin.forget_usage(s, API_ACME, NOW, event_ids=[1])))
    ).code is ErrorCode.FORBIDDEN
    assert (
        await refused(run(engine, lambda s: admin.forget_usage(s, ANONYMOUS, NOW, event_ids=[1])))
    ).code is ErrorCode.UNAUTHORIZED


@pytest.mark.parametrize(
    "arguments",
    [{}, {"event_ids": [1], "before": NOW}, {"event_ids": []}, {"event_ids": list(range(1001))}],
)
async def test_forget_needs_exactly_ids_or_before(
    engine: AsyncEngine, people: dict[str, int], arguments: dict[str, object]
) -> None:
    caller = await as_user(engine, people, "ada")
    error = await refused(run(engine, lambda s: admin.forget_usage(s, caller, NOW, **arguments)))  # type: ignore[arg-type]
    assert error.code is ErrorCode.INVALID_REQUEST


# --- recordSnapshot ------------------------------------------------------------------------

STORAGE = SnapshotStorage(
    object_count=8500,
    total_bytes=5_368_709_120,
    by_prefix={"docs/": PrefixStorage(count=10, bytes=2048)},
)


def snapshot(
    caller: Principal, bucket: str = "acme-corp", **change: object
) -> Callable[[AsyncSession], Awaitable[BucketSnapshot]]:
    values: dict[str, object] = {
        "bucket_id": bucket,
        "snapshot_date": date(2026, 5, 1),
        "records": {"person": 15000, "payment": 45000, "custom": 7},
        "storage": STORAGE,
    }
    values.update(change)
    return lambda s: admin.record_snapshot(s, caller, NOW, **values)  # type: ignore[arg-type]


async def test_the_institutions_api_key_records_and_replaces_a_days_snapshot(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    first = await run(engine, snapshot(API_ACME))
    assert first.records["person"] == 15000
    assert first.records["total"] == 60007  # 15000 + 45000 + 7, filled in when read
    assert first.storage.total_bytes == 5_368_709_120
    assert first.computed_at == NOW
    second = await run(engine, snapshot(API_ACME, records={"person": 1}))
    assert second.records["person"] == 1
    assert second.records["payment"] == 0
    async with session_factory(engine)() as session:
        rows = list(await session.scalars(select(Snapshot)))
    assert len(rows) == 1
    assert rows[0].records == {"person": 1}


async def test_admins_and_super_record_snapshots_others_may_not(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    for who in ("admin", "super"):
        caller = await as_user(engine, people, who)
        assert (await run(engine, snapshot(caller))).bucket_id == "acme-corp"
    for caller in (
        API_OTHER,
        await as_user(engine, people, "ada"),
        await as_user(engine, people, "local_admin"),
    ):
        assert (await refused(run(engine, snapshot(caller)))).code is ErrorCode.FORBIDDEN
    # an unknown bucket reads like someone else's, except to super
    assert (await refused(run(engine, snapshot(API_ACME, "nope")))).code is ErrorCode.FORBIDDEN
    root = await as_user(engine, people, "super")
    assert (await refused(run(engine, snapshot(root, "nope")))).code is ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    "change",
    [
        {"bucket": "bad id!"},
        {"records": {"person": -1}},
        {"records": {"person": True}},
        {"records": {"person": 1.5}},
        {"records": {"": 1}},
        {"records": [1, 2]},
        {"storage": SnapshotStorage(object_count=-1, total_bytes=0, by_prefix={})},
        {"storage": SnapshotStorage(object_count=0, total_bytes=2**63, by_prefix={})},
    ],
)
async def test_bad_snapshots_are_refused(
    engine: AsyncEngine, people: dict[str, int], change: dict[str, object]
) -> None:
    values = dict(change)  # parameters are shared by both backends: do not mutate them
    bucket = str(values.pop("bucket", "acme-corp"))
    error = await refused(run(engine, snapshot(API_ACME, bucket, **values)))
    assert error.code is ErrorCode.INVALID_REQUEST


# --- API keys ------------------------------------------------------------------------------


async def test_an_admin_creates_and_revokes_a_key(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    caller = await as_user(engine, people, "admin")
    created = await run(
        engine, lambda s: admin.create_api_key(s, caller, NOW, institution_id=ACME, name="etl")
    )
    assert created.key.startswith("ug_live_")
    assert created.api_key.display_prefix == created.key[:12]
    assert (created.api_key.name, created.api_key.created_at) == ("etl", NOW)
    async with session_factory(engine)() as session:
        assert await institution_for_api_key(session, created.key) == ACME
    key_id = created.api_key.id
    revoked = await run(engine, lambda s: admin.revoke_api_key(s, caller, NOW, api_key_id=key_id))
    assert revoked.revoked_at == NOW
    later = NOW + timedelta(hours=1)
    again = await run(engine, lambda s: admin.revoke_api_key(s, caller, later, api_key_id=key_id))
    assert again.revoked_at == NOW  # revoking twice changes nothing
    async with session_factory(engine)() as session:
        assert await institution_for_api_key(session, created.key) is None


async def test_keys_of_other_institutions_are_out_of_reach(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    root = await as_user(engine, people, "super")
    other = await run(engine, lambda s: admin.create_api_key(s, root, NOW, institution_id=OTHER))
    caller = await as_user(engine, people, "admin")
    for call in (
        lambda s: admin.create_api_key(s, caller, NOW, institution_id=OTHER),
        lambda s: admin.revoke_api_key(s, caller, NOW, api_key_id=other.api_key.id),
        lambda s: admin.revoke_api_key(s, caller, NOW, api_key_id=12345),  # unknown: the same
        lambda s: admin.create_api_key(s, API_ACME, NOW, institution_id=ACME),
    ):
        assert (await refused(run(engine, call))).code is ErrorCode.FORBIDDEN
    missing = await refused(
        run(engine, lambda s: admin.revoke_api_key(s, root, NOW, api_key_id=12345))
    )
    assert missing.code is ErrorCode.NOT_FOUND
    unknown = await refused(
        run(engine, lambda s: admin.create_api_key(s, root, NOW, institution_id="c" * 24))
    )
    assert unknown.code is ErrorCode.NOT_FOUND


# --- members and caps ----------------------------------------------------------------------


async def join(engine: AsyncEngine, user_id: int, institution_id: str, role: str) -> None:
    async with session_factory(engine)() as session, session.begin():
        session.add(Membership(user_id=user_id, institution_id=institution_id, role=role))


async def test_an_admin_adds_updates_and_removes_members(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    # the admin also runs Other, where newbie is a member: newbie is someone they may add
    await join(engine, people["admin"], OTHER, "admin")
    await join(engine, people["newbie"], OTHER, "user")
    caller = await as_user(engine, people, "admin")
    added = await run(
        engine,
        lambda s: admin.add_member(
            s, caller, NOW, institution_id=ACME, email="NEWBIE@example.com", cap_limit=Decimal(7)
        ),
    )
    assert (added.user_id, added.role, added.cap_limit) == (people["newbie"], "user", Decimal(7))
    updated = await run(
        engine,
        lambda s: admin.update_member(
            s, caller, NOW, institution_id=ACME, user_id=people["newbie"], role="admin"
        ),
    )
    assert (updated.role, updated.cap_limit) == ("admin", Decimal(7))  # cap kept
    cleared = await run(
        engine,
        lambda s: admin.update_member(
            s, caller, NOW, institution_id=ACME, user_id=people["newbie"], cap_limit=None
        ),
    )
    assert (cleared.role, cleared.cap_limit) == ("admin", None)
    removed = await run(
        engine,
        lambda s: admin.remove_member(
            s, caller, NOW, institution_id=ACME, user_id=people["newbie"]
        ),
    )
    assert removed is True
    async with session_factory(engine)() as session:
        assert await session.get(Membership, (people["newbie"], ACME)) is None


async def test_an_admin_cannot_tell_a_strangers_email_from_an_unknown_one(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    """newbie@example.com has an account but no tie to the admin's institutions: adding it
    is refused exactly like an address nobody has, and nothing is written."""
    caller = await as_user(engine, people, "admin")
    answers = []
    for email in ("newbie@example.com", "NEWBIE@example.com", "nobody@example.com"):
        error = await refused(
            run(
                engine,
                lambda s, e=email: admin.add_member(s, caller, NOW, institution_id=ACME, email=e),
            )
        )
        answers.append((error.code, error.message, error.http_status))
    assert answers == [(ErrorCode.NOT_FOUND, "no user you may add has that email address", 404)] * 3
    async with session_factory(engine)() as session:
        assert await session.get(Membership, (people["newbie"], ACME)) is None


async def test_super_adds_anyone_by_email(engine: AsyncEngine, people: dict[str, int]) -> None:
    root = await as_user(engine, people, "super")
    added = await run(
        engine,
        lambda s: admin.add_member(s, root, NOW, institution_id=ACME, email="Newbie@Example.com"),
    )
    assert (added.user_id, added.institution_id, added.role) == (people["newbie"], ACME, "user")
    unknown = await refused(
        run(engine, lambda s: admin.add_member(s, root, NOW, institution_id=ACME, email="x@y.z"))
    )
    assert (unknown.code, unknown.message) == (
        ErrorCode.NOT_FOUND,
        "no user you may add has that email address",
    )


async def test_member_changes_refuse_bad_input(engine: AsyncEngine, people: dict[str, int]) -> None:
    caller = await as_user(engine, people, "admin")
    calls = {
        ErrorCode.INVALID_REQUEST: [
            lambda s: admin.add_member(s, caller, NOW, institution_id=ACME, email="bob@acme.edu"),
            lambda s: admin.add_member(
                s, caller, NOW, institution_id=ACME, email="newbie@example.com", role="owner"
            ),
            lambda s: admin.add_member(
                s,
                caller,
                NOW,
                institution_id=ACME,
                email="newbie@example.com",
                cap_limit=Decimal(-1),
            ),
        ],
        ErrorCode.NOT_FOUND: [
            lambda s: admin.add_member(s, caller, NOW, institution_id=ACME, email="nobody@x.io"),
            lambda s: admin.update_member(
                s, caller, NOW, institution_id=ACME, user_id=people["newbie"], role="user"
            ),
        ],
    }
    for code, attempts in calls.items():
        for call in attempts:
            assert (await refused(run(engine, call))).code is code


@pytest.mark.parametrize("who", ["ada", "local_admin", "api_key"])
async def test_non_admins_change_no_members_or_caps(
    engine: AsyncEngine, people: dict[str, int], who: str
) -> None:
    caller = API_ACME if who == "api_key" else await as_user(engine, people, who)
    for call in (
        lambda s: admin.add_member(s, caller, NOW, institution_id=ACME, email="newbie@example.com"),
        lambda s: admin.update_member(
            s, caller, NOW, institution_id=ACME, user_id=people["bob"], cap_limit=Decimal(1)
        ),
        lambda s: admin.remove_member(s, caller, NOW, institution_id=ACME, user_id=people["bob"]),
        lambda s: admin.update_institution_caps(
            s, caller, NOW, institution_id=ACME, enforce_caps=True
        ),
    ):
        assert (await refused(run(engine, call))).code is ErrorCode.FORBIDDEN
    async with session_factory(engine)() as session:
        membership = await session.get(Membership, (people["bob"], ACME))
        institution = await session.get(Institution, ACME)
    assert membership is not None
    assert membership.cap_limit is None
    assert institution is not None
    assert institution.enforce_caps is False


async def test_an_admin_of_one_institution_does_not_manage_another(
    engine: AsyncEngine, people: dict[str, int]
) -> None:
    caller = await as_user(engine, people, "admin")
    error = await refused(
        run(engine, lambda s: admin.update_institution_caps(s, caller, NOW, institution_id=OTHER))
    )
    assert error.code is ErrorCode.FORBIDDEN


async def test_cap_settings_drive_metering(engine: AsyncEngine, people: dict[str, int]) -> None:
    caller = await as_user(engine, people, "admin")
    ada = people["ada"]
    caps = await run(
        engine,
        lambda s: admin.update_institution_caps(
            s, caller, NOW, institution_id=ACME, default_cap=Decimal(3)
        ),
    )
    assert (caps.default_cap, caps.enforce_caps) == (Decimal(3), False)
    record = lambda credits: run(  # noqa: E731
        engine, lambda s: record_usage(s, API_ACME, NOW, event(ada, ACME, credits))
    )
    flagged = await record("4")  # 4 > 3, not enforced: flagged
    assert flagged.event is not None
    assert flagged.event.over_cap is True
    await run(
        engine,
        lambda s: admin.update_institution_caps(
            s, caller, NOW, institution_id=ACME, enforce_caps=True
        ),
    )
    assert (await refused(record("1"))).code is ErrorCode.CAP_REACHED  # 4 + 1 > 3
    await run(
        engine,
        lambda s: admin.update_member(
            s, caller, NOW, institution_id=ACME, user_id=ada, cap_limit=Decimal(5)
        ),
    )
    assert (await record("1")).status is OutcomeStatus.INSERTED  # 4 + 1 = 5, Ada's own cap
    cleared = await run(
        engine,
        lambda s: admin.update_institution_caps(
            s, caller, NOW, institution_id=ACME, default_cap=None
        ),
    )
    assert (cleared.default_cap, cleared.enforce_caps) == (None, True)  # enforce kept
