"""The bench's data sets: PostgreSQL databases filled by `usagegraph demo`, kept for reuse.

Generating 10M events takes minutes, so a data set lives in a database named after its size
(`usagegraph_bench_<events>`) whose COMMENT holds a marker: the demo spec it was generated
with, the schema it was migrated to (revision and a digest of the migration files) and when.
A later run reuses it while all three still fit; otherwise (or with `--rebuild`) it is
dropped and generated again. A schema change forces a rebuild because derived tables (e.g.
rollups) may only be filled by the generator. Demo history ends at generation time, so a
data set also goes stale: after `max_age` days its recent windows (the last 7 or 30 days the
reports ask for) are missing their newest days.

`pick_actors` then finds the callers every scenario needs in whatever the generator made.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, make_url

from bench.server import run_cli
from usagegraph.db.schema_version import MIGRATIONS_DIR, alembic_config

ADMIN_URL = os.environ.get(
    "USAGEGRAPH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MARKER_VERSION = 1
# Busiest plain members the member scenarios rotate over.
ROTATION = 8


@dataclass(frozen=True, slots=True)
class DemoShape:
    """`usagegraph demo` arguments. Only events vary: 10x the events is 10x denser history."""

    events: int
    users: int = 200
    institutions: int = 5
    days: int = 180
    seed: int = 42

    def cli_args(self) -> list[str]:
        return [
            "demo",
            f"--events={self.events}",
            f"--users={self.users}",
            f"--institutions={self.institutions}",
            f"--days={self.days}",
            f"--seed={self.seed}",
        ]


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    url: URL  # postgresql+asyncpg://..., what usagegraph is given
    shape: DemoShape
    revision: str
    generated_at: datetime
    reused: bool
    build_seconds: float | None  # None when reused

    @property
    def plain_url(self) -> str:
        """The same database as asyncpg wants it (postgresql://)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)


def database_name(events: int) -> str:
    return f"usagegraph_bench_{events}"


def database_url(name: str) -> URL:
    return make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)


def schema_revision() -> str:
    """The head revision plus a digest of every migration file: a migration edited in place
    (while it is still being written) changes the schema without changing its revision id."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("usagegraph ships no migrations")
    digest = hashlib.sha256()
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{head}-{digest.hexdigest()[:12]}"


async def admin_execute(sql: str, *args: object) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(sql, *args)
    finally:
        await connection.close()


async def _marker(name: str) -> dict[str, object] | None:
    """The marker of database `name`; {} when it exists without one, None when it does not."""
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        row = await connection.fetchrow(
            "SELECT shobj_description(oid, 'pg_database') AS comment "
            "FROM pg_database WHERE datname = $1",
            name,
        )
    finally:
        await connection.close()
    if row is None:
        return None
    try:
        marker = json.loads(row["comment"] or "{}")
    except json.JSONDecodeError:
        return {}
    return marker if isinstance(marker, dict) else {}


def _expected_marker(shape: DemoShape, revision: str) -> dict[str, object]:
    return {"bench": MARKER_VERSION, "revision": revision, **asdict(shape)}


def _stale_reason(
    marker: dict[str, object] | None, expected: dict[str, object], max_age: timedelta
) -> str | None:
    """Why the existing database cannot be reused, or None when it can."""
    if marker is None:
        return "no such database"
    if not marker:
        return "it exists without a bench marker"
    differing = sorted(k for k, v in expected.items() if marker.get(k) != v)
    if differing:
        return "marker differs in " + ", ".join(differing)
    generated = datetime.fromisoformat(str(marker.get("generated_at")))
    if datetime.now(UTC) - generated > max_age:
        days = max_age / timedelta(days=1)
        return f"generated {generated:%Y-%m-%d %H:%M} UTC, more than {days:g} days ago"
    return None


async def drop_database(name: str) -> None:
    await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _vacuum_analyze(url: str) -> None:
    """What autovacuum would do soon after a bulk load; without it plans are guesses."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("VACUUM (ANALYZE)")
    finally:
        await connection.close()


async def _build(name: str, shape: DemoShape, revision: str, data_dir: Path) -> float:
    """Create, migrate and fill the database with the CLI; the seconds it took."""
    started = time.perf_counter()
    await drop_database(name)
    await admin_execute(f'CREATE DATABASE "{name}"')
    url = database_url(name)
    run_cli(["migrate"], url, data_dir)
    print(f"  usagegraph {' '.join(shape.cli_args())}", flush=True)
    run_cli(shape.cli_args(), url, data_dir, show_output=True)
    await _vacuum_analyze(url.set(drivername="postgresql").render_as_string(hide_password=False))
    return time.perf_counter() - started


