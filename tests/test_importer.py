"""`usagegraph import`: every kind round-trips, a bad line rejects the whole file."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from usagegraph import importer
from usagegraph.auth.api_keys import hash_api_key, institution_for_api_key
from usagegraph.db.engine import session_factory
from usagegraph.db.models import (
    ApiKey,
    ClientBucket,
    Institution,
    LedgerEntry,
    Membership,
    Snapshot,
    Subscription,
    UsageEvent,
    UsageIdempotencyKey,
    User,
    Wallet,
)
from usagegraph.importer import ImportFileError, import_file

DATA = Path(__file__).parent / "data"
ACME = "65f1c0ffee0000000000000a"


def _write(tmp_path: Path, lines: list[dict | str]) -> Path:
    path = tmp_path / "import.ndjson"
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    )
    return path


async def _count(engine: AsyncEngine, model: type) -> int:
    async with session_factory(engine)() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_every_kind_round_trips_with_ids_kept(engine: AsyncEngine) -> None:
    summary = await import_file(engine, DATA / "every_kind.ndjson")
    assert summary.written["usage"] == 3
    async with session_factory(engine)() as session:
        acme = await session.get(Institution, ACME)
        assert acme is not None
        assert (acme.name, acme.ai_name, acme.plan_limit) == ("Acme U", "Pria", 5000)
        assert acme.default_cap == Decimal(500)
        assert acme.created_at == datetime(2026, 1, 1, tzinfo=UTC)
        other = await session.scalar(select(Institution).where(Institution.name != "Acme U"))
        assert other is not None
        assert len(other.id) == 24
        assert other.currency == "usd"
        assert other.plan_limit is None

        ada = await session.get(User, 7)
        assert ada is not None
        assert (ada.email, ada.role, ada.permissions) == (
            "ada@acme.edu",
            "admin",
            ["institutions.edit"],
        )
        assert ada.last_login_at == datetime(2026, 5, 2, 5, 30, tzinfo=UTC)
        grace = await session.get(User, 9)
        assert grace is not None
        assert grace.role == "user"

        membership = await session.get(Membership, (7, ACME))
        assert membership is not None
        assert (membership.role, membership.cap_limit) == ("admin", Decimal(800))
        assert (await session.get(Membership, (9, ACME))).cap_limit is None  # type: ignore[union-attr]

        events = (await session.scalars(select(UsageEvent).order_by(UsageEvent.id))).all()
        assert [
            (e.user_id, e.instance, e.credits, e.messages, e.status, e.forgotten) for e in events
        ] == [
            (7, ACME, Decimal("3.5"), 1, "success", False),
            (7, "personal", Decimal("0.1"), 3, "failed", True),
            (9, ACME, Decimal(2), 1, "success", False),
        ]
        key = await session.get(UsageIdempotencyKey, (7, "evt-1"))
        assert key is not None
        assert key.usage_event_id == events[0].id

        ledger = (await session.scalars(select(LedgerEntry).order_by(LedgerEntry.id))).all()
        # 100 - 30.25 - 2.5 + 0.1, worked by hand
        assert [e.balance_after for e in ledger] == [
            Decimal(100),
            Decimal("69.75"),
            Decimal("67.25"),
            Decimal("67.35"),
        ]
        assert ledger[1].metadata_ == {"day": "2026-05-01"}
        assert ledger[2].amount == Decimal("-2.5")
        wallet = await session.get(Wallet, 7)
        assert wallet is not None
        assert wallet.entry_count == 4
        assert wallet.balance == Decimal("67.35")
        assert wallet.reserved == Decimal(0)
        assert (
            wallet.auto_reload_enabled,
            wallet.auto_reload_threshold,
            wallet.auto_reload_amount,
        ) == (
            True,
            Decimal(10),
            Decimal(50),
        )

        subscription = await session.get(Subscription, 7)
        assert subscription is not None
        assert (subscription.plan, subscription.status) == ("pro", "active")
        assert subscription.current_period_end == datetime(2026, 6, 1, tzinfo=UTC)

        bucket = await session.get(ClientBucket, "acme-corp")
        assert bucket is not None
        assert bucket.institution_id == ACME
        snapshot = await session.get(Snapshot, ("acme-corp", date(2026, 5, 1)))
        assert snapshot is not None
        assert snapshot.records == {"person": 15000, "payment": 45000}
        assert (snapshot.object_count, snapshot.total_bytes) == (8500, 5368709120)
        assert snapshot.by_prefix == {"docs/": {"count": 10, "bytes": 2048}}

        stored_key = await session.scalar(select(ApiKey))
        assert stored_key is not None
        assert stored_key.key_hash == hash_api_key("ug_live_example_only")
        assert "ug_live_example_only" not in (stored_key.key_hash, stored_key.display_prefix)
        assert await institution_for_api_key(session, "ug_live_example_only") == ACME


async def test_generated_ids_continue_after_imported_ones(engine: AsyncEngine) -> None:
    await import_file(engine, DATA / "every_kind.ndjson")
    async with session_factory(engine)() as session, session.begin():
        user = User(email="new@example.com", role="user", permissions=[])
        session.add(user)
        await session.flush()
        assert user.id == 10


async def test_bad_line_in_the_middle_leaves_the_database_untouched(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    lines = (DATA / "every_kind.ndjson").read_text().splitlines()
    lines.insert(
        8,
        json.dumps(
            {
                "kind": "usage",
                "user": 7,
                "instance": "personal",
                "occurred_at": "2024-02-30T00:00:00Z",
            }
        ),
    )
    with pytest.raises(ImportFileError) as raised:
        await import_file(engine, _write(tmp_path, lines))
    assert raised.value.line == 9
    assert "occurred_at" in raised.value.reason
    for model in (Institution, User, Membership, UsageEvent, LedgerEntry, Wallet, ApiKey):
        assert await _count(engine, model) == 0, model.__name__


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "JSON object"),
        ({"kind": "planet"}, "unknown kind"),
        ({"kind": "user", "id": 2, "email": "a@b.c", "nmae": "typo"}, "unknown field(s) nmae"),
        ({"kind": "user", "id": True, "email": "a@b.c"}, "id must be an integer"),
        ({"kind": "user", "id": 2, "email": "a@b.c", "role": "root"}, "role must be one of"),
        (
            {
                "kind": "usage",
                "user": 999,
                "instance": "personal",
                "occurred_at": "2026-01-01T00:00:00Z",
            },
            "user 999 does not exist",
        ),
        ({"kind": "membership", "user": 1, "institution": "ACME"}, "24-character"),
        ({"kind": "ledger", "user": 1, "type": "debit", "amount": "-5"}, "must not be negative"),
        (
            {"kind": "ledger", "user": 1, "type": "credit", "amount": "0.0000001"},
            "6 decimal places",
        ),
        ({"kind": "bucket", "id": "no spaces", "institution": ACME}, "must match"),
        (
            {"kind": "user", "id": 2, "email": "a@b.c", "fname": "Ada\u0000"},
            "fname may not contain the NUL character",
        ),
        (
            {
                "kind": "usage",
                "user": 1,
                "instance": "personal",
                "occurred_at": "2026-01-01T00:00:00Z",
                "endpoint": "/v1/\u0000",
            },
            "endpoint may not contain the NUL character",
        ),
        ({"kind": "snapshot", "bucket": "b", "snapshot_date": "2024-02-30"}, "does not exist"),
        # The input rules (issue 11): ids within 64 bits, times within 1970 .. 9998.
        ({"kind": "user", "id": 2**70, "email": "a@b.c"}, "id must fit in 64 bits"),
        (
            {
                "kind": "usage",
                "user": 99999999999999999999,
                "instance": "personal",
                "occurred_at": "2026-01-01T00:00:00Z",
            },
            "user must fit in 64 bits",
        ),
        (
            {
                "kind": "usage",
                "user": 1,
                "instance": "personal",
                "occurred_at": "0001-01-01T00:00:00+05:00",
            },
            "occurred_at: must lie between 1970-01-01",
        ),
    ],
)
async def test_each_kind_of_bad_line_is_named(
    engine: AsyncEngine, tmp_path: Path, line: dict | str, reason: str
) -> None:
    head = [{"kind": "user", "id": 1, "email": "first@example.com"}]
    with pytest.raises(ImportFileError) as raised:
        await import_file(engine, _write(tmp_path, [*head, line]))
    assert raised.value.line == 2
    assert reason in raised.value.reason
    assert await _count(engine, User) == 0


async def test_malformed_snapshot_date_is_refused(engine: AsyncEngine, tmp_path: Path) -> None:
    lines = [
        {"kind": "institution", "id": ACME, "name": "Acme"},
        {"kind": "bucket", "id": "b", "institution": ACME},
        {"kind": "snapshot", "bucket": "b", "snapshot_date": "2024-02-30"},
    ]
    with pytest.raises(ImportFileError, match="line 3: snapshot_date"):
        await import_file(engine, _write(tmp_path, lines))


async def test_duplicate_idempotency_key_is_counted_once(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    event = {
        "kind": "usage",
        "user": 1,
        "instance": "personal",
        "occurred_at": "2026-05-01T10:00:00Z",
        "credits": "2",
        "idempotency_key": "evt-1",
    }
    path = _write(tmp_path, [{"kind": "user", "id": 1, "email": "a@example.com"}, event, event])
    summary = await import_file(engine, path)
    assert (summary.written["usage"], summary.duplicate_usage) == (1, 1)

    replay = _write(tmp_path, [event, {**event, "idempotency_key": "evt-2"}])
    summary = await import_file(engine, replay)
    assert (summary.written["usage"], summary.duplicate_usage) == (1, 1)
    async with session_factory(engine)() as session:
        assert await session.scalar(select(func.sum(UsageEvent.credits))) == Decimal(4)
        assert await _count(engine, UsageEvent) == 2


async def test_the_same_key_for_two_users_is_two_events(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Keys are scoped to the event's user: one tenant's key never swallows another's event."""
    lines = [
        {"kind": "user", "id": 1, "email": "a@example.com"},
        {"kind": "user", "id": 2, "email": "b@example.com"},
        *(
            {
                "kind": "usage",
                "user": u,
                "instance": "personal",
                "occurred_at": "2026-05-01T10:00:00Z",
                "idempotency_key": "k",
            }
            for u in (1, 2)
        ),
    ]
    summary = await import_file(engine, _write(tmp_path, lines))
    assert (summary.written["usage"], summary.duplicate_usage) == (2, 0)


