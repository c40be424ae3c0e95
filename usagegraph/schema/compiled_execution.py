"""Compiled reads in the executor: a covered root field of a query is answered by one SQL
statement whose value is the field's JSON, spliced into the response as it came.

graphql-core executes a root field through `execute_field`; this execution context (given
to the schema in `schema/root.py`) first asks whether the field can be compiled. The
selection under it is planned once per (document, operation, root key, variables) and kept
(`SelectionPlans`): fragments expanded, `@skip`/`@include` applied, arguments coerced and
cursors decoded by the same functions the resolvers use. The rules layer then decides
whether the caller may read all of it without an error (`resolvers.compiled_reads`), and
the statement's text becomes an `orjson.Fragment`: the response encoder (`http.json`,
orjson) copies it into the body without a Python object per row.

Whatever is not covered (a field, an argument, an abstract type, an error) sends the whole
root field down the resolver path, the reference implementation; nothing is ever answered
half compiled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
    is_object_type,
)
from graphql.execution.values import get_argument_values, get_directive_values

from usagegraph.errors import UsageGraphError
from usagegraph.observability.metrics import count_compiled_read
from usagegraph.recently_used import RecentlyUsed
from usagegraph.resolvers.compiled_reads import (
    COMPILED_ROOTS,
    TYPENAME,
    NotCompilable,
    Selection,
    compiled_root,
    compiles,
)
from usagegraph.schema.leaf_fields import LeafFieldsExecutionContext
from usagegraph.schema.pagination import (
    id_cursor,
    institution_cursor,
    moment_id_cursor,
    page_size,
)
from usagegraph.schema.plain_values import Completer, NotPlain, plain_completer

MAX_PLANS = 512
# Plain completers kept across requests, per (query text, operation, type, field nodes).
MAX_PLAIN_PLANS = 2048


def _page(arguments: dict[str, Any], decode_after: Callable[[str | None], Any]) -> dict[str, Any]:
    after = arguments.get("after")
    return {
        "size": page_size(arguments.get("first")),
        "after": decode_after(after),
        "after_given": after is not None,
    }


def _moment_page(arguments: dict[str, Any]) -> dict[str, Any]:
    page = _page(arguments, moment_id_cursor)
    moment, row_id = page.pop("after")
    page["before"] = (moment, row_id) if moment is not None else None
    return page


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


# How each covered field's arguments read once decoded, by (type, field). A field with
# arguments that is not listed here is not compiled.
_ARGUMENTS: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("Query", "institution"): lambda a: {"id": a["id"]},
    ("Query", "user"): lambda a: {"id": a["id"]},
    ("Query", "institutions"): lambda a: _page(a, institution_cursor),
    ("Institution", "members"): lambda a: _page(a, id_cursor),
    ("User", "ledger"): lambda a: {
        **_moment_page(a),
        "type": _enum_value(a.get("type")),
        "from": a.get("from_", a.get("from")),
        "to": a.get("to"),
    },
    ("User", "usageEvents"): lambda a: {
        **_moment_page(a),
        "instance": a.get("instance_id", a.get("instanceId")),
        "from": a.get("from_", a.get("from")),
        "to": a.get("to"),
    },
}


class SelectionPlans:
    """Planned selections, most recently used kept; `built` counts the plans made (the
    test of the cache reads it)."""

    def __init__(self, capacity: int = MAX_PLANS) -> None:
        self._plans: RecentlyUsed[tuple[Any, ...], Selection | None] = RecentlyUsed(capacity)
        self.built = 0

    def selection(
        self,
        execution: CompilingExecutionContext,
        parent_type: GraphQLObjectType,
        nodes: list[FieldNode],
    ) -> Selection | None:
        """The root field's selection, or None when it cannot be compiled."""
        variables = execution.variable_values.coerced
        source = execution.operation.loc.source.body if execution.operation.loc else None
        key = (
            source,
            execution.operation.name.value if execution.operation.name else None,
            nodes[0].alias.value if nodes[0].alias else nodes[0].name.value,
            repr(sorted(variables.items())),
        )

        def plan() -> Selection | None:
            self.built += 1
            try:
                planner = Planner(
                    execution.schema, execution.fragment_definitions, execution.variable_values
                )
                return planner.field(parent_type, nodes)
            except (NotCompilable, UsageGraphError):
                return None

        return plan() if source is None else self._plans.get_or_make(key, plan)


PLANS = SelectionPlans()
_PLAIN_PLANS: RecentlyUsed[tuple[Any, ...], Completer | None] = RecentlyUsed(MAX_PLAIN_PLANS)


