"""GraphQL documents built to stress limits: the fan-out family and random fragment DAGs."""

from __future__ import annotations

from hypothesis import strategies as st

# Types the generated fragments stand on: their scalar fields, and object fields by type.
SCALARS = {
    "Viewer": ("kind", "userId", "role", "email"),
    "User": ("id", "email", "role", "userId"),
    "Membership": ("id", "role", "capLimit"),
}
OBJECTS = {
    "Viewer": (("user", "User"),),
    "User": (("memberships", "Membership"),),
    "Membership": (("user", "User"),),
}


def fan_out(n: int) -> str:
    """Each of n fragments spreads the next twice: 2^(n+1) - 1 `userId` fields once expanded."""
    fragments = [f"fragment F{i} on Viewer {{ userId ...F{i + 1} ...F{i + 1} }}" for i in range(n)]
    return " ".join(
        ["query { viewer { ...F0 } }", *fragments, f"fragment F{n} on Viewer {{ userId }}"]
    )


@st.composite
def fragment_dags(draw: st.DrawFn) -> str:
    """A document whose fragments spread later ones (a DAG, so graphql-core accepts it).

    Spreads are repeated, put inside inline fragments and object fields, and carry
    `@include`/`@skip`; fields get aliases. The expansion can be exponential in the number of
    fragments, which is what a limit that walks spreads naively cannot survive.
    """
    count = draw(st.integers(min_value=1, max_value=40))
    types = [draw(st.sampled_from(sorted(SCALARS))) for _ in range(count)]
    types[0] = "Viewer"
    bodies = [_fragment_body(draw, index, types) for index in range(count)]
    fragments = [
        f"fragment F{index} on {types[index]} {{ {body} }}" for index, body in enumerate(bodies)
    ]
    operation = "query Q($yes: Boolean = true) { viewer { ...F0 } }"
    return " ".join([operation, *fragments])


def _fragment_body(draw: st.DrawFn, index: int, types: list[str]) -> str:
    own = types[index]
    parts = [_scalar(draw, own)]
    for target in range(index + 1, len(types)):
        if not draw(st.booleans()):
            continue
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            parts.append(_spread(draw, own, target, types[target]))
    return " ".join(parts)


def _scalar(draw: st.DrawFn, type_name: str) -> str:
    name = draw(st.sampled_from(SCALARS[type_name]))
    alias = draw(st.sampled_from(["", "a: ", "b: "]))
    return alias + name


def _spread(draw: st.DrawFn, own: str, target: int, target_type: str) -> str:
    """A spread of fragment `target` placed validly inside a fragment on `own`."""
    directive = draw(st.sampled_from(["", " @include(if: $yes)", " @skip(if: false)"]))
    spread = f"...F{target}{directive}"
    if target_type == own:
        wrapped = [spread, f"... {{ {spread} }}", f"... on {own} {{ {spread} }}"]
        return draw(st.sampled_from(wrapped))
    for field, returned in OBJECTS[own]:
        if returned == target_type:
            return f"{field} {{ {spread} }}"
    return _scalar(draw, own)  # no field of `own` reaches that type: a plain field instead


def deep_input_json(depth: int) -> str:
    """JSON text of a variable value nested `depth` objects deep (json.dumps cannot write it)."""
    return '{"accounts": ' * depth + '"x"' + "}" * depth
