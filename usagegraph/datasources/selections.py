"""A GraphQL selection as the compiled read path receives it: fields by response key, their
arguments already decoded, their sub-selections merged.

The schema layer builds these from a validated operation (fragments expanded, `@skip` and
`@include` applied, variables bound, cursors decoded); the rules layer decides whether the
caller may read all of it; `json_reads` turns it into one SQL statement. It is a plain tree
so that none of those layers needs another's types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TYPENAME = "__typename"


@dataclass(frozen=True, slots=True)
class Selection:
    """One field of the response: `key` is its alias (or name), `name` the schema field
    (`__typename` included: the renderer knows each object's type)."""

    key: str
    name: str
    arguments: tuple[tuple[str, Any], ...] = ()
    children: tuple[Selection, ...] = ()

    def argument(self, name: str, default: Any = None) -> Any:
        for argument_name, value in self.arguments:
            if argument_name == name:
                return value
        return default


class NotCompilable(Exception):
    """A field, argument or caller the compiled path does not cover: the whole root field
    goes down the resolver path, the reference implementation."""