class Planner:
    """Walks a field's selection set the way graphql-core's `collect_fields` does: for a
    compiled root field (`field`), or down to one nested field (`nested_arguments`)."""

    def __init__(self, schema: GraphQLSchema, fragments: Any, variables: Any) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def nested_arguments(
        self, parent_type: GraphQLObjectType, nodes: list[FieldNode], path: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The decoded arguments (`_ARGUMENTS`) of every distinct selection of the field that
        `path` (field names, aliases aside) reaches below the field of `nodes`, after fragments
        and `@skip`/`@include`. Empty when the path leaves object types or reaches a field
        without decoded arguments; a selection whose arguments do not decode (a bad cursor)
        is left out, for the field itself to report."""
        object_type, field_nodes = parent_type, nodes
        for name in path:
            definition = object_type.fields.get(field_nodes[0].name.value)
            named = get_named_type(definition.type) if definition is not None else None
            if not isinstance(named, GraphQLObjectType):
                return []
            grouped: dict[str, list[FieldNode]] = {}
            for node in field_nodes:
                if node.selection_set is not None:
                    self._collect(named, node.selection_set, grouped)
            field_nodes = [node for group in grouped.values() for node in group]
            field_nodes = [node for node in field_nodes if node.name.value == name]
            if not field_nodes:
                return []
            object_type = named
        target = object_type.fields.get(path[-1])
        decode = _ARGUMENTS.get((object_type.name, path[-1]))
        if target is None or decode is None:
            return []
        found: list[dict[str, Any]] = []
        for node in field_nodes:
            try:
                decoded = decode(get_argument_values(target, node, self.variables))
            except (GraphQLError, UsageGraphError):
                continue
            if decoded not in found:
                found.append(decoded)
        return found

    def field(self, parent_type: GraphQLObjectType, nodes: list[FieldNode]) -> Selection:
        first = nodes[0]
        name = first.name.value
        key = first.alias.value if first.alias else name
        if name == TYPENAME:
            return Selection(key=key, name=TYPENAME)
        definition: GraphQLField | None = parent_type.fields.get(name)
        if definition is None:
            raise NotCompilable(name)
        arguments = self._arguments(parent_type, name, definition, first)
        named = get_named_type(definition.type)
        if is_abstract_type(named):
            raise NotCompilable(f"{parent_type.name}.{name}: abstract type")
        children: tuple[Selection, ...] = ()
        if is_object_type(named):
            assert isinstance(named, GraphQLObjectType)
            grouped: dict[str, list[FieldNode]] = {}
            for node in nodes:
                if node.selection_set is not None:
                    self._collect(named, node.selection_set, grouped)
            children = tuple(self.field(named, group) for group in grouped.values())
        return Selection(key=key, name=name, arguments=arguments, children=children)

    def _arguments(
        self, parent_type: GraphQLObjectType, name: str, definition: GraphQLField, node: FieldNode
    ) -> tuple[tuple[str, Any], ...]:
        if not definition.args and not node.arguments:
            return ()
        decode = _ARGUMENTS.get((parent_type.name, name))
        if decode is None:
            raise NotCompilable(f"{parent_type.name}.{name}: arguments")
        coerced = get_argument_values(definition, node, self.variables)
        return tuple(decode(coerced).items())

    def _collect(
        self,
        object_type: GraphQLObjectType,
        selection_set: SelectionSetNode,
        grouped: dict[str, list[FieldNode]],
    ) -> None:
        for node in selection_set.selections:
            if not self._included(node):
                continue
            if isinstance(node, FieldNode):
                key = node.alias.value if node.alias else node.name.value
                grouped.setdefault(key, []).append(node)
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition.name.value if node.type_condition else None
                if self._applies(condition, object_type):
                    self._collect(object_type, node.selection_set, grouped)
            elif isinstance(node, FragmentSpreadNode):
                fragment = self.fragments.get(node.name.value)
                if fragment is not None and self._applies(
                    fragment.type_condition.name.value, object_type
                ):
                    self._collect(object_type, fragment.selection_set, grouped)

    def _included(self, node: Any) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip is not None and skip.get("if") is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include is not None and include.get("if") is False)

    def _applies(self, condition: str | None, object_type: GraphQLObjectType) -> bool:
        if condition is None or condition == object_type.name:
            return True
        conditional = self.schema.get_type(condition)
        return (
            conditional is not None
            and is_abstract_type(conditional)
            and self.schema.is_sub_type(conditional, object_type)  # type: ignore[arg-type]
        )


class CompilingExecutionContext(LeafFieldsExecutionContext):
    """graphql-core's executor, answering covered root fields of a query compiled,
    completing plain values (`schema.plain_values`) in one walk, and plain leaf fields
    directly (`schema.leaf_fields`)."""

    def complete_object_value(
        self,
        return_type: GraphQLObjectType,
        field_details_list: Any,
        info: Any,
        path: Any,
        result: Any,
        position_context: Any = None,
    ) -> Any:
        wrapped = self.resolvers_wrapped()
        complete = None if wrapped else self._plain(return_type, field_details_list)
        if complete is not None:
            try:
                return complete(result)
            except NotPlain:
                pass  # graphql-core completes it, errors and all
        return super().complete_object_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _plain(self, object_type: GraphQLObjectType, field_details_list: Any) -> Completer | None:
        """The plain selection's completer, or None: planned once per selection of a query
        text and kept across requests (`_PLAIN_PLANS`), since a completer holds nothing of
        the request that planned it. Planning per request cost ~0.14 ms of a ~3 ms usage
        history read (py-spy). Without source locations it is planned per request.

        Within a request it is looked up once per selection, not once per object: every item
        of a list comes with the same field nodes, and building the cross-request key (the
        text, the node positions) for each of 400 objects cost ~1 ms of issue 14's question.
        """
        plans: dict[tuple[GraphQLObjectType, int], tuple[Any, Completer | None]] | None
        plans = self.__dict__.get("_plain_plans")
        if plans is None:
            plans = self.__dict__["_plain_plans"] = {}
        # Memoized on the identity of the field nodes, as graphql-core's `collect_subfields`
        # is (the list is kept alive with it, so that its id cannot be reused meanwhile).
        key = (object_type, id(field_details_list))
        known = plans.get(key)
        if known is None:
            known = (field_details_list, self._kept_plain(object_type, field_details_list))
            plans[key] = known
        return known[1]

    def _kept_plain(
        self, object_type: GraphQLObjectType, field_details_list: Any
    ) -> Completer | None:
        """The completer kept across requests under `_plain_key`; planned afresh when the
        selection has no such key."""
        key = self._plain_key(object_type, field_details_list)
        if key is None:
            return plain_completer(self._plain_subfields, object_type, field_details_list)
        return _PLAIN_PLANS.get_or_make(
            key, lambda: plain_completer(self._plain_subfields, object_type, field_details_list)
        )

    def _plain_key(self, object_type: GraphQLObjectType, field_details_list: Any) -> Any:
        """What the plan depends on: the query text and operation, the type, the field nodes
        (by their place in the text) and, when the text has directives, the variables
        (`@skip`/`@include` may read them). None when nodes carry no location, or when the
        text defers or streams (the graph does not enable either; kept out all the same)."""
        operation = self.operation
        starts = []
        for details in field_details_list:
            loc = details.node.loc
            if loc is None:
                return None
            starts.append(loc.start)
        source = operation.loc.source.body if operation.loc is not None else None
        if source is None or "@defer" in source or "@stream" in source:
            return None  # what is deferred depends on the path too, not only on the nodes
        variables = repr(sorted(self.variable_values.coerced.items())) if "@" in source else None
        name = operation.name.value if operation.name else None
        return (source, name, object_type, tuple(starts), variables)

    def _plain_subfields(self, object_type: GraphQLObjectType, field_details_list: Any) -> Any:
        grouped, defers, _forbidden = self.collect_subfields(object_type, field_details_list)
        return grouped, defers

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any = None,
    ) -> Any:
        if path.prev is None and self._may_compile(parent_type, field_details_list):
            nodes = [details.node for details in field_details_list]
            selection = PLANS.selection(self, parent_type, nodes)
            if selection is None:
                count_compiled_read(compiled=False)
            else:
                return self._compiled(
                    selection, parent_type, source, field_details_list, path, position_context
                )
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def _may_compile(self, parent_type: GraphQLObjectType, field_details_list: Any) -> bool:
        return (
            self.operation.operation is OperationType.QUERY
            and parent_type is self.schema.query_type
            and field_details_list[0].node.name.value in COMPILED_ROOTS
            and compiles(self.context_value)
        )

    async def _compiled(
        self,
        selection: Selection,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        try:
            text = await compiled_root(self.context_value, selection)
        except Exception as raw_error:  # as a resolver's error: located, coded, masked
            field = parent_type.fields[field_details_list[0].node.name.value]
            self.handle_field_error(raw_error, field.type, field_details_list, path)
            return None
        count_compiled_read(compiled=text is not None)
        if text is not None:
            return orjson.Fragment(text)
        result = super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
        return await result if self.is_awaitable(result) else result
