"""The shape of an operation once its fragments are spread: depth, aliases and field count.

A fragment can spread another fragment several times, and that one the next: a document of a
few hundred bytes can stand for 2^60 fields. A limit that walks spreads as it meets them does
work in proportion to that expansion, so the walk itself becomes the denial of service. Here
every definition (operation or fragment) is walked exactly once and its measures remembered;
a spread adds the remembered measures of its fragment. The work is linear in the document,
whatever the expansion, and `ShapeWalk.visits` counts it so tests can pin that.

The measures, per operation:
- depth: nested fields that have a selection set (introspection fields do not count; graphql-
  core's `MaxIntrospectionDepthRule` bounds those);
- aliases: aliased fields, counted once per place a spread puts them;
- fields: every field node after expansion, counted the same way.

A spread of an unknown fragment, or one inside a cycle, measures nothing: graphql-core's own
rules (`KnownFragmentNamesRule`, `NoFragmentCyclesRule`) report those mistakes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

# Expanded counts saturate here: enough to compare with any limit, small enough to stay cheap.
SATURATED = 2**62


@dataclass(frozen=True, slots=True)
class Shape:
    """What a selection set stands for once every spread in it is expanded."""

    depth: int = 0
    aliases: int = 0
    fields: int = 0

    def plus(self, other: Shape) -> Shape:
        return Shape(
            depth=max(self.depth, other.depth),
            aliases=_saturating(self.aliases + other.aliases),
            fields=_saturating(self.fields + other.fields),
        )


@dataclass(frozen=True, slots=True)
class OperationShape:
    """One operation of a document and its shape."""

    name: str
    shape: Shape


@dataclass
class ShapeWalk:
    """Measures every operation of a document, visiting each selection node once."""

    document: DocumentNode
    visits: int = 0
    _fragments: dict[str, FragmentDefinitionNode] = field(init=False)
    _measured: dict[str, Shape] = field(init=False, default_factory=dict)
    _in_progress: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self._fragments = {
            definition.name.value: definition
            for definition in self.document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }

    def operations(self) -> list[OperationShape]:
        return [
            OperationShape(
                name=definition.name.value if definition.name else "anonymous",
                shape=self._selection_set(definition.selection_set),
            )
            for definition in self.document.definitions
            if isinstance(definition, OperationDefinitionNode)
        ]

    def _selection_set(self, selection_set: SelectionSetNode) -> Shape:
        total = Shape()
        for selection in selection_set.selections:
            self.visits += 1
            if isinstance(selection, FieldNode):
                total = total.plus(self._field(selection))
            elif isinstance(selection, InlineFragmentNode):
                total = total.plus(self._selection_set(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                total = total.plus(self._fragment(selection.name.value))
        return total

    def _field(self, node: FieldNode) -> Shape:
        own = Shape(aliases=1 if node.alias else 0, fields=1)
        if node.selection_set is None:
            return own
        inner = self._selection_set(node.selection_set)
        counts_for_depth = not node.name.value.startswith("__")
        return Shape(
            depth=inner.depth + 1 if counts_for_depth else 0,
            aliases=_saturating(own.aliases + inner.aliases),
            fields=_saturating(own.fields + inner.fields),
        )

    def _fragment(self, name: str) -> Shape:
        if name in self._measured:
            return self._measured[name]
        definition = self._fragments.get(name)
        if definition is None or name in self._in_progress:
            return Shape()
        self._in_progress.add(name)
        shape = self._selection_set(definition.selection_set)
        self._in_progress.discard(name)
        self._measured[name] = shape
        return shape


def _saturating(count: int) -> int:
    return min(count, SATURATED)


def measure(document: DocumentNode) -> tuple[list[OperationShape], int]:
    """Every operation's shape, and the selection nodes visited to measure them."""
    walk = ShapeWalk(document)
    shapes = walk.operations()
    return shapes, walk.visits
