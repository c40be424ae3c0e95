"""Page statements on PostgreSQL are built once per shape and run with each batch's parents."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.factories import add_institution, add_usage_events, add_user
from usagegraph.auth.principal import Principal
from usagegraph.datasources.pages import PARENTS, newest_first, page_per_parent_statements
from usagegraph.datasources.usage import EventFilter, usage_event_pages
from usagegraph.db.engine import session_factory
from usagegraph.db.models import UsageEvent

ACME = "a" * 24
NEWEST = newest_first("occurred_at", "id")


def _statement(parents: list[int], *conditions: object) -> tuple[object, dict[str, object]]:
    [(statement, parameters)] = page_per_parent_statements(
        "postgresql", UsageEvent, UsageEvent.user_id, parents, list(conditions), NEWEST, 6,
        columns=True,
    )  # fmt: skip
    return statement, parameters


def test_one_statement_serves_every_batch_of_the_same_shape() -> None:
    first, first_parameters = _statement([3, 1, 2], UsageEvent.institution_id == ACME)
    second, second_parameters = _statement([9], UsageEvent.institution_id == ACME)
    assert first is second
    assert first_parameters == {PARENTS: [1, 2, 3]}
    assert second_parameters == {PARENTS: [9]}


def test_conditions_with_other_values_never_share_a_statement() -> None:
    """The caller's scope and the filters are bound values of the conditions: a statement is
    kept per value, so one caller's or one filter's statement never serves another."""
    acme, _ = _statement([1], UsageEvent.institution_id == ACME)
    other, _ = _statement([1], UsageEvent.institution_id == "b" * 24)
    assert acme is not other
    values = other.compile(dialect=postgresql.dialect()).params.values()  # type: ignore[attr-defined]
    assert "b" * 24 in values
    assert ACME not in values


async def test_each_batch_reads_its_own_parents_pages(engine: AsyncEngine) -> None:
    """Two batches through one kept statement: each gets its parents' rows, none of the
    other's (on SQLite, where parents are written into the statement, the same holds)."""
    await add_institution(engine, institution_id=ACME, name="Acme")
    ada = await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"})
    bob = await add_user(engine, email="bob@acme.edu", member_of={ACME: "user"})
    at = datetime(2026, 5, 1, 12, tzinfo=UTC)
    async with session_factory(engine)() as session, session.begin():
        for user_id, credits in ((ada, "1"), (ada, "2"), (bob, "7")):
            await add_usage_events(
                session,
                UsageEvent(
                    user_id=user_id,
                    institution_id=ACME,
                    occurred_at=at,
                    credits=Decimal(credits),
                    messages=1,
                    status="success",
                    forgotten=False,
                ),
            )
    root = Principal.for_user(user_id=0, role="super", permissions=frozenset(), memberships={})
    async with session_factory(engine)() as session:
        of_ada = await usage_event_pages(session, root, [ada], EventFilter(), first=5, before=None)
        of_bob = await usage_event_pages(session, root, [bob], EventFilter(), first=5, before=None)
    assert sorted(row.credits for row in of_ada[ada]) == [Decimal(1), Decimal(2)]
    assert [row.credits for row in of_bob[bob]] == [Decimal(7)]
