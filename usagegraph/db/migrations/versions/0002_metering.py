"""metering: cap enforcement per institution, over-cap flag on usage, credit reservations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Spelled out rather than imported from the models, so this file keeps its meaning when the
# models change: money is NUMERIC on PostgreSQL and integer micro-units on SQLite.
MONEY = sa.Numeric(20, 6).with_variant(sa.BigInteger(), "sqlite")
UTC_TIMESTAMP = sa.DateTime(timezone=True)
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing rows get `false`: institutions keep recording over-cap usage (flagged), and
    # no usage recorded before this revision is marked over its cap. Adding a NOT NULL column
    # with a constant default is a plain ALTER TABLE on both backends (SQLite included), so no
    # batch rebuild (which would reflect the tables) is needed here.
    op.add_column(
        "institutions",
        sa.Column("enforce_caps", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        "usage_events",
        sa.Column("over_cap", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_table(
        "reservations",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("user_id", BIGINT_ID, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("captured_amount", MONEY, nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("settled_at", UTC_TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "status IN ('held', 'captured', 'released')",
            name=op.f("ck_reservations_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_reservations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
    )
    op.create_index(op.f("ix_reservations_user_id"), "reservations", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_reservations_user_id"), table_name="reservations")
    op.drop_table("reservations")
    # SQLite drops columns by rebuilding the table (batch mode); reflecting it warns about the
    # expression index on users, which the rebuild does not touch.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection")
        with op.batch_alter_table("usage_events") as batch:
            batch.drop_column("over_cap")
        with op.batch_alter_table("institutions") as batch:
            batch.drop_column("enforce_caps")
