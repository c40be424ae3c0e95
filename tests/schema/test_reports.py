"""The graph and the REST shims answer the same question with the same numbers.

Each test asks one documented REST route and the matching GraphQL field, on the fixtures
the REST tests use, and compares every number; a few graph-only behaviours (timeZone) follow.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import FIXED_NOW
from tests.fixtures import billing_data, buckets_data, usage_history_data, user_stats_data
from tests.fixtures.factories import add_usage_events
from tests.schema.graph import error_codes, graphql
from usagegraph.db.engine import session_factory
from usagegraph.db.models import UsageEvent


def _numbers(values: list[object]) -> list[Decimal]:
    return [Decimal(str(value)) for value in values]


async def test_usage_history_matches_the_rest_route(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await usage_history_data.seed(engine)
    acme = usage_history_data.ACME
    rest = (
        await client.get(
            f"/api/user/usage-history?instanceId={acme}&window=14&scope=all",
            headers=usage_history_data.token_headers(people.admin),
        )
    ).json()
    body = await graphql(
        client,
        """query($id: String!) { institution(id: $id) { usageHistory(window: 14, scope: ALL) {
             window interval scope currency buckets { start credits messages users }
             totals { credits messages users } } } }""",
        user_id=people.admin,
        variables={"id": acme},
    )
    graph = body["data"]["institution"]["usageHistory"]
    assert (graph["window"], graph["interval"], graph["scope"], graph["currency"]) == (
        rest["window"],
        rest["interval"].upper(),
        rest["scope"].upper(),
        rest["currency"],
    )
    assert len(graph["buckets"]) == len(rest["buckets"]) == 14  # days 7 to 20 May
    for ours, theirs in zip(graph["buckets"], rest["buckets"], strict=True):
        assert datetime.fromisoformat(ours["start"]) == datetime.fromisoformat(theirs["start"])
        assert Decimal(ours["credits"]) == Decimal(str(theirs["credits"]))
        assert (ours["messages"], ours["users"]) == (theirs["messages"], theirs["users"])
    assert Decimal(graph["totals"]["credits"]) == Decimal(str(rest["totals"]["credits"]))


async def test_usage_history_of_someone_else_is_forbidden(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    people = await usage_history_data.seed(engine)
    body = await graphql(
        client,
        'query($id: Int!) { user(id: $id) { usageHistory(instanceId: "personal") { window } } }',
        user_id=people.super,
        variables={"id": people.member},
    )
    assert error_codes(body) == ["FORBIDDEN"]


async def _usage_in_zone(
    engine: AsyncEngine, client: httpx.AsyncClient, zone: str, day_start_utc: datetime
) -> dict:
    user_id = (await usage_history_data.seed_people(engine)).member
    async with session_factory(engine)() as session, session.begin():
        await add_usage_events(
            session, UsageEvent(user_id=user_id, occurred_at=day_start_utc, credits=Decimal(1))
        )
    body = await graphql(
        client,
        """query($id: Int!, $zone: String!) { user(id: $id) {
             usageHistory(instanceId: "personal", window: 90, interval: DAILY, timeZone: $zone) {
               timeZone buckets { start end credits } } } }""",
        user_id=user_id,
        variables={"id": user_id, "zone": zone},
    )
    return body["data"]["user"]["usageHistory"]


def _bucket_at(history: dict, start: datetime) -> dict:
    (bucket,) = [b for b in history["buckets"] if datetime.fromisoformat(b["start"]) == start]
    return bucket


async def test_time_zone_days_across_spring_forward_last_23_hours(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    # Berlin, 29 March 2026: 00:00 CET = 28 March 23:00 UTC; 30 March 00:00 CEST = 29 22:00.
    start = datetime.fromisoformat("2026-03-28T23:00:00+00:00")
    history = await _usage_in_zone(engine, client, "Europe/Berlin", start)
    bucket = _bucket_at(history, start)
    end = datetime.fromisoformat(bucket["end"])
    assert end - start == timedelta(hours=23)
    assert Decimal(bucket["credits"]) == 1  # the event at local midnight lands on the 29th


async def test_time_zone_days_across_fall_back_last_25_hours(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    # Sydney, 5 April 2026: 00:00 AEDT = 4 April 13:00 UTC; 6 April 00:00 AEST = 5 14:00 UTC.
    start = datetime.fromisoformat("2026-04-04T13:00:00+00:00")
    history = await _usage_in_zone(engine, client, "Australia/Sydney", start)
    bucket = _bucket_at(history, start)
    assert datetime.fromisoformat(bucket["end"]) - start == timedelta(hours=25)
    assert history["timeZone"] == "Australia/Sydney"


async def test_unknown_time_zone_is_an_invalid_request(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    user_id = (await usage_history_data.seed_people(engine)).member
    body = await graphql(
        client,
        'query($id: Int!) { user(id: $id) { usageHistory(instanceId: "personal", '
        'timeZone: "Mars/Olympus") { window } } }',
        user_id=user_id,
        variables={"id": user_id},
    )
    assert error_codes(body) == ["INVALID_REQUEST"]


async def test_user_stats_matches_the_rest_route(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await user_stats_data.seed_campus(engine)
    caller = user_stats_data.SUPER
    rest = (
        await client.post(
            "/api/admin/histories/charts/user-stats",
            json={"granularity": "week"},
            headers=user_stats_data.headers(caller),
        )
    ).json()
    body = await graphql(
        client,
        """{ userStats(input: {granularity: WEEK}) {
             truncated windowSource defaultDaysApplied
             rows { userId institutionId periodStart queryCount creditsUsed lifetimeUsed
                    capLimit capUsedPct atCap }
             summary { meanCreditsPerUserAccount meanCreditsPerUserInstitution usersAtCap } } }""",
        user_id=caller,
    )
    graph = body["data"]["userStats"]
    assert (graph["truncated"], graph["windowSource"].lower(), graph["defaultDaysApplied"]) == (
        rest["truncated"],
        rest["windowSource"],
        rest["defaultDaysApplied"],
    )
    assert rest["data"], "the fixture must produce rows"
    assert [(r["userId"], r["institutionId"], r["queryCount"]) for r in graph["rows"]] == [
        (int(r["user"]), r["institution"], r["queryCount"]) for r in rest["data"]
    ]
    for field, rest_field in (("creditsUsed", "creditsUsed"), ("lifetimeUsed", "lifetimeUsed")):
        assert _numbers([r[field] for r in graph["rows"]]) == _numbers(
            [r[rest_field] for r in rest["data"]]
        )
    assert [r["atCap"] for r in graph["rows"]] == [r["atCap"] for r in rest["data"]]
    assert _numbers(list(graph["summary"].values())) == _numbers(
        [rest["summary"][k] for k in graph["summary"]]
    )


async def test_plain_users_get_forbidden_user_stats(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await user_stats_data.seed_campus(engine)
    body = await graphql(client, "{ userStats { truncated } }", user_id=user_stats_data.ADA)
    assert error_codes(body) == ["FORBIDDEN"]


async def test_billing_periods_match_the_rest_route(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await billing_data.seed_billing(engine)
    rest = (
        await client.get(
            "/v1/billing/usage-history?limit=5&offset=1", headers={"X-API-Key": world.acme_key}
        )
    ).json()
    body = await graphql(
        client,
        """query($id: String!) { institution(id: $id) { billingPeriods(limit: 5, offset: 1) {
             total hasMore periods { periodStart periodEnd messageCount overageCount planLimit }
           } } }""",
        user_id=world.admin_id,
        variables={"id": billing_data.ACME},
    )
    page = body["data"]["institution"]["billingPeriods"]
    assert (page["total"], page["hasMore"]) == (rest["meta"]["total"], rest["meta"]["has_more"])
    assert [
        (p["periodStart"], p["periodEnd"], p["messageCount"], p["overageCount"], p["planLimit"])
        for p in page["periods"]
    ] == [
        (
            p["period_start"],
            p["period_end"],
            p["message_count"],
            p["overage_count"],
            p["plan_limit"],
        )
        for p in rest["data"]
    ]


async def test_bucket_snapshots_match_the_rest_route_and_page(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await buckets_data.seed_buckets(engine)
    rest = (
        await client.get("/api/v1/clients/acme-corp/history", headers={"X-API-Key": world.acme_key})
    ).json()
    query = """query($after: String) { bucket(id: "acme-corp") {
        snapshots(first: 2, after: $after) { pageInfo { hasNextPage endCursor }
          edges { node { snapshotDate records storage { objectCount totalBytes } } } } } }"""
    dates, records, after = [], [], None
    while True:
        body = await graphql(client, query, user_id=world.member_id, variables={"after": after})
        page = body["data"]["bucket"]["snapshots"]
        dates += [edge["node"]["snapshotDate"] for edge in page["edges"]]
        records += [edge["node"]["records"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert dates == [s["snapshot_date"] for s in rest["snapshots"]]
    assert records == [s["records"] for s in rest["snapshots"]]


async def test_another_tenants_bucket_is_null(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    world = await buckets_data.seed_buckets(engine)
    body = await graphql(client, '{ bucket(id: "other-co") { bucketId } }', user_id=world.member_id)
    assert body["data"]["bucket"] is None
    assert FIXED_NOW.year == 2026


async def test_time_zone_offset_by_45_minutes_splits_days_at_its_own_midnight(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    # Kathmandu is UTC+05:45: 10 May 2026 00:00 local = 9 May 18:15 UTC. Usage at 18:14 UTC
    # belongs to the 9th, usage at 18:15 UTC to the 10th; the quarter-hour rollups keep the
    # two apart (an hourly rollup could not).
    midnight = datetime.fromisoformat("2026-05-09T18:15:00+00:00")
    user_id = (await usage_history_data.seed_people(engine)).member
    async with session_factory(engine)() as session, session.begin():
        await add_usage_events(
            session,
            UsageEvent(
                user_id=user_id, occurred_at=midnight - timedelta(minutes=1), credits=Decimal(2)
            ),
            UsageEvent(user_id=user_id, occurred_at=midnight, credits=Decimal(5)),
        )
    body = await graphql(
        client,
        """query($id: Int!) { user(id: $id) {
             usageHistory(instanceId: "personal", window: 30, interval: DAILY,
                          timeZone: "Asia/Kathmandu") { buckets { start end credits } } } }""",
        user_id=user_id,
        variables={"id": user_id},
    )
    history = body["data"]["user"]["usageHistory"]
    tenth = _bucket_at(history, midnight)
    ninth = _bucket_at(history, midnight - timedelta(days=1))
    assert (Decimal(ninth["credits"]), Decimal(tenth["credits"])) == (2, 5)
    assert datetime.fromisoformat(tenth["end"]) - midnight == timedelta(days=1)
