"""GraphQL errors: every expected failure coded, every unexpected one masked and logged.

An unexpected exception is forced where it would really happen (a loader's batch function, a
schema extension) with SQL, another tenant's email and a secret in its text; the response
must hold none of them, only "Internal error" and the request id that the log line carries.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_JWT_SECRET
from tests.fixtures.factories import add_institution, add_user
from tests.schema.graph import error_codes, graphql
from usagegraph.auth.tokens import mint_token
from usagegraph.datasources import directory
from usagegraph.resolvers import compiled_reads
from usagegraph.schema import limits

ACME = "65f1c0ffee0000000000000a"
GLOBEX = "65f1c0ffee0000000000000b"
LEAKY_SQL = "SELECT users.email, users.password_hash FROM users WHERE users.id IN (?)"
OTHER_TENANTS_EMAIL = "ceo@globex.example"
SECRET = "s3cr3t-connection-string"


def _database_failure(*_args: Any, **_kwargs: Any) -> Any:
    """What a broken query raises: its text holds the SQL, the parameters and the cause."""
    raise ProgrammingError(
        LEAKY_SQL,
        {"email": OTHER_TENANTS_EMAIL},
        Exception(f"relation does not exist ({SECRET})"),
    )


def _assert_masked(text: str) -> None:
    for leaked in (
        "SELECT",
        "password_hash",
        OTHER_TENANTS_EMAIL,
        SECRET,
        "Traceback",
        "ProgrammingError",
        "users_by_id",
        ".py",
    ):
        assert leaked not in text, leaked


async def _world(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    await add_institution(engine, institution_id=GLOBEX, name="Globex")
    root = await add_user(engine, email="root@ug.io", role="super")
    ada = await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"})
    ceo = await add_user(engine, email=OTHER_TENANTS_EMAIL, member_of={GLOBEX: "admin"})
    return {"root": root, "ada": ada, "ceo": ceo}


def _unexpected_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("unexpected error")]


async def test_an_exception_in_a_loader_is_masked_with_the_request_id_and_logged(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    users = await _world(engine)
    monkeypatch.setattr(directory, "users_by_id", _database_failure)
    monkeypatch.setattr(compiled_reads, "read_json", _database_failure)  # PostgreSQL's path
    token = mint_token(users["root"], TEST_JWT_SECRET)
    query = "query($id: Int!) { viewer { kind } user(id: $id) { email } }"
    with caplog.at_level(logging.ERROR):
        response = await client.post(
            "/graphql",
            json={"query": query, "variables": {"id": users["ceo"]}},
            headers={"Authorization": f"Bearer {token}"},
        )
    request_id = response.headers["x-request-id"]
    assert response.status_code == 200
    # The failing field is null; its sibling still answers.
    assert response.json() == {
        "data": {"viewer": {"kind": "USER"}, "user": None},
        "errors": [
            {
                "message": "Internal error",
                "locations": [{"line": 1, "column": 36}],
                "path": ["user"],
                "extensions": {"code": "INTERNAL", "requestId": request_id},
            }
        ],
    }
    _assert_masked(response.text)
    # Logged once, with the request id a client can quote and the real cause.
    [record] = _unexpected_logs(caplog)
    assert record.getMessage() == f"unexpected error in request {request_id}"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ProgrammingError)
    assert SECRET in str(record.exc_info[1])


async def test_each_operation_of_a_batch_is_masked_alike(
    engine: AsyncEngine, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = await _world(engine)
    monkeypatch.setattr(directory, "users_by_id", _database_failure)
    monkeypatch.setattr(compiled_reads, "read_json", _database_failure)  # PostgreSQL's path
    token = mint_token(users["root"], TEST_JWT_SECRET)
    operation = {"query": "query($id: Int!) { user(id: $id) { email } }"}
    batch = [{**operation, "variables": {"id": users[name]}} for name in ("ada", "ceo")]
    response = await client.post(
        "/graphql", json=batch, headers={"Authorization": f"Bearer {token}"}
    )
    request_id = response.headers["x-request-id"]
    for result in response.json():
        assert result["data"] == {"user": None}
        assert result["errors"][0]["extensions"] == {"code": "INTERNAL", "requestId": request_id}
    _assert_masked(response.text)


async def test_an_exception_outside_any_resolver_is_masked_by_the_endpoint(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The cost check runs in a schema extension's hook, where Strawberry turns an exception
    # into an error outside the operation: the endpoint must still mask it.
    users = await _world(engine)
    monkeypatch.setattr(limits, "within_cost", _database_failure)
    with caplog.at_level(logging.ERROR):
        response = await client.post(
            "/graphql",
            json={"query": "{ viewer { kind } }"},
            headers={"Authorization": f"Bearer {mint_token(users['ada'], TEST_JWT_SECRET)}"},
        )
    request_id = response.headers["x-request-id"]
    assert response.json() == {
        "data": None,
        "errors": [
            {
                "message": "Internal error",
                "extensions": {"code": "INTERNAL", "requestId": request_id},
            }
        ],
    }
    _assert_masked(response.text)
    [record] = _unexpected_logs(caplog)
    assert request_id in record.getMessage()


@pytest.mark.parametrize(
    ("caller", "query", "code", "message"),
    [
        (None, "{ userStats { truncated } }", "UNAUTHORIZED", "Authentication required"),
        (
            "ada",
            f'{{ institution(id: "{GLOBEX}") {{ name }} }}',
            "FORBIDDEN",
            "you are not a member of that institution",
        ),
        (
            "ada",
            '{ institution(id: "not-an-id") { name } }',
            "FORBIDDEN",
            "you are not a member of that institution",
        ),
        (
            "ada",
            f'{{ institution(id: "{ACME}") {{ members {{ totalCount }} }} }}',
            "FORBIDDEN",
            "only the institution's admins may list its members",
        ),
        (
            "root",
            '{ institutions(after: "bm90IGEgY3Vyc29y") { totalCount } }',
            "INVALID_REQUEST",
            "after is not a valid cursor",
        ),
        (
            "root",
            "{ institutions(first: 101) { totalCount } }",
            "INVALID_REQUEST",
            "first must be between 0 and 100",
        ),
        (
            "root",
            "{ viewer { kind }",
            "INVALID_REQUEST",
            "Syntax Error: Expected Name, found <EOF>.",
        ),
        (
            "root",
            "{ viewer { nope } }",
            "INVALID_REQUEST",
            # Introspection is on by default, so graphql-core's hint stays.
            "Cannot query field 'nope' on type 'Viewer'. Did you mean 'role'?",
        ),
        (
            "root",
            '{ node(id: "bm9wZQ==") { id } }',
            "INVALID_REQUEST",
            None,  # a malformed global id: the message is graphql's own
        ),
    ],
)
async def test_expected_failures_carry_their_code_and_are_not_logged_as_failures(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    caller: str | None,
    query: str,
    code: str,
    message: str | None,
) -> None:
    users = await _world(engine)
    with caplog.at_level(logging.ERROR):
        body = await graphql(client, query, user_id=users[caller] if caller else None)
    assert error_codes(body) == [code]
    if message is not None:
        assert body["errors"][0]["message"] == message
    assert "requestId" not in body["errors"][0]["extensions"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_refused_write_is_coded_too(engine: AsyncEngine, client: httpx.AsyncClient) -> None:
    users = await _world(engine)
    query = 'mutation { creditWallet(input: {userId: 999999, amount: "5"}) { wallet { balance } } }'
    assert error_codes(await graphql(client, query, user_id=users["root"])) == ["NOT_FOUND"]
    assert error_codes(await graphql(client, query, user_id=users["ada"])) == ["FORBIDDEN"]


async def test_a_big_int_beyond_64_bits_is_a_client_error(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    users = await _world(engine)
    query = "mutation { releaseReservation(reservationId: 99999999999999999999) { __typename } }"
    assert error_codes(await graphql(client, query, user_id=users["root"])) == ["INVALID_REQUEST"]


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ('{ institution(id: "65f1c0ffee\\u00000000000000a") { name } }', {}),
        ("query($id: String!) { institution(id: $id) { name } }", {"id": "a\x00b"}),
        (
            'mutation($m: JSON) { creditWallet(input: {userId: 1, amount: "1", metadata: $m}) '
            "{ wallet { balance } } }",
            {"m": {"key\x00": 1}},
        ),
    ],
)
async def test_text_holding_nul_is_a_client_error_on_both_databases(
    engine: AsyncEngine, client: httpx.AsyncClient, query: str, variables: dict[str, Any]
) -> None:
    # PostgreSQL cannot take U+0000 in text (the statement would fail: a server error).
    users = await _world(engine)
    body = await graphql(client, query, user_id=users["root"], variables=variables)
    assert body == {
        "data": None,
        "errors": [
            {
                "message": "Text may not contain the NUL character (U+0000)",
                "extensions": {"code": "INVALID_REQUEST"},
            }
        ],
    }


async def test_a_client_error_beside_fields_reading_the_database_is_not_an_outage(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    users = await _world(engine)
    query = """{ viewer { user { usage(period: YEARLY) { periodEnd } ledger { totalCount }
      usageEvents { totalCount } usageHistory(instanceId: "personal", timeZone: "No/Zone") {
      interval } } } }"""
    body = await graphql(client, query, user_id=users["ada"])
    assert error_codes(body) == ["INVALID_REQUEST"]


async def test_a_failed_non_null_field_beside_a_shared_load_answers_its_error_every_time(
    engine: AsyncEngine, client: httpx.AsyncClient
) -> None:
    """Two root fields load the same institution's buckets (one shared loader answer); the
    first also asks for members, FORBIDDEN to a plain member, so graphql-core cancels the
    other. The shared answer must survive the cancelled asker, and the request's read
    connection must not go back to the pool under a statement still running: both once
    ended this request (every other time) in a 500."""
    users = await _world(engine)
    query = f"""{{
      r0: institution(id: "{ACME}") {{ members {{ totalCount }} buckets {{ bucketId }} }}
      r1: institution(id: "{ACME}") {{ buckets {{ bucketId }} }} }}"""
    for _ in range(4):
        body = await graphql(client, query, user_id=users["ada"])
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
        assert body["errors"][0]["path"] == ["r0", "members"]
