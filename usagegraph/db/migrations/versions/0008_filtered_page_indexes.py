"""indexes in the order of the filtered per-parent pages

A user's `usageEvents(instanceId: ...)` and `ledger(type: ...)` are pages of one instance's
events, or one type's entries, in the list's order. The indexes of migration 0006 serve the
order but not the filter, so such a page walked the user's rows of every other instance (or
type) before finding its own: 50,000 personal events read to return three of an
institution's. The filter's column between the parent and the order serves both; a page
without the filter keeps its index.
- (user_id, institution_id, occurred_at, id) on usage_events; on the partitioned PostgreSQL
  table it is created on the parent and so on every month's partition (and on those created
  later). A personal page (`institution_id IS NULL`) is served by it too.
- (user_id, type, created_at, id) on ledger_entries.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_usage_events_user_instance_time_id",
        "usage_events",
        ["user_id", "institution_id", "occurred_at", "id"],
    )
    op.create_index(
        "ix_ledger_entries_user_type_time",
        "ledger_entries",
        ["user_id", "type", "created_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_entries_user_type_time", table_name="ledger_entries")
    op.drop_index("ix_usage_events_user_instance_time_id", table_name="usage_events")
