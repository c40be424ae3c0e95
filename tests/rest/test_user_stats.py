"""POST /api/admin/histories/charts/user-stats (seed 001) through the real app.

Data and hand-worked numbers: tests/fixtures/user_stats_data.py. Now is Wed 2026-05-20 15:30 UTC.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.user_stats_data import (
    ACME,
    ADA,
    BETA,
    BOB,
    CLERK,
    CY,
    DAN,
    DEAN,
    PAT,
    SUPER,
    Person,
    add_people,
    add_usage,
    at,
    headers,
    seed_bulk,
    seed_campus,
)
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Institution
from usagegraph.rest.user_stats import wants_csv

PATH = "/api/admin/histories/charts/user-stats"


async def _post(
    client: httpx.AsyncClient, caller: int | None, body: Any = None, **extra: str
) -> httpx.Response:
    request_headers = headers(caller, **extra) if caller is not None else extra
    if body is None:
        return await client.post(PATH, headers=request_headers)
    return await client.post(PATH, headers=request_headers, json=body)


def _row(
    user: int,
    email: str,
    fname: str | None,
    lname: str | None,
    institution: str | None,
    period_start: str,
    query_count: int,
    credits: str,
    lifetime: str,
    cap: str | None,
    pct: str | None,
    at_cap: bool,
) -> dict[str, Any]:
    names = {ACME: ("Acme U", "Pria"), BETA: ("Beta College", None), None: ("Personal", None)}
    instance_name, ai_name = names[institution]
    return {
        "user": str(user),
        "email": email,
        "fname": fname,
        "lname": lname,
        "institution": institution,
        "instanceName": instance_name,
        "aiName": ai_name,
        "periodStart": period_start,
        "queryCount": query_count,
        "creditsUsed": Decimal(credits),
        "lifetimeUsed": Decimal(lifetime),
        "capLimit": Decimal(cap) if cap is not None else None,
        "capUsedPct": Decimal(pct) if pct is not None else None,
        "atCap": at_cap,
    }


ADA_ = (ADA, "ada@acme.edu", "Ada", "Lovelace")
BOB_ = (BOB, "bob@beta.edu", "Bob", "Builder")
CY_ = (CY, "cy@acme.edu", "Cy", "Young")
DAN_ = (DAN, "dan@acme.edu", "Dan", "Brown")
DEAN_ = (DEAN, "dean@acme.edu", "Dean", "Smith")

# Super, range -7 day: [05-14, 05-21). Lifetimes and caps as worked out in user_stats_data.
SUPER_RANGE_ROWS = [
    _row(*BOB_, ACME, "2026-05-14T00:00:00Z", 1, "0.5", "1", "8", "12.5", False),
    _row(*BOB_, BETA, "2026-05-15T00:00:00Z", 3, "2.5", "7", None, None, False),
    _row(*ADA_, None, "2026-05-16T00:00:00Z", 1, "3", "3", None, None, False),
    _row(*CY_, ACME, "2026-05-17T00:00:00Z", 1, "0.12345", "0.12345", "1", "12.35", False),
    _row(*DEAN_, None, "2026-05-18T00:00:00Z", 1, "1", "1", None, None, False),
    _row(*ADA_, ACME, "2026-05-20T00:00:00Z", 2, "0.5", "2", "3", "66.67", False),
    _row(*BOB_, None, "2026-05-20T00:00:00Z", 1, "0.25", "0.25", None, None, False),
    _row(*BOB_, ACME, "2026-05-20T00:00:00Z", 1, "0.5", "1", "8", "12.5", False),
    _row(*BOB_, BETA, "2026-05-20T00:00:00Z", 1, "0.5", "7", None, None, False),
    _row(*DAN_, ACME, "2026-05-20T00:00:00Z", 2, "1.5", "3", "3", "100", True),
]


def _json(response: httpx.Response) -> Any:
    """The body with every non-integer number as an exact Decimal."""
    return json.loads(response.text, parse_float=Decimal)


# ---- authentication and authorisation ------------------------------------------------------


async def test_without_a_token_is_401(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    response = await _post(client, None, {"range": -7})
    assert response.status_code == 401
    assert response.json() == {"success": False, "message": "Authentication required"}


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c"])
async def test_a_bad_token_is_401(
    engine: AsyncEngine, client: httpx.AsyncClient, token: str
) -> None:
    response = await client.post(PATH, headers={"x-access-token": token}, json={})
    assert response.status_code == 401
    assert response.json() == {"success": False, "message": "Authentication required"}


async def test_a_token_of_an_unknown_user_is_401(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    response = await _post(client, 424242, {})
    assert response.status_code == 401


async def test_a_plain_user_is_403_whatever_the_body(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await seed_campus(engine)
    for body in ({"range": -7}, ["not", "an", "object"]):
        response = await _post(client, PAT, body)
        assert response.status_code == 403
        assert response.json() == {"success": False, "message": "Admin access required"}


async def test_an_admin_without_institutions_edit_gets_200_and_no_rows(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await seed_campus(engine)
    response = await _post(client, CLERK, {"range": -7})
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == []
    assert body["truncated"] is False
    assert body["summary"] == {
        "meanCreditsPerUserAccount": 0,
        "meanCreditsPerUserInstitution": 0,
        "usersAtCap": 0,
    }


async def test_an_admin_sees_only_their_institution(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await seed_campus(engine)
    response = await _post(client, DEAN, {"range": -7, "institution": f"{BETA} personal {ACME}"})
    assert response.status_code == 200
    assert _json(response)["data"] == [r for r in SUPER_RANGE_ROWS if r["institution"] == ACME]


# ---- the JSON body -------------------------------------------------------------------------


async def test_super_range_of_seven_days(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    await seed_campus(engine)
    response = await _post(client, SUPER, {"range": -7})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert _json(response) == {
        "success": True,
        "granularity": "day",
        "truncated": False,
        "windowSource": "range",
        "defaultDaysApplied": None,
        "windowStart": "2026-05-14T00:00:00Z",
        "windowEnd": "2026-05-21T00:00:00Z",
        "data": SUPER_RANGE_ROWS,
        # 10.37345 credits / 5 users = 2.07469 -> 2.07; / 8 (user, instance) pairs
        # = 1.29668125 -> 1.30 (rendered 1.3); dan is at cap.
        "summary": {
            "meanCreditsPerUserAccount": Decimal("2.07"),
            "meanCreditsPerUserInstitution": Decimal("1.3"),
            "usersAtCap": 1,
        },
    }


async def test_fields_are_in_the_seed_order_and_typed_like_it(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await seed_campus(engine)
    response = await _post(client, SUPER, {"range": -7})
    body = response.json()
    assert list(body) == [
        "success",
        "granularity",
        "truncated",
        "windowSource",
        "defaultDaysApplied",
        "windowStart",
        "windowEnd",
        "data",
        "summary",
    ]
    assert list(body["data"][0]) == [
        "user",
        "email",
        "fname",
        "lname",
        "institution",
        "instanceName",
        "aiName",
        "periodStart",
        "queryCount",
        "creditsUsed",
        "lifetimeUsed",
        "capLimit",
        "capUsedPct",
        "atCap",
    ]
    # Exact numbers, the user id as a string, queryCount an integer.
    assert '"user":"12","email":"cy@acme.edu"' in response.text
    assert '"queryCount":1,"creditsUsed":0.12345,"lifetimeUsed":0.12345,"capLimit":1,' in (
        response.text
    )
    assert '"capUsedPct":12.35,"atCap":false' in response.text


async def test_empty_body_gives_the_default_day_window(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await seed_campus(engine)
    response = await _post(client, SUPER)  # no body at all
    body = response.json()
    assert response.status_code == 200
    # 30 days including today: 05-20 minus 29 days = 04-21.
    assert (body["windowSource"], body["defaultDaysApplied"]) == ("default", 30)
    assert (body["windowStart"], body["windowEnd"]) == (
        "2026-04-21T00:00:00Z",
        "2026-05-21T00:00:00Z",
    )
    # ada's 04-01 usage is before the window; dan's 05-10 and bob's 05-13 are inside, before
    # the 10 rows of the 7-day range.
    assert [(r["periodStart"][:10], r["user"]) for r in body["data"]][:3] == [
        ("2026-05-10", str(DAN)),
        ("2026-05-13", str(BOB)),
        ("2026-05-14", str(BOB)),
    ]
    assert len(body["data"]) == 12


async def test_default_week_window_and_monday_periods(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await seed_campus(engine)
    response = await _post(client, SUPER, {"granularity": "week"})
    body = response.json()
    # 84 days including today: 05-20 minus 83 days = Thu 02-26.
    assert (body["windowSource"], body["defaultDaysApplied"]) == ("default", 84)
    assert body["windowStart"] == "2026-02-26T00:00:00Z"
    assert body["windowEnd"] == "2026-05-21T00:00:00Z"
    first = body["data"][0]
    # pat's Thu 02-26 usage lands in the week of Mon 02-23; their 02-25 usage is outside.
    assert (first["user"], first["periodStart"], first["creditsUsed"]) == (
        str(PAT),
        "2026-02-23T00:00:00Z",
        2,
    )
    # lifetime 7 + 2 = 9 of the default cap 3
    assert (first["lifetimeUsed"], first["capUsedPct"], first["atCap"]) == (9, 300, True)
    assert {r["periodStart"][:10] for r in body["data"]} == {
        "2026-02-23",
        "2026-03-30",
        "2026-05-04",
        "2026-05-11",
        "2026-05-18",
    }  # all Mondays


async def test_range_of_weeks(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    await seed_campus(engine)
    body = (await _post(client, SUPER, {"granularity": "week", "range": -2})).json()
    # The current week (Mon 05-18) and the one before (Mon 05-11); next Monday 05-25.
    assert (body["windowStart"], body["windowEnd"]) == (
        "2026-05-11T00:00:00Z",
        "2026-05-25T00:00:00Z",
    )
    assert body["defaultDaysApplied"] is None
    assert [(r["periodStart"][:10], r["user"], r["creditsUsed"]) for r in body["data"]] == [
        ("2026-05-11", str(ADA), 3),
        ("2026-05-11", str(BOB), 0.5),
        ("2026-05-11", str(BOB), 6.5),  # BETA: 4 (Wed 05-13) + 2.5
        ("2026-05-11", str(CY), 0.12345),
        ("2026-05-18", str(DEAN), 1),
        ("2026-05-18", str(ADA), 0.5),
        ("2026-05-18", str(BOB), 0.25),
        ("2026-05-18", str(BOB), 0.5),
        ("2026-05-18", str(BOB), 0.5),
        ("2026-05-18", str(DAN), 1.5),
    ]


async def test_range_of_months(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    await seed_campus(engine)
    body = (await _post(client, SUPER, {"granularity": "month", "range": -3})).json()
    assert (body["windowStart"], body["windowEnd"]) == (
        "2026-03-01T00:00:00Z",
        "2026-06-01T00:00:00Z",
    )
    # March: nothing (pat's usage is in February); April: ada 1; May: everything else.
    assert [(r["periodStart"][:10], r["user"], r["institution"]) for r in body["data"]][:3] == [
        ("2026-04-01", str(ADA), ACME),
        ("2026-05-01", str(DEAN), None),
        ("2026-05-01", str(ADA), None),
    ]


async def test_daterange_wins_and_takes_offsets_and_dates(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await seed_campus(engine)
    body = (
        await _post(
            client,
            SUPER,
            {"range": -7, "daterange": {"start": "2026-05-16T02:00:00+02:00", "end": "2026-05-17"}},
        )
    ).json()
    assert (body["windowSource"], body["defaultDaysApplied"]) == ("daterange", None)
    assert (body["windowStart"], body["windowEnd"]) == (
        "2026-05-16T00:00:00Z",
        "2026-05-17T00:00:00Z",
    )
    assert [(r["user"], r["institution"], r["creditsUsed"]) for r in body["data"]] == [
        (str(ADA), None, 3)
    ]


@pytest.mark.parametrize(
    ("body", "users"),
    [
        ({"account": " 9   100 "}, [ADA, ADA, DAN]),
        ({"institution": "personal"}, [ADA, DEAN, BOB]),
        ({"institution": BETA}, [BOB, BOB]),
        ({"role": "admin"}, [BOB, BOB, DEAN, BOB, BOB, BOB]),
        ({"usersearch": "LoVeLaCe"}, [ADA, ADA]),
        ({"account": "", "institution": "", "role": "", "usersearch": ""}, None),  # = no filter
        ({"account": None, "institution": None, "role": None, "usersearch": None}, None),
    ],
)
async def test_filters(
    engine: AsyncEngine, client: httpx.AsyncClient, body: dict[str, Any], users: list[int] | None
) -> None:
    await seed_campus(engine)
    response = await _post(client, SUPER, {"range": -7, **body})
    assert response.status_code == 200
    expected = [r["user"] for r in SUPER_RANGE_ROWS] if users is None else [str(u) for u in users]
    assert [r["user"] for r in response.json()["data"]] == expected


async def test_unknown_keys_are_ignored(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    await seed_campus(engine)
    response = await _post(client, SUPER, {"range": -7, "page": 3})
    assert response.status_code == 200
    assert len(response.json()["data"]) == len(SUPER_RANGE_ROWS)


# ---- invalid bodies ------------------------------------------------------------------------

RANGE = "range must be a negative integer"
DATERANGE = "daterange must be an object with ISO 8601 start and end"
ACCOUNT = "account must hold space-separated integer user ids"
INSTITUTION = "institution ids must be 24 lowercase hex characters or 'personal'"
OBJECT = "Request body must be a JSON object"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[1, 2]", OBJECT),
        (b'"range"', OBJECT),
        (b"{not json", OBJECT),
        (b'{"granularity": "year"}', "granularity must be one of day, week, month"),
        (b'{"granularity": "hour"}', "granularity must be one of day, week, month"),
        (b'{"granularity": 7}', "granularity must be a string"),
        (b'{"range": 0}', RANGE),
        (b'{"range": 7}', RANGE),
        (b'{"range": -7.5}', RANGE),
        (b'{"range": -7.0}', RANGE),
        (b'{"range": "-7"}', RANGE),
        (b'{"range": true}', RANGE),
        (b'{"range": -99999999999}', "range reaches too far into the past"),
        (b'{"daterange": "2026-05-01/2026-05-02"}', DATERANGE),
        (b'{"daterange": {"start": "2026-05-01T00:00:00Z"}}', DATERANGE),
        (b'{"daterange": {"start": "2026-05-01", "end": "2026-02-30"}}', DATERANGE),
        (b'{"daterange": {"start": "yesterday", "end": "2026-05-02"}}', DATERANGE),
        (b'{"daterange": {"start": 1, "end": 2}}', DATERANGE),
        (
            b'{"daterange": {"start": "2026-05-02", "end": "2026-05-02"}}',
            "daterange end must be after its start",
        ),
        (
            b'{"daterange": {"start": "2026-05-02T12:00:00Z", "end": "2026-05-02T11:00:00Z"}}',
            "daterange end must be after its start",
        ),
        (b'{"account": "9 ten"}', ACCOUNT),
        (b'{"account": "9,10"}', ACCOUNT),
        (b'{"account": "-9"}', ACCOUNT),
        (b'{"account": 9}', "account must be a string"),
        (b'{"account": "0"}', "account ids must be positive integers"),
        (b'{"account": "9223372036854775808"}', "account ids must be positive integers"),
        (b'{"institution": "acme"}', INSTITUTION),
        (b'{"institution": "AAAAAAAAAAAAAAAAAAAAAAAA"}', INSTITUTION),
        (b'{"institution": ["aaaaaaaaaaaaaaaaaaaaaaaa"]}', "institution must be a string"),
        (b'{"role": "owner"}', "role must be one of user, admin, super"),
        (b'{"usersearch": 5}', "usersearch must be a string"),
    ],
)
async def test_invalid_bodies_are_400(
    engine: AsyncEngine, client: httpx.AsyncClient, content: bytes, message: str
) -> None:
    await seed_campus(engine)
    response = await client.post(
        PATH, headers={**headers(SUPER), "content-type": "application/json"}, content=content
    )
    assert response.status_code == 400
    assert response.json() == {"success": False, "message": message}


async def test_get_is_not_allowed(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    response = await client.get(PATH, headers=headers(SUPER))
    assert response.status_code == 405


# ---- CSV -----------------------------------------------------------------------------------

CSV_HEADER = (
    "user,email,fname,lname,institution,instanceName,aiName,periodStart,queryCount,"
    "creditsUsed,lifetimeUsed,capLimit,capUsedPct,atCap"
)


async def test_csv_has_the_same_rows(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    await seed_campus(engine)
    response = await _post(client, SUPER, {"range": -7, "account": "9 100"}, accept="text/csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["x-truncated"] == "false"
    assert response.content.decode("utf-8").split("\r\n") == [
        CSV_HEADER,
        # personal: institution, aiName, capLimit and capUsedPct empty
        "9,ada@acme.edu,Ada,Lovelace,,Personal,,2026-05-16T00:00:00Z,1,3,3,,,false",
        "9,ada@acme.edu,Ada,Lovelace,"
        f"{ACME},Acme U,Pria,2026-05-20T00:00:00Z,2,0.5,2,3,66.67,false",
        f"100,dan@acme.edu,Dan,Brown,{ACME},Acme U,Pria,2026-05-20T00:00:00Z,2,1.5,3,3,100,true",
        "",
    ]


async def test_csv_neutralises_formulas_in_user_text(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    evil = "e" * 24
    async with session_factory(engine)() as session, session.begin():
        session.add(Institution(id=evil, name="@SUM(A1)", ai_name="-2+3"))
    await add_people(
        engine,
        (
            Person(SUPER, "boss@hq.example", "super"),
            Person(7, "=cmd|'/c calc'!A1@x.example", "user", "+Eve", "Smith, Jr.",
                   member_of=((evil, "user", None),)),
        ),
    )  # fmt: skip
    await add_usage(engine, ((7, evil, at(5, 20), "-1.5", 1, "success", False),))
    response = await _post(client, SUPER, {"range": -1}, accept="text/csv")
    lines = response.content.decode("utf-8").split("\r\n")
    # Text cells get a leading quote; the (negative) numbers stay numbers.
    assert lines[1] == (
        "7,'=cmd|'/c calc'!A1@x.example,'+Eve,\"Smith, Jr.\","
        f"{evil},'@SUM(A1),'-2+3,2026-05-20T00:00:00Z,1,-1.5,-1.5,,,false"
    )


async def test_csv_of_nothing_is_the_header(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    await seed_campus(engine)
    response = await _post(client, CLERK, {}, accept="text/csv")
    assert response.text == CSV_HEADER + "\r\n"


async def test_errors_stay_json_when_csv_is_asked(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    response = await _post(client, None, {}, accept="text/csv")
    assert response.status_code == 401
    assert response.json() == {"success": False, "message": "Authentication required"}


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        ("text/csv", True),
        ("text/csv; charset=utf-8", True),
        ("TEXT/CSV", True),
        ("text/csv, application/json", True),
        ("application/json, text/csv", False),
        ("application/json;q=0.5, text/csv", True),
        ("text/csv;q=0.5, application/json", False),
        ("text/csv;q=0", False),
        ("*/*", False),
        ("text/*", False),
        ("", False),
    ],
)
def test_accept_negotiation(accept: str, csv: bool) -> None:
    assert wants_csv(accept) is csv


# ---- the row limit -------------------------------------------------------------------------


async def test_more_than_5000_rows_are_truncated(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    await seed_bulk(engine, extra_rows=1)  # 2 users x 2500 days + 1 = 5001 rows
    response = await _post(
        client, SUPER, {"daterange": {"start": "2019-01-01", "end": "2026-01-01"}}
    )
    body = response.json()
    assert body["truncated"] is True
    assert len(body["data"]) == 5000
    # 5001 credits / 3 users (and 3 pairs) = 1667, from every matching row.
    assert body["summary"] == {
        "meanCreditsPerUserAccount": 1667,
        "meanCreditsPerUserInstitution": 1667,
        "usersAtCap": 3,
    }


async def test_nul_in_usersearch_is_a_400_on_both_databases(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    """Found by fuzzing: PostgreSQL refuses U+0000 in text, which used to surface as a 500."""
    await seed_campus(engine)
    response = await client.post(PATH, json={"usersearch": "a\x00b"}, headers=headers(SUPER))
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "message": "usersearch may not contain the NUL character (U+0000)",
    }
