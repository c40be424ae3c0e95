"""`usagegraph import FILE`: NDJSON lines applied in order, in one transaction per file.

A bad line rejects the whole file with its line number; nothing is half-loaded. Lines are
validated in Python before they reach the database, so the reason given is the real one.
Usage and ledger lines (the bulk of a migration) are written in batches.

Import is the path for history older than the online writes' window: a usage line may be
dated from 1970-01-01T00:00:00Z up to a few minutes ahead of now
(`resolvers.event_time_window.import_bounds`). On PostgreSQL the months it loaded then get
partitions of their own (`db.partitions.ensure_months`), so no more than one per month of
history actually in the file.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, tuple_
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from usagegraph.auth.api_keys import MIN_KEY_LENGTH, hash_api_key, new_api_key_row
from usagegraph.clock import Clock, system_clock
from usagegraph.datasources.usage_writes import insert_events
from usagegraph.db.engine import session_factory
from usagegraph.db.models import (
    PERSONAL_INSTANCE,
    ApiKey,
    ClientBucket,
    Institution,
    LedgerEntry,
    Membership,
    Snapshot,
    Subscription,
    UsageIdempotencyKey,
    User,
    Wallet,
    signed_amount,
    utcnow,
)
from usagegraph.db.models.institutions import INSTITUTION_ROLES
from usagegraph.db.models.usage import USAGE_STATUSES
from usagegraph.db.models.users import USER_ROLES
from usagegraph.db.models.wallets import LEDGER_TYPES
from usagegraph.db.partitions import ensure_months, maintain_partitions, month_start
from usagegraph.db.sequences import bump_id_sequences
from usagegraph.errors import UsageGraphError
from usagegraph.import_fields import FieldError, FieldReader, count_mapping
from usagegraph.input_ids import BUCKET_ID_PATTERN, INSTITUTION_ID_PATTERN
from usagegraph.resolvers.event_time_window import (
    EventTimeBounds,
    check_event_time,
    import_bounds,
)
from usagegraph.settings import EventTimeWindow

BATCH_SIZE = 5000
DEFAULT_WINDOW = EventTimeWindow()
_INSTITUTION_ID = re.compile(INSTITUTION_ID_PATTERN)
_BUCKET_ID = re.compile(BUCKET_ID_PATTERN)
_CURRENCY = re.compile(r"^[a-z]{3}$")


class ImportFileError(Exception):
    """The file was rejected; nothing of it was written."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass
