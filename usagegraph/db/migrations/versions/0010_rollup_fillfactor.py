"""room on each page of the rollups for their rows' next versions (PostgreSQL)

Every usage write adds to the rows of its (user, instance, slot) in five tables: the three
slot rollups, the day-by-endpoint rollup and the lifetime totals. An UPDATE in PostgreSQL
writes a new version of the row; when the row's page has room for it and no indexed column
changed (only the sums change), the new version stays on the page and no index is touched
(a heap-only tuple). With the default fillfactor of 100 the pages are full, so every
increment moved the row to another page and inserted it again into each of the table's
indexes: in a batch of 1,000 events of 1,000 members, 15-19 ms per table; with 30 % of each
page kept free, 5-7 ms (EXPLAIN ANALYZE, docs/decisions.md "Ingestion throughput").

The setting applies to pages written from now on; existing full pages are left as they are
(rewriting them would lock the tables) and stop mattering as the current slots move on.
SQLite has no such setting and is left alone.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLLUP_TABLES = (
    "usage_rollups_day",
    "usage_rollups_hour",
    "usage_rollups_quarter_hour",
    "usage_rollups_day_endpoint",
    "usage_totals",
)
FILLFACTOR = 70


def _set(fillfactor: int | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ROLLUP_TABLES:
        if fillfactor is None:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
        else:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {fillfactor})")


def upgrade() -> None:
    _set(FILLFACTOR)


def downgrade() -> None:
    _set(None)
