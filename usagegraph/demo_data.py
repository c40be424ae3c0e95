"""A realistic demo data set, generated deterministically and inserted in bulk, fast.

`generate_demo` appends institutions, users, memberships, usage, wallets with their ledger,
subscriptions, client buckets and snapshots to whatever the database already holds, in one
transaction. The two big tables (usage events and ledger entries) bypass the ORM: PostgreSQL
gets one binary COPY per table, fed by a generator so Python produces rows while the server
ingests them; SQLite gets `executemany` in batches. Everything else goes through SQLAlchemy
Core, so the column types convert those values themselves.

Random draws come from one `random.Random(seed)` in a fixed order and never depend on what
the database holds, so the same seed and `now` give the same data (apart from ids, the run
tag in emails, and institution ids, which must be unique in the database).
"""

from __future__ import annotations

import json
import secrets
import unicodedata
from bisect import bisect
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import accumulate, islice
from random import Random
from typing import Any, Literal

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import JSON, TypeEngine

from usagegraph.datasources.usage_rollups import add_usage_from_events
from usagegraph.db.models import (
    ClientBucket,
    Institution,
    LedgerEntry,
    Membership,
    Snapshot,
    Subscription,
    UsageEvent,
    User,
    Wallet,
    new_institution_id,
)
from usagegraph.db.partitions import ensure_months, month_start, next_month
from usagegraph.db.types import MONEY_SCALE, Money, UTCDateTime

ProgressCallback = Callable[[str, int, int], None]
"""Called as (phase name, done, total); the CLI maps it onto a progress bar.

Phases, in order: institutions, users, snapshots, usage_events, usage_rollups, ledger_entries,
wallets. Each reports (0, total) when it starts, and (total, total) once its rows are in the
database; the two big ones report every 50,000 rows in between (usage_rollups, one SQL
statement per rollup table, counts as a single step).
"""
PHASES = (
    "institutions",
    "users",
    "snapshots",
    "usage_events",
    "usage_rollups",
    "ledger_entries",
    "wallets",
)

MICRO = 10**MONEY_SCALE
_CHUNK = 50_000  # events per progress report
_SQLITE_BATCH = 10_000  # rows per executemany on SQLite


@dataclass(frozen=True, slots=True)
class DemoSpec:
    """How much demo data to generate."""

    users: int = 200
    institutions: int = 5
    events: int = 100_000
    days: int = 180
    seed: int = 42

    def validate(self) -> None:
        """Refuse sizes that cannot make a coherent data set (one super user, one day)."""
        if self.users < 1:
            raise ValueError("users must be at least 1 (the super user)")
        if self.institutions < 0 or self.events < 0:
            raise ValueError("institutions and events must not be negative")
        if self.days < 1:
            raise ValueError("days must be at least 1")


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """Rows inserted per kind, plus the ids a person needs to try the data out."""

    institutions: int
    users: int
    memberships: int
    usage_events: int
    ledger_entries: int
    wallets: int
    subscriptions: int
    buckets: int
    snapshots: int
    institution_ids: list[str]
    user_ids: list[int]
    super_user_id: int


# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