async def ensure_dataset(
    shape: DemoShape,
    data_dir: Path,
    *,
    rebuild: bool,
    max_age: timedelta,
    name: str | None = None,
) -> Dataset:
    """The data set of this shape: reused when its marker fits, else (re)generated.

    `name` overrides `usagegraph_bench_<events>`: a bench that must not share its database
    with concurrent runs of other checkouts (whose schema revision may differ, so they would
    drop and rebuild it under its feet) keeps its own.
    """
    name = name or database_name(shape.events)
    revision = schema_revision()
    expected = _expected_marker(shape, revision)
    marker = await _marker(name)
    reason = "--rebuild" if rebuild else _stale_reason(marker, expected, max_age)
    if reason is None and marker is not None:
        print(f"data set {name}: reusing ({shape.events:,} events)", flush=True)
        run_cli(["migrate"], database_url(name), data_dir)  # a no-op; proves the schema is current
        return Dataset(
            name=name,
            url=database_url(name),
            shape=shape,
            revision=revision,
            generated_at=datetime.fromisoformat(str(marker["generated_at"])),
            reused=True,
            build_seconds=None,
        )
    print(f"data set {name}: generating {shape.events:,} events ({reason})", flush=True)
    generated_at = datetime.now(UTC)
    seconds = await _build(name, shape, revision, data_dir)
    comment = json.dumps({**expected, "generated_at": generated_at.isoformat()})
    await admin_execute(f'COMMENT ON DATABASE "{name}" IS $marker${comment}$marker$')
    print(f"data set {name}: ready in {seconds:.1f} s", flush=True)
    return Dataset(
        name=name,
        url=database_url(name),
        shape=shape,
        revision=revision,
        generated_at=generated_at,
        reused=False,
        build_seconds=seconds,
    )


async def clone_dataset(dataset: Dataset, suffix: str) -> str:
    """A throwaway copy of the data set (for writes that must not change it); its name.

    CREATE DATABASE ... TEMPLATE copies files, which is much faster than generating again,
    and needs nobody connected to the data set at the time.
    """
    name = f"{dataset.name}_{suffix}"
    await drop_database(name)
    await admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{dataset.name}"')
    return name


# ---- who calls --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """A plain user and the instance (`personal` or an institution id) they use most."""

    user_id: int
    instance: str
    events_30d: int


@dataclass(frozen=True, slots=True)
class Actors:
    """Real ids from the data set, one per kind of caller the scenarios need."""

    super_user: int
    institution: str  # the institution with the most members
    institution_members: int
    admin: int | None  # an admin (role admin, institutions.edit) of `institution`
    members: tuple[Member, ...]  # the busiest plain users of the last 30 days
    writers: tuple[int, ...]  # plain members of `institution`: ingestion writes for them
    bucket: str | None  # the bucket of `institution` with the most snapshots
    bucket_snapshots: int


_BUSIEST_MEMBERS = """
SELECT e.user_id, coalesce(e.institution_id, 'personal') AS instance, count(*) AS events
FROM usage_events e JOIN users u ON u.id = e.user_id
WHERE u.role = 'user' AND e.occurred_at >= $1 AND NOT e.forgotten
  AND (e.institution_id IS NULL OR EXISTS (
       SELECT 1 FROM memberships m
       WHERE m.user_id = e.user_id AND m.institution_id = e.institution_id))
GROUP BY 1, 2 ORDER BY events DESC, 1 LIMIT $2
"""
_LARGEST_INSTITUTION = """
SELECT institution_id, count(*) AS members FROM memberships
GROUP BY institution_id ORDER BY members DESC, institution_id LIMIT 1
"""
_ADMIN_OF = """
SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id
WHERE m.institution_id = $1 AND m.role = 'admin' AND u.role = 'admin'
  AND u.permissions::text LIKE '%institutions.edit%'
ORDER BY m.user_id LIMIT 1
"""
_PLAIN_MEMBERS_OF = """
SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id
WHERE m.institution_id = $1 AND u.role = 'user' ORDER BY m.user_id
"""
_BUSIEST_BUCKET = """
SELECT b.id, count(s.bucket_id) AS snapshots
FROM client_buckets b LEFT JOIN snapshots s ON s.bucket_id = b.id
WHERE b.institution_id = $1 GROUP BY b.id ORDER BY snapshots DESC, b.id LIMIT 1
"""


async def pick_actors(dataset: Dataset) -> Actors:
    connection = await asyncpg.connect(dataset.plain_url)
    try:
        super_user = await connection.fetchval(
            "SELECT id FROM users WHERE role = 'super' ORDER BY id LIMIT 1"
        )
        largest = await connection.fetchrow(_LARGEST_INSTITUTION)
        if super_user is None or largest is None:
            raise RuntimeError(f"{dataset.name} has no super user or no memberships")
        institution = largest["institution_id"]
        since = datetime.now(UTC) - timedelta(days=30)
        busiest = await connection.fetch(_BUSIEST_MEMBERS, since, ROTATION)
        bucket = await connection.fetchrow(_BUSIEST_BUCKET, institution)
        return Actors(
            super_user=super_user,
            institution=institution,
            institution_members=largest["members"],
            admin=await connection.fetchval(_ADMIN_OF, institution),
            members=tuple(Member(r["user_id"], r["instance"], r["events"]) for r in busiest),
            writers=tuple(
                r["user_id"] for r in await connection.fetch(_PLAIN_MEMBERS_OF, institution)
            ),
            bucket=bucket["id"] if bucket else None,
            bucket_snapshots=bucket["snapshots"] if bucket else 0,
        )
    finally:
        await connection.close()


async def active_queries(dataset: Dataset) -> int:
    """Statements running in the data set's database right now (other than this check)."""
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                "AND state = 'active' AND pid <> pg_backend_pid()",
                dataset.name,
            )
        )
    finally:
        await connection.close()


async def server_version() -> str:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


async def table_sizes(dataset: Dataset) -> dict[str, int]:
    """Rows per table (estimates from the statistics), to say what a data set holds."""
    connection = await asyncpg.connect(dataset.plain_url)
    try:
        rows = await connection.fetch(
            "SELECT relname, n_live_tup FROM pg_stat_user_tables ORDER BY relname"
        )
    finally:
        await connection.close()
    return {r["relname"]: int(r["n_live_tup"]) for r in rows}
