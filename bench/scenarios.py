"""What the suite measures: each scenario is a question a real client asks, with real ids.

Paths, headers and bodies follow CONTRACT.md and usagegraph/auth/credentials.py: a JWT goes in
`x-access-token` on /api/..., as a Bearer token on /auth/..., /graphql and /api/v1/clients/...;
an institution's API key as a Bearer token on /v1/... and /api/v1/clients/.... Scenarios that
stand for "a member reading their own data" rotate over the busiest members, so the numbers
are not one hot row's.

Every scenario is checked once with httpx before it is loaded (`verify`): all its requests
must answer 200 (and GraphQL without errors), else it is reported as failed and not loaded.
Targets are issue 7's; each applies to one connection level (or every one).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from bench.dataset import Actors, Member
from bench.wrk import (
    RECORD_USAGE,
    RECORD_USAGE_BATCH,
    Check,
    HttpRequest,
    IngestLoad,
    WrkResult,
)

# A zone with DST and a whole-hour offset: buckets no longer match UTC days.
USAGE_HISTORY_ZONE = "America/New_York"


@dataclass(frozen=True, slots=True)
class Credentials:
    super_token: str
    admin_token: str | None
    member_tokens: Mapping[int, str]
    api_key: str  # of actors.institution


@dataclass(frozen=True, slots=True)
class Target:
    """An issue 7 target for one metric of one connection level (None: every level)."""

    label: str
    metric: str  # "p50_ms", "requests_per_second" or "events_per_second"
    at_most: float | None = None
    at_least: float | None = None
    connections: int | None = None

    def applies(self, connections: int) -> bool:
        return self.connections is None or self.connections == connections

    def met(self, result: WrkResult) -> bool:
        value = (
            result.latency_ms["p50"] if self.metric == "p50_ms" else getattr(result, self.metric)
        )
        if self.at_most is not None and value > self.at_most:
            return False
        return not (self.at_least is not None and value < self.at_least)


Describe = Callable[[Any], str]


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    title: str
    requests: tuple[HttpRequest, ...] = ()
    check: Check = Check.STATUS
    ingest: IngestLoad | None = None
    targets: tuple[Target, ...] = ()
    describe: Describe | None = None  # what the first answer holds, e.g. "5000 rows"
    # Why an answer (status 200, no errors) is still not the one to load, or None: a
    # scenario compared with another server must be sure both return the same amount.
    expect: Callable[[Any], str | None] | None = None
    count_sql: bool = True  # count its statements in-process (reads only)
    scale: bool = False  # also run on the --compare-events data set


@dataclass
class Verification:
    ok: bool
    detail: str = ""  # what the first answer held, or what went wrong
    response_bytes: int = 0
    problems: list[str] = field(default_factory=list)


# ---- requests ---------------------------------------------------------------------------------


def _access_token(token: str) -> dict[str, str]:
    return {"x-access-token": token}


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def _json_post(path: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> HttpRequest:
    return HttpRequest(
        "POST", path, {**headers, "Content-Type": "application/json"}, json.dumps(body)
    )


def _graphql(token: str, query: str, variables: Mapping[str, Any]) -> HttpRequest:
    return _json_post("/graphql", _bearer(token), {"query": query, "variables": variables})


def _per_member(
    members: Sequence[Member],
    tokens: Mapping[int, str],
    build: Callable[[Member, str], HttpRequest],
) -> tuple[HttpRequest, ...]:
    return tuple(build(m, tokens[m.user_id]) for m in members)


# ---- what an answer holds ---------------------------------------------------------------------


def _rows(key: str) -> Describe:
    return lambda body: f"{len(body[key])} rows"


def _user_stats_rows(body: Any) -> str:
    return f"{len(body['data'])} rows" + (" (truncated)" if body.get("truncated") else "")


def _buckets(body: Any) -> str:
    return f"{len(body['buckets'])} buckets"


def _graphql_buckets(body: Any) -> str:
    return f"{len(body['data']['viewer']['user']['usageHistory']['buckets'])} buckets"


def _edges(connection: Any) -> list[Any]:
    """The nodes of a Relay connection (an empty list for a null one)."""
    return [edge["node"] for edge in (connection or {}).get("edges") or []]


def _usage_events_shape(body: Any) -> tuple[int, int, int]:
    """(institutions, members, events) of an INSTITUTIONS_MEMBERS_EVENTS answer."""
    institutions = _edges(body["data"]["institutions"])
    members = [m for i in institutions for m in _edges(i["members"])]
    events = [e for m in members if m["user"] for e in _edges(m["user"]["usageEvents"])]
    return len(institutions), len(members), len(events)


def _describe_usage_events(body: Any) -> str:
    institutions, members, events = _usage_events_shape(body)
    return f"{institutions} institutions, {members} members, {events} events"


def expect_events(count: Callable[[Any], tuple[int, int, int]]) -> Callable[[Any], str | None]:
    """A check that an answer holds INSTITUTIONS x MEMBERS x EVENTS_PER_MEMBER events: what
    makes two servers' numbers for the same question comparable at all."""
    wanted = (INSTITUTIONS, INSTITUTIONS * MEMBERS, INSTITUTIONS * MEMBERS * EVENTS_PER_MEMBER)

    def check(body: Any) -> str | None:
        got = count(body)
        if got == wanted:
            return None
        return f"(institutions, members, events) = {got}, want {wanted}"

    return check


