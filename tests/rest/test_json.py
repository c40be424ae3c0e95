"""REST bodies: Decimals as exact JSON numbers, times in the seeds' ISO 8601 forms."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from usagegraph.http.json import dumps, iso_timestamp
from usagegraph.money import canonical_money


def test_decimals_render_as_exact_numbers_without_exponents() -> None:
    body = dumps(
        {"a": Decimal("0.1"), "b": Decimal("100.000000"), "c": Decimal("123456789012.000001")}
    )
    assert body == b'{"a":0.1,"b":100,"c":123456789012.000001}'


def test_timestamps_have_milliseconds_and_z_and_four_digit_years() -> None:
    assert (
        iso_timestamp(datetime(2026, 5, 1, 1, 2, 3, 456789, tzinfo=UTC))
        == "2026-05-01T01:02:03.456Z"
    )
    assert (
        iso_timestamp(datetime(2026, 5, 1, tzinfo=UTC), milliseconds=False)
        == "2026-05-01T00:00:00Z"
    )
    assert iso_timestamp(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0", "0"),
        ("0.000000", "0"),
        ("1E+2", "100"),
        ("2.5E+3", "2500"),
        ("1E-6", "0.000001"),
        ("-3.10", "-3.1"),
        ("12.0", "12"),
        ("123456789.123400", "123456789.1234"),
    ],
)
def test_decimal_text_is_the_canonical_form(value: str, text: str) -> None:
    assert dumps(Decimal(value)) == text.encode()
    assert format(canonical_money(Decimal(value)), "f") == text


def test_a_decimal_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(TypeError):
        dumps({"a": Decimal("NaN")})