# fmt: off
_FIRST_NAMES = (
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger",
    "Radia", "Tim", "Katherine", "John", "Hedy", "Donald", "Sophie", "Niklaus", "Karen", "Guido",
    "Shafi", "Leslie", "Anita", "Bjarne", "Jean", "Whitfield", "Mary", "Vint", "Lynn", "Yukihiro",
    "Joan", "Ivan", "Carol", "Tony", "Fran", "Raj", "Amara", "Mateo", "Priya", "Chen", "Fatima",
    "Olu", "Ingrid", "Kenji", "Zoë", "José", "Aisha", "Lars", "Mei", "Diego", "Nadia", "Tomás",
    "Yara", "Sven", "Leila", "Arjun", "Hana", "Kofi", "Elena", "Marek",
)
_LAST_NAMES = (
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson",
    "Allen", "Dijkstra", "Perlman", "Berners-Lee", "Johnson", "McCarthy", "Lamarr", "Knuth",
    "Wilson", "Wirth", "Spärck Jones", "van Rossum", "Goldwasser", "Lamport", "Borg",
    "Stroustrup", "Sammet", "Diffie", "Shaw", "Cerf", "Conway", "Matsumoto", "Clarke",
    "Sutherland", "Bartik", "Hoare", "Reddy", "Okafor", "García", "Patel", "Wang", "Haddad",
    "Adeyemi", "Larsen", "Tanaka", "Costa", "Khan", "Nilsson", "Li", "Fernández", "Novak",
    "O'Brien", "Mensah", "Rossi", "Kowalski", "Nakamura", "Silva", "Yilmaz", "Andersen", "Moreau",
)
# fmt: on
# (name, slug for bucket ids, email domain)
_INSTITUTIONS = (
    ("Acme University", "acme-u", "acme.edu"),
    ("Northwind College", "northwind", "northwind.edu"),
    ("Riverside Institute of Technology", "rit", "riverside-tech.edu"),
    ("Lakeshore Medical Center", "lakeshore-med", "lakeshore-med.org"),
    ("Blue Ridge Community College", "blue-ridge-cc", "blueridge.edu"),
    ("Harborview Research Labs", "harborview", "harborview-labs.com"),
    ("Summit Business School", "summit-bs", "summit-bs.edu"),
    ("Cedar Valley University", "cedar-valley", "cedarvalley.edu"),
    ("Pinecrest Academy", "pinecrest", "pinecrest.org"),
    ("Westbrook Polytechnic", "westbrook-poly", "westbrook.ac.uk"),
    ("Eastgate Law School", "eastgate-law", "eastgate-law.edu"),
    ("Silver Lake Institute", "silver-lake", "silverlake.edu"),
    ("Granite State College", "granite-state", "granitestate.edu"),
    ("Meadowbrook University", "meadowbrook", "meadowbrook.edu"),
    ("Oakridge Applied Sciences", "oakridge", "oakridge-as.org"),
    ("Bayside Health Sciences", "bayside-health", "bayside-health.org"),
    ("Stonebridge College of Art", "stonebridge-art", "stonebridge.edu"),
    ("Fairview Technical Institute", "fairview-tech", "fairview-tech.edu"),
    ("Kingsport University", "kingsport-u", "kingsport.edu"),
    ("Redwood Coast College", "redwood-coast", "redwoodcoast.edu"),
)
_AI_NAMES = ("Pria", "Atlas", "Sage", "Nova", "Orion", "Juniper", "Echo", "Iris", None)
_PLAN_LIMITS = (None, None, 5_000, 10_000, 25_000, 50_000, 100_000)
_DEFAULT_CAPS = (None, 100, 250, 500, 1_000)
_CAP_OVERRIDES = (50, 200, 750, 2_000)
# (endpoint, weight, lowest credits, highest credits) in micro-units; all within 0.05-5.0.
_ENDPOINTS = (
    ("/v1/chat", 58, 50_000, 5_000_000),
    ("/v1/embeddings", 15, 50_000, 300_000),
    ("/v1/completions", 10, 50_000, 2_500_000),
    ("/v1/images", 6, 500_000, 5_000_000),
    ("/v1/audio/transcriptions", 6, 100_000, 1_500_000),
    ("/v1/moderations", 5, 50_000, 100_000),
)
# Share of the busiest hour's traffic, by UTC hour: busy 9-17, quiet at night.
_HOURLY = (
    0.10, 0.07, 0.05, 0.05, 0.05, 0.07, 0.14, 0.30, 0.60, 0.92, 1.00, 1.00,
    0.95, 0.98, 1.00, 0.97, 0.92, 0.80, 0.55, 0.42, 0.35, 0.28, 0.20, 0.14,
)  # fmt: skip
_WEEKDAY = (1.0, 1.05, 1.05, 1.0, 0.9, 0.28, 0.22)  # Monday first; weekends much lower
_GROWTH = 0.6  # the last day of the window is this much busier than the first
_FAILED_RATE = 0.03
_FORGOTTEN_RATE = 0.01
_SINGLE_MESSAGE_RATE = 0.88
_MULTI_MESSAGE_SCALE = 4 / (1 - _SINGLE_MESSAGE_RATE)
_TOP_UPS = (25, 50, 100, 200)
_COLLECTIONS = ("person", "organisation", "member", "payment", "ticket", "booking")
_EXTRA_COLLECTIONS = ("invoice", "document", "event", "course")
_PREFIXES = ("docs/", "images/", "exports/", "backups/", "uploads/")
_BUCKET_KINDS = ("main", "archive")


# ---------------------------------------------------------------------------------------------
# Plans: the small tables, decided in memory before anything is written
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Window:
    """The usage window [start, now) and what the hot loop needs to place times in it."""

    now: datetime
    start: datetime
    days: int
    start_date: date
    start_second_of_day: int

    @classmethod
    def ending(cls, now: datetime, days: int) -> _Window:
        start = now - timedelta(days=days)
        second = start.hour * 3600 + start.minute * 60 + start.second
        return cls(now, start, days, start.date(), second)

    def day(self, index: int) -> date:
        """The calendar date of a day index (0 = the window's first, partial day)."""
        return self.start_date + timedelta(days=index)

    def months(self) -> list[date]:
        """The first day of every UTC month the window touches."""
        months = [month_start(self.start)]
        while months[-1] < month_start(self.now):
            months.append(next_month(months[-1]))
        return months

    @property
    def day_count(self) -> int:
        """Calendar days the window touches (one more than `days` unless it starts at 0:00)."""
        return (self.now.date() - self.start_date).days + 1


@dataclass(frozen=True, slots=True)
class _InstitutionPlan:
    id: str
    name: str
    slug: str
    domain: str
    ai_name: str | None
    plan_limit: int | None
    default_cap: int | None
    created_at: datetime


@dataclass(slots=True)
class _UserPlan:
    id: int
    fname: str
    lname: str
    role: str
    created_at: datetime
    weight: float
    email: str = ""
    last_login_at: datetime | None = None
    # (institution index, role in it, cap_limit in whole credits or None)
    memberships: list[tuple[int, str, int | None]] = field(default_factory=list)
    # Cumulative shares of [personal, institution...] and the institution ids they stand for.
    instance_thresholds: list[float] = field(default_factory=list)
    instance_targets: list[str | None] = field(default_factory=list)


def _plan_institutions(rng: Random, count: int, window: _Window) -> list[_InstitutionPlan]:
    """Named tenants; names repeat with a campus suffix once the list runs out."""
    plans = []
    for index in range(count):
        name, slug, domain = _INSTITUTIONS[index % len(_INSTITUTIONS)]
        campus = index // len(_INSTITUTIONS)
        if campus:
            name, slug = f"{name} (Campus {campus + 1})", f"{slug}-c{campus + 1}"
            domain = f"c{campus + 1}.{domain}"
        created = window.start - timedelta(days=rng.randint(400, 900), seconds=rng.randrange(86400))
        plans.append(
            _InstitutionPlan(
                id=new_institution_id(),
                name=name,
                slug=slug,
                domain=domain,
                ai_name=rng.choice(_AI_NAMES),
                plan_limit=rng.choice(_PLAN_LIMITS),
                default_cap=rng.choice(_DEFAULT_CAPS),
                created_at=created,
            )
        )
    return plans