async def test_emails_are_unique_whatever_their_case(engine: AsyncEngine, tmp_path: Path) -> None:
    lines = [
        {"kind": "user", "id": 1, "email": "Ada@Example.com"},
        {"kind": "user", "id": 2, "email": "ada@example.COM"},
    ]
    with pytest.raises(ImportFileError, match=r"line 2: email ada@example\.COM is already used"):
        await import_file(engine, _write(tmp_path, lines))


async def test_usage_lines_are_batched_and_all_arrive(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """251 lines with batches of 100 cross two batch boundaries; totals stay exact."""
    monkeypatch.setattr(importer, "BATCH_SIZE", 100)
    lines: list[dict | str] = [{"kind": "user", "id": 1, "email": "a@example.com"}]
    lines += [
        {
            "kind": "usage",
            "user": 1,
            "instance": "personal",
            "occurred_at": "2026-05-01T10:00:00Z",
            "credits": "0.001",
            "idempotency_key": f"e{i % 250}",
        }
        for i in range(251)
    ]
    summary = await import_file(engine, _write(tmp_path, lines))
    assert (summary.written["usage"], summary.duplicate_usage) == (250, 1)
    async with session_factory(engine)() as session:
        assert await session.scalar(select(func.sum(UsageEvent.credits))) == Decimal("0.25")


# --- how far back (and ahead) imported usage may be dated ----------------------------------

IMPORTED_AT = datetime(2026, 5, 20, 15, 30, tzinfo=UTC)


def _usage_at(occurred_at: str) -> list[dict]:
    return [
        {"kind": "user", "id": 7, "email": "ada@acme.edu"},
        {"kind": "usage", "user": 7, "instance": "personal", "occurred_at": occurred_at},
    ]


IMPORT_WINDOW = (
    "occurred_at must be between 1970-01-01T00:00:00Z and 2026-05-20T15:35:00Z "
    "(history from 1970 up to 300 seconds ahead)"
)
# Times no database column may hold are refused by the shared date-time rule first.
STORABLE_RANGE = "occurred_at: must lie between 1970-01-01T00:00:00Z and 9998-12-31T23:59:59Z"


@pytest.mark.parametrize(
    ("occurred_at", "reason"),
    [
        ("0001-01-01T00:00:00Z", STORABLE_RANGE),  # was stored as -infinity on PostgreSQL
        ("1969-12-31T23:59:59Z", STORABLE_RANGE),
        ("2026-05-20T15:35:01Z", IMPORT_WINDOW),  # 301 s ahead of the import's clock
        ("9999-12-31T23:59:59Z", STORABLE_RANGE),
    ],
)
async def test_usage_outside_the_import_window_rejects_the_file(
    engine: AsyncEngine, tmp_path: Path, occurred_at: str, reason: str
) -> None:
    path = _write(tmp_path, _usage_at(occurred_at))
    with pytest.raises(ImportFileError) as raised:
        await import_file(engine, path, clock=lambda: IMPORTED_AT)
    assert raised.value.line == 2
    assert raised.value.reason == reason
    assert await _count(engine, User) == 0
    assert await _count(engine, UsageEvent) == 0


@pytest.mark.parametrize("occurred_at", ["1970-01-01T00:00:00Z", "2026-05-20T15:35:00Z"])
async def test_history_since_1970_up_to_the_skew_allowance_is_imported(
    engine: AsyncEngine, tmp_path: Path, occurred_at: str
) -> None:
    path = _write(tmp_path, _usage_at(occurred_at))
    summary = await import_file(engine, path, clock=lambda: IMPORTED_AT)
    assert summary.written["usage"] == 1
    async with session_factory(engine)() as session:
        stored = await session.scalar(select(UsageEvent.occurred_at))
    assert stored == datetime.fromisoformat(occurred_at)
