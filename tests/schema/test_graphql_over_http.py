"""GraphQL over HTTP as frontends expect it: media types, status codes, GET, operation choice,
and automatic persisted queries (in process or shared through Redis), with an allow-list."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import client_of
from usagegraph.schema.persisted_queries import ManifestError
from usagegraph.settings import GraphQLLimits, Settings, SettingsError

GRAPHQL_RESPONSE = "application/graphql-response+json"
VIEWER = "{ viewer { kind } }"
ANSWER = {"data": {"viewer": {"kind": "ANONYMOUS"}}}
REDIS_URL = "redis://127.0.0.1:6379/0"


def _sha(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def _persisted(query: str) -> dict[str, object]:
    return {"persistedQuery": {"version": 1, "sha256Hash": _sha(query)}}


client_for = client_of


# --- media types and status codes --------------------------------------------------------


async def test_graphql_response_json_is_answered_in_its_media_type(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/graphql", json={"query": VIEWER}, headers={"Accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
    assert response.json() == ANSWER


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ viewer { kind }", "INVALID_REQUEST"),  # does not parse
        ("{ viewer { kindd } }", "INVALID_REQUEST"),  # does not validate
        ("query A { viewer { kind } } query B { viewer { role } }", "INVALID_REQUEST"),
        (
            "query { viewer { ...F0 } } fragment F0 on Viewer { kind ...F1 ...F1 } "
            + " ".join(
                f"fragment F{i} on Viewer {{ kind ...F{i + 1} ...F{i + 1} }}" for i in range(1, 12)
            )
            + " fragment F12 on Viewer { kind }",
            "OPERATION_TOO_LARGE",
        ),
    ],
    ids=["syntax", "validation", "no-operation-name", "too-large"],
)
async def test_a_request_refused_before_execution_is_4xx_without_data(
    client: httpx.AsyncClient, query: str, code: str
) -> None:
    strict = await client.post(
        "/graphql", json={"query": query}, headers={"Accept": GRAPHQL_RESPONSE}
    )
    assert strict.status_code == 400
    assert strict.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    body = strict.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == code
    # application/json clients keep the legacy answer: 200, data null.
    legacy = await client.post("/graphql", json={"query": query})
    assert legacy.status_code == 200
    assert legacy.headers["content-type"] == "application/json"
    assert legacy.json()["data"] is None


async def test_a_field_error_during_execution_stays_200_with_data(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": '{ institution(id: "65f1c0ffee0000000000000a") { name } }'},
        headers={"Accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 200
    body = response.json()
    assert "data" in body
    assert body["errors"][0]["extensions"]["code"] in {"FORBIDDEN", "UNAUTHORIZED"}


async def test_several_operations_need_an_operation_name(client: httpx.AsyncClient) -> None:
    document = "query Kind { viewer { kind } } query Role { viewer { role } }"
    unnamed = (await client.post("/graphql", json={"query": document})).json()
    assert unnamed["errors"][0]["message"] == (
        "The document holds several operations: name the one to run in operationName"
    )
    named = await client.post("/graphql", json={"query": document, "operationName": "Role"})
    assert named.json() == {"data": {"viewer": {"role": None}}}


async def test_queries_run_over_get_and_mutations_do_not(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": VIEWER})
    assert response.status_code == 200
    assert response.json() == ANSWER
    mutation = await client.get(
        "/graphql", params={"query": "mutation { revokeApiKey(apiKeyId: 1) { revokedAt } }"}
    )
    assert mutation.status_code == 400
    assert mutation.json()["errors"][0]["extensions"]["code"] == "INVALID_REQUEST"


# --- automatic persisted queries ----------------------------------------------------------


async def test_an_unknown_hash_is_not_found_then_registered_with_its_query(
    client: httpx.AsyncClient,
) -> None:
    query = "{ viewer { kind role } }"
    extensions = json.dumps(_persisted(query))
    missing = await client.get("/graphql", params={"extensions": extensions})
    assert missing.status_code == 200
    assert missing.json()["errors"] == [
        {
            "message": "PersistedQueryNotFound",
            "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
        }
    ]
    registered = await client.post(
        "/graphql", json={"query": query, "extensions": _persisted(query)}
    )
    assert registered.json() == {"data": {"viewer": {"kind": "ANONYMOUS", "role": None}}}
    by_hash = await client.get("/graphql", params={"extensions": extensions})
    assert by_hash.json() == registered.json()
    by_hash_post = await client.post("/graphql", json={"extensions": _persisted(query)})
    assert by_hash_post.json() == registered.json()


@pytest.mark.parametrize(
    "extensions",
    [
        {"persistedQuery": {"version": 1, "sha256Hash": _sha("{ viewer { role } }")}},
        {"persistedQuery": {"version": 2, "sha256Hash": _sha(VIEWER)}},
        {"persistedQuery": {"version": 1, "sha256Hash": "not-a-hash"}},
        {"persistedQuery": "yes"},
    ],
    ids=["hash-of-another-query", "version-2", "malformed-hash", "not-an-object"],
)
async def test_a_persisted_query_that_does_not_check_out_is_refused(
    client: httpx.AsyncClient, extensions: dict[str, object]
) -> None:
    response = await client.post("/graphql", json={"query": VIEWER, "extensions": extensions})
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "INVALID_REQUEST"


async def test_workers_share_persisted_queries_through_redis(settings: Settings) -> None:
    query = f"{{ viewer {{ kind }} alias_{uuid.uuid4().hex}: viewer {{ role }} }}"
    shared = dataclasses.replace(settings, redis_url=REDIS_URL)
    async with client_for(shared) as one, client_for(shared) as other:
        await one.post("/graphql", json={"query": query, "extensions": _persisted(query)})
        response = await other.post("/graphql", json={"extensions": _persisted(query)})
    assert response.json()["data"]["viewer"] == {"kind": "ANONYMOUS"}


# --- the allow-list ------------------------------------------------------------------------


def _manifest(tmp_path: Path, *documents: str, forged: bool = False) -> Path:
    operations = [
        {"id": "0" * 64 if forged else _sha(body), "name": "Op", "type": "query", "body": body}
        for body in documents
    ]
    path = tmp_path / "persisted-query-manifest.json"
    path.write_text(
        json.dumps(
            {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}
        )
    )
    return path


async def test_allow_list_mode_runs_only_registered_documents(
    settings: Settings, tmp_path: Path
) -> None:
    limits = GraphQLLimits(persisted_only=True, persisted_manifest=_manifest(tmp_path, VIEWER))
    async with client_for(dataclasses.replace(settings, graphql=limits)) as client:
        by_hash = await client.post("/graphql", json={"extensions": _persisted(VIEWER)})
        assert by_hash.json() == ANSWER
        by_text = await client.post("/graphql", json={"query": VIEWER})
        assert by_text.json() == ANSWER
        other = "{ viewer { role } }"
        for body in ({"query": other}, {"query": other, "extensions": _persisted(other)}):
            refused = (await client.post("/graphql", json=body)).json()
            assert refused["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_ALLOWED"
        # Nothing was learned from the client: the hash is still unknown.
        unknown = (await client.post("/graphql", json={"extensions": _persisted(other)})).json()
        assert unknown["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


def test_allow_list_mode_needs_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="USAGEGRAPH_GRAPHQL_PERSISTED_MANIFEST"):
        Settings.from_env({"HOME": str(tmp_path), "USAGEGRAPH_GRAPHQL_PERSISTED_ONLY": "true"})


async def test_a_manifest_whose_ids_are_not_their_bodies_hashes_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    path = _manifest(tmp_path, VIEWER, forged=True)
    limits = GraphQLLimits(persisted_only=True, persisted_manifest=path)
    with pytest.raises(ManifestError, match="SHA-256"):
        async with client_for(dataclasses.replace(settings, graphql=limits)):
            pass
