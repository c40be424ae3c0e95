"""Users, institutions and members in the graph: scoped, paginated, FORBIDDEN when not yours."""

from __future__ import annotations

import base64

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import add_institution, add_user
from tests.schema.graph import error_codes, graphql

ACME = "a" * 24
OTHER = "b" * 24
EDIT = ["institutions.edit"]


def global_id(type_name: str, node_id: object) -> str:
    return base64.b64encode(f"{type_name}:{node_id}".encode()).decode()


@pytest.fixture
async def people(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    await add_institution(engine, institution_id=OTHER, name="Other")
    return {
        "admin": await add_user(
            engine,
            email="admin@acme.edu",
            role="admin",
            permissions=EDIT,
            member_of={ACME: "admin"},
        ),
        "member": await add_user(engine, email="m@acme.edu", member_of={ACME: "user"}),
        "outsider": await add_user(engine, email="o@other.edu", member_of={OTHER: "user"}),
        "super": await add_user(engine, email="root@ug.io", role="super"),
    }


MEMBERS = """
query($id: String!, $first: Int, $after: String) {
  institution(id: $id) {
    name
    members(first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node { role user { userId email } } }
    }
  }
}"""


async def test_admin_pages_through_members_without_gaps(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    first = await graphql(
        client, MEMBERS, user_id=people["admin"], variables={"id": ACME, "first": 1}
    )
    page = first["data"]["institution"]["members"]
    assert page["totalCount"] == 2
    assert page["pageInfo"]["hasNextPage"] is True
    assert [e["node"]["user"]["userId"] for e in page["edges"]] == [people["admin"]]
    second = await graphql(
        client,
        MEMBERS,
        user_id=people["admin"],
        variables={"id": ACME, "first": 1, "after": page["pageInfo"]["endCursor"]},
    )
    page = second["data"]["institution"]["members"]
    assert [e["node"]["user"]["email"] for e in page["edges"]] == ["m@acme.edu"]
    assert page["pageInfo"]["hasNextPage"] is False


async def test_plain_member_may_not_list_members(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    body = await graphql(client, MEMBERS, user_id=people["member"], variables={"id": ACME})
    assert error_codes(body) == ["FORBIDDEN"]
    assert "m@acme.edu" not in str(body)
    assert "admin@acme.edu" not in str(body)


@pytest.mark.parametrize("institution_id", [OTHER, "c" * 24, "not-an-id"])
async def test_another_or_unknown_institution_is_forbidden_alike(
    client: httpx.AsyncClient, people: dict[str, int], institution_id: str
) -> None:
    body = await graphql(client, MEMBERS, user_id=people["admin"], variables={"id": institution_id})
    assert body["data"] is None
    assert error_codes(body) == ["FORBIDDEN"]
    assert body["errors"][0]["message"] == "you are not a member of that institution"


async def test_super_lists_any_institutions_members(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    body = await graphql(client, MEMBERS, user_id=people["super"], variables={"id": OTHER})
    edges = body["data"]["institution"]["members"]["edges"]
    assert [e["node"]["user"]["email"] for e in edges] == ["o@other.edu"]


async def test_institutions_lists_only_your_own(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    query = "{ institutions { totalCount edges { node { databaseId name } } } }"
    mine = await graphql(client, query, user_id=people["member"])
    assert mine["data"]["institutions"]["totalCount"] == 1
    assert mine["data"]["institutions"]["edges"][0]["node"] == {"databaseId": ACME, "name": "Acme"}
    everything = await graphql(client, query, user_id=people["super"])
    assert everything["data"]["institutions"]["totalCount"] == 2


async def test_node_returns_null_for_other_tenants_objects(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    query = (
        "query($id: ID!) { node(id: $id) { id ... on User { email } ... on Institution { name } } }"
    )
    for node_id in (global_id("Institution", OTHER), global_id("User", people["outsider"])):
        body = await graphql(client, query, user_id=people["admin"], variables={"id": node_id})
        assert body["data"]["node"] is None
        assert "Other" not in str(body)
        assert "o@other.edu" not in str(body)
    own = await graphql(
        client,
        query,
        user_id=people["admin"],
        variables={"id": global_id("User", people["member"])},
    )
    assert own["data"]["node"]["email"] == "m@acme.edu"


async def test_user_by_id_is_visible_to_self_admins_and_super_only(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    query = "query($id: Int!) { user(id: $id) { email memberships { role } } }"
    member = people["member"]
    assert (await graphql(client, query, user_id=member, variables={"id": member}))["data"]["user"][
        "email"
    ] == "m@acme.edu"
    assert (await graphql(client, query, user_id=people["admin"], variables={"id": member}))[
        "data"
    ]["user"] is not None
    assert (await graphql(client, query, user_id=people["outsider"], variables={"id": member}))[
        "data"
    ]["user"] is None
    assert (await graphql(client, query, variables={"id": member}))["data"]["user"] is None


async def test_first_above_the_cap_is_an_invalid_request(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    body = await graphql(
        client, MEMBERS, user_id=people["admin"], variables={"id": ACME, "first": 101}
    )
    assert error_codes(body) == ["INVALID_REQUEST"]


async def test_garbage_cursor_is_an_invalid_request(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    body = await graphql(
        client, MEMBERS, user_id=people["admin"], variables={"id": ACME, "after": "%%%"}
    )
    assert error_codes(body) == ["INVALID_REQUEST"]


async def test_viewer_leads_to_your_own_user(
    client: httpx.AsyncClient, people: dict[str, int]
) -> None:
    body = await graphql(
        client,
        "{ viewer { kind email user { userId email memberships { role } } } }",
        user_id=people["member"],
    )
    viewer = body["data"]["viewer"]
    assert viewer["kind"] == "USER"
    assert viewer["user"] == {
        "userId": people["member"],
        "email": "m@acme.edu",
        "memberships": [{"role": "user"}],
    }
    anonymous = await graphql(client, "{ viewer { kind user { userId } } }")
    assert anonymous["data"]["viewer"] == {"kind": "ANONYMOUS", "user": None}