def _nested_members(body: Any) -> str:
    edges = body["data"]["institution"]["members"]["edges"]
    ledger = sum(len(e["node"]["user"]["ledger"]["edges"]) for e in edges if e["node"]["user"])
    return f"{len(edges)} members, {ledger} ledger entries"


# ---- the scenarios ----------------------------------------------------------------------------

NESTED_MEMBERS = """query Members($id: String!) {
  institution(id: $id) {
    members(first: 50) {
      totalCount
      edges { node {
        role capLimit effectiveCap
        user {
          id email
          wallet { balance available currency }
          ledger(first: 10) {
            totalCount
            edges { node { type amount balanceAfter description createdAt } }
          }
        }
      } }
    }
  }
}"""

# Issue 14's question: a page of institutions, a page of members of each, and each member's
# newest events. 500 events come back whatever the history holds, so its cost must not grow
# with the history either; bench/peer.py asks PostGraphile the same question.
INSTITUTIONS, MEMBERS, EVENTS_PER_MEMBER = 5, 20, 5
INSTITUTIONS_MEMBERS_EVENTS = f"""query InstitutionsMembersEvents {{
  institutions(first: {INSTITUTIONS}) {{ edges {{ node {{
    members(first: {MEMBERS}) {{ edges {{ node {{
      role
      user {{
        email
        usageEvents(first: {EVENTS_PER_MEMBER}) {{
          edges {{ node {{ occurredAt credits messages }} }}
        }}
      }}
    }} }} }}
  }} }} }}
}}"""

USAGE_HISTORY = """query History($instance: String!, $zone: String!) {
  viewer { user { usageHistory(instanceId: $instance, timeZone: $zone) {
    instanceId window interval scope currency timeZone start end
    buckets { start end credits messages users }
    totals { credits messages users }
  } } }
}"""

USAGE_HISTORY_P50 = Target("p50 ≤ 10 ms (cache off)", "p50_ms", at_most=10, connections=1)
USER_STATS_5000 = Target("5,000 rows ≤ 300 ms", "p50_ms", at_most=300, connections=1)


@dataclass(frozen=True, slots=True)
class RatioTarget:
    """Issue 15's targets that compare two scenarios of the same run: p50 of `numerator`
    over p50 of `denominator` at one connection. A ratio means something only when both ask
    the same question, which `same_answer` checks request by request before any load."""

    label: str
    numerator: str  # scenario keys
    denominator: str
    at_most: float
    same_answer: Callable[[Any, Any], str | None]


def _usage_history_facts(history: Any) -> dict[str, Any]:
    """What a usage-history answer says, however the API spells it: parameters, and every
    bucket's start and sums (money compared as decimals, times as instants)."""

    def bucket(b: Any) -> tuple[Any, ...]:
        start = datetime.fromisoformat(b["start"].replace("Z", "+00:00"))
        return (start, Decimal(str(b["credits"])), b["messages"], b["users"])

    totals = history["totals"]
    return {
        **{k: history[k] for k in ("instanceId", "window", "currency")},
        # Enums: `DAILY`/`OWN` in the graph, `daily`/`own` in REST.
        **{k: history[k].lower() for k in ("interval", "scope")},
        "buckets": [bucket(b) for b in history["buckets"]],
        "totals": (Decimal(str(totals["credits"])), totals["messages"], totals["users"]),
    }


