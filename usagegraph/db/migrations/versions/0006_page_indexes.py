"""indexes in the order of each per-parent page

A connection's page per parent (`datasources.pages`) stops after its rows only when an index
led by the parent serves its order. Two did not:
- a user's usage events, newest first with ties broken by id: (user_id, occurred_at) left
  PostgreSQL to sort every event of the same instant; (user_id, occurred_at, id), read
  backwards, serves the order exactly. It replaces the old index, whose every use it covers.
  On the partitioned PostgreSQL table the index is created on the parent and so on every
  month's partition (and on those created later).
- an institution's members by user id: the index on institution_id alone made each page sort
  the institution's members; (institution_id, user_id) replaces it.
Ledger entries (user_id, created_at, id) and snapshots (bucket_id, snapshot_date) already
had theirs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_usage_events_user_time_id", "usage_events", ["user_id", "occurred_at", "id"]
    )
    op.drop_index("ix_usage_events_user_time", table_name="usage_events")
    op.create_index("ix_memberships_institution_user", "memberships", ["institution_id", "user_id"])
    op.drop_index("ix_memberships_institution_id", table_name="memberships")


def downgrade() -> None:
    op.create_index("ix_memberships_institution_id", "memberships", ["institution_id"])
    op.drop_index("ix_memberships_institution_user", table_name="memberships")
    op.create_index("ix_usage_events_user_time", "usage_events", ["user_id", "occurred_at"])
    op.drop_index("ix_usage_events_user_time_id", table_name="usage_events")
