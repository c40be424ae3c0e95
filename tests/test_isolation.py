"""Tenant isolation sweep: no caller sees anything outside what CONTRACT.md lets them see.

One generated data set per backend (3 institutions, 30 users, 3,000 usage events, their
wallets, ledgers, subscriptions, buckets and snapshots), reshaped so every kind of caller
exists: super, institution admins (role admin + `institutions.edit`), an admin without
`institutions.edit`, an admin of no institution, a user who is admin only inside a
membership, plain members, users in no institution, each institution's API key, a revoked
key and no credential at all.

Every caller calls every REST route of the five APIs (usage-history of every instance in
both scopes, user-stats with filters naming everyone, the four account routes, billing, the
clients history of every bucket) and a set of GraphQL operations (viewer; user(id) of every
user for identity, wallet, ledger, usage events, account usage and usage history;
institution(id) of every institution with its members, usage, billing periods and buckets;
institutions; bucket(id) of every bucket; userStats; node(id) with the global id of every
user, institution, membership and bucket and of samples of ledger entries, usage events and
snapshots of every tenant; the alert rules, alerts and webhook endpoints of every
institution and the delivery log of every endpoint, which only its admins may read).

What a caller may see is worked out here, from the contract's rules, not by asking the
production access functions (`Allowed.of`). Every value in the data set is made unique and
recognisable (`u17x@isolation.test`, `ledger-of-17x`, a wallet balance of
`987650017.424242`, an endpoint `/e/17/<institution id>x` on each usage event, a records key
`t_<institution id>` on each snapshot), so a response leaks if its text holds a marker of
anything outside the caller's allowed set, or if an id-bearing field (userId, institutionId,
bucketId, a global id) names something outside it. Where the contract fixes a number (the
usage-history totals of the caller's scope, the billing month, the snapshot count) it is
worked out from the raw rows and compared exactly.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from strawberry.relay import from_base64, to_base64

from tests.conftest import FIXED_NOW, TEST_JWT_SECRET, with_read_path
from tests.databases import BACKENDS, TestDatabase, create_empty_database, drop_database
from tests.live.served import LiveSocket, served
from usagegraph.app import create_app
from usagegraph.auth.api_keys import create_api_key
from usagegraph.auth.tokens import mint_token
from usagegraph.db.engine import create_engine, session_factory
from usagegraph.db.models import (
    Alert,
    AlertRule,
    ClientBucket,
    Institution,
    LedgerEntry,
    Membership,
    OutboxEvent,
    Snapshot,
    UsageEvent,
    User,
    Wallet,
    WebhookDelivery,
    WebhookEndpoint,
)
from usagegraph.db.schema_version import upgrade_to_head
from usagegraph.demo_data import DemoSpec, generate_demo
from usagegraph.settings import GraphQLLimits, RateLimit, Settings, WebhookSettings

pytestmark = pytest.mark.asyncio(loop_scope="module")

SPEC = DemoSpec(users=30, institutions=3, events=3000, days=60, seed=20260520)
EDIT = "institutions.edit"
UNKNOWN_INSTITUTION = "0123456789abcdef01234567"
UNKNOWN_BUCKET = "no-such-bucket"
MISSING_USER = 999_999
HISTORY_WINDOW = 180
# Samples per tenant for node(id) lookups of the big tables.
NODE_SAMPLES = 2


# --- the data set ------------------------------------------------------------------------


@dataclass(frozen=True)
class UserFact:
    id: int
    role: str
    permissions: frozenset[str]
    email: str
    fname: str
    lname: str


@dataclass(frozen=True)
class EventFact:
    id: int
    user_id: int
    instance: str  # `personal` or an institution id
    occurred_at: datetime
    credits: Decimal
    messages: int
    forgotten: bool


@dataclass
class Facts:
    """The raw rows, read back from the database after the data set was shaped."""

    users: dict[int, UserFact]
    institutions: dict[str, str]  # id -> name
    memberships: dict[tuple[int, str], str]  # (user, institution) -> role inside
    buckets: dict[str, str]  # bucket -> institution
    snapshots: dict[str, list[date]]  # bucket -> its snapshot dates
    events: list[EventFact]
    ledger_owner: dict[int, int]  # ledger entry id -> user
    wallets: set[int]
    keys: dict[str, str] = field(default_factory=dict)  # institution -> live API key
    revoked_key: str = ""
    endpoints: dict[int, str] = field(default_factory=dict)  # webhook endpoint -> institution

    def member_of(self, user_id: int) -> set[str]:
        return {i for (u, i) in self.memberships if u == user_id}

    def members(self, institution_id: str) -> set[int]:
        return {u for (u, i) in self.memberships if i == institution_id}

    def usage_pairs(self) -> set[tuple[int, str]]:
        return set(self.event_pairs.values())

    @cached_property
    def event_pairs(self) -> dict[int, tuple[int, str]]:
        """Usage event id -> (user, instance)."""
        return {e.id: (e.user_id, e.instance) for e in self.events}


def wallet_marker(user_id: int) -> Decimal:
    return Decimal(f"98765{user_id:04d}.424242")


def endpoint_marker(user_id: int, instance: str) -> str:
    return f"/e/{user_id}/{instance}x"


async def build_data_set(engine: AsyncEngine) -> Facts:
    """The demo data, every caller kind present, every value a recognisable marker."""
    await generate_demo(engine, SPEC, now=FIXED_NOW)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        await _shape_roles(session)
        await _mark_values(session)
        keys: dict[str, str] = {}
        for institution_id in sorted(await session.scalars(select(Institution.id))):
            _, keys[institution_id] = await create_api_key(session, institution_id, "sweep")
        revoked_row, revoked = await create_api_key(session, sorted(keys)[0], "revoked")
        revoked_row.revoked_at = FIXED_NOW - timedelta(days=1)
        endpoints = await _add_alerts_and_webhooks(session, sorted(keys))
    facts = await read_facts(engine)
    facts.keys, facts.revoked_key, facts.endpoints = keys, revoked, endpoints
    return facts


def hook_marker(institution_id: str) -> str:
    """In an institution's webhook URL, delivery ids and alerts: for its admins only."""
    return f"hookx-{institution_id}"