def _plan_users(rng: Random, spec: DemoSpec, window: _Window, first_id: int) -> list[_UserPlan]:
    """Users with roles: index 0 is the super user, then the admins, then everyone else.

    Activity follows a Zipf-like law over a shuffled rank, so a few users are heavy.
    """
    admins = min(spec.users - 1, max(spec.institutions, round(spec.users * 0.03)))
    if spec.institutions == 0:
        admins = 0  # an admin must administer an institution
    ranks = list(range(1, spec.users + 1))
    rng.shuffle(ranks)
    users = []
    for index in range(spec.users):
        role = "super" if index == 0 else "admin" if index <= admins else "user"
        created = window.start - timedelta(days=rng.randint(1, 365), seconds=rng.randrange(86400))
        users.append(
            _UserPlan(
                id=first_id + index,
                fname=rng.choice(_FIRST_NAMES),
                lname=rng.choice(_LAST_NAMES),
                role=role,
                created_at=created,
                weight=ranks[index] ** -0.8,
            )
        )
    for user in users:
        if rng.random() < 0.95:
            user.last_login_at = window.now - timedelta(seconds=rng.randrange(14 * 86400))
    return users


def _plan_memberships(rng: Random, users: list[_UserPlan], institutions: int) -> None:
    """Most users in one institution, some in two, some in none; admins administer one."""
    if institutions == 0:
        return
    sizes = list(accumulate(1 / (rank + 1) ** 0.7 for rank in range(institutions)))
    admin_turn = 0
    for user in users:
        chosen: list[int] = []
        if user.role == "admin":
            chosen.append(admin_turn % institutions)
            admin_turn += 1
        draw = rng.random()
        wanted = 0 if draw < 0.15 else 1 if draw < 0.80 else 2
        if user.role == "super":
            wanted = 0  # staff: personal usage only
        while len(chosen) < min(wanted, institutions):
            pick = rng.choices(range(institutions), cum_weights=sizes)[0]
            if pick not in chosen:
                chosen.append(pick)
        for position, institution in enumerate(chosen):
            role = "admin" if user.role == "admin" and position == 0 else "user"
            cap = rng.choice(_CAP_OVERRIDES) if rng.random() < 0.2 else None
            user.memberships.append((institution, role, cap))


def _plan_instances(rng: Random, users: list[_UserPlan], plans: list[_InstitutionPlan]) -> None:
    """How each user splits usage between the personal instance and their institutions."""
    for user in users:
        if not user.memberships:
            user.instance_thresholds, user.instance_targets = [1.0], [None]
            continue
        personal = rng.uniform(0.1, 0.5)
        shares = [rng.uniform(0.5, 1.5) for _ in user.memberships]
        scale = (1 - personal) / sum(shares)
        user.instance_thresholds = list(accumulate([personal, *(s * scale for s in shares)]))
        user.instance_thresholds[-1] = 1.0  # no rounding gap at the top
        user.instance_targets = [None, *(plans[m[0]].id for m in user.memberships)]


def _ascii_slug(text_: str) -> str:
    """Lowercase ASCII letters and digits only, for the local part of an email."""
    plain = unicodedata.normalize("NFKD", text_).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def _assign_emails(users: list[_UserPlan], plans: list[_InstitutionPlan], tag: str) -> None:
    """`fname.lname.tag@domain`, the domain of the user's first institution; no repeats."""
    taken: set[str] = set()
    for user in users:
        domain = plans[user.memberships[0][0]].domain if user.memberships else "example.org"
        base = f"{_ascii_slug(user.fname)}.{_ascii_slug(user.lname)}"
        local, number = base, 1
        while f"{local}@{domain}" in taken:
            number += 1
            local = f"{base}{number}"
        taken.add(f"{local}@{domain}")
        user.email = f"{local}.{tag}@demo.{domain}"


# ---------------------------------------------------------------------------------------------
# Usage events: the hot loop
# ---------------------------------------------------------------------------------------------


