"""What one GraphQL request may ask for: tokens, depth, aliases, cost, introspection.

Each limit is a Strawberry extension given to the schema as a factory, so every request gets
its own instance (an extension holds that request's execution context; a shared instance would
mix concurrent requests). The validation rules are built once per schema and handed to every
request's instance unchanged: `ValidationCache` keys its entries by those rule classes, so a
new class per request would never hit the cache.

- Tokens (`max_tokens`): the parser stops at the limit, before building a huge document.
- Depth (`max_depth`), aliases (`max_aliases`) and fields after fragment expansion
  (`max_fields`): measured by `document_shape` in one linear pass, *before* graphql-core's
  validation, so a document whose fragments fan out exponentially is refused before any rule
  walks it. Introspection fields do not add depth; graphql-core's `MaxIntrospectionDepthRule`
  bounds those instead.
- Cost (`max_cost`): checked just before execution, with the request's variables, by
  `QueryCost` below.
- Introspection: `NoSchemaIntrospectionCustomRule` when the setting turns it off.
- Parser and validation caches: a repeated query text skips both steps.
- Text: no string or variable may hold U+0000 (`NulFreeText`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NamedTypeNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    Visitor,
    get_named_type,
    get_nullable_type,
    get_operation_ast,
    visit,
)
from graphql.language import BREAK
from graphql.validation import (
    ASTValidationRule,
    MaxIntrospectionDepthRule,
    NoSchemaIntrospectionCustomRule,
)
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.schema import validate_document

from usagegraph.errors import ErrorCode
from usagegraph.input_text import NUL, NUL_REFUSED
from usagegraph.recently_used import RecentlyUsed
from usagegraph.schema.document_shape import SATURATED, measure
from usagegraph.schema.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from usagegraph.settings import GraphQLLimits

# Distinct query texts (and parsed documents) remembered by each cache.
CACHE_SIZE = 256
# Arguments that say how many items a field returns; each defaults to a connection's page.
PAGE_ARGUMENTS = ("first", "limit")
# Items assumed for a list field that takes no page size (buckets, memberships, rows).
UNPAGED_LIST_SIZE = 20
# Field nodes the cost walk may visit, fragments expanded; a document needing more is refused.
# Far above any real query (2,000 tokens write at most ~1,000 fields), it bounds the walk
# against fragments of scalars spread into many places.
MAX_VISITED_FIELDS = 100_000

ExtensionFactory = Callable[[], SchemaExtension]


def limit_extensions(limits: GraphQLLimits) -> list[ExtensionFactory]:
    """The schema extensions enforcing `limits`, each a factory called once per request."""
    rules = validation_rules(limits)
    return [
        partial(MaxTokensLimiter, max_token_count=limits.max_tokens),
        partial(ReportedParserCache, maxsize=CACHE_SIZE),
        partial(AddValidationRules, rules),
        NamedOperationChoice,
        partial(ShapedValidation, limits=limits, maxsize=CACHE_SIZE),
        partial(QueryCost, max_cost=limits.max_cost),
        NulFreeText,
    ]


def validation_rules(limits: GraphQLLimits) -> list[type[ASTValidationRule]]:
    """The rule classes added to graphql-core's own; built once per schema (see above)."""
    rules: list[type[ASTValidationRule]] = [MaxIntrospectionDepthRule]
    if not limits.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return rules


class ShapedValidation(ValidationCache):
    """Refuses a document by its expanded shape first, then validates it (cached).

    The shape is measured in linear time (`document_shape`); only a document within the
    depth, alias and field limits reaches graphql-core's rules, so no rule ever walks an
    exponential expansion.
    """

    def __init__(self, limits: GraphQLLimits, maxsize: int) -> None:
        super().__init__(maxsize=maxsize)
        self.limits = limits

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if context.pre_execution_errors:  # refused already (NamedOperationChoice)
            yield
            return
        errors = _shape_errors_once(document, self.limits) if document is not None else []
        if errors:
            context.pre_execution_errors = errors
            yield
            return
        source = _source_of(document) if document is not None else None
        if source is None:
            yield from super().on_validate()
            return
        # Keyed by the document's text: Strawberry's cache hashes the whole syntax tree (every
        # node, recursively) on each request to find the same answer.
        key = (source, id(context.schema._schema), tuple(map(id, context.validation_rules)))

        def validate() -> list[GraphQLError]:
            VALIDATIONS_RUN[0] += 1
            return validate_document(context.schema._schema, document, context.validation_rules)

        context.pre_execution_errors = _VALIDATED.get_or_make(key, validate)
        yield


