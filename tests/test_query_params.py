"""One reading of query parameters for every REST family; only the wording differs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum

import pytest
from starlette.requests import Request

from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.http.query_params import QueryParameters, Wording

STRICT = Wording(not_integer="bad {name}", repeated="{name} twice")
LENIENT = Wording(not_integer="'{name}' must be an integer", blank_is_absent=True)


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


def _params(query: str, wording: Wording = STRICT) -> QueryParameters:
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": query.encode()}
    return QueryParameters(Request(scope), wording)


def _refusal(call: object) -> str:
    with pytest.raises(UsageGraphError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    return caught.value.message


def test_absent_parameters_read_as_none() -> None:
    params = _params("")
    assert (params.text("a"), params.integer("a"), params.date("a"), params.moment("a")) == (
        None,
        None,
        None,
        None,
    )


def test_integers_are_strict_ascii_64_bit() -> None:
    assert _params("limit=-12").integer("limit") == -12
    for text in ("%2B7", "7.0", "1e3", "%20", "9223372036854775808"):
        assert _refusal(lambda t=text: _params(f"limit={t}").integer("limit")) == "bad limit"


def test_a_repeated_parameter_is_refused_or_its_last_value_counts() -> None:
    assert _refusal(lambda: _params("limit=1&limit=2").integer("limit")) == "limit twice"
    assert _params("limit=1&limit=2", LENIENT).integer("limit") == 2


def test_a_blank_parameter_is_absent_only_where_the_family_says_so() -> None:
    assert _params("type=%20", LENIENT).text("type") is None
    assert _params("type=", STRICT).text("type") == ""


def test_dates_moments_and_choices() -> None:
    params = _params("d=2024-02-29&m=2024-02-29T10:00:00&c=blue")
    assert params.date("d") == date(2024, 2, 29)
    assert params.moment("m") == datetime(2024, 2, 29, 10, tzinfo=UTC)
    assert params.choice("c", Colour) is Colour.BLUE
    assert _refusal(lambda: _params("d=2023-02-29").date("d")) == "d must be a date"
    assert _refusal(lambda: _params("c=green").choice("c", Colour)) == "c must be one of red, blue"


def test_a_year_outside_the_supported_range_names_the_rule() -> None:
    message = _refusal(lambda: _params("d=1969-12-31").date("d"))
    assert message.startswith("d ")
    assert "1970" in message
