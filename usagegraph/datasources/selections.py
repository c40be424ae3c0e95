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
    """One field of the response: `key` is its alias (or name), `name` the schema field.

    For `__typename`, `arguments` holds the object type's name under "value".
    """

    key: str
    name: str
    arguments: tuple[tuple[str, Any], ...] = ()
    children: tuple[Selection, ...] = ()

    def argument(self, name: str, default: Any = None) -> Any:
        for argument_name, value in self.arguments:
            if argument_name == name:
                return value
        return default

    def child(self, name: str) -> Selection | None:
        """The first child selecting field `name` (a connection's `edges`, `pageInfo`)."""
        for selected in self.children:
            if selected.name == name:
                return selected
        return None

    def walk(self) -> list[Selection]:
        """This selection and every selection below it."""
        found = [self]
        for selected in self.children:
            found.extend(selected.walk())
        return found


class NotCompilable(Exception):
    """A field, argument or caller the compiled path does not cover: the whole root field
    goes down the resolver path, the reference implementation."""
