"""SQL expressions (PostgreSQL) that spell a column's value as the JSON text the resolver
path would send, so the compiled read can return the response itself.

Each function takes an SQL expression and returns an SQL expression of type text that is
never NULL (a NULL value spells `null`). The formats are the graph's scalars:
- Decimal (money): canonical text, trailing zeros stripped (`money.canonical_money`), as a
  JSON string: `trim_scale`;
- DateTime: Python's `isoformat()` of the UTC instant (`+00:00`, microseconds only when not
  zero);
- a Relay global id: base64 of `Type:key` (Strawberry's GlobalID);
- a cursor: URL-safe base64 of the JSON array of the sort key (`schema.pagination`).
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
_UTC = "AT TIME ZONE 'UTC'"


def response_key(name: str) -> str:
    """A GraphQL name, checked, so it can sit inside an SQL string literal as it is."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a GraphQL name: {name!r}")
    return name


def constant(json_text: str) -> str:
    """A JSON value known when the statement is built (a type name, a boolean)."""
    return "'" + json_text.replace("'", "''") + "'"


def string(expression: str) -> str:
    return f"coalesce(to_json({expression})::text, 'null')"


def integer(expression: str) -> str:
    return f"coalesce(({expression})::text, 'null')"


def boolean(expression: str) -> str:
    return (
        f"(CASE WHEN {expression} THEN 'true' WHEN {expression} IS NULL THEN 'null' "
        "ELSE 'false' END)"
    )


def money(expression: str) -> str:
    return f"coalesce('\"' || trim_scale({expression})::text || '\"', 'null')"


def iso_instant(expression: str) -> str:
    """The instant's `datetime.isoformat()` in UTC, without quotes (NULL stays NULL).

    One `to_char` with the microseconds, whose `.000000` (the only `.` it can print) is
    dropped as `isoformat()` drops a zero fraction: half the cost of formatting the date
    and the fraction apart (~0.6 against ~1.1 µs a value; a nested read formats hundreds).
    """
    local = f"({expression}) {_UTC}"
    return f"(replace(to_char({local}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '.000000', '') || '+00:00')"


def instant(expression: str) -> str:
    return f"coalesce('\"' || {iso_instant(expression)} || '\"', 'null')"


def json_column(expression: str, kind: str, empty: str) -> str:
    """A JSON column that must hold a `kind` ('object' or 'array'); anything else (NULL, a
    JSON null) reads as `empty`, as the shapes' `dict(x or {})` and `tuple(x or ())` do."""
    return (
        f"(CASE WHEN json_typeof({expression}) = '{kind}' "
        f"THEN ({expression})::text ELSE '{empty}' END)"
    )


def global_id(type_name: str, key_text: str) -> str:
    """Strawberry's GlobalID of a node: base64 of `Type:key`, as a JSON string."""
    encoded = _base64(f"'{response_key(type_name)}:' || {key_text}", "E'\\n'", "''")
    return f"('\"' || {encoded} || '\"')"


def cursor(key_json_text: str) -> str:
    """`schema.pagination.encode_cursor` of a sort key given as its JSON array text."""
    return _base64(key_json_text, "E'+/\\n'", "'-_'")


def _base64(text: str, replaced: str, replacements: str) -> str:
    # PostgreSQL breaks base64 lines every 76 characters; Python's b64encode does not.
    return f"translate(encode(convert_to({text}, 'UTF8'), 'base64'), {replaced}, {replacements})"


def json_object(members: list[tuple[str, str]]) -> str:
    """`{"key": value, ...}` in the given order (the response's), from text expressions."""
    if not members:
        return "'{}'"
    pieces = [
        constant(("{" if index == 0 else ",") + f'"{response_key(key)}":') + f" || {value}"
        for index, (key, value) in enumerate(members)
    ]
    return "(" + " || ".join(pieces) + " || '}')"


def json_array(aggregated: str) -> str:
    """`[...]` around a `string_agg(..., ',')` that is NULL for no rows."""
    return f"('[' || coalesce({aggregated}, '') || ']')"