class NamedOperationChoice(SchemaExtension):
    """A document with several operations must say which one to run (`operationName`).

    Strawberry would run the first one; the GraphQL spec and GraphQL-over-HTTP make it an
    error, so a client that forgot the name learns it instead of getting another answer.
    """

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        # `operation_name` falls back to the first operation's name; only the request's own
        # choice counts here.
        provided = getattr(context, "_provided_operation_name", None)
        if document is not None and provided is None:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if len(operations) > 1:
                context.pre_execution_errors = [
                    GraphQLError(
                        "The document holds several operations: name the one to run in "
                        "operationName"
                    )
                ]
        yield


MAX_KEPT_VARIABLES = 2048  # characters of repr(variables)
KEPT_DOCUMENTS = 1024
VALIDATIONS_RUN = [0]  # documents validated (not found kept): the cache's test reads it
_VALIDATED: RecentlyUsed[tuple[Any, ...], list[GraphQLError]] = RecentlyUsed(KEPT_DOCUMENTS)
# Documents (by text) and requests already found within a limit: most requests repeat the
# few documents of their client. Only passes are kept, so a refusal is always freshly built.
_SHAPES_WITHIN: RecentlyUsed[Hashable, None] = RecentlyUsed(KEPT_DOCUMENTS)
_COSTS_WITHIN: RecentlyUsed[Hashable, None] = RecentlyUsed(KEPT_DOCUMENTS)


def _source_of(document: DocumentNode) -> str | None:
    return document.loc.source.body if document.loc is not None else None


def _shape_errors_once(document: DocumentNode, limits: GraphQLLimits) -> list[GraphQLError]:
    key = (_source_of(document), limits)
    if key[0] is not None and key in _SHAPES_WITHIN:
        return []
    errors = shape_errors(document, limits)
    if not errors and key[0] is not None:
        _SHAPES_WITHIN.keep(key, None)
    return errors


def shape_errors(document: DocumentNode, limits: GraphQLLimits) -> list[GraphQLError]:
    """Errors for every limit the document's operations exceed once fragments are spread."""
    operations, _visits = measure(document)
    errors = [
        GraphQLError(f"'{operation.name}' exceeds maximum operation depth of {limits.max_depth}")
        for operation in operations
        if operation.shape.depth > limits.max_depth
    ]
    aliases = min(sum(operation.shape.aliases for operation in operations), SATURATED)
    if aliases > limits.max_aliases:
        errors.append(GraphQLError(f"{aliases} aliases found. Allowed: {limits.max_aliases}"))
    fields = min(sum(operation.shape.fields for operation in operations), SATURATED)
    if fields > limits.max_fields:
        errors.append(too_many_fields(limits.max_fields))
    return errors


def too_many_fields(max_fields: int) -> GraphQLError:
    return GraphQLError(
        f"The operation is too large: with its fragments spread it selects more than "
        f"{max_fields} fields. Spread fragments in fewer places or select fewer fields.",
        extensions={"code": ErrorCode.OPERATION_TOO_LARGE.value},
    )