def same_usage_history(graphql_body: Any, rest_body: Any) -> str | None:
    """None when the GraphQL and the REST answer hold the same history, else what differs."""
    graph = _usage_history_facts(graphql_body["data"]["viewer"]["user"]["usageHistory"])
    rest = _usage_history_facts(rest_body)
    differing = [key for key in graph if graph[key] != rest[key]]
    return f"{', '.join(differing)} differ" if differing else None


# Issue 15: "GraphQL usage history within 1.2x of the REST route's p50" (cache off).
USAGE_HISTORY_RATIO = RatioTarget(
    "GraphQL / REST usage-history p50",
    "graphql.usage_history",
    "rest.usage_history",
    1.2,
    same_usage_history,
)
RATIO_TARGETS = (USAGE_HISTORY_RATIO,)


def _usage_history_rest(actors: Actors, creds: Credentials) -> Scenario:
    return Scenario(
        key="rest.usage_history",
        title="REST usage-history: member own, 30 d daily",
        requests=_per_member(
            actors.members,
            creds.member_tokens,
            lambda m, t: HttpRequest(
                "GET", f"/api/user/usage-history?instanceId={m.instance}", _access_token(t)
            ),
        ),
        targets=(USAGE_HISTORY_P50,),
        describe=_buckets,
        scale=True,
    )


def _usage_history_all(actors: Actors, creds: Credentials) -> Scenario | None:
    if creds.admin_token is None:
        return None
    path = f"/api/user/usage-history?instanceId={actors.institution}&window=180&scope=all"
    return Scenario(
        key="rest.usage_history_all_180d",
        title=f"REST usage-history: admin scope=all ({actors.institution_members} members), 180 d",
        requests=(HttpRequest("GET", path, _access_token(creds.admin_token)),),
        describe=_buckets,
        scale=True,
    )


def _user_stats(creds: Credentials, today: date, days: int) -> list[Scenario]:
    headers = _access_token(creds.super_token)
    path = "/api/admin/histories/charts/user-stats"
    whole = {
        "granularity": "day",
        "daterange": {
            "start": (today - timedelta(days=days)).isoformat(),
            "end": (today + timedelta(days=1)).isoformat(),
        },
    }
    return [
        Scenario(
            key="rest.user_stats",
            title="REST user-stats: super, default (30 d daily)",
            requests=(_json_post(path, headers, {}),),
            targets=(USER_STATS_5000,),
            describe=_user_stats_rows,
        ),
        Scenario(
            key="rest.user_stats_5000",
            title=f"REST user-stats: super, {days + 1} d daily (all history)",
            requests=(_json_post(path, headers, whole),),
            targets=(USER_STATS_5000,),
            describe=_user_stats_rows,
        ),
    ]


def _billing(creds: Credentials) -> Scenario:
    return Scenario(
        key="rest.billing_usage_history",
        title="REST billing usage-history: API key, 12 months",
        requests=(HttpRequest("GET", "/v1/billing/usage-history", _bearer(creds.api_key)),),
        describe=_rows("data"),
    )


def _account(actors: Actors, creds: Credentials, today: date, days: int) -> list[Scenario]:
    since = (today - timedelta(days=days)).isoformat()
    paths = [
        ("usage", "/auth/account/usage", "this month", "data"),
        (
            "usage_daily",
            f"/auth/account/usage?period=daily&from={since}",
            f"{days} d daily",
            "data",
        ),
        ("credits", "/auth/account/credits", "", None),
        ("ledger", "/auth/account/ledger", "50 newest", "data"),
        ("summary", "/auth/account/summary", "", None),
    ]
    scenarios = []
    for name, path, note, rows in paths:
        requests = _per_member(
            actors.members,
            creds.member_tokens,
            lambda _m, t, p=path: HttpRequest("GET", p, _bearer(t)),
        )
        scenarios.append(
            Scenario(
                key=f"rest.account_{name}",
                title=f"REST account/{path.split('/')[3].split('?')[0]}"
                + (f": {note}" if note else ""),
                requests=requests,
                describe=_rows(rows) if rows else None,
            )
        )
    return scenarios