async def _add_alerts_and_webhooks(
    session: AsyncSession, institutions: list[str]
) -> dict[int, str]:
    """Per institution: a webhook endpoint with one delivery, an alert rule and an alert,
    each carrying the institution's hook marker; the endpoint ids."""
    endpoints: dict[int, str] = {}
    for institution_id in institutions:
        marker = hook_marker(institution_id)
        endpoint = WebhookEndpoint(
            institution_id=institution_id,
            url=f"https://{marker}.example/hook",
            event_types=["api_key.revoked"],
            secret="whsec_" + "A" * 32,
            status="active",
        )
        event = OutboxEvent(
            event_id=f"msg_{marker}",
            type="api_key.revoked",
            institution_id=institution_id,
            body="{}",
        )
        rule = AlertRule(
            institution_id=institution_id, kind="institution_period_usage", threshold=Decimal(1)
        )
        session.add_all([endpoint, event, rule])
        await session.flush()
        session.add(WebhookDelivery(endpoint_id=endpoint.id, outbox_event_id=event.id))
        session.add(
            Alert(
                rule_id=rule.id,
                institution_id=institution_id,
                kind=rule.kind,
                subject="period:2026-05",
                event_id=f"msg_{marker}-alert",
            )
        )
        endpoints[endpoint.id] = institution_id
    return endpoints


async def _shape_roles(session: AsyncSession) -> None:
    """Add the caller kinds the demo does not make by itself.

    Promoted from plain members: an admin without `institutions.edit`, and a user who is
    `admin` only inside a membership. Added: an admin of no institution and a user in none.
    """
    plain = [
        user_id
        for user_id in await session.scalars(
            select(User.id)
            .where(User.role == "user", User.id.in_(select(Membership.user_id)))
            .order_by(User.id)
        )
    ]
    without_edit, membership_admin = plain[0], plain[1]
    await session.execute(
        update(User).where(User.id == without_edit).values(role="admin", permissions=[])
    )
    await session.execute(
        update(Membership).where(Membership.user_id == membership_admin).values(role="admin")
    )
    session.add(User(email="outsider@new", role="user", permissions=[]))
    session.add(User(email="nobody-admin@new", role="admin", permissions=[EDIT]))
    await session.flush()


async def _mark_values(session: AsyncSession) -> None:
    """Unique, searchable values: names, emails, wallets, ledgers, plans, endpoints, records."""
    for sql in (
        "UPDATE users SET email = 'u' || id || 'x@isolation.test', "
        "fname = 'Given' || id || 'x', lname = 'Family' || id || 'x'",
        "UPDATE ledger_entries SET description = 'ledger-of-' || user_id || 'x', "
        "reference = 'ref-of-' || user_id || 'x'",
        "UPDATE subscriptions SET plan = 'plan-of-' || user_id || 'x'",
        "UPDATE usage_events SET endpoint = "
        "'/e/' || user_id || '/' || COALESCE(institution_id, 'personal') || 'x'",
    ):
        await session.execute(text(sql))
    for wallet in await session.scalars(select(Wallet)):
        wallet.balance, wallet.reserved = wallet_marker(wallet.user_id), Decimal(0)
    buckets = dict(
        (await session.execute(select(ClientBucket.id, ClientBucket.institution_id))).all()
    )
    for snapshot in await session.scalars(select(Snapshot)):
        snapshot.records = {**snapshot.records, f"t_{buckets[snapshot.bucket_id]}": 1}


async def _bucket_owners(session: AsyncSession) -> dict[str, str]:
    rows = await session.execute(select(ClientBucket.id, ClientBucket.institution_id))
    return {bucket: owner for bucket, owner in rows}


async def read_facts(engine: AsyncEngine) -> Facts:
    async with session_factory(engine)() as session:
        users = {
            u.id: UserFact(
                u.id, u.role, frozenset(u.permissions or []), u.email, u.fname or "", u.lname or ""
            )
            for u in await session.scalars(select(User))
        }
        institutions = dict((await session.execute(select(Institution.id, Institution.name))).all())
        memberships = {
            (m.user_id, m.institution_id): m.role for m in await session.scalars(select(Membership))
        }
        buckets = dict(
            (await session.execute(select(ClientBucket.id, ClientBucket.institution_id))).all()
        )
        snapshots: dict[str, list[date]] = {bucket: [] for bucket in buckets}
        for bucket_id, day in await session.execute(
            select(Snapshot.bucket_id, Snapshot.snapshot_date)
        ):
            snapshots[bucket_id].append(day)
        events = [
            EventFact(
                e.id,
                e.user_id,
                e.institution_id or "personal",
                e.occurred_at,
                e.credits,
                e.messages,
                e.forgotten,
            )
            for e in await session.scalars(select(UsageEvent))
        ]
        ledger_owner = dict(
            (await session.execute(select(LedgerEntry.id, LedgerEntry.user_id))).all()
        )
        wallets = set(await session.scalars(select(Wallet.user_id)))
    return Facts(
        users, institutions, memberships, buckets, snapshots, events, ledger_owner, wallets
    )


# --- callers and what the contract lets each see ---------------------------------------


@dataclass(frozen=True)
class Caller:
    kind: str
    user_id: int | None = None
    key: str | None = None
    key_institution: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.user_id or self.key_institution or ''}"

    def headers(self, family: str) -> dict[str, str]:
        """The credential as each route family expects it (CONTRACT.md "Who may call what")."""
        credential = (
            mint_token(self.user_id, TEST_JWT_SECRET) if self.user_id is not None else self.key
        )
        if credential is None:
            return {}
        if family == "access-token":
            return {"x-access-token": credential}
        headers = {"Authorization": f"Bearer {credential}"}
        if self.key is not None:
            headers["X-API-Key"] = credential
        return headers


