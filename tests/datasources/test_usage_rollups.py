"""The usage rollups: hand-worked sums, every write path keeps them, rebuild changes nothing.

"Equal to a recomputation" is checked two ways: against `rebuild_rollups` (SQL sums over the
events) and against a Python oracle written here from the events, independent of both.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.running import cli_env, run_cli
from tests.conftest import FIXED_NOW
from tests.databases import TestDatabase
from tests.fixtures.factories import add_institution, add_usage_events, add_user
from tests.fixtures.usage_recording_data import event, principal, run
from usagegraph.datasources.usage import (
    DAY_SLOT_SECONDS,
    ZONE_SAFE_SLOT_SECONDS,
    of_user,
    usage_by_slot,
)
from usagegraph.datasources.usage_rollups import rebuild_rollups
from usagegraph.db.engine import session_factory
from usagegraph.db.models import (
    ROLLUPS,
    UsageEvent,
    UsageRollupDay,
    UsageRollupDayEndpoint,
    UsageRollupHour,
    UsageRollupQuarterHour,
    UsageTotal,
)
from usagegraph.demo_data import DemoSpec, generate_demo
from usagegraph.importer import import_file
from usagegraph.resolvers import directory_writes
from usagegraph.resolvers.usage_recording import record_usage, record_usage_batch

ACME = "a" * 24
MEASURES = ("credits", "messages", "events", "failed_events")


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 5, day, hour, minute, tzinfo=UTC)


async def _people(engine: AsyncEngine) -> dict[str, int]:
    await add_institution(engine, institution_id=ACME, name="Acme")
    return {
        "root": await add_user(engine, email="root@ug.io", role="super"),
        "ada": await add_user(engine, email="ada@acme.edu", member_of={ACME: "user"}),
        "bob": await add_user(engine, email="bob@acme.edu", member_of={ACME: "user"}),
    }


async def _add(engine: AsyncEngine, *events: UsageEvent) -> None:
    async with session_factory(engine)() as session, session.begin():
        await add_usage_events(session, *events)


async def _snapshot(engine: AsyncEngine) -> dict[str, set[tuple[Any, ...]]]:
    """Every rollup row of every table, as plain tuples (zero rows included)."""
    async with session_factory(engine)() as session:
        snapshot = {}
        for model in ROLLUPS:
            table = model.__table__
            rows = await session.execute(select(table))
            snapshot[table.name] = {tuple(row) for row in rows}
        return snapshot


def _oracle(events: list[UsageEvent]) -> dict[str, set[tuple[Any, ...]]]:
    """The rollups computed in Python from the events, in the snapshot's column order."""
    sums: dict[str, dict[tuple[Any, ...], list[Any]]] = {m.__tablename__: {} for m in ROLLUPS}
    for e in events:
        owner = {"user_id": e.user_id, "instance": e.institution_id or "personal"}
        owner["institution_id"] = e.institution_id
        measures = [e.credits, e.messages, 1, int(e.status == "failed")]
        for model in ROLLUPS:
            key: dict[str, Any] = dict(owner)
            columns = model.__table__.c
            if "slot_start" in columns:
                seconds = model.slot_seconds
                key["slot_start"] = int(e.occurred_at.timestamp()) // seconds * seconds
            if "endpoint" in columns:
                key["endpoint_given"] = e.endpoint is not None
                key["endpoint"] = e.endpoint or ""
            if "forgotten" in columns:
                key["forgotten"] = e.forgotten
            columns = [c.name for c in model.__table__.columns if c.name not in MEASURES]
            ident = tuple(key[c] for c in columns)
            row = sums[model.__tablename__].setdefault(ident, [Decimal(0), 0, 0, 0])
            for index, value in enumerate(measures):
                row[index] += value
    # Snapshot order: the table's columns as declared (keys and measures interleaved).
    result: dict[str, set[tuple[Any, ...]]] = {}
    for model in ROLLUPS:
        table = model.__table__
        key_columns = [c.name for c in table.columns if c.name not in MEASURES]
        rows = set()
        for ident, measures in sums[table.name].items():
            values = dict(zip(key_columns, ident, strict=True))
            values.update(zip(MEASURES, measures, strict=True))
            rows.add(tuple(values[c.name] for c in table.columns))
        result[table.name] = rows
    return result


async def _events(engine: AsyncEngine) -> list[UsageEvent]:
    async with session_factory(engine)() as session:
        return list(await session.scalars(select(UsageEvent)))


async def _assert_rollups_match_the_events(engine: AsyncEngine) -> None:
    incremental = await _snapshot(engine)
    assert incremental == _oracle(await _events(engine))
    async with engine.begin() as conn:
        await rebuild_rollups(conn)
    assert await _snapshot(engine) == incremental