def _clients(actors: Actors, creds: Credentials) -> Scenario | None:
    if actors.bucket is None:
        return None
    return Scenario(
        key="rest.clients_history",
        title="REST clients history: API key, 100 newest snapshots",
        requests=(
            HttpRequest("GET", f"/api/v1/clients/{actors.bucket}/history", _bearer(creds.api_key)),
        ),
        describe=lambda body: f"{body['count']} snapshots",
    )


def _nested(actors: Actors, creds: Credentials) -> Scenario:
    return nested_members(creds.super_token, actors.institution)


def nested_members(super_token: str, institution: str) -> Scenario:
    """Issue 15's question: an institution's 50 members with role, cap, email, wallet and 10
    newest ledger entries with their count, as super."""
    return Scenario(
        key="graphql.nested_members",
        title="GraphQL: 50 members + balance, cap, 10 ledger entries",
        requests=(_graphql(super_token, NESTED_MEMBERS, {"id": institution}),),
        check=Check.GRAPHQL,
        # PostGraphile's figures are measured beside it: `./scripts/bench peer --question nested`.
        targets=(Target("p50 ≤ 25 ms", "p50_ms", at_most=25, connections=1),),
        describe=_nested_members,
    )


def institutions_members_events(super_token: str) -> Scenario:
    """5 institutions x 20 members x usageEvents(first: 5), as super (who sees them all)."""
    return Scenario(
        key="graphql.institutions_members_events",
        title=f"GraphQL: {INSTITUTIONS} institutions x {MEMBERS} members x "
        f"usageEvents(first: {EVENTS_PER_MEMBER})",
        requests=(_graphql(super_token, INSTITUTIONS_MEMBERS_EVENTS, {}),),
        check=Check.GRAPHQL,
        describe=_describe_usage_events,
        expect=expect_events(_usage_events_shape),
        scale=True,
    )


def _usage_history_graphql(actors: Actors, creds: Credentials, zone: str) -> Scenario:
    utc = zone == "UTC"
    return Scenario(
        key="graphql.usage_history" + ("" if utc else "_zone"),
        title=f"GraphQL usage-history: member own, 30 d daily, {zone}",
        requests=_per_member(
            actors.members,
            creds.member_tokens,
            lambda m, t: _graphql(t, USAGE_HISTORY, {"instance": m.instance, "zone": zone}),
        ),
        check=Check.GRAPHQL,
        targets=(USAGE_HISTORY_P50,) if utc else (),
        describe=_graphql_buckets,
        scale=True,
    )


def read_scenarios(actors: Actors, creds: Credentials, days: int) -> list[Scenario]:
    """Every read the suite measures, cache off."""
    today = datetime.now(UTC).date()
    candidates: list[Scenario | None] = [
        _usage_history_rest(actors, creds),
        _usage_history_all(actors, creds),
        *_user_stats(creds, today, days),
        _billing(creds),
        *_account(actors, creds, today, days),
        _clients(actors, creds),
        _nested(actors, creds),
        institutions_members_events(creds.super_token),
        _usage_history_graphql(actors, creds, "UTC"),
        _usage_history_graphql(actors, creds, USAGE_HISTORY_ZONE),
    ]
    return [s for s in candidates if s is not None]


def cache_on_scenarios(actors: Actors, creds: Credentials) -> list[Scenario]:
    """The usage-history read again, with the server's default in-process cache."""
    plain = _usage_history_rest(actors, creds)
    return [
        Scenario(
            key="rest.usage_history.cache_on",
            title=plain.title + " [cache ON]",
            requests=plain.requests,
            describe=plain.describe,
            count_sql=False,
        )
    ]


def ingest_scenarios(actors: Actors, creds: Credentials, batch: int) -> list[Scenario]:
    single = IngestLoad(creds.api_key, actors.institution, actors.writers)
    batched = IngestLoad(creds.api_key, actors.institution, actors.writers, batch=batch)
    return [
        Scenario(
            key="ingest.record_usage",
            title="GraphQL recordUsage: 1 event/request, API key",
            ingest=single,
            check=Check.GRAPHQL,
            targets=(
                Target("≥ 1,000 events/s", "events_per_second", at_least=1000, connections=32),
            ),
            count_sql=False,
        ),
        Scenario(
            key="ingest.record_usage_batch",
            title=f"GraphQL recordUsageBatch: {batch} events/request, API key",
            ingest=batched,
            check=Check.GRAPHQL,
            targets=(Target("≥ 20,000 events/s", "events_per_second", at_least=20_000),),
            count_sql=False,
        ),
    ]