def callers(facts: Facts) -> list[Caller]:
    """Every user of the data set, classified by the contract's terms, and every key."""
    found = []
    for user in facts.users.values():
        member_of = facts.member_of(user.id)
        if user.role == "super":
            kind = "super"
        elif user.role == "admin" and EDIT in user.permissions:
            kind = "institution-admin" if member_of else "admin-of-nothing"
        elif user.role == "admin":
            kind = "admin-without-edit"
        elif not member_of:
            kind = "outsider"
        elif any(facts.memberships[(user.id, i)] == "admin" for i in member_of):
            kind = "admin-inside-membership-only"
        else:
            kind = "member"
        found.append(Caller(kind, user_id=user.id))
    for institution_id, key in facts.keys.items():
        found.append(Caller("api-key", key=key, key_institution=institution_id))
    found.append(Caller("revoked-key", key=facts.revoked_key))
    found.append(Caller("anonymous"))
    return found


KINDS = [
    "super",
    "institution-admin",
    "admin-without-edit",
    "admin-of-nothing",
    "admin-inside-membership-only",
    "member",
    "outsider",
    "api-key",
    "revoked-key",
    "anonymous",
]


@dataclass(frozen=True)
class Allowed:
    """What one caller may see anywhere (the union over every route)."""

    users: frozenset[int]  # identities: email, names, the rows about them
    institutions: frozenset[str]  # id, name, buckets and snapshots
    memberships: frozenset[tuple[int, str]]
    wallets: frozenset[int]  # wallet, ledger, subscription, account usage
    usage: frozenset[tuple[int, str]]  # (user, instance) whose single events may be listed
    admin_of: frozenset[str]  # where user-stats rows and scope `all` are honoured
    is_super: bool = False

    @property
    def user_ids(self) -> frozenset[int]:
        """User ids that may appear: those of visible users and of visible usage events."""
        return self.users | {user_id for user_id, _ in self.usage}

    @classmethod
    def of(cls, caller: Caller, facts: Facts) -> Allowed:
        """CONTRACT.md, "Who may call what", written out independently of auth/access.py."""
        nothing: frozenset[Any] = frozenset()
        if caller.kind == "api-key":
            # Its institution's own data: the institution, its buckets, and the usage
            # recorded in it (user ids and amounts, never who the users are).
            own = caller.key_institution or ""
            usage = frozenset(pair for pair in facts.usage_pairs() if pair[1] == own)
            return cls(nothing, frozenset({own}), nothing, nothing, usage, nothing)
        if caller.user_id is None:
            return cls(nothing, nothing, nothing, nothing, nothing, nothing)
        user = facts.users[caller.user_id]
        if user.role == "super":
            return cls(
                frozenset(facts.users),
                frozenset(facts.institutions),
                frozenset(facts.memberships),
                frozenset(facts.users),
                frozenset(facts.usage_pairs()),
                frozenset(facts.institutions),
                is_super=True,
            )
        member_of = facts.member_of(user.id)
        is_admin = user.role == "admin" and EDIT in user.permissions
        admin_of = member_of if is_admin else set()
        members = {(v, i) for i in admin_of for v in facts.members(i)}
        own_usage = {(u, i) for (u, i) in facts.usage_pairs() if u == user.id}
        return cls(
            users=frozenset({user.id} | {v for v, _ in members}),
            institutions=frozenset(member_of),
            memberships=frozenset({(user.id, i) for i in member_of} | members),
            wallets=frozenset({user.id}),
            usage=frozenset(own_usage | members),
            admin_of=frozenset(admin_of),
        )


# --- finding leaks --------------------------------------------------------------------------


def forbidden_markers(allowed: Allowed, facts: Facts) -> list[str]:
    """Text that must not appear anywhere in a response to this caller."""
    markers: list[str] = []
    for user in facts.users.values():
        if user.id not in allowed.users:
            markers += [user.email, user.fname, user.lname]
        if user.id not in allowed.wallets:
            markers += [
                str(wallet_marker(user.id)),
                f"ledger-of-{user.id}x",
                f"ref-of-{user.id}x",
                f"plan-of-{user.id}x",
            ]
    for institution_id, name in facts.institutions.items():
        if institution_id not in allowed.institutions:
            markers += [institution_id, name]
            markers += [b for b, owner in facts.buckets.items() if owner == institution_id]
    markers += [endpoint_marker(*pair) for pair in facts.usage_pairs() - allowed.usage]
    markers += [hook_marker(i) for i in facts.institutions if i not in allowed.admin_of]
    return markers


USER_KEYS = {"userId", "user_id"}
INSTITUTION_KEYS = {"institutionId", "institution_id", "institution", "instanceId", "databaseId"}
BUCKET_KEYS = {"bucketId", "bucket_id"}


def structural_leaks(value: Any, allowed: Allowed, facts: Facts) -> Iterator[str]:
    """Id-bearing fields naming a user, institution or row outside the allowed set."""
    if isinstance(value, list):
        for item in value:
            yield from structural_leaks(item, allowed, facts)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        problem = _field_leak(key, item, allowed, facts)
        if problem:
            yield problem
        yield from structural_leaks(item, allowed, facts)


def _field_leak(key: str, item: Any, allowed: Allowed, facts: Facts) -> str | None:
    if isinstance(item, bool):
        return None
    user_id = None
    if key in USER_KEYS and isinstance(item, int):
        user_id = item
    elif key == "user" and isinstance(item, str) and item.isdigit():
        user_id = int(item)
    if user_id is not None and user_id in facts.users and user_id not in allowed.user_ids:
        return f"{key}={user_id}"
    if not isinstance(item, str):
        return None
    if key in INSTITUTION_KEYS and item in facts.institutions and item not in allowed.institutions:
        return f"{key}={item}"
    if key in BUCKET_KEYS and facts.buckets.get(item, "-") not in allowed.institutions | {"-"}:
        return f"{key}={item}"
    if key == "id":
        return _global_id_leak(item, allowed, facts)
    return None


