"""The DateTime scalar: the fast parser accepts exactly what Strawberry's own accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import dateutil.parser
import pytest
from strawberry.exceptions import StrawberryGraphQLError

from usagegraph.schema.scalars import SCALAR_MAP

parse = SCALAR_MAP[datetime].parse_value

FORMS = [
    "2026-05-20T14:00:00Z",
    "2026-05-20T14:00:00+00:00",
    "2026-05-20T14:00:00.123Z",
    "2026-05-20T14:00:00.1234567Z",  # beyond microseconds: truncated by both
    "2026-05-20 14:00:00Z",
    "2026-05-20T14:00Z",
    "2026-05-20T14:00:00+0530",
    "2026-05-20T14:00:00-03",
    "20260520T140000Z",
    "2026-W21-3T14:00Z",
    "2026-05-20T14:00:00,5Z",
    # Forms only dateutil knows, still accepted:
    "2026-05-20T24:00:00Z",
    "2026-05-20T14:00:00z",
]


@pytest.mark.parametrize("text", FORMS)
def test_every_form_parses_as_dateutil_parses_it(text: str) -> None:
    assert parse(text) == dateutil.parser.isoparse(text)


def test_values_worked_out_by_hand() -> None:
    assert parse("2026-05-20T14:00:00+0530") == datetime(
        2026, 5, 20, 14, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )
    assert parse("2026-05-20T24:00:00Z") == datetime(2026, 5, 21, tzinfo=UTC)


@pytest.mark.parametrize("value", ["nope", "2026-13-01T00:00:00Z", " 2026-05-20T14:00:00Z", 5])
def test_malformed_values_are_the_clients_error(value: object) -> None:
    with pytest.raises(StrawberryGraphQLError, match="Value cannot represent a DateTime"):
        parse(value)


@pytest.mark.parametrize("value", ["2026-05-20", "2026-05", "2026-05-20T14:00:00"])
def test_a_value_without_an_offset_is_refused(value: str) -> None:
    """Forms dateutil reads as naive: they named no instant (the writes refused them, the
    reads failed on them), so the scalar asks for the offset."""
    with pytest.raises(StrawberryGraphQLError, match="must carry a UTC offset"):
        parse(value)
