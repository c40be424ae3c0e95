"""Ledger rules (seed 003): the caller's entries, newest first, filtered and paged in SQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.contexts import request_context
from tests.fixtures.factories import add_user
from tests.fixtures.wallet_account_data import Entry, add_entries, at, principal_for
from usagegraph.errors import ErrorCode, UsageGraphError
from usagegraph.resolvers.wallet_ledger import (
    CreditLedgerEntry,
    LedgerFilter,
    LedgerPage,
    LedgerType,
    account_ledger,
)


async def _seed(engine: AsyncEngine) -> tuple[dict[str, int], list[int]]:
    """Ada's seven entries (running balance by hand) and one of Bob's.

    Entries 5 and 6 share a created_at; the later id sorts first among them.
    """
    users = {
        "ada": await add_user(engine, email="ada@acme.edu"),
        "bob": await add_user(engine, email="bob@acme.edu"),
        "root": await add_user(engine, email="root@example.com", role="super"),
    }
    ada = users["ada"]
    ids = await add_entries(
        engine,
        Entry(ada, "credit", "100", "100", at(5, 1, 9), "Top-up", "pay_1", {"source": "card"}),
        Entry(ada, "debit", "2.5", "97.5", at(5, 2, 10)),  # 100 - 2.5
        Entry(ada, "debit", "1.25", "96.25", at(5, 3, 10)),  # 97.5 - 1.25
        Entry(ada, "adjustment", "-0.25", "96", at(5, 4, 10)),  # 96.25 - 0.25
        Entry(ada, "credit", "50", "146", at(5, 5, 10)),  # 96 + 50
        Entry(ada, "debit", "6", "140", at(5, 5, 10)),  # 146 - 6, same instant as entry 5
        Entry(ada, "adjustment", "10", "150", at(5, 6, 10)),  # 140 + 10
        Entry(users["bob"], "credit", "999", "999", at(5, 3, 12)),
    )
    return users, ids


async def _page(
    engine: AsyncEngine, user_id: int, ledger_filter: LedgerFilter | None = None, **page: int
) -> LedgerPage:
    principal = await principal_for(engine, user_id)
    return await account_ledger(
        request_context(engine, principal), ledger_filter=ledger_filter, **page
    )


def _numbers(page: LedgerPage, ids: list[int]) -> list[int]:
    """Entry numbers 1..7 (insertion order) of a page, for readable assertions."""
    return [ids.index(entry.id) + 1 for entry in page.entries]


async def test_pages_of_three_over_seven_entries(engine: AsyncEngine) -> None:
    users, ids = await _seed(engine)
    pages = [await _page(engine, users["ada"], limit=3, offset=o) for o in (0, 3, 6)]
    # newest first: 7, then 6 before 5 (same created_at, higher id), 4, 3, 2, 1
    assert [_numbers(page, ids) for page in pages] == [[7, 6, 5], [4, 3, 2], [1]]
    assert [page.has_more for page in pages] == [True, True, False]
    assert [(page.total, page.limit, page.offset) for page in pages] == [
        (7, 3, 0),
        (7, 3, 3),
        (7, 3, 6),
    ]


async def test_entries_carry_every_field(engine: AsyncEngine) -> None:
    users, ids = await _seed(engine)
    page = await _page(engine, users["ada"], limit=1, offset=6)
    assert page.entries == (
        CreditLedgerEntry(
            id=ids[0],
            user_id=users["ada"],
            type=LedgerType.CREDIT,
            amount=Decimal("100"),
            balance_after=Decimal("100"),
            description="Top-up",
            reference="pay_1",
            metadata={"source": "card"},
            created_at=at(5, 1, 9),
        ),
    )


async def test_default_page_is_fifty_from_the_start(engine: AsyncEngine) -> None:
    users, ids = await _seed(engine)
    page = await _page(engine, users["ada"])
    assert (page.limit, page.offset, page.total, page.has_more) == (50, 0, 7, False)
    assert _numbers(page, ids) == [7, 6, 5, 4, 3, 2, 1]


async def test_an_offset_past_the_end_is_an_empty_last_page(engine: AsyncEngine) -> None:
    users, _ = await _seed(engine)
    page = await _page(engine, users["ada"], offset=10)
    assert (page.entries, page.total, page.has_more) == ((), 7, False)


@pytest.mark.parametrize(
    ("entry_type", "expected"),
    [(LedgerType.DEBIT, [6, 3, 2]), (LedgerType.ADJUSTMENT, [7, 4]), (LedgerType.CREDIT, [5, 1])],
)
async def test_type_filter_and_its_total(
    engine: AsyncEngine, entry_type: LedgerType, expected: list[int]
) -> None:
    users, ids = await _seed(engine)
    page = await _page(engine, users["ada"], LedgerFilter(entry_type=entry_type), limit=2)
    assert _numbers(page, ids) == expected[:2]
    assert page.total == len(expected)
    assert page.has_more is (len(expected) > 2)


async def test_window_is_half_open(engine: AsyncEngine) -> None:
    users, ids = await _seed(engine)
    # [05-03 10:00, 05-05 10:00): entry 3 at the start counts, 5 and 6 at the end do not.
    page = await _page(engine, users["ada"], LedgerFilter(start=at(5, 3, 10), end=at(5, 5, 10)))
    assert _numbers(page, ids) == [4, 3]
    assert page.total == 2
    # Only a start: from entry 5 onwards.
    later = await _page(engine, users["ada"], LedgerFilter(start=at(5, 5, 10)))
    assert _numbers(later, ids) == [7, 6, 5]


async def test_super_reads_only_their_own_ledger(engine: AsyncEngine) -> None:
    users, _ = await _seed(engine)
    page = await _page(engine, users["root"])
    assert (page.entries, page.total) == ((), 0)
    bob = await _page(engine, users["bob"])
    assert [(entry.user_id, entry.amount) for entry in bob.entries] == [
        (users["bob"], Decimal("999"))
    ]


@pytest.mark.parametrize(
    ("ledger_filter", "page", "word"),
    [
        (None, {"limit": 101}, "limit"),
        (None, {"limit": 0}, "limit"),
        (None, {"offset": -1}, "offset"),
        (LedgerFilter(start=at(5, 3), end=at(5, 3)), {}, "from"),
        (LedgerFilter(start=at(5, 4), end=at(5, 3)), {}, "from"),
    ],
)
async def test_out_of_range_parameters_are_refused(
    engine: AsyncEngine, ledger_filter: LedgerFilter | None, page: dict[str, int], word: str
) -> None:
    users, _ = await _seed(engine)
    with pytest.raises(UsageGraphError) as caught:
        await _page(engine, users["ada"], ledger_filter, **page)
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert word in caught.value.message


async def test_limit_of_exactly_100_is_allowed(engine: AsyncEngine) -> None:
    users, _ = await _seed(engine)
    assert (await _page(engine, users["ada"], limit=100)).limit == 100