def _global_id_leak(global_id: str, allowed: Allowed, facts: Facts) -> str | None:
    try:
        type_name, node_id = from_base64(global_id)
    except Exception:
        return None
    owner_ok = {
        "User": lambda: int(node_id) in allowed.users,
        "Institution": lambda: node_id in allowed.institutions,
        "Membership": lambda: _membership_key(node_id) in allowed.memberships,
        "LedgerEntry": lambda: facts.ledger_owner[int(node_id)] in allowed.wallets,
        "UsageEvent": lambda: facts.event_pairs[int(node_id)] in allowed.usage,
        "ClientBucket": lambda: facts.buckets[node_id] in allowed.institutions,
        "Snapshot": lambda: facts.buckets[node_id.rsplit(":", 1)[0]] in allowed.institutions,
    }.get(type_name)
    if owner_ok is not None and not owner_ok():
        return f"id={type_name}:{node_id}"
    return None


def _membership_key(node_id: str) -> tuple[int, str]:
    user_id, _, institution_id = node_id.partition(":")
    return int(user_id), institution_id


def leaks(
    response: httpx.Response, allowed: Allowed, markers: list[str], facts: Facts
) -> list[str]:
    body = response.text
    found = [f"text {marker!r}" for marker in markers if marker in body]
    if response.headers.get("content-type", "").startswith("application/json"):
        found += list(structural_leaks(response.json(), allowed, facts))
    return found


# --- numbers the contract fixes ---------------------------------------------------------


