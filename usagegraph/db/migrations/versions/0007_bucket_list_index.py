"""an institution's client buckets in the order of their list

An institution's `buckets` are read for every institution of a batch in one statement,
ordered by id within each institution. The index on institution_id alone found the rows but
not in that order, so each batch sorted them (SQLite: a temp b-tree over what it read);
(institution_id, id) serves the order exactly, and replaces the old index, whose every use it
covers.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_client_buckets_institution_bucket", "client_buckets", ["institution_id", "id"]
    )
    op.drop_index("ix_client_buckets_institution_id", table_name="client_buckets")


def downgrade() -> None:
    op.create_index("ix_client_buckets_institution_id", "client_buckets", ["institution_id"])
    op.drop_index("ix_client_buckets_institution_bucket", table_name="client_buckets")