async def test_sums_per_quarter_hour_day_and_lifetime_are_worked_out_by_hand(
    engine: AsyncEngine,
) -> None:
    people = await _people(engine)
    ada = people["ada"]
    await _add(
        engine,
        UsageEvent(
            user_id=ada, institution_id=ACME, occurred_at=_at(2, 9, 1), credits=Decimal("1.5")
        ),
        UsageEvent(
            user_id=ada,
            institution_id=ACME,
            occurred_at=_at(2, 9, 14),
            credits=Decimal("0.25"),
            messages=3,
            status="failed",
        ),
        UsageEvent(
            user_id=ada, institution_id=ACME, occurred_at=_at(2, 9, 15), credits=Decimal("2")
        ),
        UsageEvent(user_id=ada, occurred_at=_at(3, 0, 0), credits=Decimal("4"), endpoint=""),
    )
    async with session_factory(engine)() as session:
        quarters = (
            await session.execute(
                select(
                    UsageRollupQuarterHour.slot_start,
                    UsageRollupQuarterHour.instance,
                    UsageRollupQuarterHour.credits,
                    UsageRollupQuarterHour.messages,
                    UsageRollupQuarterHour.events,
                    UsageRollupQuarterHour.failed_events,
                ).order_by(UsageRollupQuarterHour.slot_start)
            )
        ).all()
        days = (
            await session.execute(
                select(
                    UsageRollupDay.slot_start, UsageRollupDay.instance, UsageRollupDay.credits
                ).order_by(UsageRollupDay.slot_start)
            )
        ).all()
        hours = (
            await session.execute(
                select(
                    UsageRollupHour.slot_start, UsageRollupHour.credits, UsageRollupHour.events
                ).order_by(UsageRollupHour.slot_start)
            )
        ).all()
        endpoints = (
            await session.execute(
                select(
                    UsageRollupDayEndpoint.slot_start,
                    UsageRollupDayEndpoint.endpoint_given,
                    UsageRollupDayEndpoint.endpoint,
                    UsageRollupDayEndpoint.events,
                ).order_by(UsageRollupDayEndpoint.slot_start)
            )
        ).all()
        totals = (
            await session.execute(
                select(UsageTotal.instance, UsageTotal.credits, UsageTotal.events).order_by(
                    UsageTotal.instance
                )
            )
        ).all()
    nine = int(_at(2, 9).timestamp())  # 2026-05-02 09:00 UTC = 1777712400
    assert nine == 1_777_712_400
    assert [tuple(row) for row in quarters] == [
        # 09:01 and 09:14 share the 09:00 slot: 1.5 + 0.25, 1 + 3 messages, one failed
        (nine, ACME, Decimal("1.75"), 4, 2, 1),
        (nine + 900, ACME, Decimal("2"), 1, 1, 0),
        (int(_at(3, 0).timestamp()), "personal", Decimal("4"), 1, 1, 0),
    ]
    assert [tuple(row) for row in endpoints] == [
        (nine - 9 * 3600, False, "", 3),  # no endpoint given
        (int(_at(3, 0).timestamp()), True, "", 1),  # "" is an endpoint, not "no endpoint"
    ]
    assert [tuple(row) for row in hours] == [
        (nine, Decimal("3.75"), 3),  # 09:01, 09:14 and 09:15 share the 09:00 hour
        (int(_at(3, 0).timestamp()), Decimal("4"), 1),
    ]
    assert [tuple(row) for row in days] == [
        (nine - 9 * 3600, ACME, Decimal("3.75")),
        (int(_at(3, 0).timestamp()), "personal", Decimal("4")),
    ]
    assert [tuple(row) for row in totals] == [
        (ACME, Decimal("3.75"), 3),
        ("personal", Decimal("4"), 1),
    ]


