"""Each input rule on its own, on hand-picked edges (no database, no app)."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from strawberry.exceptions import StrawberryGraphQLError

from usagegraph.datasources.wallet_writes import LedgerBook
from usagegraph.db.models import Wallet
from usagegraph.errors import UsageGraphError
from usagegraph.input_ids import (
    MAX_ID,
    ascii_digits,
    id_or_none,
    is_bucket_id,
    is_id,
    is_institution_id,
    parse_id,
    parse_integer,
)
from usagegraph.input_text import NotJson, NotUtf8, json_value, query_string_is_utf8
from usagegraph.iso_dates import (
    OutOfRange,
    parse_date,
    parse_datetime,
    parse_moment,
    storable_day,
    storable_instant,
)
from usagegraph.money_range import MAX_AMOUNT, MAX_STORED, amount, stored_sum
from usagegraph.schema.node_ids import membership_keys, snapshot_key
from usagegraph.schema.pagination import day_cursor, id_cursor, moment_id_cursor
from usagegraph.schema.scalars import SCALAR_MAP, BigInt
from usagegraph.settings import Settings, SettingsError

# --- ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("007", 7),
        (str(MAX_ID), MAX_ID),
        ("0000000000000000001", 1),  # 19 digits
    ],
)
def test_ids_are_ascii_digits_from_1_to_2_63_minus_1(text: str, expected: int) -> None:
    assert parse_id(text) == expected
    assert id_or_none(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-1",
        str(MAX_ID + 1),
        "9" * 40,
        "00000000000000000001",  # 20 digits
        "٣",  # Arabic-Indic three: str.isdigit() and int() accept it
        "+3",
        " 3",
        "3 ",
        "3_0",
        "",
        "3.0",
    ],
)
def test_anything_else_names_no_id(text: str) -> None:
    with pytest.raises(ValueError, match="not an id"):
        parse_id(text)
    assert id_or_none(text) is None


def test_is_id_takes_ints_in_range_only() -> None:
    assert is_id(1)
    assert is_id(MAX_ID)
    assert not is_id(0)
    assert not is_id(MAX_ID + 1)
    assert not is_id(-5)
    assert not is_id(True)
    assert not is_id("3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("-7", -7), (str(MAX_ID), MAX_ID), (str(-MAX_ID - 1), -MAX_ID - 1)],
)
def test_integers_are_ascii_digits_within_64_bits(text: str, expected: int) -> None:
    assert parse_integer(text) == expected


@pytest.mark.parametrize(
    "text", ["+7", " 7", "7.0", "1e3", "٣", "", "-", str(MAX_ID + 1), str(-MAX_ID - 2), "9" * 30]
)
def test_other_integer_texts_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"not an integer|does not fit"):
        parse_integer(text)


def test_ascii_digits_means_only_0_to_9() -> None:
    assert ascii_digits("0123456789")
    assert not ascii_digits("١٢٣")
    assert not ascii_digits("")


def test_string_ids_match_their_patterns() -> None:
    assert is_institution_id("65f1c0ffee0000000000000a")
    assert not is_institution_id("65F1C0FFEE0000000000000A")
    assert not is_institution_id("65f1c0ffee0000000000000a\n")
    assert not is_institution_id(7)
    assert is_bucket_id("acme-corp_1")
    assert not is_bucket_id("a\x00b")
    assert not is_bucket_id("x" * 65)


def test_global_id_keys_follow_the_id_rules() -> None:
    institution = "65f1c0ffee0000000000000a"
    assert membership_keys([f"3:{institution}"]) == [(3, institution)]
    assert membership_keys([f"99999999999999999999:{institution}", "3:a\x00", "٣:x"]) == [
        None,
        None,
        None,
    ]
    assert snapshot_key("acme-corp:2026-05-01") == ("acme-corp", date(2026, 5, 1))
    assert snapshot_key("acme-corp:0001-01-01") is None
    assert snapshot_key("a\x00:2026-05-01") is None


def test_settings_integers_follow_the_integer_rule() -> None:
    with pytest.raises(SettingsError, match="whole number"):
        Settings.from_env({"USAGEGRAPH_RATE_LIMIT_BURST": "٣"})
    with pytest.raises(SettingsError, match="whole number"):
        Settings.from_env({"USAGEGRAPH_RATE_LIMIT_BURST": "+3"})


# --- cursors --------------------------------------------------------------------------------------


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_cursors_decode_into_checked_keys() -> None:
    moment = datetime(2026, 5, 1, tzinfo=UTC)
    assert moment_id_cursor(_cursor('["2026-05-01T00:00:00+00:00", 5]')) == (moment, 5)
    assert moment_id_cursor(None) == (None, None)
    assert id_cursor(_cursor("[5]")) == 5
    assert day_cursor(_cursor('["2026-05-01"]')) == date(2026, 5, 1)


@pytest.mark.parametrize(
    "key",
    [
        '["2026-05-01T00:00:00+00:00", 99999999999999999999]',
        '["2026-05-01T00:00:00+00:00", "5"]',
        '["2026-05-01T00:00:00", 5]',  # naive
        '["0001-01-01T00:00:00+05:00", 5]',
        '["x", 5]',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_forged_moment_cursors_are_invalid_requests(key: str) -> None:
    with pytest.raises(UsageGraphError, match="after is not a valid cursor"):
        moment_id_cursor(_cursor(key))


@pytest.mark.parametrize("key", ["[0]", "[99999999999999999999]", '["5"]', "[true]", "[1.5]"])
def test_forged_id_cursors_are_invalid_requests(key: str) -> None:
    with pytest.raises(UsageGraphError, match="after is not a valid cursor"):
        id_cursor(_cursor(key))


# --- date-times -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))),  # 00:00Z
        datetime(2026, 5, 1),  # naive: read as UTC
    ],
)
def test_instants_inside_the_range_are_kept_as_given(moment: datetime) -> None:
    assert storable_instant(moment) is moment


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(9999, 1, 1, tzinfo=UTC),
        datetime(1970, 1, 1, 4, 59, tzinfo=timezone(timedelta(hours=5))),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),  # in the year 0 in UTC
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5))),  # year 10000
        datetime.min,
        datetime.max,
    ],
)
def test_instants_outside_the_range_are_out_of_range(moment: datetime) -> None:
    with pytest.raises(OutOfRange, match="between 1970-01-01T00:00:00Z and 9998-12-31T23:59:59Z"):
        storable_instant(moment)


def test_days_have_the_same_range() -> None:
    assert storable_day(date(1970, 1, 1)) == date(1970, 1, 1)
    assert storable_day(date(9998, 12, 31)) == date(9998, 12, 31)
    for day in (date(1969, 12, 31), date(9999, 1, 1), date.min, date.max):
        with pytest.raises(OutOfRange, match="between 1970-01-01 and 9998-12-31"):
            storable_day(day)


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "9999-01-01T00:00:00Z",
    ],
)
def test_the_parsers_refuse_what_cannot_be_stored(text: str) -> None:
    for parse in (parse_datetime, parse_moment):
        with pytest.raises(OutOfRange):
            parse(text)
    with pytest.raises(StrawberryGraphQLError, match="DateTime values must lie between"):
        SCALAR_MAP[datetime].parse_value(text)


def test_the_parsers_keep_what_can_be_stored() -> None:
    assert parse_datetime("1970-01-01T05:00:00+05:00") == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_moment("9998-12-31") == datetime(9998, 12, 31, tzinfo=UTC)
    assert parse_date("9998-12-31") == date(9998, 12, 31)
    with pytest.raises(OutOfRange):
        parse_date("1969-12-31")


def test_the_graphql_scalars_apply_the_range() -> None:
    assert SCALAR_MAP[date].parse_value("1970-01-01") == date(1970, 1, 1)
    with pytest.raises(StrawberryGraphQLError, match="Date values must lie between"):
        SCALAR_MAP[date].parse_value("0001-01-01")
    # 24:00 of the last day is the year 10000: beyond the calendar, not a crash.
    with pytest.raises(StrawberryGraphQLError, match="DateTime values must lie between"):
        SCALAR_MAP[datetime].parse_value("9999-12-31T24:00:00Z")


def test_the_big_int_scalar_takes_ascii_digits_only() -> None:
    parse = SCALAR_MAP[BigInt]
    assert parse.parse_value("12") == 12
    assert parse.parse_value(-(2**63)) == -(2**63)
    for value in ("٣", "+3", " 3", "3_0", str(2**63), 2**63):
        with pytest.raises(ValueError, match=r"integer|64 bits"):
            parse.parse_value(value)


# --- money ----------------------------------------------------------------------------------------


def test_one_amount_is_at_most_10_12_with_6_places() -> None:
    assert amount(MAX_AMOUNT, "credits") == MAX_AMOUNT
    assert amount(-MAX_AMOUNT, "amount") == -MAX_AMOUNT
    assert amount(Decimal("0.000001"), "amount") == Decimal("0.000001")
    for value, message in [
        (MAX_AMOUNT + Decimal("0.000001"), "credits must not exceed 1000000000000 in size"),
        (Decimal("1e999"), "credits must be a decimal number with at most 6 decimal places"),
        (Decimal("0.0000001"), "credits must be a decimal number with at most 6 decimal places"),
        (Decimal("NaN"), "credits must be a decimal number with at most 6 decimal places"),
    ]:
        with pytest.raises(UsageGraphError, match=message):
            amount(value, "credits")


def test_stored_sums_stop_at_what_both_databases_hold() -> None:
    # SQLite keeps micro-units in a 64-bit integer: 2^63 - 1 of them.
    assert Decimal(2**63 - 1).scaleb(-6) == MAX_STORED == Decimal("9223372036854.775807")
    assert stored_sum(MAX_STORED, "amount", "the balance") == MAX_STORED
    assert stored_sum(-MAX_STORED, "amount", "the balance") == -MAX_STORED
    with pytest.raises(UsageGraphError) as refused:
        stored_sum(MAX_STORED + Decimal("0.000001"), "amount", "the balance of user 3")
    assert refused.value.code.value == "INVALID_REQUEST"
    assert refused.value.message == (
        "amount would take the balance of user 3 past 9223372036854.775807, the largest amount "
        "stored"
    )


def test_the_ledger_book_refuses_a_sum_past_the_bound_before_changing_anything() -> None:
    """Holds need available credits, so `reserved` stays under the balance through the API;
    the book refuses all the same, whoever calls it."""
    now = datetime(2026, 5, 20, tzinfo=UTC)
    wallet = Wallet(user_id=3, balance=MAX_STORED, reserved=MAX_STORED - 1, updated_at=now)
    book = LedgerBook(session=None, now=now, wallets={3: wallet})  # type: ignore[arg-type]
    with pytest.raises(UsageGraphError, match="the reserved credits of user 3 past"):
        book.hold(wallet, Decimal(2))
    with pytest.raises(UsageGraphError, match="the balance of user 3 past"):
        book.post(wallet, "credit", Decimal("0.000001"), description=None)
    assert (wallet.balance, wallet.reserved, book.postings) == (MAX_STORED, MAX_STORED - 1, [])


# --- text -----------------------------------------------------------------------------------------


def test_json_is_utf8_and_rfc_8259() -> None:
    assert json_value(b'{"a": "\\u20ac"}') == {"a": "€"}
    for data in (b'{"a": "\xff"}', '{"a": 1}'.encode("utf-16")):
        with pytest.raises(NotUtf8):
            json_value(data)
    for data in (b'{"a": "\\ud800"}', b"\xef\xbb\xbf{}", b'{"a": NaN}', b"[" * 2000 + b"]" * 2000):
        with pytest.raises(NotJson):
            json_value(data)


def test_query_strings_are_utf8_once_decoded() -> None:
    assert query_string_is_utf8(b"query=%7Bviewer%7D&x=%E2%82%AC")
    assert not query_string_is_utf8(b"query=%7Bviewer%7D%FF")
    assert not query_string_is_utf8(b"query=\xff")
    assert not query_string_is_utf8(b"a=%ED%A0%80")  # an encoded surrogate
