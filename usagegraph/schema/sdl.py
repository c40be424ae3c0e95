"""The schema as SDL, for `schema.graphql` and the tools that read it.

graphql-core prints no `schema { ... }` block when the root types have their usual names, and
a reader then takes any type called `Query`, `Mutation` or `Subscription` for a root. The
block is always printed here, so a schema tool (codegen, `build_schema`) sees exactly the
roots the server has.
"""

from __future__ import annotations

import strawberry
from graphql import GraphQLSchema


def schema_sdl(schema: strawberry.Schema) -> str:
    """The SDL of `schema`, starting with an explicit schema definition."""
    return f"{_schema_definition(schema._schema)}\n\n{schema.as_str()}\n"


def _schema_definition(schema: GraphQLSchema) -> str:
    roots = [
        (operation, root.name)
        for operation, root in (
            ("query", schema.query_type),
            ("mutation", schema.mutation_type),
            ("subscription", schema.subscription_type),
        )
        if root is not None
    ]
    lines = "\n".join(f"  {operation}: {name}" for operation, name in roots)
    return f"schema {{\n{lines}\n}}"