def decimal_json(response: httpx.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


def history_totals(facts: Facts, instance: str, user_ids: set[int] | None) -> dict[str, Any]:
    """Usage-history totals over the last 180 UTC days including today, forgotten excluded."""
    start = datetime.combine(FIXED_NOW.date() - timedelta(days=HISTORY_WINDOW - 1), time(0), UTC)
    end = datetime.combine(FIXED_NOW.date() + timedelta(days=1), time(0), UTC)
    chosen = [
        e
        for e in facts.events
        if e.instance == instance
        and not e.forgotten
        and start <= e.occurred_at < end
        and (user_ids is None or e.user_id in user_ids)
    ]
    return {
        "credits": sum((e.credits for e in chosen), Decimal(0)),
        "messages": sum(e.messages for e in chosen),
        "users": len({e.user_id for e in chosen}),
    }


def month_messages(facts: Facts, institution_id: str) -> int:
    """Messages of the current calendar month (UTC), forgotten included (seed 002)."""
    start = datetime(FIXED_NOW.year, FIXED_NOW.month, 1, tzinfo=UTC)
    return sum(
        e.messages for e in facts.events if e.instance == institution_id and e.occurred_at >= start
    )


# --- REST: every route, with the contract's answer for each caller --------------------------


@dataclass(frozen=True)
class RestCall:
    method: str
    path: str
    family: str  # which header carries the credential: access-token or bearer
    params: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    check: Callable[[Caller, Allowed, Facts, httpx.Response], list[str]] = lambda *_: []


def rest_calls(facts: Facts) -> list[RestCall]:
    calls = []
    for instance in ["personal", *sorted(facts.institutions), UNKNOWN_INSTITUTION]:
        for scope in ("own", "all"):
            params = {"instanceId": instance, "scope": scope, "window": str(HISTORY_WINDOW)}
            calls.append(
                RestCall(
                    "GET",
                    "/api/user/usage-history",
                    "access-token",
                    params,
                    check=_usage_history_check(instance, scope),
                )
            )
    everyone = " ".join(str(u) for u in sorted(facts.users))
    for body in (
        {},
        {"granularity": "month", "range": -12},
        {"institution": " ".join([*sorted(facts.institutions), "personal"])},
        {"account": everyone, "granularity": "week"},
        {"usersearch": "@isolation.test", "role": "user"},
    ):
        calls.append(
            RestCall(
                "POST",
                "/api/admin/histories/charts/user-stats",
                "access-token",
                body=body,
                check=_user_stats_check,
            )
        )
    for path, params in (
        ("/auth/account/usage", {"period": "yearly", "from": "2020-01-01"}),
        ("/auth/account/credits", {}),
        ("/auth/account/ledger", {"limit": "100"}),
        ("/auth/account/summary", {}),
    ):
        calls.append(RestCall("GET", path, "bearer", params, check=_account_check))
    calls.append(
        RestCall(
            "GET", "/v1/billing/usage-history", "bearer", {"limit": "24"}, check=_billing_check
        )
    )
    for bucket in [*sorted(facts.buckets), UNKNOWN_BUCKET]:
        calls.append(
            RestCall(
                "GET",
                f"/api/v1/clients/{bucket}/history",
                "bearer",
                {"start_date": "2000-01-01", "limit": "1000"},
                check=_clients_check(bucket),
            )
        )
    return calls


def _status(response: httpx.Response, expected: int) -> list[str]:
    if response.status_code != expected:
        return [f"status {response.status_code}, expected {expected}: {response.text[:200]}"]
    return []


def _usage_history_check(instance: str, scope: str) -> Callable[..., list[str]]:
    def check(
        caller: Caller, allowed: Allowed, facts: Facts, response: httpx.Response
    ) -> list[str]:
        if caller.user_id is None:
            return _status(response, 401)
        visible = instance == "personal" or instance in allowed.institutions
        if allowed.is_super:
            visible = instance in facts.institutions or instance == "personal"
        if not visible:
            return _status(response, 403)
        problems = _status(response, 200)
        if problems:
            return problems
        body = decimal_json(response)
        everyone = scope == "all" and instance in allowed.admin_of
        expected_scope = "all" if everyone else "own"
        if body["scope"] != expected_scope:
            problems.append(f"scope {body['scope']}, expected {expected_scope}")
        totals = {k: Decimal(str(v)) if k == "credits" else v for k, v in body["totals"].items()}
        expected = history_totals(facts, instance, None if everyone else {caller.user_id})
        if totals != expected:
            problems.append(f"totals {totals}, expected {expected}")
        return problems

    return check


def _user_stats_check(
    caller: Caller, allowed: Allowed, facts: Facts, response: httpx.Response
) -> list[str]:
    if caller.user_id is None:
        return _status(response, 401)
    role = facts.users[caller.user_id].role
    if role not in ("super", "admin"):
        return _status(response, 403)
    problems = _status(response, 200)
    if problems or allowed.is_super:
        return problems
    rows = response.json()["data"]
    outside = [row for row in rows if row["institution"] not in allowed.admin_of]
    return [f"user-stats row outside administered institutions: {row}" for row in outside]


def _account_check(
    caller: Caller, allowed: Allowed, facts: Facts, response: httpx.Response
) -> list[str]:
    if caller.user_id is None:
        return _status(response, 401)
    problems = _status(response, 200)
    if problems or not response.url.path.endswith("/credits"):
        return problems
    body = decimal_json(response)
    if body["user_id"] != caller.user_id:
        problems.append(f"credits of user {body['user_id']}")
    if caller.user_id in facts.wallets and Decimal(str(body["balance"])) != wallet_marker(
        caller.user_id
    ):
        problems.append(f"balance {body['balance']} is not the caller's")
    return problems


def _billing_check(
    caller: Caller, allowed: Allowed, facts: Facts, response: httpx.Response
) -> list[str]:
    if caller.kind != "api-key" or caller.key_institution is None:
        return _status(response, 401)
    problems = _status(response, 200)
    if problems:
        return problems
    current = response.json()["data"][0]
    expected = month_messages(facts, caller.key_institution)
    if current["message_count"] != expected:
        problems.append(f"message_count {current['message_count']}, expected {expected}")
    return problems


def _clients_check(bucket: str) -> Callable[..., list[str]]:
    def check(
        caller: Caller, allowed: Allowed, facts: Facts, response: httpx.Response
    ) -> list[str]:
        if caller.user_id is None and caller.kind != "api-key":
            return _status(response, 401)
        owner = facts.buckets.get(bucket)
        if owner is None or owner not in allowed.institutions:
            return _status(response, 404)
        problems = _status(response, 200)
        if not problems and response.json()["count"] != len(facts.snapshots[bucket]):
            problems.append(f"count {response.json()['count']} for bucket {bucket}")
        return problems

    return check


# --- GraphQL: the graph's entry points with every tenant's ids -----------------------------


@dataclass(frozen=True)
class Lookup:
    """One GraphQL request: a document (many aliased lookups) or a batch of operations."""

    name: str
    payload: Any  # the JSON body
    count: int  # lookups in it (aliases or operations)


USER_SELECTIONS = {
    "identity": "id userId email fname lname role permissions memberships { id role capLimit "
    "effectiveCap user { id userId email fname lname } institution { id databaseId name } }",
    "wallet": "userId wallet { userId balance reserved available autoReloadThreshold "
    "autoReloadAmount } subscription { plan status }",
    "ledger": "userId ledger(first: 100) { totalCount edges { node { id userId amount "
    "balanceAfter description reference } } }",
    "events": "userId usageEvents(first: 100) { totalCount edges { node { id userId instanceId "
    "endpoint credits } } }",
    "usage": 'userId usage(period: YEARLY, from: "2020-01-01T00:00:00Z") { userId '
    "creditsConsumed totalRequests requestsByEndpoint }",
}
HISTORY = "instanceId scope totals { credits messages users } buckets { credits users }"
INSTITUTION_OPERATIONS = {
    "identity": "id databaseId name aiName planLimit defaultCap createdAt",
    "members": "members(first: 100) { totalCount edges { node { id role capLimit "
    "user { id userId email fname lname } institution { databaseId name } } } }",
    "history-all": f"usageHistory(window: {HISTORY_WINDOW}, scope: ALL) {{ {HISTORY} }}",
    "history-own": f"usageHistory(window: {HISTORY_WINDOW}, scope: OWN) {{ {HISTORY} }}",
    "billing": "billingPeriods(limit: 24) { total periods { periodStart messageCount } }",
    "buckets": "buckets { id bucketId institutionId snapshots(first: 100) { edges { node { "
    "id bucketId snapshotDate records } } } }",
}
# Alerts and webhooks (issue 18): an institution's admins and super only.
ADMIN_OPERATIONS = {
    "webhooks": "webhookEndpoints(institutionId: $id) { endpointId institutionId url }",
    "alert-rules": "alertRules(institutionId: $id) { ruleId institutionId kind }",
    "alerts": "alerts(institutionId: $id) { alertId institutionId eventId subject }",
}
NODE_FRAGMENT = """fragment N on Node { id
  ... on User { userId email fname lname }
  ... on Institution { databaseId name }
  ... on Membership { role user { userId email } institution { databaseId name } }
  ... on LedgerEntry { userId amount description reference }
  ... on UsageEvent { userId instanceId endpoint credits }
  ... on ClientBucket { bucketId institutionId }
  ... on Snapshot { bucketId records } }"""
STATS = (
    "rows { userId email fname lname institutionId instanceName lifetimeUsed } "
    "summary { usersAtCap }"
)


def graphql_lookups(facts: Facts) -> list[Lookup]:
    user_ids = [*sorted(facts.users), MISSING_USER]
    lookups = [
        _document(f"user-{name}", {f"u{u}": f"user(id: {u}) {{ {selection} }}" for u in user_ids})
        for name, selection in USER_SELECTIONS.items()
    ]
    instances = ["personal", *sorted(facts.institutions)]
    lookups.append(
        _document(
            "user-usage-history",
            {
                f"u{u}_{n}": f'user(id: {u}) {{ usageHistory(instanceId: "{instance}", '
                f"window: {HISTORY_WINDOW}, scope: ALL) {{ {HISTORY} }} }}"
                for u in user_ids
                for n, instance in enumerate(instances)
            },
        )
    )
    operations = [
        {"query": "{ viewer { kind userId role email institutionId } }"},
        {"query": "{ institutions(first: 100) { edges { node { id databaseId name } } } }"},
    ]
    for stats_input in (
        "{}",
        "{granularity: MONTH, range: -12}",
        "{institutions: [" + ", ".join(f'"{i}"' for i in [*facts.institutions, "personal"]) + "]}",
        "{accounts: [" + ", ".join(str(u) for u in facts.users) + "], granularity: WEEK}",
    ):
        operations.append({"query": f"{{ userStats(input: {stats_input}) {{ {STATS} }} }}"})
    for institution_id in [*sorted(facts.institutions), UNKNOWN_INSTITUTION]:
        for selection in INSTITUTION_OPERATIONS.values():
            operations.append(
                {
                    "query": f"query($id: String!) {{ institution(id: $id) {{ {selection} }} }}",
                    "variables": {"id": institution_id},
                }
            )
        for selection in ADMIN_OPERATIONS.values():
            operations.append(
                {
                    "query": f"query($id: String!) {{ {selection} }}",
                    "variables": {"id": institution_id},
                }
            )
    for endpoint_id in [*sorted(facts.endpoints), MISSING_USER]:
        operations.append(
            {
                "query": "query($id: Int!) { webhookDeliveries(endpointId: $id) { deliveryId "
                "endpointId eventId eventType } }",
                "variables": {"id": endpoint_id},
            }
        )
    lookups.append(Lookup("batch", operations, len(operations)))
    lookups.append(
        _document(
            "bucket",
            {
                f"b{n}": f'bucket(id: "{bucket}") {{ id bucketId institutionId snapshots(first: '
                "100) { edges { node { id bucketId records } } } }"
                for n, bucket in enumerate([*sorted(facts.buckets), UNKNOWN_BUCKET])
            },
        )
    )
    nodes = {f"n{n}": f'node(id: "{gid}") {{ ...N }}' for n, gid in enumerate(global_ids(facts))}
    lookups.append(_document("node", nodes, fragment=NODE_FRAGMENT))
    return lookups


def global_ids(facts: Facts) -> list[str]:
    """The global id of every user, institution, membership and bucket; samples of the rest."""
    ids = [to_base64("User", u) for u in facts.users]
    ids += [to_base64("Institution", i) for i in facts.institutions]
    ids += [to_base64("Membership", f"{u}:{i}") for (u, i) in facts.memberships]
    ids += [to_base64("ClientBucket", b) for b in facts.buckets]
    ids += [
        to_base64("Snapshot", f"{bucket}:{day.isoformat()}")
        for bucket, days in facts.snapshots.items()
        for day in sorted(days)[:NODE_SAMPLES]
    ]
    by_owner: dict[int, list[int]] = {}
    for entry_id, owner in sorted(facts.ledger_owner.items()):
        by_owner.setdefault(owner, []).append(entry_id)
    ids += [
        to_base64("LedgerEntry", e) for entries in by_owner.values() for e in entries[:NODE_SAMPLES]
    ]
    by_pair: dict[tuple[int, str], list[int]] = {}
    for event in sorted(facts.events, key=lambda e: e.id):
        by_pair.setdefault((event.user_id, event.instance), []).append(event.id)
    ids += [
        to_base64("UsageEvent", e) for events in by_pair.values() for e in events[:NODE_SAMPLES]
    ]
    return ids


def _document(name: str, fields: dict[str, str], fragment: str = "") -> Lookup:
    query = "{ " + " ".join(f"{alias}: {field}" for alias, field in fields.items()) + " }"
    return Lookup(name, {"query": query + fragment}, len(fields))


def graphql_problems(
    caller: Caller, allowed: Allowed, facts: Facts, response: httpx.Response
) -> list[str]:
    if caller.kind == "revoked-key" and response.status_code == 401:
        return []  # refused at the door rather than served as anonymous: both leak nothing
    problems = _status(response, 200)
    if problems:
        return problems
    results = response.json()
    for result in results if isinstance(results, list) else [results]:
        for error in result.get("errors", []):
            if error.get("extensions", {}).get("code") in (None, "INTERNAL"):
                problems.append(f"uncoded or internal error: {error}")
        problems += _institution_history_problems(caller, allowed, facts, result)
    return problems


def _institution_history_problems(
    caller: Caller, allowed: Allowed, facts: Facts, result: dict[str, Any]
) -> list[str]:
    """Institution.usageHistory: the caller's own usage, or everyone's for its admins."""
    history = ((result.get("data") or {}).get("institution") or {}).get("usageHistory")
    if history is None or caller.user_id is None:
        return []
    instance = history["instanceId"]
    everyone = history["scope"] == "ALL"
    if everyone and instance not in allowed.admin_of:
        return [f"scope ALL honoured for a non-admin in {instance}"]
    totals = {**history["totals"], "credits": Decimal(history["totals"]["credits"])}
    expected = history_totals(facts, instance, None if everyone else {caller.user_id})
    return [] if totals == expected else [f"graph totals {totals}, expected {expected}"]


# --- fixtures -----------------------------------------------------------------------------


@dataclass
class World:
    client: httpx.AsyncClient
    # The same app with compiled reads off (USAGEGRAPH_GRAPHQL_COMPILE=false): the GraphQL
    # sweep runs on both read paths.
    resolver_client: httpx.AsyncClient
    facts: Facts
    callers: list[Caller]
    rest: list[RestCall]
    graph: list[Lookup]


@pytest.fixture(scope="module", params=BACKENDS)
def isolation_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestDatabase]:
    """A database of this module's own: the sweep's data set outlives single tests."""
    database = create_empty_database(request.param, tmp_path_factory.mktemp("isolation"))
    yield database
    drop_database(database)


