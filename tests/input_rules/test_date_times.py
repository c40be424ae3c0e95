"""The date-time rule (`iso_dates`): every date and date-time input lies between
1970-01-01T00:00:00Z and 9998-12-31T23:59:59Z, or is INVALID_REQUEST; never a 500, INTERNAL
or a stored `-infinity`.

The property test draws date-times around the year edges with offsets as far as they go and
sends each to every REST route and GraphQL field that takes a date or a date-time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date

import httpx
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.input_rules.world import (
    ACME,
    BUCKET,
    RECENT,
    World,
    access_token,
    api_key_header,
    assert_no_crash,
    assert_refused,
    assert_rest_answer,
    bearer,
    call_every_entry_point,
    post_graphql,
    property_test,
    scalar,
)

USER_STATS = "/api/admin/histories/charts/user-stats"

# --- the values and what they should be -------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """A date-time as a client writes it, and whether the rule must let it in.

    `storable` is worked out here from the parts, with day ordinals rather than datetime
    arithmetic, so the oracle cannot overflow where the code under test did.
    """

    text: str
    storable: bool
    day_storable: bool  # the date part alone, for routes that take dates

    @property
    def day(self) -> str:
        return self.text[:10]


FIRST = date(1970, 1, 1).toordinal() * 86400
END = date(9999, 1, 1).toordinal() * 86400
OFFSETS = ["", "Z", "+00:00", "+05:00", "-05:00", "+14:00", "-12:00", "+23:59", "-23:59"]


def _offset_seconds(offset: str) -> int:
    if offset in ("", "Z"):
        return 0
    sign = 1 if offset[0] == "+" else -1
    return sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)


@st.composite
def moments(draw: st.DrawFn) -> Moment:
    year = draw(
        st.one_of(
            st.sampled_from([1, 2, 1969, 1970, 1971, 2026, 9997, 9998, 9999]),
            st.integers(min_value=1, max_value=9999),
        )
    )
    month = draw(st.sampled_from([1, 6, 12]) | st.integers(min_value=1, max_value=12))
    day = draw(st.sampled_from([1, 28]) | st.integers(min_value=1, max_value=28))
    hour, minute, second = draw(
        st.sampled_from([(0, 0, 0), (23, 59, 59), (12, 0, 0)])
        | st.tuples(
            st.integers(min_value=0, max_value=23),
            st.integers(min_value=0, max_value=59),
            st.integers(min_value=0, max_value=59),
        )
    )
    offset = draw(st.sampled_from(OFFSETS))
    local = date(year, month, day).toordinal() * 86400 + hour * 3600 + minute * 60 + second
    utc = local - _offset_seconds(offset)
    day_ordinal = date(year, month, day).toordinal() * 86400
    return Moment(
        text=f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{offset}",
        storable=FIRST <= utc < END,
        day_storable=FIRST <= day_ordinal < END,
    )


# --- every entry point ----------------------------------------------------------------------

Call = Callable[[httpx.AsyncClient, World, Moment], Awaitable[None]]


def _rest(method: str, path: str, envelope: str, build: Callable[[Moment], dict]) -> Call:
    """A REST route given the drawn value; refused with a 400 whenever the value is out of
    range (`build` says whether it sends the date-time or its date part)."""

    async def call(client: httpx.AsyncClient, world: World, moment: Moment) -> None:
        request = build(moment)
        uses_day = request.pop("uses_day", False)
        headers = request.pop("headers")(world)
        response = await client.request(method, path, headers=headers, **request)
        assert_rest_answer(response, envelope)
        if not (moment.day_storable if uses_day else moment.storable):
            assert response.status_code == 400, response.text

    return call


def _graph(
    query: str,
    variables: Callable[[World, Moment], dict],
    *,
    caller: str = "super",
    uses_day: bool = False,
) -> Call:
    """A GraphQL field given the drawn value; INVALID_REQUEST whenever it is out of range."""

    async def call(client: httpx.AsyncClient, world: World, moment: Moment) -> None:
        headers = {
            "super": bearer(world.super_id),
            "ada": bearer(world.ada_id),
            "api-key": api_key_header(world.api_key),
        }[caller]
        response = await post_graphql(client, query, headers, variables(world, moment))
        if moment.day_storable if uses_day else moment.storable:
            assert_no_crash(response)
        else:
            assert_refused(response)

    return call


def _account(path: str, name: str) -> Call:
    return _rest(
        "GET",
        f"/auth/account/{path}",
        "coded",
        lambda m: {"params": {name: m.text}, "headers": lambda w: bearer(w.ada_id)},
    )


def _user_stats(side: str) -> Call:
    other = {"start": "2026-01-01", "end": "2026-06-01"}

    def build(moment: Moment) -> dict:
        daterange = {**other, side: moment.text}
        return {"json": {"daterange": daterange}, "headers": lambda w: access_token(w.super_id)}

    return _rest("POST", USER_STATS, "legacy", build)


def _clients(name: str) -> Call:
    def build(moment: Moment) -> dict:
        return {
            "params": {name: moment.day},
            "uses_day": True,
            "headers": lambda w: bearer(w.ada_id),
        }

    return _rest("GET", f"/api/v1/clients/{BUCKET}/history", "clients", build)


def _viewer_list(field: str, argument: str) -> Call:
    query = (
        f"query($d: DateTime) {{ viewer {{ user {{ {field}({argument}: $d) "
        "{ __typename } } } }"
    )
    return _graph(query, lambda w, m: {"d": m.text}, caller="ada")


USER_STATS_RANGE = (
    "query($s: DateTime!, $e: DateTime!) { userStats(input: {daterange: {start: $s, end: $e}}) "
    "{ windowStart rows { userId } } }"
)
RECORD = "mutation($e: UsageEventInput!) { recordUsage(input: $e) { status } }"
BATCH = "mutation($e: [UsageEventInput!]!) { recordUsageBatch(events: $e) { inserted refused } }"
SNAPSHOT = (
    'mutation($d: Date!, $c: DateTime) { recordSnapshot(input: {bucketId: "' + BUCKET + '", '
    "snapshotDate: $d, records: {}, storage: {objectCount: 1, totalBytes: 1}, computedAt: $c}) "
    "{ snapshotDate } }"
)


def _snapshots(argument: str) -> str:
    return (
        f'query($d: Date) {{ bucket(id: "{BUCKET}") {{ snapshots({argument}: $d) '
        "{ edges { cursor } } } }"
    )


def _event(world: World, occurred_at: str) -> dict:
    return {"userId": world.ada_id, "instance": ACME, "occurredAt": occurred_at, "credits": "0"}


def _literal_user_stats(moment: Moment) -> str:
    """The value written into the document itself (a literal, not a variable)."""
    return (
        f'{{ userStats(input: {{daterange: {{start: "{moment.text}", '
        'end: "2026-06-01T00:00:00Z"}}) { windowStart } }'
    )


async def _literal(client: httpx.AsyncClient, world: World, moment: Moment) -> None:
    response = await post_graphql(client, _literal_user_stats(moment), bearer(world.super_id))
    if moment.storable:
        assert_no_crash(response)
    else:
        assert_refused(response)


ENTRY_POINTS: dict[str, Call] = {
    "REST /auth/account/usage from": _account("usage", "from"),
    "REST /auth/account/usage to": _account("usage", "to"),
    "REST /auth/account/ledger from": _account("ledger", "from"),
    "REST /auth/account/ledger to": _account("ledger", "to"),
    "REST user-stats daterange.start": _user_stats("start"),
    "REST user-stats daterange.end": _user_stats("end"),
    "REST clients history start_date": _clients("start_date"),
    "REST clients history end_date": _clients("end_date"),
    "userStats daterange.start": _graph(
        USER_STATS_RANGE, lambda w, m: {"s": m.text, "e": "2026-06-01T00:00:00Z"}
    ),
    "userStats daterange.end": _graph(
        USER_STATS_RANGE, lambda w, m: {"s": "2026-01-01T00:00:00Z", "e": m.text}
    ),
    "userStats daterange literal": _literal,
    "User.usage from": _viewer_list("usage", "from"),
    "User.usage to": _viewer_list("usage", "to"),
    "User.ledger from": _viewer_list("ledger", "from"),
    "User.ledger to": _viewer_list("ledger", "to"),
    "User.usageEvents from": _viewer_list("usageEvents", "from"),
    "User.usageEvents to": _viewer_list("usageEvents", "to"),
    "recordUsage occurredAt": _graph(
        RECORD, lambda w, m: {"e": _event(w, m.text)}, caller="api-key"
    ),
    "recordUsageBatch occurredAt": _graph(
        BATCH, lambda w, m: {"e": [_event(w, RECENT), _event(w, m.text)]}, caller="api-key"
    ),
    "forgetUsage before": _graph(
        "mutation($d: DateTime) { forgetUsage(input: {before: $d}) { forgottenCount } }",
        lambda w, m: {"d": m.text},
        caller="ada",
    ),
    "recordSnapshot computedAt": _graph(SNAPSHOT, lambda w, m: {"d": "2026-05-03", "c": m.text}),
    "recordSnapshot snapshotDate": _graph(
        SNAPSHOT, lambda w, m: {"d": m.day, "c": None}, uses_day=True
    ),
    "ClientBucket.snapshots startDate": _graph(
        _snapshots("startDate"), lambda w, m: {"d": m.day}, uses_day=True
    ),
    "ClientBucket.snapshots endDate": _graph(
        _snapshots("endDate"), lambda w, m: {"d": m.day}, uses_day=True
    ),
}


async def _nothing_stored_out_of_range(engine: AsyncEngine) -> None:
    """No stored time or day outside the range: PostgreSQL's driver would have written the
    first and last instants as -infinity and infinity."""
    checks = {
        "usage_events": "occurred_at",
        "snapshots": "computed_at",
        "ledger_entries": "created_at",
    }
    for table, column in checks.items():
        outside = await scalar(
            engine,
            f"SELECT count(*) FROM {table} WHERE {column} < '1970-01-01' "
            f"OR {column} >= '9999-01-01'",
        )
        assert outside == 0, f"{table}.{column}"
    days = await scalar(
        engine,
        "SELECT count(*) FROM snapshots "
        "WHERE snapshot_date < '1970-01-01' OR snapshot_date > '9998-12-31'",
    )
    assert days == 0


@property_test
@given(moment=moments())
async def test_every_date_time_input_refuses_what_it_cannot_store(
    engine: AsyncEngine, client: httpx.AsyncClient, world: World, moment: Moment
) -> None:
    await call_every_entry_point(ENTRY_POINTS, client, world, moment, moment.text)
    await _nothing_stored_out_of_range(engine)
