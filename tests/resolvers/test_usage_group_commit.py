"""Concurrent usage writes of one caller share a transaction, and each request still
gets exactly its own answer (resolvers/usage_group_commit.py), on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FIXED_NOW
from tests.fixtures.billing_data import add_key, revoke_key
from tests.fixtures.factories import add_institution, add_user
from tests.fixtures.statements import count_statements
from tests.fixtures.usage_recording_data import ACME, API_ACME, event, usage_rows
from usagegraph.auth.api_keys import hash_api_key
from usagegraph.auth.known_keys import KnownKeys
from usagegraph.auth.principal import Principal
from usagegraph.db.engine import create_engine, session_factory
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.resolvers.usage_group_commit import GROUP_LIMIT, UsageGroupCommit
from usagegraph.resolvers.usage_recording import (
    KEY_TTL,
    OutcomeStatus,
    UsageEventInput,
    UsageOutcome,
)
from usagegraph.settings import Settings


@pytest.fixture
async def members(engine: AsyncEngine) -> list[int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    return [
        await add_user(engine, email=f"m{i}@acme.edu", member_of={ACME: "user"}) for i in range(4)
    ]


def group_commit(
    engine: AsyncEngine, settings: Settings, limit: int = GROUP_LIMIT
) -> UsageGroupCommit:
    return UsageGroupCommit(session_factory(engine), lambda: FIXED_NOW, settings, limit)


async def record_all(
    writes: UsageGroupCommit, requests: Sequence[Sequence[UsageEventInput]]
) -> list[list[UsageOutcome]]:
    """The requests sent at once, as concurrent requests of one API key would."""
    return await asyncio.gather(*(writes.record(API_ACME, r, KEY_TTL) for r in requests))


def inserts(statements: list[str]) -> int:
    return sum(1 for s in statements if s.lstrip().upper().startswith("INSERT INTO USAGE_EVENTS"))


async def test_concurrent_single_events_share_one_transaction_and_keep_their_answers(
    engine: AsyncEngine, settings: Settings, members: list[int]
) -> None:
    requests = [
        [event(members[i % 4], ACME, f"0.{i + 1}", key=f"k{i}", minutes_ago=10 + i)]
        for i in range(20)
    ]
    with count_statements(engine) as statements:
        answers = await record_all(group_commit(engine, settings), requests)
    assert inserts(statements) == 1  # one transaction for all twenty
    for request, [outcome] in zip(requests, answers, strict=True):
        assert (outcome.index, outcome.status) == (0, OutcomeStatus.INSERTED)
        assert outcome.event is not None
        sent = request[0]
        assert (outcome.event.user_id, outcome.event.credits) == (sent.user_id, sent.credits)
    stored = {row.id: row for row in await usage_rows(engine)}
    assert sorted(stored) == sorted(o.event.id for [o] in answers if o.event)
    assert all(stored[o.event.id].credits == o.event.credits for [o] in answers if o.event)


async def test_events_are_judged_in_arrival_order_across_requests(
    engine: AsyncEngine, settings: Settings, members: list[int]
) -> None:
    """A key sent by two requests of one group: the first inserts, the second is its
    duplicate; the same key with another payload is refused as a reuse."""
    first = event(members[0], ACME, "2", key="same", minutes_ago=5)
    reused = event(members[0], ACME, "3", key="same", minutes_ago=5)
    answers = await record_all(group_commit(engine, settings), [[first], [first], [reused]])
    statuses = [(o.index, o.status, o.code) for [o] in answers]
    assert statuses[:2] == [(0, OutcomeStatus.INSERTED, None), (0, OutcomeStatus.DUPLICATE, None)]
    assert statuses[2][1] is OutcomeStatus.REFUSED
    assert statuses[2][2] is not None
    assert statuses[2][2].value == "IDEMPOTENCY_KEY_REUSED"
    assert answers[0][0].event == answers[1][0].event
    assert len(await usage_rows(engine)) == 1


async def test_a_request_of_several_events_gets_its_own_outcomes_indexed_from_zero(
    engine: AsyncEngine, settings: Settings, members: list[int]
) -> None:
    alone = [event(members[0], ACME, "1", key="a")]
    several = [
        event(members[1], ACME, "1", key="b"),
        event(members[1], "personal", "1", key="c"),  # an API key may not write personal usage
        event(members[2], ACME, "1", key="d"),
    ]
    answers = await record_all(group_commit(engine, settings), [alone, several])
    assert [(o.index, o.status) for o in answers[1]] == [
        (0, OutcomeStatus.INSERTED),
        (1, OutcomeStatus.REFUSED),
        (2, OutcomeStatus.INSERTED),
    ]
    assert [o.index for o in answers[0]] == [0]
    assert len(await usage_rows(engine)) == 3


def batch(members: list[int], name: str, size: int) -> list[UsageEventInput]:
    return [
        event(members[i % 4], ACME, "1", key=f"{name}-{i}", minutes_ago=1 + i % 50)
        for i in range(size)
    ]


async def test_concurrent_batches_share_transactions_of_at_most_the_limit(
    engine: AsyncEngine, settings: Settings, members: list[int]
) -> None:
    """Five batches of 100 at once with a limit of 300: the first three fill one
    transaction, the last two the next; a request is never split."""
    requests = [batch(members, f"b{n}", 100) for n in range(5)]
    with count_statements(engine) as statements:
        answers = await record_all(group_commit(engine, settings, limit=300), requests)
    assert inserts(statements) == 2
    assert [len(a) for a in answers] == [100] * 5
    assert all(o.status is OutcomeStatus.INSERTED for a in answers for o in a)
    assert [[o.index for o in a] for a in answers] == [list(range(100))] * 5
    assert len(await usage_rows(engine)) == 500


async def test_a_request_larger_than_the_limit_is_written_alone_and_whole(
    engine: AsyncEngine, settings: Settings, members: list[int]
) -> None:
    requests = [batch(members, "big", 120), batch(members, "small", 10)]
    with count_statements(engine) as statements:
        answers = await record_all(group_commit(engine, settings, limit=100), requests)
    assert inserts(statements) == 2  # the big one alone, not split; the small one after it
    assert [len(a) for a in answers] == [120, 10]
    assert len(await usage_rows(engine)) == 130


async def test_a_request_that_goes_away_does_not_cancel_the_others_write(
    engine: AsyncEngine, settings: Settings, members: list[int]
) -> None:
    writes = group_commit(engine, settings)
    leaving = asyncio.create_task(writes.record(API_ACME, [event(members[0], ACME)], KEY_TTL))
    staying = asyncio.create_task(writes.record(API_ACME, [event(members[1], ACME)], KEY_TTL))
    await asyncio.sleep(0)  # both queued
    leaving.cancel()
    [outcome] = await staying
    assert outcome.status is OutcomeStatus.INSERTED
    await writes.close()
    # The transaction both were in committed; the one that left was written too (as a
    # request whose answer was lost: resending it with its key is a duplicate).
    assert len(await usage_rows(engine)) == 2


async def test_a_failed_transaction_fails_every_request_in_it(settings: Settings) -> None:
    unreachable = create_engine(make_url("postgresql+asyncpg://usagegraph@127.0.0.1:1/none"))
    try:
        writes = group_commit(unreachable, settings)
        answers = await asyncio.gather(
            *(writes.record(API_ACME, [event(7, ACME, key=f"k{i}")], KEY_TTL) for i in range(3)),
            return_exceptions=True,
        )
    finally:
        await unreachable.dispose()
    assert len(answers) == 3
    assert all(isinstance(answer, Exception) for answer in answers)


async def test_the_requests_of_a_revoked_key_are_refused_and_the_others_written(
    engine: AsyncEngine, settings: Settings, members: list[int]
) -> None:
    """Two keys of one institution, taken from memory (unchecked): one was revoked since.
    Their requests share a group; the write reads both keys, answers the revoked key's
    requests 401, forgets that key, and writes the rest without them."""
    live, revoked = await add_key(engine, ACME), await add_key(engine, ACME)
    await revoke_key(engine, revoked)
    known = KnownKeys()
    for key in (live, revoked):
        known.remember(hash_api_key(key), ACME)
    writes = UsageGroupCommit(
        session_factory(engine), lambda: FIXED_NOW, settings, known_keys=known
    )
    by_key = {
        key: Principal.for_institution(ACME, unchecked_key=hash_api_key(key))
        for key in (live, revoked)
    }
    order = [live, revoked, live, revoked]
    answers = await asyncio.gather(
        *(
            writes.record(by_key[key], [event(members[i], ACME, key=f"k{i}")], KEY_TTL)
            for i, key in enumerate(order)
        ),
        return_exceptions=True,
    )
    for key, answer in zip(order, answers, strict=True):
        if key == revoked:
            assert isinstance(answer, UsageGraphError)
            assert (answer.code, answer.http_status) == (ErrorCode.UNAUTHORIZED, 401)
        else:
            assert not isinstance(answer, BaseException)
            assert [outcome.status for outcome in answer] == [OutcomeStatus.INSERTED]
    assert sorted(row.user_id for row in await usage_rows(engine)) == [members[0], members[2]]
    assert known.institution_of(hash_api_key(revoked)) is None
    assert known.institution_of(hash_api_key(live)) == ACME


async def test_a_group_of_live_unchecked_keys_reads_them_in_one_statement(
    engine: AsyncEngine, settings: Settings, members: list[int]
) -> None:
    keys = [await add_key(engine, ACME) for _ in range(3)]
    writes = group_commit(engine, settings)
    principals = [Principal.for_institution(ACME, unchecked_key=hash_api_key(k)) for k in keys]
    with count_statements(engine) as statements:
        answers = await asyncio.gather(
            *(
                writes.record(p, [event(members[i], ACME, key=f"k{i}")], KEY_TTL)
                for i, p in enumerate(principals)
            )
        )
    assert [[o.status for o in answer] for answer in answers] == [[OutcomeStatus.INSERTED]] * 3
    assert sum("FROM api_keys" in s for s in statements) == 1
    assert inserts(statements) == 1