def sweep_settings(database: TestDatabase, data_dir: Path) -> Settings:
    """No GraphQL limits in the way of big lookups, no rate limit in the way of the sweep."""
    generous = GraphQLLimits(
        max_depth=20, max_aliases=10_000, max_tokens=1_000_000, max_cost=10**9, max_operations=100
    )
    return Settings(
        database_url=database.url,
        embedded_database=False,
        jwt_secret=TEST_JWT_SECRET,
        redis_url=None,
        data_dir=data_dir,
        graphql=generous,
        rate_limit=RateLimit(per_minute=0),
        webhooks=WebhookSettings(deliver=False),  # the sweep's endpoints are not real
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    isolation_database: TestDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    engine = create_engine(isolation_database.url)
    try:
        await upgrade_to_head(engine)
        facts = await build_data_set(engine)
    finally:
        await engine.dispose()
    settings = sweep_settings(isolation_database, tmp_path_factory.mktemp("isolation-data"))
    application = create_app(settings, clock=lambda: FIXED_NOW)
    resolvers = create_app(with_read_path(settings, compiled=False), clock=lambda: FIXED_NOW)
    async with (
        application.router.lifespan_context(application),
        resolvers.router.lifespan_context(resolvers),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://test"
        ) as client,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=resolvers), base_url="http://test"
        ) as resolver_client,
    ):
        yield World(
            client,
            resolver_client,
            facts,
            callers(facts),
            rest_calls(facts),
            graphql_lookups(facts),
        )