# ---- checking a scenario once before loading it -----------------------------------------------


def sample_ingest_request(load: IngestLoad) -> HttpRequest:
    """One request like those the wrk script sends (its own unique keys)."""
    when = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    prefix = f"verify-{uuid.uuid4().hex[:12]}"

    def event(i: int) -> dict[str, Any]:
        return {
            "userId": load.users[i % len(load.users)],
            "instance": load.instance,
            "occurredAt": when,
            "credits": "0.25",
            "messages": 1,
            "endpoint": "/v1/bench",
            "idempotencyKey": f"{prefix}-{i}",
        }

    if load.batch:
        body = {
            "query": RECORD_USAGE_BATCH,
            "variables": {"events": [event(i) for i in range(load.batch)]},
        }
    else:
        body = {"query": RECORD_USAGE, "variables": {"input": event(0)}}
    return _json_post("/graphql", _bearer(load.api_key), body)


def _ingest_problem(load: IngestLoad, body: Any) -> str | None:
    data = body.get("data") or {}
    if load.batch:
        inserted = (data.get("recordUsageBatch") or {}).get("inserted")
        return None if inserted == load.batch else f"inserted {inserted} of {load.batch}"
    status = (data.get("recordUsage") or {}).get("status")
    return None if status == "INSERTED" else f"status {status}"


def send(http: httpx.Client, request: HttpRequest) -> httpx.Response:
    return http.request(
        request.method, request.path, headers=dict(request.headers), content=request.body
    )


def _problem(scenario: Scenario, request: HttpRequest, response: httpx.Response) -> str | None:
    """Why this answer does not count as a success, or None."""
    where = f"{request.method} {request.path}"
    if response.status_code != 200:
        return f"{where} -> {response.status_code}: {response.text[:500]}"
    if scenario.check is Check.GRAPHQL:
        body = response.json()
        if body.get("errors"):
            return f"{where} -> GraphQL errors: {json.dumps(body['errors'])[:500]}"
        if scenario.ingest is not None and (issue := _ingest_problem(scenario.ingest, body)):
            return f"{where} -> {issue}: {response.text[:300]}"
        if scenario.expect is not None and (issue := scenario.expect(body)):
            return f"{where} -> not the expected answer: {issue}"
    return None


def compare_answers(
    base_url: str, target: RatioTarget, numerator: Scenario, denominator: Scenario
) -> list[str]:
    """Send the two scenarios' requests pairwise (the same caller and instance in both, in
    the same rotation); what differs between each pair's answers (empty: the same question)."""
    if len(numerator.requests) != len(denominator.requests):
        return [f"{len(numerator.requests)} requests vs {len(denominator.requests)}"]
    problems = []
    with httpx.Client(base_url=base_url, timeout=120) as http:
        for left, right in zip(numerator.requests, denominator.requests, strict=True):
            answers = [send(http, request) for request in (left, right)]
            if any(a.status_code != 200 for a in answers):
                problems.append(f"{right.path}: status {[a.status_code for a in answers]}")
            elif issue := target.same_answer(answers[0].json(), answers[1].json()):
                problems.append(f"{right.path}: {issue}")
    return problems


def verify(base_url: str, scenario: Scenario) -> Verification:
    """Send every request of the scenario once; all must succeed."""
    requests = scenario.requests
    if scenario.ingest is not None:
        requests = (sample_ingest_request(scenario.ingest),)
    result = Verification(ok=True)
    with httpx.Client(base_url=base_url, timeout=120) as http:
        for index, request in enumerate(requests):
            response = send(http, request)
            if problem := _problem(scenario, request, response):
                result.problems.append(problem)
                continue
            if index == 0:
                result.response_bytes = len(response.content)
                if scenario.describe is not None:
                    result.detail = scenario.describe(response.json())
    result.ok = not result.problems
    return result