class ReportedParserCache(ParserCache):
    """Strawberry's parser cache, leaving syntax errors to Strawberry's own parse step.

    An exception raised inside an `on_parse` hook escapes the operation's error handling (no
    code, no masking); a document that does not parse is left unset here, so Strawberry
    parses it again and reports the syntax error the ordinary way.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        with contextlib.suppress(GraphQLError):
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        yield


class QueryCost(SchemaExtension):
    """Refuses an operation whose estimated cost exceeds `max_cost`, before it runs.

    Runs after validation (the document is known to be valid) with the request's variables,
    so `first: $n` counts as the page the client really asked for.
    """

    def __init__(self, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.result is None:
            variables = repr(context.variables)
            # Not kept for big variables (a batch of writes): the key would outweigh the walk.
            source = _source_of(document) if len(variables) <= MAX_KEPT_VARIABLES else None
            key = (source, context.operation_name, variables, self.max_cost)
            if source is not None and key in _COSTS_WITHIN:
                yield
                return
            operation = get_operation_ast(document, context.operation_name)
            if operation is not None and not within_cost(
                context.schema._schema, document, operation, context.variables, self.max_cost
            ):
                context.result = ExecutionResult(data=None, errors=[too_costly(self.max_cost)])
            elif source is not None:
                _COSTS_WITHIN.keep(key, None)
        yield


class NulFreeText(SchemaExtension):
    """Refuses an operation whose strings or variables hold U+0000, before it runs.

    PostgreSQL cannot store or compare that character (the statement fails, which would be a
    server error) while SQLite would store it: refused as the client's error on both.
    """

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if context.result is None and (
            (document is not None and _document_has_nul(document))
            or _value_has_nul(context.variables)
        ):
            context.result = ExecutionResult(data=None, errors=[_nul_refused()])
        yield


def _document_has_nul(document: DocumentNode) -> bool:
    """Whether a string value of the document holds U+0000: only possible when its text has
    a NUL or an escape that may spell one, so most documents need no walk."""
    source = document.loc.source.body if document.loc is not None else None
    if source is not None and not any(mark in source for mark in _NUL_MARKS):
        return False
    finder = _NulFinder()
    visit(document, finder)
    return finder.found


# How U+0000 can appear in a GraphQL document's text: raw, or as a \u escape.
_NUL_MARKS = (NUL, "\\u0000", "\\u{")


class _NulFinder(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> Any:
        if NUL in node.value:
            self.found = True
            return BREAK
        return None


def _value_has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(_value_has_nul(k) or _value_has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_value_has_nul(item) for item in value)
    return False


def _nul_refused() -> GraphQLError:
    return GraphQLError(
        f"Text {NUL_REFUSED}",
        extensions={"code": ErrorCode.INVALID_REQUEST.value},
    )


def too_costly(max_cost: int) -> GraphQLError:
    return GraphQLError(
        f"The query is too expensive: its estimated cost exceeds {max_cost}. Ask for smaller "
        "pages (first, limit) or fewer nested lists.",
        extensions={"code": ErrorCode.INVALID_REQUEST.value},
    )


class _OverBudget(Exception):
    """Raised by the cost walk as soon as the running total passes the budget."""


def within_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any] | None,
    max_cost: int,
) -> bool:
    """Whether the operation's cost (see `CostWalk`) is at most `max_cost`."""
    root = schema.get_root_type(operation.operation)
    if root is None:
        return True
    walk = CostWalk(schema, document, operation, dict(variables or {}))
    try:
        walk.cost([(operation.selection_set, root)], budget=max_cost, in_page=False)
    except _OverBudget:
        return False
    return True


# A selection set and the type its fields are looked up on.
Selections = list[tuple[SelectionSetNode, GraphQLNamedType]]