async def test_metered_writes_imports_and_forgetting_keep_the_rollups_equal_to_a_recomputation(
    engine: AsyncEngine,
) -> None:
    people = await _people(engine)
    root = await principal(engine, people["root"])
    ada, bob = people["ada"], people["bob"]
    # metered: single and batched, personal and institutional, a duplicate key, endpoints
    await run(
        engine, lambda s: record_usage(s, root, FIXED_NOW, event(ada, ACME, "1.25", key="k1"))
    )
    await run(
        engine, lambda s: record_usage(s, root, FIXED_NOW, event(ada, ACME, "1.25", key="k1"))
    )
    batch = [
        event(bob, ACME, "0.5", minutes_ago=n * 7, endpoint="/v1/chat", status="failed")
        for n in range(1, 30)
    ] + [event(ada, ACME, "0.125", minutes_ago=n * 61, messages=2) for n in range(1, 40)]
    await run(engine, lambda s: record_usage_batch(s, root, FIXED_NOW, batch))
    # written directly, as an import or a test fixture does, across many days
    await _add(
        engine,
        *(
            UsageEvent(
                user_id=ada,
                occurred_at=FIXED_NOW - timedelta(hours=5 * n, minutes=n),
                credits=Decimal(n) / 8,
                endpoint=None if n % 3 else "/v1/embed",
            )
            for n in range(60)
        ),
    )
    await _assert_rollups_match_the_events(engine)

    # forgetting by id and by time moves sums to the forgotten rows, totals unchanged
    ada_principal = await principal(engine, ada)
    some = [e.id for e in await _events(engine) if e.user_id == ada][:5]
    await run(
        engine, lambda s: directory_writes.forget_usage(s, ada_principal, FIXED_NOW, event_ids=some)
    )
    await run(
        engine,
        lambda s: directory_writes.forget_usage(
            s, ada_principal, FIXED_NOW, before=FIXED_NOW - timedelta(days=4)
        ),
    )
    assert any(e.forgotten for e in await _events(engine))
    await _assert_rollups_match_the_events(engine)


async def test_forgetting_a_whole_slot_leaves_no_empty_row_behind(engine: AsyncEngine) -> None:
    people = await _people(engine)
    ada = people["ada"]
    await _add(engine, UsageEvent(user_id=ada, occurred_at=_at(2, 9), credits=Decimal(1)))
    caller = await principal(engine, ada)
    await run(
        engine, lambda s: directory_writes.forget_usage(s, caller, FIXED_NOW, before=_at(3, 0))
    )
    snapshot = await _snapshot(engine)
    for model in (UsageRollupDay, UsageRollupQuarterHour):
        rows = snapshot[model.__tablename__]
        assert len(rows) == 1  # only the forgotten row; no remembered row with zero events
        (row,) = rows
        assert dict(zip([c.name for c in model.__table__.columns], row, strict=True))["forgotten"]
    await _assert_rollups_match_the_events(engine)


async def test_rebuild_repairs_rollups_that_drifted(engine: AsyncEngine) -> None:
    people = await _people(engine)
    await _add(engine, UsageEvent(user_id=people["ada"], occurred_at=_at(2, 9), credits=Decimal(2)))
    good = await _snapshot(engine)
    async with engine.begin() as conn:
        await conn.execute(update(UsageTotal).values(credits=Decimal(99)))
        await conn.execute(UsageRollupDay.__table__.delete())
    assert await _snapshot(engine) != good
    async with engine.begin() as conn:
        await rebuild_rollups(conn)
    assert await _snapshot(engine) == good


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # whole quarter hours only: all from the rollups
        (_at(2, 9, 0), _at(2, 10, 0), {_at(2, 9, 0): "1.75", _at(2, 9, 15): "2"}),
        # starts inside the 09:00 slot: 09:01 is before the start, 09:14 is not
        (_at(2, 9, 5), _at(2, 10, 0), {_at(2, 9, 0): "0.25", _at(2, 9, 15): "2"}),
        # ends inside the 09:15 slot, before the 09:15 event... which is exactly at 09:15
        (_at(2, 9, 0), _at(2, 9, 15), {_at(2, 9, 0): "1.75"}),
        (_at(2, 9, 0), _at(2, 9, 16), {_at(2, 9, 0): "1.75", _at(2, 9, 15): "2"}),
        # inside one slot: events only
        (_at(2, 9, 2), _at(2, 9, 14), {}),
        (_at(2, 9, 1), _at(2, 9, 14), {_at(2, 9, 0): "1.5"}),
    ],
)
async def test_windows_with_partial_slots_sum_their_edges_from_the_events(
    engine: AsyncEngine, start: datetime, end: datetime, expected: dict[datetime, str]
) -> None:
    people = await _people(engine)
    ada = people["ada"]
    await _add(
        engine,
        UsageEvent(user_id=ada, occurred_at=_at(2, 9, 1), credits=Decimal("1.5")),
        UsageEvent(user_id=ada, occurred_at=_at(2, 9, 14), credits=Decimal("0.25")),
        UsageEvent(user_id=ada, occurred_at=_at(2, 9, 15), credits=Decimal("2")),
    )
    async with session_factory(engine)() as session:
        slots = await usage_by_slot(
            session,
            await principal(engine, people["root"]),
            start=start,
            end=end,
            slot_seconds=ZONE_SAFE_SLOT_SECONDS,
            filters=[of_user(ada)],
            include_forgotten=False,
        )
    assert {s.slot_start: s.credits for s in slots} == {k: Decimal(v) for k, v in expected.items()}


