"""The acceptance window of event times on the online usage writes, through /graphql.

An institution's API key once backdated 300 events a month apart from 1900, and the next
`partitions maintain` created a partition for each month; year 1 was stored as -infinity.
Now every recorder (API keys and super alike) may date an event at most 35 days back and 5
minutes ahead of the server's clock (configurable), and maintenance creates no partition
for anything a client sends outside that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.running import cli_env, run_cli
from tests.conftest import client_of
from tests.databases import TestDatabase
from tests.fixtures.factories import add_institution, add_user
from tests.fixtures.usage_recording_data import ACME, count_rows, usage_rows
from tests.schema.graph import error_codes, graphql
from usagegraph.auth.api_keys import create_api_key
from usagegraph.db.engine import session_factory
from usagegraph.db.models import UsageEvent
from usagegraph.db.partitions import is_partitioned, list_partitions
from usagegraph.settings import EventTimeWindow, Settings

RECORD = """
mutation($input: UsageEventInput!) {
  recordUsage(input: $input) { status event { eventId occurredAt } }
}"""

BATCH = """
mutation($events: [UsageEventInput!]!) {
  recordUsageBatch(events: $events) { inserted refused outcomes { index status code message } }
}"""

# FIXED_NOW is 2026-05-20T15:30:00Z: the default window runs from 35 days before it to
# 300 seconds after it.
STORABLE_RANGE = "must lie between 1970-01-01T00:00:00Z and 9998-12-31T23:59:59Z"
WINDOW_MESSAGE = (
    "occurredAt must be between 2026-04-15T15:30:00Z and 2026-05-20T15:35:00Z (the last 35 "
    "days up to 300 seconds ahead; older usage is loaded with `usagegraph import`)"
)


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    return {
        "super": await add_user(engine, email="root@ug.io", role="super"),
        "ada": await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"}),
    }


@pytest.fixture
async def acme_key(engine: AsyncEngine, people: dict[str, int]) -> str:
    async with session_factory(engine)() as session, session.begin():
        _row, key = await create_api_key(session, ACME, "metering")
    return key


async def _with_key(
    client: httpx.AsyncClient, query: str, key: str, variables: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def _usage(user_id: int, occurred_at: str, instance: str = ACME) -> dict[str, Any]:
    return {"userId": user_id, "instance": instance, "occurredAt": occurred_at, "credits": "1"}


async def _partition_count(engine: AsyncEngine) -> int | None:
    """Attached partitions of usage_events; None where nothing is partitioned (SQLite)."""
    async with engine.connect() as conn:
        if not await is_partitioned(conn):
            return None
        return len(await list_partitions(conn))


def _maintain(env: dict[str, str]) -> None:
    maintained = run_cli(env, "partitions", "maintain")
    assert maintained.returncode == 0, maintained.stderr


async def test_backdating_300_months_with_an_api_key_is_refused_and_adds_no_partitions(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    database: TestDatabase,
    people: dict[str, int],
    acme_key: str,
    tmp_path: Path,
) -> None:
    env = cli_env(tmp_path, database.url_string)
    _maintain(env)  # whatever this month needs is in place before the attack
    before = await _partition_count(engine)
    # The attack as reported: 300 months from 1900. No column holds a time before 1970, so
    # the DateTime rule refuses the whole request before any event is judged.
    months = [f"{1900 + n // 12}-{n % 12 + 1:02d}-01T00:00:00Z" for n in range(300)]
    body = await _with_key(
        client, BATCH, acme_key, {"events": [_usage(people["ada"], when) for when in months]}
    )
    assert body["data"] is None
    assert set(error_codes(body)) == {"INVALID_REQUEST"}  # one per value graphql-core read
    assert STORABLE_RANGE in body["errors"][0]["message"]
    # The same from 1971, storable but outside the window: each event refused by the window.
    months = [f"{1971 + n // 12}-{n % 12 + 1:02d}-01T00:00:00Z" for n in range(300)]
    body = await _with_key(
        client, BATCH, acme_key, {"events": [_usage(people["ada"], when) for when in months]}
    )
    result = body["data"]["recordUsageBatch"]
    assert (result["inserted"], result["refused"]) == (0, 300)
    assert {(o["status"], o["code"], o["message"]) for o in result["outcomes"]} == {
        ("REFUSED", "INVALID_REQUEST", WINDOW_MESSAGE)
    }
    for when in months[:3]:
        single = await _with_key(client, RECORD, acme_key, {"input": _usage(people["ada"], when)})
        assert error_codes(single) == ["INVALID_REQUEST"]
        assert single["errors"][0]["message"] == WINDOW_MESSAGE
    assert await count_rows(engine, UsageEvent) == 0
    _maintain(env)
    after = await _partition_count(engine)
    if database.backend == "postgresql":
        assert before is not None
        assert after == before  # not one partition for 1900..1924 or 1971..1995
    else:
        assert before is after is None


@pytest.mark.parametrize("caller", ["api_key", "super"])
@pytest.mark.parametrize(
    ("occurred_at", "refusal"),
    [
        ("2026-04-15T15:30:00Z", None),  # exactly 35 days ago
        ("2026-04-15T17:29:59+02:00", WINDOW_MESSAGE),  # one second older, in another offset
        ("2026-05-20T15:35:00Z", None),  # exactly 300 s ahead
        ("2026-05-20T15:35:01Z", WINDOW_MESSAGE),
        ("2026-01-01T00:00:00Z", WINDOW_MESSAGE),
        # Times no column holds: refused by the DateTime rule (never stored as -infinity).
        ("0001-01-01T00:00:00Z", STORABLE_RANGE),
        ("0001-01-01T00:00:00+01:00", STORABLE_RANGE),  # before year 1 in UTC: no overflow
        ("9999-12-31T23:59:59Z", STORABLE_RANGE),
        ("9999-12-31T23:59:59-01:00", STORABLE_RANGE),
    ],
)
async def test_every_recorder_is_held_to_the_window(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    people: dict[str, int],
    acme_key: str,
    caller: str,
    occurred_at: str,
    refusal: str | None,
) -> None:
    variables = {"input": _usage(people["ada"], occurred_at)}
    if caller == "api_key":
        body = await _with_key(client, RECORD, acme_key, variables)
    else:
        body = await graphql(client, RECORD, user_id=people["super"], variables=variables)
    if refusal is None:
        assert body["data"]["recordUsage"]["status"] == "INSERTED", body
        (row,) = await usage_rows(engine)
        assert row.occurred_at == datetime.fromisoformat(occurred_at)
    else:
        assert error_codes(body) == ["INVALID_REQUEST"]
        assert refusal in body["errors"][0]["message"]
        assert await count_rows(engine, UsageEvent) == 0


@pytest.fixture
async def narrow_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a window of one day back and nothing ahead."""
    window = EventTimeWindow(max_age_days=1, max_future_seconds=0)
    async with client_of(dataclasses.replace(settings, event_window=window)) as http:
        yield http


async def test_the_window_comes_from_the_settings(
    narrow_client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    events = [
        _usage(people["ada"], "2026-05-19T15:30:00Z"),  # a day ago: in
        _usage(people["ada"], "2026-05-19T15:29:59Z"),  # a day and a second: out
        _usage(people["ada"], "2026-05-20T15:30:01Z"),  # a second ahead: out
    ]
    body = await graphql(
        narrow_client, BATCH, user_id=people["super"], variables={"events": events}
    )
    outcomes = body["data"]["recordUsageBatch"]["outcomes"]
    assert [o["code"] for o in outcomes] == [None, "INVALID_REQUEST", "INVALID_REQUEST"]
    assert outcomes[1]["message"] == (
        "occurredAt must be between 2026-05-19T15:30:00Z and 2026-05-20T15:30:00Z (the last 1 "
        "day up to 0 seconds ahead; older usage is loaded with `usagegraph import`)"
    )
    assert await count_rows(engine, UsageEvent) == 1