class ImportSummary:
    """Rows written per kind, and usage lines skipped as idempotent replays."""

    written: Counter[str] = field(default_factory=Counter)
    duplicate_usage: int = 0


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw, parse_float=Decimal)
            except json.JSONDecodeError as exc:
                raise ImportFileError(number, f"not valid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise ImportFileError(number, "each line must be a JSON object")
            yield number, obj


async def import_file(
    engine: AsyncEngine,
    path: Path,
    progress: Callable[[int], None] | None = None,
    *,
    window: EventTimeWindow = DEFAULT_WINDOW,
    clock: Clock = system_clock,
) -> ImportSummary:
    """Apply every line of `path` in one transaction, or none of them; then give the months
    of usage it loaded partitions of their own (PostgreSQL). `window` is the deployment's
    event-time window, whose allowance ahead of now applies here too."""
    bounds = import_bounds(window, clock())
    async with session_factory(engine)() as session, session.begin():
        importer = _Importer(session, bounds)
        number = 0
        for number, obj in _lines(path):
            try:
                await importer.apply(obj, number)
            except FieldError as exc:
                raise ImportFileError(number, str(exc)) from exc
            if progress is not None:
                progress(number)
        await importer.finish(number)
        await bump_id_sequences(await session.connection())
    # Old history lands in the DEFAULT partition (PostgreSQL); give its months their own.
    await ensure_months(engine, importer.usage_months)
    await maintain_partitions(engine, clock, history=window.max_age)
    return importer.summary


class _Importer:
    """Applies validated lines; keeps wallets in memory to chain ledger balances."""

    def __init__(self, session: AsyncSession, bounds: EventTimeBounds) -> None:
        self.session = session
        self.bounds = bounds
        self.summary = ImportSummary()
        self.usage_months: set[date] = set()
        self.wallets: dict[int, Wallet] = {}
        self.pending_usage: list[tuple[int, dict[str, Any], str | None]] = []
        self.pending_ledger: list[tuple[int, dict[str, Any]]] = []
        self.seen_keys: set[tuple[int, str]] = set()
        # Ids known to exist: one lookup per id, not per line (usage files repeat them a lot).
        self.known_users: set[int] = set()
        self.known_institutions: set[str] = set()
        self.handlers = {
            "institution": self._institution,
            "user": self._user,
            "membership": self._membership,
            "usage": self._usage,
            "wallet": self._wallet,
            "ledger": self._ledger,
            "subscription": self._subscription,
            "bucket": self._bucket,
            "snapshot": self._snapshot,
            "api_key": self._api_key,
        }

    async def apply(self, obj: dict[str, Any], line: int) -> None:
        kind = obj.get("kind")
        handler = self.handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise FieldError(f"unknown kind {kind!r} (expected one of {', '.join(self.handlers)})")
        await handler(FieldReader(obj, _FIELDS[kind]), line)

    async def finish(self, last_line: int) -> None:
        await self._flush_usage(last_line)
        await self._flush_ledger(last_line)
        await self._write(last_line)

    async def _write(self, line: int) -> None:
        """Flush ORM changes now, so a database refusal is blamed on the right line."""
        try:
            await self.session.flush()
        except SQLAlchemyError as exc:
            raise ImportFileError(line, "the database refused it (constraint violated)") from exc

    # -- lookups ----------------------------------------------------------------------------

    async def _existing_user(self, reader: FieldReader, name: str = "user") -> int:
        user_id = reader.required_integer(name, minimum=1)
        if user_id in self.known_users:
            return user_id
        if await self.session.get(User, user_id) is None:
            raise FieldError(f"{name} {user_id} does not exist (import users first)")
        self.known_users.add(user_id)
        return user_id

    async def _existing_institution(self, institution_id: Any, name: str) -> str:
        if not isinstance(institution_id, str) or not _INSTITUTION_ID.match(institution_id):
            raise FieldError(f"{name} must be a 24-character lowercase hex id")
        if institution_id in self.known_institutions:
            return institution_id
        if await self.session.get(Institution, institution_id) is None:
            raise FieldError(f"{name} {institution_id} does not exist")
        self.known_institutions.add(institution_id)
        return institution_id

    async def _wallet_for(self, user_id: int) -> Wallet:
        wallet = self.wallets.get(user_id) or await self.session.get(Wallet, user_id)
        if wallet is None:
            wallet = Wallet(user_id=user_id, currency="usd", balance=Decimal(0))
            wallet.reserved = Decimal(0)
            wallet.entry_count = 0
            self.session.add(wallet)
        self.wallets[user_id] = wallet
        return wallet

    # -- kinds ------------------------------------------------------------------------------

    async def _institution(self, reader: FieldReader, line: int) -> None:
        institution_id = reader.string("id", max_length=24)
        if institution_id is not None:
            if not _INSTITUTION_ID.match(institution_id):
                raise FieldError("id must be a 24-character lowercase hex id")
            if await self.session.get(Institution, institution_id) is not None:
                raise FieldError(f"institution {institution_id} already exists")
        currency = reader.string("currency", max_length=3) or "usd"
        if not _CURRENCY.match(currency):
            raise FieldError("currency must be three lowercase letters, e.g. usd")
        institution = Institution(
            name=reader.required_string("name", max_length=200),
            ai_name=reader.string("ai_name", max_length=200),
            currency=currency,
            plan_limit=reader.integer("plan_limit", minimum=0),
            default_cap=reader.money("default_cap"),
            created_at=reader.timestamp("created_at") or utcnow(),
        )
        if institution_id is not None:
            institution.id = institution_id
        self.session.add(institution)
        await self._write(line)
        self.summary.written["institution"] += 1

    async def _user(self, reader: FieldReader, line: int) -> None:
        user_id = reader.integer("id", minimum=1)
        if user_id is not None and await self.session.get(User, user_id) is not None:
            raise FieldError(f"user {user_id} already exists")
        email = reader.required_string("email", max_length=320)
        if "@" not in email:
            raise FieldError("email must be an email address")
        taken = await self.session.scalar(
            select(User.id).where(func.lower(User.email) == email.lower())
        )
        if taken is not None:
            raise FieldError(f"email {email} is already used by another user")
        permissions = reader.obj.get("permissions") or []
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise FieldError("permissions must be a list of strings")
        user = User(
            email=email,
            fname=reader.string("fname", max_length=200),
            lname=reader.string("lname", max_length=200),
            role=reader.choice("role", USER_ROLES, default="user"),
            permissions=permissions,
            created_at=reader.timestamp("created_at") or utcnow(),
            last_login_at=reader.timestamp("last_login_at"),
        )
        if user_id is not None:
            user.id = user_id
        self.session.add(user)
        await self._write(line)
        self.summary.written["user"] += 1

    async def _membership(self, reader: FieldReader, line: int) -> None:
        user_id = await self._existing_user(reader)
        institution_id = await self._existing_institution(
            reader.required("institution"), "institution"
        )
        if await self.session.get(Membership, (user_id, institution_id)) is not None:
            raise FieldError(f"user {user_id} is already a member of {institution_id}")
        self.session.add(
            Membership(
                user_id=user_id,
                institution_id=institution_id,
                role=reader.choice("role", INSTITUTION_ROLES, default="user"),
                cap_limit=reader.money("cap_limit"),
            )
        )
        await self._write(line)
        self.summary.written["membership"] += 1

    async def _usage(self, reader: FieldReader, line: int) -> None:
        user_id = await self._existing_user(reader)
        instance = reader.required_string("instance", max_length=24)
        institution_id = None
        if instance != PERSONAL_INSTANCE:
            institution_id = await self._existing_institution(instance, "instance")
        key = reader.string("idempotency_key", max_length=255)
        occurred_at = reader.required_timestamp("occurred_at")
        try:
            check_event_time(occurred_at, self.bounds, "occurred_at")
        except UsageGraphError as exc:
            raise FieldError(exc.message) from exc
        row = {
            "user_id": user_id,
            "institution_id": institution_id,
            "occurred_at": occurred_at,
            "credits": reader.money("credits") or Decimal(0),
            "messages": _messages(reader),
            "endpoint": reader.string("endpoint", max_length=200),
            "status": reader.choice("status", USAGE_STATUSES, default="success"),
            "forgotten": reader.boolean("forgotten", default=False),
            "created_at": utcnow(),
        }
        if key is not None:
            if (user_id, key) in self.seen_keys:
                self.summary.duplicate_usage += 1
                return
            self.seen_keys.add((user_id, key))
        self.pending_usage.append((line, row, key))
        if len(self.pending_usage) >= BATCH_SIZE:
            await self._flush_usage(line)

    async def _flush_usage(self, line: int) -> None:
        """Insert buffered usage, skipping keys an earlier import already recorded."""
        if not self.pending_usage:
            return
        batch, self.pending_usage = self.pending_usage, []
        keyed = [(row["user_id"], key) for _, row, key in batch if key is not None]
        known = await self._known_keys(keyed)
        fresh = [
            (row, key) for _, row, key in batch if key is None or (row["user_id"], key) not in known
        ]
        self.summary.duplicate_usage += len(batch) - len(fresh)
        if not fresh:
            return
        try:
            ids = await insert_events(self.session, [row for row, _ in fresh])
            key_rows = [
                {
                    "user_id": row["user_id"],
                    "key": key,
                    "usage_event_id": event_id,
                    "created_at": utcnow(),
                }
                for (row, key), event_id in zip(fresh, ids, strict=True)
                if key is not None
            ]
            if key_rows:
                await self.session.execute(insert(UsageIdempotencyKey), key_rows)
        except SQLAlchemyError as exc:
            raise ImportFileError(
                batch[0][0], f"usage lines {batch[0][0]} to {line} refused by the database"
            ) from exc
        self.summary.written["usage"] += len(fresh)
        months = (month_start(row["occurred_at"].astimezone(UTC)) for row, _ in fresh)
        self.usage_months.update(months)

    async def _known_keys(self, keyed: list[tuple[int, str]]) -> set[tuple[int, str]]:
        known: set[tuple[int, str]] = set()
        for start in range(0, len(keyed), 500):
            chunk = keyed[start : start + 500]
            rows = await self.session.execute(
                select(UsageIdempotencyKey.user_id, UsageIdempotencyKey.key).where(
                    tuple_(UsageIdempotencyKey.user_id, UsageIdempotencyKey.key).in_(chunk)
                )
            )
            known.update((user_id, key) for user_id, key in rows)
        return known

    async def _wallet(self, reader: FieldReader, line: int) -> None:
        user_id = await self._existing_user(reader)
        wallet = await self._wallet_for(user_id)
        currency = reader.string("currency", max_length=3) or wallet.currency
        if not _CURRENCY.match(currency):
            raise FieldError("currency must be three lowercase letters, e.g. usd")
        wallet.currency = currency
        wallet.auto_reload_enabled = reader.boolean("auto_reload_enabled", default=False)
        wallet.auto_reload_threshold = reader.money("auto_reload_threshold")
        wallet.auto_reload_amount = reader.money("auto_reload_amount")
        await self._write(line)
        self.summary.written["wallet"] += 1

    async def _ledger(self, reader: FieldReader, line: int) -> None:
        user_id = await self._existing_user(reader)
        entry_type = reader.choice("type", LEDGER_TYPES, default="")
        amount = reader.money("amount", non_negative=entry_type != "adjustment")
        if amount is None:
            raise FieldError("amount is required")
        if amount == 0 or (entry_type != "adjustment" and amount < 0):
            raise FieldError(f"amount of a {entry_type} must be positive")
        metadata = reader.mapping("metadata")
        wallet = await self._wallet_for(user_id)
        wallet.balance = wallet.balance + signed_amount(entry_type, amount)
        wallet.entry_count += 1
        self.pending_ledger.append(
            (
                line,
                {
                    "user_id": user_id,
                    "type": entry_type,
                    "amount": amount,
                    "balance_after": wallet.balance,
                    "description": reader.string("description", max_length=500),
                    "reference": reader.string("reference", max_length=255),
                    "metadata_": metadata,
                    "created_at": reader.timestamp("created_at") or utcnow(),
                },
            )
        )
        if len(self.pending_ledger) >= BATCH_SIZE:
            await self._flush_ledger(line)

    async def _flush_ledger(self, line: int) -> None:
        if not self.pending_ledger:
            return
        batch, self.pending_ledger = self.pending_ledger, []
        await self._write(line)  # wallets first: entries reference their users
        try:
            await self.session.execute(insert(LedgerEntry), [row for _, row in batch])
        except SQLAlchemyError as exc:
            raise ImportFileError(
                batch[0][0], f"ledger lines {batch[0][0]} to {line} refused by the database"
            ) from exc
        self.summary.written["ledger"] += len(batch)

    async def _subscription(self, reader: FieldReader, line: int) -> None:
        user_id = await self._existing_user(reader)
        subscription = await self.session.get(Subscription, user_id) or Subscription(
            user_id=user_id
        )
        subscription.plan = reader.required_string("plan", max_length=100)
        subscription.status = reader.required_string("status", max_length=32)
        subscription.current_period_start = reader.timestamp("current_period_start")
        subscription.current_period_end = reader.timestamp("current_period_end")
        self.session.add(subscription)
        await self._write(line)
        self.summary.written["subscription"] += 1

    async def _bucket(self, reader: FieldReader, line: int) -> None:
        bucket_id = reader.required_string("id", max_length=64)
        if not _BUCKET_ID.match(bucket_id):
            raise FieldError("id must match ^[A-Za-z0-9_-]{1,64}$")
        if await self.session.get(ClientBucket, bucket_id) is not None:
            raise FieldError(f"bucket {bucket_id} already exists")
        institution_id = await self._existing_institution(
            reader.required("institution"), "institution"
        )
        self.session.add(ClientBucket(id=bucket_id, institution_id=institution_id))
        await self._write(line)
        self.summary.written["bucket"] += 1

    async def _snapshot(self, reader: FieldReader, line: int) -> None:
        bucket_id = reader.required_string("bucket", max_length=64)
        if await self.session.get(ClientBucket, bucket_id) is None:
            raise FieldError(f"bucket {bucket_id} does not exist")
        snapshot_date = reader.required_date("snapshot_date")
        storage = FieldReader(
            reader.mapping("storage"), ("object_count", "total_bytes", "by_prefix")
        )
        by_prefix = storage.mapping("by_prefix")
        for prefix, metrics in by_prefix.items():
            if not isinstance(metrics, dict) or set(metrics) - {"count", "bytes"}:
                raise FieldError(f"storage.by_prefix.{prefix} must be {{count, bytes}}")
            count_mapping(metrics, f"storage.by_prefix.{prefix}")
        snapshot = await self.session.get(Snapshot, (bucket_id, snapshot_date)) or Snapshot(
            bucket_id=bucket_id, snapshot_date=snapshot_date
        )
        snapshot.records = count_mapping(reader.mapping("records"), "records")
        snapshot.object_count = storage.integer("object_count", minimum=0) or 0
        snapshot.total_bytes = storage.integer("total_bytes", minimum=0) or 0
        snapshot.by_prefix = by_prefix
        snapshot.computed_at = reader.timestamp("computed_at") or utcnow()
        self.session.add(snapshot)
        await self._write(line)
        self.summary.written["snapshot"] += 1

    async def _api_key(self, reader: FieldReader, line: int) -> None:
        institution_id = await self._existing_institution(
            reader.required("institution"), "institution"
        )
        key = reader.required_string("key", max_length=200)
        if len(key) < MIN_KEY_LENGTH:
            raise FieldError(f"key must be at least {MIN_KEY_LENGTH} characters")
        if "." in key:
            raise FieldError("key must not contain '.' (it would read as a JWT)")
        exists = await self.session.scalar(
            select(ApiKey.id).where(ApiKey.key_hash == hash_api_key(key))
        )
        if exists is not None:
            raise FieldError("this key is already registered")
        self.session.add(
            new_api_key_row(institution_id, key, reader.string("name", max_length=200))
        )
        await self._write(line)
        self.summary.written["api_key"] += 1


def _messages(reader: FieldReader) -> int:
    """Messages default to 1: one usage event is one message unless it says otherwise."""
    messages = reader.integer("messages", minimum=0)
    return 1 if messages is None else messages


_FIELDS: dict[str, tuple[str, ...]] = {
    "institution": ("id", "name", "ai_name", "currency", "plan_limit", "default_cap", "created_at"),
    "user": ("id", "email", "fname", "lname", "role", "permissions", "created_at", "last_login_at"),
    "membership": ("user", "institution", "role", "cap_limit"),
    "usage": (
        "user",
        "instance",
        "occurred_at",
        "credits",
        "messages",
        "endpoint",
        "status",
        "forgotten",
        "idempotency_key",
    ),
    "wallet": (
        "user",
        "currency",
        "auto_reload_enabled",
        "auto_reload_threshold",
        "auto_reload_amount",
    ),
    "ledger": ("user", "type", "amount", "description", "reference", "metadata", "created_at"),
    "subscription": ("user", "plan", "status", "current_period_start", "current_period_end"),
    "bucket": ("id", "institution"),
    "snapshot": ("bucket", "snapshot_date", "records", "storage", "computed_at"),
    "api_key": ("institution", "key", "name"),
}