def _of_kind(world: World, kind: str) -> list[Caller]:
    chosen = [caller for caller in world.callers if caller.kind == kind]
    assert chosen, f"the data set has no caller of kind {kind}"
    return chosen


# --- the sweep ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_rest_routes_show_nothing_outside_the_callers_tenants(
    world: World, kind: str
) -> None:
    problems: list[str] = []
    for caller in _of_kind(world, kind):
        allowed = Allowed.of(caller, world.facts)
        markers = forbidden_markers(allowed, world.facts)
        for call in world.rest:
            response = await world.client.request(
                call.method,
                call.path,
                params=call.params,
                json=call.body,
                headers=caller.headers(call.family),
            )
            found = leaks(response, allowed, markers, world.facts)
            found += call.check(caller, allowed, world.facts, response)
            problems += [f"{caller.label} {call.method} {response.url}: {p}" for p in found]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:60])


@pytest.mark.parametrize("read_path", ["compiled", "resolvers"])
@pytest.mark.parametrize("kind", KINDS)
async def test_graphql_shows_nothing_outside_the_callers_tenants(
    world: World, kind: str, read_path: str
) -> None:
    """On PostgreSQL the compiled path answers the user, institution and institutions
    lookups it covers; the resolver path answers all of them."""
    client = world.client if read_path == "compiled" else world.resolver_client
    problems: list[str] = []
    for caller in _of_kind(world, kind):
        allowed = Allowed.of(caller, world.facts)
        markers = forbidden_markers(allowed, world.facts)
        for lookup in world.graph:
            response = await client.post(
                "/graphql", json=lookup.payload, headers=caller.headers("bearer")
            )
            found = leaks(response, allowed, markers, world.facts)
            found += graphql_problems(caller, allowed, world.facts, response)
            problems += [f"{caller.label} graphql {lookup.name}: {p}" for p in found[:20]]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:60])


async def test_the_sweep_covers_every_caller_kind_route_and_tenant(world: World) -> None:
    """The counts the closing note quotes; a shrinking sweep fails here."""
    facts = world.facts
    assert {caller.kind for caller in world.callers} == set(KINDS)
    assert len(facts.institutions) == 3
    assert len(facts.buckets) >= 3
    assert len(facts.users) == SPEC.users + 2
    rest_pairs = len(world.callers) * len(world.rest)
    graph_requests = len(world.callers) * len(world.graph)
    graph_pairs = len(world.callers) * sum(lookup.count for lookup in world.graph)
    print(
        f"\nisolation sweep: {len(world.callers)} callers; "
        f"{rest_pairs} caller x REST request pairs ({len(world.rest)} requests each); "
        f"{graph_pairs} caller x GraphQL lookups in {graph_requests} requests"
    )
    # Every user, three live keys, a revoked key and no credential.
    assert len(world.callers) == len(facts.users) + len(facts.keys) + 2
    # usage-history 5 instances x 2 scopes, user-stats 5 bodies, account 4, billing 1, and
    # the clients history of every bucket and of an unknown one.
    assert len(world.rest) == 10 + 5 + 4 + 1 + len(facts.buckets) + 1
    # user(id) five ways and its usage history, one batch, bucket(id), node(id).
    assert graph_requests == len(world.callers) * 9


async def test_markers_are_unique_enough_to_mean_a_leak(world: World) -> None:
    """No marker of one thing is inside another's (else a hit could be innocent).

    The one exception by design: an institution's id inside the endpoint and records markers
    of that institution's own usage and snapshots.
    """
    facts = world.facts
    markers = forbidden_markers(Allowed.of(Caller("anonymous"), facts), facts)
    assert len(markers) == len(set(markers))
    clashes = [
        (a, b)
        for a in markers
        for b in markers
        if a != b and a in b and a not in facts.institutions
    ]
    assert clashes == []
    assert all(re.fullmatch(r"u\d+x@isolation\.test", u.email) for u in facts.users.values())


