"""Rows of a model's columns, named like its attributes, instead of ORM objects.

A read whose rows are only copied into an answer (a page of events, a member list, a batch
of users) gains nothing from the ORM: building, identity-mapping and tracking each object
cost more than the SQL. Such reads select the model's mapped columns labelled by attribute
name, so a row reads like the object (`row.user_id`) and the code that copies it is the
same for both.
"""

from __future__ import annotations

from collections import namedtuple
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, inspect


@cache
def column_keys(model: Any) -> tuple[tuple[str, str], ...]:
    """(attribute name, column key) of each mapped column of the model, in mapper order."""
    return tuple((attr.key, attr.columns[0].key) for attr in inspect(model).column_attrs)


def labelled_columns(model: Any, columns: Any = None, prefix: str = "") -> list[ColumnElement[Any]]:
    """The model's columns (or the same-keyed `columns` of a subquery of its table, such as
    a page) labelled by attribute name, after `prefix` (a joined model's columns)."""
    columns = inspect(model).local_table.c if columns is None else columns
    return [columns[column].label(prefix + attribute) for attribute, column in column_keys(model)]


@cache
def _row_type(model: Any) -> tuple[Any, str]:
    """A tuple type whose fields are the model's attributes, for rows read back from a join,
    and the attribute of its primary key."""
    fields = [attribute for attribute, _ in column_keys(model)]
    return namedtuple(f"{model.__name__}Row", fields), inspect(model).primary_key[0].key


def joined_row(row: Any, model: Any, prefix: str) -> Any | None:
    """The `model` row a statement joined to `row` under `prefix` (labelled_columns), read
    like the model; None when the join found none (or its condition refused it)."""
    row_type, primary = _row_type(model)
    if getattr(row, prefix + primary) is None:
        return None
    return row_type(*(getattr(row, prefix + attribute) for attribute in row_type._fields))
