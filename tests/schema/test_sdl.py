"""The exported SDL in the repo is the schema the server serves, and it documents itself."""

from __future__ import annotations

from pathlib import Path

import httpx
from graphql import build_schema, get_introspection_query

from usagegraph.schema.root import schema
from usagegraph.schema.sdl import schema_sdl

SDL_PATH = Path(__file__).parents[2] / "schema.graphql"
REGENERATE = "usagegraph export-schema --output schema.graphql"


def test_exported_sdl_matches_the_schema() -> None:
    assert SDL_PATH.read_text() == schema_sdl(schema), f"run: {REGENERATE}"


def test_the_exported_sdl_declares_the_roots_the_server_has() -> None:
    text = SDL_PATH.read_text()
    assert text.startswith(
        "schema {\n  query: Query\n  mutation: Mutation\n  subscription: Subscription\n}\n"
    )
    built = build_schema(text)
    live = schema._schema
    for operation in ("query_type", "mutation_type", "subscription_type"):
        built_root, live_root = getattr(built, operation), getattr(live, operation)
        assert (built_root and built_root.name) == (live_root and live_root.name), operation
    # The live updates are the subscription root; the plan type is named apart from it.
    assert built.subscription_type is not None
    assert set(built.subscription_type.fields) == {"usageUpdated", "walletChanged", "alertRaised"}
    assert "PlanSubscription" in built.type_map


def test_every_type_and_field_has_a_description() -> None:
    undocumented = []
    for name, graphql_type in schema._schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Float", "Boolean", "ID"}:
            continue
        if not graphql_type.description:
            undocumented.append(name)
        for field_name, field in getattr(graphql_type, "fields", {}).items():
            if not field.description:
                undocumented.append(f"{name}.{field_name}")
            for arg_name, arg in getattr(field, "args", {}).items():
                if not arg.description:
                    undocumented.append(f"{name}.{field_name}({arg_name})")
    assert undocumented == []


async def test_standard_introspection_query_answers(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": get_introspection_query()})
    body = response.json()
    assert "errors" not in body
    names = {t["name"] for t in body["data"]["__schema"]["types"]}
    assert {"Query", "Viewer", "CallerKind"} <= names