async def test_day_slots_read_whole_days_from_rollups_and_the_rest_from_events(
    engine: AsyncEngine,
) -> None:
    people = await _people(engine)
    ada = people["ada"]
    await _add(
        engine,
        UsageEvent(user_id=ada, occurred_at=_at(1, 23), credits=Decimal("1")),
        UsageEvent(user_id=ada, occurred_at=_at(2, 6), credits=Decimal("2")),
        UsageEvent(user_id=ada, occurred_at=_at(3, 6), credits=Decimal("4")),
        UsageEvent(user_id=ada, occurred_at=_at(3, 18), credits=Decimal("8")),
    )
    root = await principal(engine, people["root"])
    async with session_factory(engine)() as session:
        slots = await usage_by_slot(
            session,
            root,
            start=_at(1, 22),  # 2 hours of 1 May
            end=_at(3, 12),  # 12 hours of 3 May
            slot_seconds=DAY_SLOT_SECONDS,
            include_forgotten=False,
        )
    assert {s.slot_start.day: s.credits for s in slots} == {
        1: Decimal("1"),
        2: Decimal("2"),
        3: Decimal("4"),  # 18:00 is after the end
    }


async def test_rollups_rebuild_command_recomputes_them(
    engine: AsyncEngine, database: TestDatabase, tmp_path: Path
) -> None:
    people = await _people(engine)
    await _add(engine, UsageEvent(user_id=people["ada"], occurred_at=_at(2, 9), credits=Decimal(3)))
    good = await _snapshot(engine)
    async with engine.begin() as conn:
        for model in ROLLUPS:
            await conn.execute(model.__table__.delete())
    rebuilt = run_cli(cli_env(tmp_path, database.url_string), "rollups", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "usage rollups rebuilt" in rebuilt.stdout
    assert await _snapshot(engine) == good


async def test_demo_loads_count_their_events_in_the_rollups(engine: AsyncEngine) -> None:
    spec = DemoSpec(users=12, institutions=2, events=1500, days=20, seed=3)
    await generate_demo(engine, spec, now=FIXED_NOW)
    await generate_demo(engine, spec, now=FIXED_NOW)  # appended: adds to the existing rollups
    await _assert_rollups_match_the_events(engine)


async def test_imports_count_their_events_in_the_rollups(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    people = await _people(engine)
    lines = [
        {
            "kind": "usage",
            "user": people["bob"],
            "forgotten": n % 5 == 0,
            "instance": ACME if n % 2 else "personal",
            "occurred_at": (FIXED_NOW - timedelta(hours=n * 3)).isoformat(),
            "credits": f"{n}.5",
            "messages": n,
            "endpoint": "/v1/chat" if n % 3 else None,
            "status": "failed" if n % 4 == 0 else "success",
            "idempotency_key": f"import-{n % 10}",  # 10 distinct keys: the rest are duplicates
        }
        for n in range(25)
    ]
    path = tmp_path / "usage.ndjson"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    summary = await import_file(engine, path)
    assert summary.written["usage"] == 10
    await _assert_rollups_match_the_events(engine)


async def test_periods_are_summed_by_the_database_including_partial_edges(
    engine: AsyncEngine,
) -> None:
    people = await _people(engine)
    ada, bob = people["ada"], people["bob"]
    await _add(
        engine,
        UsageEvent(user_id=ada, occurred_at=_at(1, 23), credits=Decimal("1")),
        UsageEvent(user_id=ada, occurred_at=_at(2, 6), credits=Decimal("2")),
        UsageEvent(user_id=bob, occurred_at=_at(2, 7), credits=Decimal("16")),
        UsageEvent(user_id=ada, occurred_at=_at(3, 6), credits=Decimal("4")),
        UsageEvent(user_id=ada, occurred_at=_at(4, 1), credits=Decimal("8")),
    )
    root = await principal(engine, people["root"])
    async with session_factory(engine)() as session:
        slots = await usage_by_slot(
            session,
            root,
            start=_at(1, 22),  # a partial first day, read from the events
            end=_at(4, 0),
            slot_seconds=DAY_SLOT_SECONDS,
            include_forgotten=False,
            period_starts=[_at(1, 0), _at(3, 0)],  # two periods: 1-2 May, 3 May
        )
        with pytest.raises(ValueError, match="slot boundaries"):
            await usage_by_slot(
                session,
                root,
                start=_at(1, 0),
                end=_at(4, 0),
                slot_seconds=DAY_SLOT_SECONDS,
                include_forgotten=False,
                period_starts=[_at(1, 12)],
            )
    assert sorted((s.slot_start.day, s.user_id, s.credits) for s in slots) == [
        (1, ada, Decimal("3")),  # 1 + 2: both days of the first period, one row
        (1, bob, Decimal("16")),
        (3, ada, Decimal("4")),  # 4 May is after the end
    ]