@dataclass
class CostWalk:
    """The estimated cost of an operation: how many objects its answer may hold.

    A field returning an object (or a list of them) costs 1 plus the cost of its selection
    times the items it stands for: the `first` or `limit` argument of a paged field (default
    20, at most 100); 1 for the list inside a page (the page counted it); 20 for any other
    list; 1 for a single object. Scalar fields are free: an object's scalars are bounded by
    its type. Fields are merged by response key and a fragment spread twice into the same
    selection counts once, as graphql-core executes them; `@skip`/`@include` are ignored (an
    estimate from above), and introspection fields are free.

    The walk stops as soon as its total passes the budget (every object field it visits adds
    at least 1) or it has visited `MAX_VISITED_FIELDS` field nodes, so its own work is bounded
    however the document nests fragments.
    """

    schema: GraphQLSchema
    document: DocumentNode
    operation: OperationDefinitionNode
    variables: dict[str, Any]
    fragments: dict[str, FragmentDefinitionNode] = field(init=False)
    defaults: dict[str, ValueNode] = field(init=False)
    visited_fields: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.fragments = {
            d.name.value: d
            for d in self.document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        self.defaults = {
            d.variable.name.value: d.default_value
            for d in self.operation.variable_definitions or ()
            if d.default_value is not None
        }

    def cost(self, selections: Selections, *, budget: int, in_page: bool) -> int:
        """The cost of the merged fields of `selections`, or `_OverBudget` past `budget`."""
        total = 0
        for owner, nodes in self._merged_fields(selections):
            definition = _field_definition(owner, nodes[0].name.value)
            if definition is None:
                continue
            returned = get_named_type(definition.type)
            children = [(n.selection_set, returned) for n in nodes if n.selection_set]
            if not children:
                continue  # a scalar
            paged = any(name in definition.args for name in PAGE_ARGUMENTS)
            items = self._items(nodes[0], definition, paged=paged, in_page=in_page)
            inner = self.cost(children, budget=(budget - total - 1) // items, in_page=paged)
            total += 1 + items * inner
            if total > budget:
                raise _OverBudget
        return total

    def _merged_fields(
        self, selections: Selections
    ) -> Iterator[tuple[GraphQLNamedType, list[FieldNode]]]:
        """Fields by (owning type, response key), fragments flattened, as execution groups them."""
        groups: dict[tuple[str, str], tuple[GraphQLNamedType, list[FieldNode]]] = {}
        visited: set[str] = set()
        for selection_set, parent in selections:
            for owner, node in self._fields(selection_set, parent, visited):
                key = (owner.name, node.alias.value if node.alias else node.name.value)
                groups.setdefault(key, (owner, []))[1].append(node)
        yield from groups.values()

    def _fields(
        self, selection_set: SelectionSetNode, parent: GraphQLNamedType, visited: set[str]
    ) -> Iterator[tuple[GraphQLNamedType, FieldNode]]:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                self.visited_fields += 1
                if self.visited_fields > MAX_VISITED_FIELDS:
                    raise _OverBudget
                if not selection.name.value.startswith("__"):
                    yield parent, selection
            elif isinstance(selection, InlineFragmentNode):
                owner = self._type_named(selection.type_condition, parent)
                yield from self._fields(selection.selection_set, owner, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in visited:
                    continue
                visited.add(name)
                owner = self._type_named(fragment.type_condition, parent)
                yield from self._fields(fragment.selection_set, owner, visited)

    def _type_named(self, condition: NamedTypeNode | None, parent: GraphQLNamedType) -> Any:
        if condition is None:
            return parent
        return self.schema.get_type(condition.name.value) or parent

    def _items(
        self, node: FieldNode, definition: GraphQLField, *, paged: bool, in_page: bool
    ) -> int:
        """How many items the field stands for (at least 1, so the budget always shrinks)."""
        if paged:
            return self._page_size(node)
        if isinstance(get_nullable_type(definition.type), GraphQLList):
            return 1 if in_page else UNPAGED_LIST_SIZE
        return 1

    def _page_size(self, node: FieldNode) -> int:
        for argument in node.arguments or ():
            if argument.name.value in PAGE_ARGUMENTS:
                requested = self._integer(argument.value)
                if requested is not None:
                    return min(max(requested, 1), MAX_PAGE_SIZE)
        return DEFAULT_PAGE_SIZE

    def _integer(self, value: ValueNode) -> int | None:
        """An Int literal or variable's value; None (the default page) for anything else."""
        if isinstance(value, VariableNode):
            name = value.name.value
            if name not in self.variables:
                default = self.defaults.get(name)
                return self._integer(default) if default is not None else None
            raw = self.variables[name]
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            return None
        if isinstance(value, IntValueNode):
            return int(value.value)
        return None


def _field_definition(owner: GraphQLNamedType, name: str) -> GraphQLField | None:
    fields = getattr(owner, "fields", None)
    return fields.get(name) if fields else None
