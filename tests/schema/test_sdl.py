"""The exported SDL in the repo is the schema the server serves, and it documents itself."""

from __future__ import annotations

from pathlib import Path

import httpx
from graphql import get_introspection_query

from usagegraph.schema.root import schema

SDL_PATH = Path(__file__).parents[2] / "schema.graphql"
REGENERATE = "usagegraph export-schema --output schema.graphql"


def test_exported_sdl_matches_the_schema() -> None:
    assert SDL_PATH.read_text().strip() == schema.as_str().strip(), f"run: {REGENERATE}"


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