# --- subscriptions (last: the sweep's writes land in the data set) --------------------------

LIVE_USAGE = """
subscription Usage($instance: String!, $scope: Scope) {
  usageUpdated(instanceId: $instance, window: 180, scope: $scope) {
    instanceId scope totals { credits messages users }
  }
}"""
LIVE_RECORD = "mutation($e: UsageEventInput!) { recordUsage(input: $e) { status } }"


@dataclass
class Listener:
    caller: Caller
    socket: LiveSocket
    instances: dict[str, str]  # operation id -> the instance it subscribed to
    messages: list[dict[str, Any]] = field(default_factory=list)


async def test_subscriptions_push_nothing_of_other_tenants(
    world: World, isolation_database: TestDatabase, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every caller subscribes to usageUpdated of every institution that is not theirs (and
    an unknown one), in both scopes; then a member of every institution records usage. Each
    of those subscriptions ends with a coded error and no data, or says nothing at all; a
    revoked key and no credential never get past connection_init. A member of each
    institution, subscribed to their own, hears the write: the writes did fan out."""
    facts = world.facts
    settings = sweep_settings(isolation_database, tmp_path_factory.mktemp("live-data"))
    problems: list[str] = []
    async with served(settings, clock=lambda: FIXED_NOW) as address, AsyncExitStack() as stack:
        listeners: list[Listener] = []
        for caller in world.callers:
            socket = await stack.enter_async_context(LiveSocket.open(address))
            credential = caller.headers("bearer")
            await socket.send({"type": "connection_init", "payload": credential})
            if caller.kind in ("revoked-key", "anonymous"):
                if (code := (await socket.closed())[0]) != 4403:
                    problems.append(f"{caller.label}: connection_init answered, closed {code}")
                continue
            assert (await socket.receive())["type"] == "connection_ack", caller.label
            allowed = Allowed.of(caller, facts)
            others = [i for i in facts.institutions if i not in allowed.institutions]
            listener = Listener(caller, socket, {})
            for instance in [*others, UNKNOWN_INSTITUTION]:
                for scope in ("OWN", "ALL"):
                    variables = {"instance": instance, "scope": scope}
                    listener.instances[await socket.subscribe(LIVE_USAGE, variables)] = instance
            listeners.append(listener)
        writers = {i: _a_member(world, i) for i in facts.institutions}
        controls = {}
        for institution, member in writers.items():
            control = await stack.enter_async_context(LiveSocket.open(address))
            await control.init(member.headers("bearer"))
            await control.subscribe(LIVE_USAGE, {"instance": institution, "scope": "OWN"})
            first = await control.receive()
            assert first["type"] == "next", first
            controls[institution] = control
        for listener in listeners:
            listener.messages += await listener.socket.quiet(0.5)
        super_token = mint_token(_of_kind(world, "super")[0].user_id or 0, TEST_JWT_SECRET)
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http:
            for institution, member in writers.items():
                event = {
                    "userId": member.user_id,
                    "instance": institution,
                    "occurredAt": (FIXED_NOW - timedelta(minutes=1)).isoformat(),
                    "credits": "0",
                    "messages": 0,
                }
                response = await http.post(
                    "/graphql",
                    json={"query": LIVE_RECORD, "variables": {"e": event}},
                    headers={"Authorization": f"Bearer {super_token}"},
                )
                assert response.json()["data"]["recordUsage"]["status"] == "INSERTED"
        for institution, control in controls.items():
            heard = await control.receive(wait=15)
            expected = history_totals(facts, institution, {writers[institution].user_id or 0})
            pushed = heard["payload"]["data"]["usageUpdated"]["totals"]
            assert Decimal(str(pushed["credits"])) == expected["credits"], institution
            assert pushed["messages"] == expected["messages"], institution
        later = await asyncio.gather(*(listener.socket.quiet(1.5) for listener in listeners))
        for listener, messages in zip(listeners, later, strict=True):
            listener.messages += messages
            problems += _live_problems(listener, facts)
    subscriptions = sum(len(listener.instances) for listener in listeners)
    print(
        f"\nisolation sweep (subscriptions): {len(listeners)} callers, {subscriptions} "
        f"subscriptions to other tenants' instances, {len(writers)} writes"
    )
    assert subscriptions > 2 * len(listeners)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:60])


def _a_member(world: World, institution_id: str) -> Caller:
    """A plain member of the institution (the writer of its usage, and its control)."""
    members = world.facts.members(institution_id)
    return next(c for c in _of_kind(world, "member") if c.user_id in members)


def _live_problems(listener: Listener, facts: Facts) -> list[str]:
    """Anything but a coded error and a completion, per subscription, is a leak."""
    found = []
    markers = forbidden_markers(Allowed.of(listener.caller, facts), facts)
    label = listener.caller.label
    refused = {
        message["id"]
        for message in listener.messages
        if message["type"] == "next" and message["payload"].get("errors")
    }
    # The documented answer: refused (FORBIDDEN, or UNAUTHORIZED for an API key) at once.
    found += [
        f"{label} usageUpdated({instance}) was not refused"
        for operation, instance in listener.instances.items()
        if operation not in refused
    ]
    for message in listener.messages:
        text = json.dumps(message)
        instance = listener.instances.get(message.get("id", ""), "?")
        if message["type"] == "complete":
            continue
        payload = message.get("payload")
        data = payload.get("data") if isinstance(payload, dict) else None
        errors = payload.get("errors") if isinstance(payload, dict) else payload
        if data is not None:
            found.append(f"{label} usageUpdated({instance}) pushed data: {text[:200]}")
        if not errors or any("code" not in (e.get("extensions") or {}) for e in errors):
            found.append(f"{label} usageUpdated({instance}) uncoded answer: {text[:200]}")
        found += [f"{label} usageUpdated({instance}) shows {m}" for m in markers if m in text]
    return found
