"""The directory writes through /graphql: members, caps and API keys."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TEST_JWT_SECRET
from tests.fixtures.factories import add_institution
from tests.fixtures.usage_recording_data import ACME, OTHER
from tests.schema.graph import error_codes, graphql
from tests.schema.mutations_data import RECORD, add_people, usage, with_key
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import session_factory
from usagegraph.db.models import Membership


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    return await add_people(engine)


async def test_an_admin_manages_members_caps_and_keys(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    admin = people["admin"]
    # the admin also runs a third institution, where newbie is a member: someone they may add
    third = await add_institution(engine, institution_id="c" * 24, name="Third")
    async with session_factory(engine)() as session, session.begin():
        session.add_all(
            [
                Membership(user_id=admin, institution_id=third, role="admin"),
                Membership(user_id=people["newbie"], institution_id=third, role="user"),
            ]
        )
    add = """mutation($input: AddMemberInput!) {
      addMember(input: $input) { role capLimit effectiveCap user { email } }
    }"""
    body = await graphql(
        client,
        add,
        user_id=admin,
        variables={
            "input": {"institutionId": ACME, "email": "newbie@example.com", "capLimit": "7"}
        },
    )
    assert body["data"]["addMember"] == {
        "role": "user",
        "capLimit": "7",
        "effectiveCap": "7",
        "user": {"email": "newbie@example.com"},
    }
    update = (
        """mutation($input: UpdateMemberInput!) { updateMember(input: $input) { role capLimit } }"""
    )
    body = await graphql(
        client,
        update,
        user_id=admin,
        variables={"input": {"institutionId": ACME, "userId": people["newbie"], "capLimit": None}},
    )
    assert body["data"]["updateMember"] == {"role": "user", "capLimit": None}
    caps = """mutation($input: UpdateInstitutionCapsInput!) {
      updateInstitutionCaps(input: $input) { institutionId defaultCap enforceCaps }
    }"""
    body = await graphql(
        client,
        caps,
        user_id=admin,
        variables={"input": {"institutionId": ACME, "defaultCap": "100", "enforceCaps": True}},
    )
    assert body["data"]["updateInstitutionCaps"] == {
        "institutionId": ACME,
        "defaultCap": "100",
        "enforceCaps": True,
    }
    body = await graphql(
        client,
        caps,
        user_id=admin,
        variables={"input": {"institutionId": OTHER, "enforceCaps": True}},
    )
    assert error_codes(body) == ["FORBIDDEN"]
    body = await graphql(
        client, caps, user_id=people["ada"], variables={"input": {"institutionId": ACME}}
    )
    assert error_codes(body) == ["FORBIDDEN"]


async def test_a_created_key_records_usage_and_stops_when_revoked(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    create = """mutation($input: CreateApiKeyInput!) {
      createApiKey(input: $input) { key apiKey { apiKeyId institutionId name revokedAt } }
    }"""
    body = await graphql(
        client,
        create,
        user_id=people["admin"],
        variables={"input": {"institutionId": ACME, "name": "etl"}},
    )
    created = body["data"]["createApiKey"]
    assert created["apiKey"]["institutionId"] == ACME
    key = created["key"]
    body = await with_key(client, RECORD, key, {"input": usage(people["ada"])})
    assert body["data"]["recordUsage"]["status"] == "INSERTED"
    revoke = "mutation($id: Int!) { revokeApiKey(apiKeyId: $id) { revokedAt } }"
    body = await graphql(
        client, revoke, user_id=people["admin"], variables={"id": created["apiKey"]["apiKeyId"]}
    )
    assert body["data"]["revokeApiKey"]["revokedAt"] is not None
    # A revoked key is a refused credential: 401, not an anonymous caller.
    body = await with_key(client, RECORD, key, {"input": usage(people["ada"])}, expected_status=401)
    assert error_codes(body) == ["UNAUTHORIZED"]


async def test_add_member_answers_alike_for_a_stranger_and_an_unknown_email(
    client: httpx.AsyncClient, engine: AsyncEngine, people: dict[str, int]
) -> None:
    """An institution admin probing emails learns nothing: the same status and the very same
    body for an address with an account outside their institutions and one without."""
    add = """mutation($input: AddMemberInput!) { addMember(input: $input) { role } }"""
    token = mint_token(people["admin"], TEST_JWT_SECRET)
    answers = []
    for email in ("newbie@example.com", "olga@other.edu", "nobody@example.com"):
        response = await client.post(
            "/graphql",
            json={"query": add, "variables": {"input": {"institutionId": ACME, "email": email}}},
            headers={"Authorization": f"Bearer {token}"},
        )
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1] == answers[2]
    status, body = answers[0]
    assert status == 200
    assert error_codes(body) == ["NOT_FOUND"]
    assert body["errors"][0]["message"] == "no user you may add has that email address"
    assert body["data"] is None
    # super still adds by email
    body = await graphql(
        client,
        add,
        user_id=people["super"],
        variables={"input": {"institutionId": ACME, "email": "newbie@example.com"}},
    )
    assert body["data"]["addMember"] == {"role": "user"}
