"""Rows of a model's columns, named like its attributes, instead of ORM objects.

A read whose rows are only copied into an answer (a page of events, a member list, a batch
of users) gains nothing from the ORM: building, identity-mapping and tracking each object
cost more than the SQL. Such reads select the model's mapped columns labelled by attribute
name, so a row reads like the object (`row.user_id`) and the code that copies it is the
same for both.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, inspect


@cache
def column_keys(model: Any) -> tuple[tuple[str, str], ...]:
    """(attribute name, column key) of each mapped column of the model, in mapper order."""
    return tuple((attr.key, attr.columns[0].key) for attr in inspect(model).column_attrs)


def labelled_columns(model: Any, columns: Any = None) -> list[ColumnElement[Any]]:
    """The model's columns (or the same-keyed `columns` of a subquery of its table, such as
    a page) labelled by attribute name."""
    columns = inspect(model).local_table.c if columns is None else columns
    return [columns[column].label(attribute) for attribute, column in column_keys(model)]
