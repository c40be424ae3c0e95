"""POST /v1/events through the real app on both databases: the CloudEvents mapping, mixed
batches counted exactly, NDJSON, idempotency, credentials and limits.

Data: tests/fixtures/events_data.py (FIXED_NOW = 2026-05-20 15:30 UTC).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from tests.conftest import client_of
from tests.fixtures.billing_data import revoke_key
from tests.fixtures.events_data import (
    BATCH,
    NDJSON,
    PATH,
    SINGLE,
    EventsWorld,
    cloud_event,
    ndjson,
    seed_events_world,
    top_up,
)
from tests.fixtures.usage_recording_data import ACME, OTHER, key_rows, ledger, usage_rows
from usagegraph.auth.api_keys import hash_api_key
from usagegraph.resolvers.cloud_events import idempotency_key
from usagegraph.settings import Settings


@pytest.fixture
async def world(engine: AsyncEngine) -> EventsWorld:
    return await seed_events_world(engine)


async def post(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: Any,
    content_type: dict[str, str] = BATCH,
) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return await client.post(PATH, content=content, headers={**headers, **content_type})


def counts(response: httpx.Response) -> tuple[int, int, int]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meta"]["request_id"] == response.headers["x-request-id"]
    assert body["refused"] == len(body["refusals"])
    return body["inserted"], body["duplicates"], body["refused"]


def refusals(response: httpx.Response) -> list[tuple[int, str | None, str]]:
    return [(r["index"], r["id"], r["code"]) for r in response.json()["refusals"]]


# --- the mapping ---------------------------------------------------------------------------


async def test_every_field_is_mapped(
    engine: AsyncEngine, client: httpx.AsyncClient, world: EventsWorld
) -> None:
    event = cloud_event(
        "evt-1",
        world.ada,
        credits=2.25,
        messages=3,
        endpoint="/v1/chat",
        status="failed",
        minutes_ago=90,
    )
    event["time"] = "2026-05-20T16:00:00+02:00"  # an offset other than Z: the same instant
    event["datacontenttype"] = "application/json"
    event["dataschema"] = "https://example.test/usage.json"
    response = await post(client, world.api_key, event, SINGLE)
    assert counts(response) == (1, 0, 0)
    [row] = await usage_rows(engine)
    assert row.user_id == world.ada
    assert row.institution_id == ACME
    assert row.occurred_at.isoformat().startswith("2026-05-20T14:00:00")
    assert row.credits == Decimal("2.25")
    assert row.messages == 3
    assert row.endpoint == "/v1/chat"
    assert row.status == "failed"
    [key] = await key_rows(engine)
    assert (key.user_id, key.key) == (world.ada, idempotency_key("//gateway.test/llm", "evt-1"))
    assert key.usage_event_id == row.id


async def test_the_defaults_of_data_are_record_usages(
    engine: AsyncEngine, client: httpx.AsyncClient, world: EventsWorld
) -> None:
    event = cloud_event("evt-1", world.ada, credits="0.5")
    assert counts(await post(client, world.api_key, event, SINGLE)) == (1, 0, 0)
    [row] = await usage_rows(engine)
    assert (row.messages, row.endpoint, row.status) == (1, None, "success")


def _without(event: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key != name}


@pytest.mark.parametrize(
    ("change", "expected_id", "wording"),
    [
        (lambda e: _without(e, "id"), None, "missing required field `id`"),
        (lambda e: {**e, "id": ""}, "", "length >= 1"),
        (lambda e: {**e, "specversion": "0.3"}, "bad", "Invalid enum value '0.3'"),
        (lambda e: _without(e, "specversion"), "bad", "`specversion`"),
        (lambda e: _without(e, "source"), "bad", "`source`"),
        (lambda e: _without(e, "type"), "bad", "`type`"),
        (lambda e: {**e, "traceparent": "00-abc"}, "bad", "unknown field `traceparent`"),
        (lambda e: {**e, "data": {**e["data"], "colour": "red"}}, "bad", "unknown field"),
        (lambda e: {**e, "time": "2026-05-20T14:00:00"}, "bad", "timezone"),
        (lambda e: {**e, "time": "2026-03-01T00:00:00Z"}, "bad", "time must be between"),
        (lambda e: {**e, "subject": 7}, "bad", "Expected `str`, got `int`"),
        (lambda e: {**e, "subject": "ada"}, "bad", "`$.subject`"),
        (lambda e: {**e, "data": {**e["data"], "messages": "3"}}, "bad", "Expected `int`"),
        (lambda e: {**e, "data": {**e["data"], "credits": "-1"}}, "bad", "must not be negative"),
        (lambda e: {**e, "data": {**e["data"], "status": "odd"}}, "bad", "success or failed"),
        (
            lambda e: {**e, "data": {**e["data"], "endpoint": "/v1/\u0000chat"}},
            "bad",
            "endpoint may not contain the NUL character",
        ),
        (lambda e: {**e, "datacontenttype": "text/xml"}, "bad", "datacontenttype"),
    ],
)
async def test_a_bad_event_is_refused_with_its_index_id_and_reason(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    world: EventsWorld,
    change: Any,
    expected_id: str | None,
    wording: str,
) -> None:
    good = cloud_event("good", world.ada)
    bad = change(cloud_event("bad", world.bob))
    response = await post(client, world.api_key, [good, bad])
    assert counts(response) == (1, 0, 1)
    [refusal] = response.json()["refusals"]
    assert (refusal["index"], refusal["id"], refusal["code"]) == (1, expected_id, "INVALID_REQUEST")
    assert wording in refusal["message"]
    assert [row.user_id for row in await usage_rows(engine)] == [world.ada]


async def test_a_subject_who_is_not_a_member_is_refused(
    engine: AsyncEngine, client: httpx.AsyncClient, world: EventsWorld
) -> None:
    events = [
        cloud_event("olga", world.olga),  # a member of another institution
        cloud_event("other", world.olga, OTHER),  # in another institution
        cloud_event("nobody", 999_999),  # no such user
        cloud_event("ada", world.ada),
    ]
    response = await post(client, world.api_key, events)
    assert counts(response) == (1, 0, 3)
    assert refusals(response) == [
        (0, "olga", "FORBIDDEN"),
        (1, "other", "FORBIDDEN"),
        (2, "nobody", "FORBIDDEN"),
    ]
    assert [row.user_id for row in await usage_rows(engine)] == [world.ada]


# --- batches, NDJSON, idempotency ----------------------------------------------------------


async def test_a_mixed_batch_is_counted_exactly_and_only_the_good_events_are_stored(
    engine: AsyncEngine, client: httpx.AsyncClient, world: EventsWorld
) -> None:
    first = [cloud_event("a", world.ada), cloud_event("b", world.bob, credits="2")]
    assert counts(await post(client, world.api_key, first)) == (2, 0, 0)
    mixed = [
        cloud_event("a", world.ada),  # duplicate of an earlier request
        cloud_event("c", world.ada, credits="3"),  # new
        {**cloud_event("d", world.bob), "specversion": "2.0"},  # refused: decoding
        cloud_event("b", world.bob, credits="9"),  # refused: same id, another payload
        cloud_event("e", world.olga),  # refused: not a member
        cloud_event("c", world.ada, credits="3"),  # duplicate inside the batch
        cloud_event("f", world.bob, credits="4", minutes_ago=5),  # new
        "not an event",  # refused: not an object
    ]
    response = await post(client, world.api_key, mixed)
    assert counts(response) == (2, 2, 4)
    assert refusals(response) == [
        (2, "d", "INVALID_REQUEST"),
        (3, "b", "IDEMPOTENCY_KEY_REUSED"),
        (4, "e", "FORBIDDEN"),
        (7, None, "INVALID_REQUEST"),
    ]
    reused = response.json()["refusals"][1]["message"]
    assert reused.startswith("id 'b' from source '//gateway.test/llm' was already used")
    rows = await usage_rows(engine)
    assert sorted((row.user_id, row.credits) for row in rows) == sorted(
        [
            (world.ada, Decimal("1.5")),
            (world.bob, Decimal("2")),
            (world.ada, Decimal("3")),
            (world.bob, Decimal("4")),
        ]
    )
    assert len(await key_rows(engine)) == 4


async def test_the_same_id_from_another_source_is_another_event(
    engine: AsyncEngine, client: httpx.AsyncClient, world: EventsWorld
) -> None:
    events = [cloud_event("x", world.ada), cloud_event("x", world.ada, source="//billing.test")]
    assert counts(await post(client, world.api_key, events)) == (2, 0, 0)
    assert len(await usage_rows(engine)) == 2


async def test_ndjson_is_read_line_by_line_and_written_in_chunks(
    engine: AsyncEngine, client: httpx.AsyncClient, world: EventsWorld
) -> None:
    events = [cloud_event(f"n-{i}", world.ada if i % 2 else world.bob) for i in range(2500)]
    body = ndjson(events[:1200]) + b"\n  \n" + b"{broken\n" + ndjson(events[1200:])[:-1]

    async def stream() -> Any:
        for start in range(0, len(body), 7000):  # chunks that split lines
            yield body[start : start + 7000]

    response = await client.post(PATH, content=stream(), headers={**world.api_key, **NDJSON})
    assert counts(response) == (2500, 0, 1)
    assert refusals(response) == [(1200, None, "INVALID_REQUEST")]
    assert len(await usage_rows(engine)) == 2500
    again = await post(client, world.api_key, body, NDJSON)
    assert counts(again) == (0, 2500, 1)
    assert len(await usage_rows(engine)) == 2500


async def test_personal_usage_debits_the_wallet_with_a_super_jwt(
    engine: AsyncEngine, client: httpx.AsyncClient, world: EventsWorld
) -> None:
    await top_up(engine, world, world.ada, "5")
    events = [
        cloud_event("p1", world.ada, "personal", "2"),
        cloud_event("p2", world.ada, "personal", "4"),  # 3 left: refused
        cloud_event("p3", world.ada, "personal", "3"),
    ]
    response = await post(client, world.super_jwt, events)
    assert counts(response) == (2, 0, 1)
    assert refusals(response) == [(1, "p2", "INSUFFICIENT_CREDITS")]
    entries = await ledger(engine, world.ada)
    assert [(e.type, e.amount, e.balance_after) for e in entries] == [
        ("credit", Decimal("5"), Decimal("5")),
        ("debit", Decimal("2"), Decimal("3")),
        ("debit", Decimal("3"), Decimal("0")),
    ]


# --- credentials, content types, limits ----------------------------------------------------


async def test_credentials(client: httpx.AsyncClient, world: EventsWorld) -> None:
    event = [cloud_event("a", world.ada)]
    missing = await post(client, {}, event)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "UNAUTHORIZED"
    wrong = await post(client, {"X-API-Key": "ug_live_nope"}, event)
    assert wrong.status_code == 401
    plain = await post(client, world.plain_jwt, event)
    assert plain.status_code == 403
    assert plain.json()["error"]["code"] == "FORBIDDEN"


async def test_a_key_revoked_after_use_is_refused_on_its_next_request(
    engine: AsyncEngine, app: Starlette, client: httpx.AsyncClient, world: EventsWorld
) -> None:
    """The app has read the key once (and takes its institution from memory since); it is
    revoked behind the app's back; the next request is refused by its write, nothing of it is
    stored, the key is forgotten, and its 401 is the one of a key refused up front (the
    request after it)."""
    digest = hash_api_key(world.key)
    assert counts(await post(client, world.api_key, [cloud_event("a", world.ada)])) == (1, 0, 0)
    assert app.state.known_keys.institution_of(digest) == ACME
    await revoke_key(engine, world.key)
    refused = await post(client, world.api_key, [cloud_event("b", world.ada)])
    assert app.state.known_keys.institution_of(digest) is None
    read_up_front = await post(client, world.api_key, [cloud_event("c", world.ada)])
    for response in (refused, read_up_front):
        assert response.status_code == 401
        assert response.json()["error"] == {
            "code": "UNAUTHORIZED",
            "message": "Invalid or expired token",
        }
        assert response.headers["www-authenticate"] == (
            'Bearer realm="usagegraph", error="invalid_token"'
        )
    assert [row.key for row in await key_rows(engine)] == [
        idempotency_key("//gateway.test/llm", "a")
    ]
    assert len(await usage_rows(engine)) == 1


async def test_a_revoked_key_is_refused_even_when_no_event_reaches_the_write(
    engine: AsyncEngine, client: httpx.AsyncClient, world: EventsWorld
) -> None:
    """Every event refused on reading leaves nothing to write; the key is checked anyway."""
    assert counts(await post(client, world.api_key, [cloud_event("a", world.ada)])) == (1, 0, 0)
    await revoke_key(engine, world.key)
    response = await post(client, world.api_key, [_without(cloud_event("b", world.ada), "id")])
    assert response.status_code == 401


async def test_other_content_types_are_415(client: httpx.AsyncClient, world: EventsWorld) -> None:
    response = await post(
        client, world.api_key, [cloud_event("a", world.ada)], {"Content-Type": "application/json"}
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_a_body_that_is_not_an_array_is_400(
    client: httpx.AsyncClient, world: EventsWorld
) -> None:
    response = await post(client, world.api_key, b'{"id": 1', BATCH)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_REQUEST"


@pytest.mark.parametrize("content_type", [BATCH, NDJSON])
async def test_too_many_events_or_bytes_are_413_and_write_nothing(
    engine: AsyncEngine, settings: Settings, world: EventsWorld, content_type: dict[str, str]
) -> None:
    events = [cloud_event(f"e{i}", world.ada) for i in range(4)]
    body = ndjson(events) if content_type is NDJSON else orjson.dumps(events)
    few = replace(settings, max_events_per_request=3)
    async with client_of(few) as client:
        response = await post(client, world.api_key, body, content_type)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert "USAGEGRAPH_MAX_EVENTS_PER_REQUEST" in error["message"]
    small = replace(settings, max_body_bytes=len(body) - 1)
    async with client_of(small) as client:
        response = await post(client, world.api_key, body, content_type)
    assert response.status_code == 413
    assert "USAGEGRAPH_MAX_BODY_BYTES" in response.json()["error"]["message"]
    assert await usage_rows(engine) == []