def _hour_weights(rng: Random, window: _Window) -> list[float]:
    """Relative traffic of each hour of the window: daily and weekly rhythm, growth, noise."""
    hours = window.days * 24
    noise = [rng.uniform(0.85, 1.15) for _ in range(window.day_count)]
    weights = []
    for hour in range(hours):
        second = window.start_second_of_day + hour * 3600
        day = second // 86400
        weekday = (window.start_date.weekday() + day) % 7
        growth = 1 + _GROWTH * hour / hours
        weights.append(_HOURLY[(second // 3600) % 24] * _WEEKDAY[weekday] * growth * noise[day])
    return weights


def _events_per_hour(rng: Random, window: _Window, total: int) -> list[int]:
    """How many of `total` events fall in each hour (a multinomial draw, in batches)."""
    cum_weights = list(accumulate(_hour_weights(rng, window)))
    hours = range(len(cum_weights))
    counts = [0] * len(cum_weights)
    for begin in range(0, total, 200_000):
        drawn = Counter(rng.choices(hours, cum_weights=cum_weights, k=min(200_000, total - begin)))
        for hour, count in drawn.items():
            counts[hour] += count
    return counts


@dataclass(slots=True)
class _PersonalUsage:
    """Personal-instance credits (micro-units) and event counts per (user, day).

    The key is `user index * day_count + day index`: one int key keeps the hot loop cheap.
    """

    day_count: int
    credits: dict[int, int] = field(default_factory=dict)
    events: dict[int, int] = field(default_factory=dict)

    def by_user(self) -> Iterator[tuple[int, list[tuple[int, int, int]]]]:
        """(user index, [(day index, credits, events), ...]) in user then day order."""
        current, days = -1, []
        for key in sorted(self.credits):
            user, day = divmod(key, self.day_count)
            if user != current:
                if days:
                    yield current, days
                current, days = user, []
            days.append((day, self.credits[key], self.events[key]))
        if days:
            yield current, days


def _usage_rows(
    rng: Random,
    window: _Window,
    users: list[_UserPlan],
    first_id: int,
    total: int,
    personal: _PersonalUsage,
) -> Iterator[tuple[Any, ...]]:
    """Usage event rows in time order (so ids follow time, as in a live system).

    Rows are plain tuples with credits in integer micro-units and aware UTC datetimes; the
    dialect-specific conversion happens on the way to the database. Personal credits are
    summed into `personal` as a side effect, for the ledger.
    """
    per_hour = _events_per_hour(rng, window, total)
    user_cum = list(accumulate(u.weight for u in users))
    user_range = range(len(users))
    user_ids = [u.id for u in users]
    thresholds = [u.instance_thresholds for u in users]
    targets = [u.instance_targets for u in users]
    endpoint_cum = list(accumulate(e[1] for e in _ENDPOINTS))
    endpoint_scale = endpoint_cum[-1]
    seconds = [timedelta(seconds=s) for s in range(3600)]
    rand = rng.random
    credits_by_day, events_by_day, day_count = personal.credits, personal.events, personal.day_count
    event_id = first_id
    for hour, count in enumerate(per_hour):
        if not count:
            continue
        hour_start = window.start + timedelta(hours=hour)
        hour_second = window.start_second_of_day + hour * 3600
        picks = rng.choices(user_range, cum_weights=user_cum, k=count)
        offsets = sorted([int(rand() * 3600) for _ in range(count)])
        for user, offset in zip(picks, offsets, strict=True):
            when = hour_start + seconds[offset]
            institution = targets[user][bisect(thresholds[user], rand())]
            path, _, low, high = _ENDPOINTS[bisect(endpoint_cum, rand() * endpoint_scale)]
            credits = low + int(rand() ** 2 * (high - low)) // 100 * 100
            draw = rand()
            if draw < _SINGLE_MESSAGE_RATE:
                messages = 1
            else:  # 2-5, evenly
                messages = min(5, 2 + int((draw - _SINGLE_MESSAGE_RATE) * _MULTI_MESSAGE_SCALE))
            status = "failed" if rand() < _FAILED_RATE else "success"
            if institution is None:  # summed before the yield: the consumer may stop after it
                key = user * day_count + (hour_second + offset) // 86400
                credits_by_day[key] = credits_by_day.get(key, 0) + credits
                events_by_day[key] = events_by_day.get(key, 0) + 1
            yield (
                event_id,
                user_ids[user],
                institution,
                when,
                credits,
                messages,
                path,
                status,
                rand() < _FORGOTTEN_RATE,
                when,
            )
            event_id += 1


# ---------------------------------------------------------------------------------------------
# Wallets and the ledger
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _WalletPlan:
    auto_reload: bool
    threshold: int  # micro-units; top up before the balance would drop below it
    reload_amount: int  # micro-units


def _plan_wallets(rng: Random, users: list[_UserPlan]) -> list[_WalletPlan]:
    """A quarter of wallets reload automatically; the rest are topped up by hand."""
    plans = []
    for _ in users:
        if rng.random() < 0.25:
            threshold, amount = rng.choice((5, 10, 20)), rng.choice((25, 50, 100))
            plans.append(_WalletPlan(True, threshold * MICRO, amount * MICRO))
        else:
            plans.append(_WalletPlan(False, 0, rng.choice(_TOP_UPS) * MICRO))
    return plans


@dataclass(slots=True)
class _LedgerBook:
    """One user's ledger as it is written: the running balance and the last entry's time.

    Entries are appended in created_at order (times never go backwards), so their order by
    (created_at, id) is the order the running balance was computed in.
    """

    user_id: int
    rows: list[tuple[Any, ...]]
    balance: int = 0
    last_at: datetime | None = None

    def add(
        self,
        kind: str,
        amount: int,
        at: datetime,
        description: str,
        reference: str | None,
        metadata: dict[str, Any],
    ) -> None:
        """Append an entry; `amount` is positive for credit and debit, signed for adjustment."""
        at = at if self.last_at is None else max(at, self.last_at)
        self.balance += -amount if kind == "debit" else amount
        self.last_at = at
        self.rows.append(
            (self.user_id, kind, amount, self.balance, description, reference, metadata, at)
        )


def _reference(rng: Random) -> str:
    return f"pay_demo_{rng.getrandbits(48):012x}"


def _top_up_if_needed(
    rng: Random, book: _LedgerBook, wallet: _WalletPlan, debit: int, at: datetime
) -> None:
    """Credit the wallet before a debit would take it below its floor (never below zero)."""
    shortfall = wallet.threshold + debit - book.balance
    if shortfall <= 0:
        return
    times = -(-shortfall // wallet.reload_amount)
    description = "Auto-reload" if wallet.auto_reload else "Top-up"
    source = "auto_reload" if wallet.auto_reload else "card"
    earlier = at - timedelta(seconds=rng.randrange(60, 6 * 3600))
    amount = times * wallet.reload_amount
    book.add("credit", amount, earlier, description, _reference(rng), {"source": source})


def _maybe_adjust(rng: Random, book: _LedgerBook, at: datetime) -> None:
    """Now and then support corrects a balance, up or down (never below zero)."""
    if rng.random() >= 0.01:
        return
    amount = rng.choice((1, 2, 5, 10)) * MICRO // rng.choice((1, 2))
    if rng.random() < 0.5 and book.balance >= amount:
        book.add("adjustment", -amount, at, "Correction", None, {"reason": "double charge"})
    else:
        book.add("adjustment", amount, at, "Goodwill credit", None, {"reason": "outage"})


def _ledger_for_user(
    rng: Random,
    window: _Window,
    user: _UserPlan,
    wallet: _WalletPlan,
    days: list[tuple[int, int, int]],
) -> _LedgerBook:
    """A welcome credit, then per day of personal usage a top-up if needed and one debit."""
    book = _LedgerBook(user.id, [])
    welcome = rng.choice((5, 10, 20))
    signup = user.created_at + timedelta(minutes=10)
    book.add("credit", welcome * MICRO, signup, "Welcome credit", None, {"source": "signup"})
    for day, credits, events in days:
        on = window.day(day)
        billed = datetime.combine(on + timedelta(days=1), time(0, 5), UTC)
        at = min(billed, window.now)
        _top_up_if_needed(rng, book, wallet, credits, at)
        day_text = on.isoformat()
        metadata = {"events": events, "day": day_text}
        book.add("debit", credits, at, f"Usage {day_text}", f"usage-{day_text}", metadata)
        _maybe_adjust(rng, book, min(at + timedelta(hours=2), window.now))
    return book


def _ledger_books(
    rng: Random,
    window: _Window,
    users: list[_UserPlan],
    wallets: list[_WalletPlan],
    personal: _PersonalUsage,
) -> list[_LedgerBook]:
    """Every user's ledger; users without personal usage get only their welcome credit."""
    usage = dict(personal.by_user())
    return [
        _ledger_for_user(rng, window, user, wallets[index], usage.get(index, []))
        for index, user in enumerate(users)
    ]


# ---------------------------------------------------------------------------------------------
# Subscriptions, buckets, snapshots
# ---------------------------------------------------------------------------------------------


def _subscription_rows(
    rng: Random, window: _Window, users: list[_UserPlan]
) -> list[dict[str, Any]]:
    """About a third of users hold a plan; the current period contains `now`."""
    rows = []
    today = window.now.date()
    for user in users:
        if rng.random() >= 0.3:
            continue
        start = datetime.combine(today - timedelta(days=rng.randrange(30)), time(0), UTC)
        rows.append(
            {
                "user_id": user.id,
                "plan": rng.choices(("starter", "pro", "team"), weights=(5, 4, 1))[0],
                "status": rng.choices(("active", "past_due", "canceled"), weights=(85, 5, 10))[0],
                "current_period_start": start,
                "current_period_end": start + timedelta(days=30),
            }
        )
    return rows


@dataclass(frozen=True, slots=True)
class _BucketPlan:
    id: str
    institution_id: str
    created_at: datetime
    counts: dict[str, int]  # collection -> count on the first snapshot day
    prefixes: dict[str, tuple[int, int]]  # prefix -> (objects, bytes) on the first day
    growth: float  # per day


def _plan_buckets(rng: Random, institutions: list[_InstitutionPlan]) -> list[_BucketPlan]:
    """One or two buckets per institution, with starting sizes and a slow growth rate."""
    buckets = []
    for institution in institutions:
        for kind in _BUCKET_KINDS[: rng.randint(1, 2)]:
            counts = {
                name: rng.randint(100, 20_000) * (3 if name == "payment" else 1)
                for name in _COLLECTIONS
            }
            if rng.random() < 0.3:
                counts[rng.choice(_EXTRA_COLLECTIONS)] = rng.randint(50, 5_000)
            chosen = rng.sample(_PREFIXES, rng.randint(2, len(_PREFIXES)))
            prefixes = {
                p: (n := rng.randint(50, 5_000), n * rng.randint(20_000, 2_000_000))
                for p in sorted(chosen)
            }
            created = institution.created_at + timedelta(days=rng.randint(1, 60))
            growth = rng.uniform(0.0005, 0.004)
            bucket_id = f"{institution.slug}-{kind}"
            buckets.append(
                _BucketPlan(bucket_id, institution.id, created, counts, prefixes, growth)
            )
    return buckets


def _snapshot_rows(rng: Random, window: _Window, bucket: _BucketPlan) -> list[dict[str, Any]]:
    """One snapshot a day for the last min(days, 90) days, growing slowly with some noise."""
    span = min(window.days, 90)
    today = window.now.date()
    rows = []
    for age in range(span - 1, -1, -1):
        day_index = span - 1 - age
        factor = (1 + bucket.growth) ** day_index
        records = {
            k: round(v * factor * rng.uniform(0.998, 1.002)) for k, v in bucket.counts.items()
        }
        records["total"] = sum(records.values())
        by_prefix = {
            p: {"count": round(n * factor), "bytes": round(b * factor * rng.uniform(0.99, 1.01))}
            for p, (n, b) in bucket.prefixes.items()
        }
        snapshot_date = today - timedelta(days=age)
        computed = datetime.combine(snapshot_date + timedelta(days=1), time(0, 10), UTC)
        rows.append(
            {
                "bucket_id": bucket.id,
                "snapshot_date": snapshot_date,
                "records": records,
                "object_count": sum(v["count"] for v in by_prefix.values()),
                "total_bytes": sum(v["bytes"] for v in by_prefix.values()),
                "by_prefix": by_prefix,
                "computed_at": min(computed, window.now),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Writing: Core for small tables, COPY / executemany for the big ones
# ---------------------------------------------------------------------------------------------

CellKind = Literal["plain", "money", "time", "json"]


def _cell_kind(column_type: TypeEngine[Any]) -> CellKind:
    """Which conversion a column needs when its SQLAlchemy type is bypassed."""
    if isinstance(column_type, Money):
        return "money"
    if isinstance(column_type, UTCDateTime):
        return "time"
    if isinstance(column_type, JSON):
        return "json"
    return "plain"


@dataclass(frozen=True, slots=True)
class _BulkTable:
    """A table written around the ORM: its columns, in row order, and their conversions."""

    name: str
    columns: tuple[str, ...]
    kinds: tuple[CellKind, ...]

    @classmethod
    def of(cls, table: Table, columns: Sequence[str]) -> _BulkTable:
        kinds = tuple(_cell_kind(table.c[name].type) for name in columns)
        return cls(table.name, tuple(columns), kinds)


_USAGE_COLUMNS = "id user_id institution_id occurred_at credits messages endpoint status forgotten"
_USAGE_TABLE = _BulkTable.of(UsageEvent.__table__, [*_USAGE_COLUMNS.split(), "created_at"])
_LEDGER_COLUMNS = "id user_id type amount balance_after description reference metadata created_at"
_LEDGER_TABLE = _BulkTable.of(LedgerEntry.__table__, _LEDGER_COLUMNS.split())


def _postgres_cell(kind: CellKind, value: Any) -> Any:
    """Generated value -> what asyncpg's binary COPY encoders take for that column.

    NUMERIC wants a Decimal (micro-units scaled back exactly), timestamptz an aware datetime
    (generated values already are, in UTC), and `json` columns want the text.
    """
    if kind == "money":
        return Decimal(value).scaleb(-MONEY_SCALE)
    if kind == "json":
        return json.dumps(value)
    return value


_SQLITE_DATETIME = sqlite_dialect.DATETIME().bind_processor(sqlite_dialect.dialect())
assert _SQLITE_DATETIME is not None, "SQLAlchemy formats SQLite datetimes in Python"


def _sqlite_cell(kind: CellKind, value: Any) -> Any:
    """Generated value -> what Money and UTCDateTime would have stored on SQLite.

    Money is integer micro-units (already the generated form). Times are naive UTC text in
    SQLAlchemy's own format, so SQL comparisons against ORM-bound values stay correct.
    """
    if kind == "time":
        return _SQLITE_DATETIME(value.astimezone(UTC).replace(tzinfo=None))
    if kind == "json":
        return json.dumps(value)
    return value


def _converted(
    rows: Iterable[tuple[Any, ...]], table: _BulkTable, cell: Callable[[CellKind, Any], Any]
) -> Iterator[tuple[Any, ...]]:
    """Rows with every non-plain, non-null cell passed through the dialect's `cell`."""
    special = [(i, kind) for i, kind in enumerate(table.kinds) if kind != "plain"]
    for row in rows:
        values = list(row)
        for i, kind in special:
            if values[i] is not None:
                values[i] = cell(kind, values[i])
        yield tuple(values)


async def _copy_postgres(
    conn: AsyncConnection, table: _BulkTable, rows: Iterable[tuple[Any, ...]]
) -> None:
    """One binary COPY on the transaction's own connection, streaming from `rows`."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    # SQLAlchemy's asyncpg adapter begins its transaction lazily; COPY outside one would
    # commit by itself and break all-or-nothing.
    if driver is None or not driver.is_in_transaction():
        raise RuntimeError("COPY must run inside the demo transaction")
    await driver.copy_records_to_table(
        table.name, records=_converted(rows, table, _postgres_cell), columns=list(table.columns)
    )


async def _executemany_sqlite(
    conn: AsyncConnection, table: _BulkTable, rows: Iterable[tuple[Any, ...]]
) -> None:
    """Batched executemany with values already in SQLite's stored form."""
    placeholders = ", ".join("?" for _ in table.columns)
    sql = f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES ({placeholders})"
    converted = _converted(rows, table, _sqlite_cell)
    while batch := list(islice(converted, _SQLITE_BATCH)):
        await conn.exec_driver_sql(sql, batch)


async def _bulk_insert(
    conn: AsyncConnection, table: _BulkTable, rows: Iterable[tuple[Any, ...]]
) -> None:
    """Write many rows past the ORM, the fastest way each backend offers."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        await _copy_postgres(conn, table, rows)
    elif dialect == "sqlite":
        await _executemany_sqlite(conn, table, rows)
    else:
        raise NotImplementedError(f"demo data bulk insert does not support {dialect}")


async def _insert_core(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> int:
    """Small tables go through Core, so the column types do their own conversions."""
    if rows:
        await conn.execute(insert(table), rows)
    return len(rows)


def _reporting(
    rows: Iterable[tuple[Any, ...]], phase: str, total: int, progress: ProgressCallback
) -> Iterator[tuple[Any, ...]]:
    """Pass rows through, calling `progress` every chunk short of the total.

    The caller reports the total once the insert has returned: the server may still be busy
    (COPY checks foreign keys at the end) after the last row has left this generator.
    """
    for done, row in enumerate(rows, start=1):
        yield row
        if done % _CHUNK == 0 and done < total:
            progress(phase, done, total)


# ---------------------------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------------------------


async def _reserve_ids(conn: AsyncConnection, table: Table, count: int) -> int:
    """The first of `count` ids after everything the table (or its sequence) has used.

    On PostgreSQL the identity sequence is moved past the block straight away, so ORM inserts
    afterwards (or concurrently) never collide with it. setval is not transactional: after a
    rollback the block is only a gap.
    """
    if conn.dialect.name != "postgresql":
        used = await conn.scalar(select(func.coalesce(func.max(table.c.id), 0)))
        return int(used) + 1
    sequence = f"pg_get_serial_sequence('{table.name}', 'id')"
    used = await conn.scalar(
        text(
            f"SELECT GREATEST(COALESCE(MAX(id), 0), "
            f"COALESCE(pg_sequence_last_value({sequence}::regclass), 0)) FROM {table.name}"
        )
    )
    first = int(used) + 1
    if count:
        await conn.execute(text(f"SELECT setval({sequence}, :last)"), {"last": first + count - 1})
    return first


async def _run_tag(conn: AsyncConnection, draw_tag: Callable[[], str]) -> str:
    """A short tag no existing demo email or bucket id carries, to keep runs apart.

    Drawn outside the seeded generator: two runs with the same seed must still differ here.
    """
    for _ in range(100):
        tag = draw_tag()
        email_taken = await conn.scalar(
            select(func.count()).where(User.__table__.c.email.like(f"%.{tag}@%"))
        )
        bucket_taken = await conn.scalar(
            select(func.count()).where(ClientBucket.__table__.c.id.like(f"%-{tag}"))
        )
        if not email_taken and not bucket_taken:
            return tag
    raise RuntimeError("could not find an unused run tag")


async def _unique_bucket_ids(
    conn: AsyncConnection, buckets: list[_BucketPlan], tag: str
) -> list[_BucketPlan]:
    """Keep `acme-u-main` when free; on a later run the id gets the run tag appended."""
    if not buckets:
        return buckets
    query = select(ClientBucket.id).where(ClientBucket.id.in_([b.id for b in buckets]))
    taken = set((await conn.scalars(query)).all())
    return [replace(b, id=f"{b.id}-{tag}") if b.id in taken else b for b in buckets]


# ---------------------------------------------------------------------------------------------
# Row dicts for the small tables
# ---------------------------------------------------------------------------------------------


def _money(micro: int | None) -> Decimal | None:
    return None if micro is None else Decimal(micro).scaleb(-MONEY_SCALE)


def _institution_rows(plans: list[_InstitutionPlan]) -> list[dict[str, Any]]:
    return [
        {
            "id": p.id,
            "name": p.name,
            "ai_name": p.ai_name,
            "currency": "usd",
            "plan_limit": p.plan_limit,
            "default_cap": None if p.default_cap is None else Decimal(p.default_cap),
            "created_at": p.created_at,
        }
        for p in plans
    ]


def _user_rows(users: list[_UserPlan]) -> list[dict[str, Any]]:
    return [
        {
            "id": u.id,
            "email": u.email,
            "fname": u.fname,
            "lname": u.lname,
            "role": u.role,
            "permissions": ["institutions.edit"] if u.role == "admin" else [],
            "created_at": u.created_at,
            "last_login_at": u.last_login_at,
        }
        for u in users
    ]


def _membership_rows(users: list[_UserPlan], plans: list[_InstitutionPlan]) -> list[dict[str, Any]]:
    return [
        {
            "user_id": u.id,
            "institution_id": plans[index].id,
            "role": role,
            "cap_limit": None if cap is None else Decimal(cap),
            "created_at": max(u.created_at, plans[index].created_at) + timedelta(minutes=30),
        }
        for u in users
        for index, role, cap in u.memberships
    ]


def _wallet_rows(
    users: list[_UserPlan], wallets: list[_WalletPlan], books: list[_LedgerBook], now: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "user_id": u.id,
            "currency": "usd",
            "balance": _money(book.balance),
            "reserved": Decimal(0),
            "entry_count": len(book.rows),
            "auto_reload_enabled": w.auto_reload,
            "auto_reload_threshold": _money(w.threshold) if w.auto_reload else None,
            "auto_reload_amount": _money(w.reload_amount) if w.auto_reload else None,
            "updated_at": book.last_at or now,
        }
        for u, w, book in zip(users, wallets, books, strict=True)
    ]


def _bucket_rows(buckets: list[_BucketPlan]) -> list[dict[str, Any]]:
    return [
        {"id": b.id, "institution_id": b.institution_id, "created_at": b.created_at}
        for b in buckets
    ]


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------


def _resolve_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(UTC)


async def generate_demo(
    engine: AsyncEngine,
    spec: DemoSpec,
    progress: ProgressCallback | None = None,
    *,
    now: datetime | None = None,
) -> DemoSummary:
    """Append a demo data set to the database in one transaction and say what was written."""
    spec.validate()
    window = _Window.ending(_resolve_now(now), spec.days)
    report = progress or (lambda _phase, _done, _total: None)
    # Partitions first (PostgreSQL), in their own transaction: COPY then routes every event
    # straight to its month instead of the DEFAULT partition.
    await ensure_months(engine, window.months())
    async with engine.begin() as conn:
        summary = await _generate(conn, spec, window, report)
    await _analyze(engine)
    return summary


async def _analyze(engine: AsyncEngine) -> None:
    """Fresh planner statistics after a bulk load (PostgreSQL's autovacuum would get there
    later; the first queries should not run on estimates from an empty table)."""
    if engine.dialect.name != "postgresql":
        return
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE " + ", ".join(_BULK_LOADED_TABLES)))
        await conn.commit()


_BULK_LOADED_TABLES = (
    "users",
    "memberships",
    "usage_events",
    "usage_rollups_day",
    "usage_rollups_quarter_hour",
    "usage_totals",
    "ledger_entries",
    "wallets",
    "snapshots",
)


async def _generate(
    conn: AsyncConnection, spec: DemoSpec, window: _Window, report: ProgressCallback
) -> DemoSummary:
    """The phases in foreign-key order; every random draw happens in this fixed order."""
    rng = Random(spec.seed)
    tag = await _run_tag(conn, lambda: secrets.token_hex(2))
    first_user = await _reserve_ids(conn, User.__table__, spec.users)

    institutions = _plan_institutions(rng, spec.institutions, window)
    users = _plan_users(rng, spec, window, first_user)
    _plan_memberships(rng, users, len(institutions))
    _plan_instances(rng, users, institutions)
    _assign_emails(users, institutions, tag)

    report("institutions", 0, len(institutions))
    counts: dict[str, int] = {}
    counts["institutions"] = await _insert_core(
        conn, Institution.__table__, _institution_rows(institutions)
    )
    report("institutions", len(institutions), len(institutions))
    report("users", 0, len(users))
    counts["users"] = await _insert_core(conn, User.__table__, _user_rows(users))
    counts["memberships"] = await _insert_core(
        conn, Membership.__table__, _membership_rows(users, institutions)
    )
    counts["subscriptions"] = await _insert_core(
        conn, Subscription.__table__, _subscription_rows(rng, window, users)
    )
    report("users", len(users), len(users))

    counts.update(await _write_buckets(conn, rng, window, institutions, tag, report))
    counts["usage_events"], personal = await _write_usage(conn, rng, spec, window, users, report)
    counts.update(await _write_wallets(conn, rng, window, users, personal, report))

    return DemoSummary(
        institution_ids=[i.id for i in institutions],
        user_ids=[u.id for u in users],
        super_user_id=users[0].id,
        **counts,
    )


async def _write_buckets(
    conn: AsyncConnection,
    rng: Random,
    window: _Window,
    institutions: list[_InstitutionPlan],
    tag: str,
    report: ProgressCallback,
) -> dict[str, int]:
    """Buckets and their daily snapshots (small: Core inserts)."""
    buckets = await _unique_bucket_ids(conn, _plan_buckets(rng, institutions), tag)
    snapshots = [row for bucket in buckets for row in _snapshot_rows(rng, window, bucket)]
    report("snapshots", 0, len(snapshots))
    written = {
        "buckets": await _insert_core(conn, ClientBucket.__table__, _bucket_rows(buckets)),
        "snapshots": await _insert_core(conn, Snapshot.__table__, snapshots),
    }
    report("snapshots", len(snapshots), len(snapshots))
    return written


async def _write_usage(
    conn: AsyncConnection,
    rng: Random,
    spec: DemoSpec,
    window: _Window,
    users: list[_UserPlan],
    report: ProgressCallback,
) -> tuple[int, _PersonalUsage]:
    """Stream the events into the database; return their count and the personal sums."""
    first = await _reserve_ids(conn, UsageEvent.__table__, spec.events)
    personal = _PersonalUsage(window.day_count)
    rows = _usage_rows(rng, window, users, first, spec.events, personal)
    report("usage_events", 0, spec.events)
    await _bulk_insert(conn, _USAGE_TABLE, _reporting(rows, "usage_events", spec.events, report))
    report("usage_events", spec.events, spec.events)
    report("usage_rollups", 0, 1)
    await add_usage_from_events(conn, UsageEvent.id.between(first, first + spec.events - 1))
    report("usage_rollups", 1, 1)
    return spec.events, personal


async def _write_wallets(
    conn: AsyncConnection,
    rng: Random,
    window: _Window,
    users: list[_UserPlan],
    personal: _PersonalUsage,
    report: ProgressCallback,
) -> dict[str, int]:
    """The ledger, then every wallet with its balance equal to its last balance_after.

    One debit per day of personal usage, with top-ups first so no balance goes negative.
    """
    wallets = _plan_wallets(rng, users)
    books = _ledger_books(rng, window, users, wallets, personal)
    total = sum(len(book.rows) for book in books)
    first = await _reserve_ids(conn, LedgerEntry.__table__, total)
    rows = ((first + i, *row) for i, row in enumerate(r for b in books for r in b.rows))
    report("ledger_entries", 0, total)
    await _bulk_insert(conn, _LEDGER_TABLE, _reporting(rows, "ledger_entries", total, report))
    report("ledger_entries", total, total)
    wallet_count = await _insert_core(
        conn, Wallet.__table__, _wallet_rows(users, wallets, books, window.now)
    )
    report("wallets", wallet_count, wallet_count)
    return {"ledger_entries": total, "wallets": wallet_count}
