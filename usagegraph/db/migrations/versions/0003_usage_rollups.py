"""usage rollups: per quarter hour, hour, UTC day, UTC day and endpoint; lifetime totals

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Spelled out rather than imported from the models, so this file keeps its meaning when the
# models change.
MONEY = sa.Numeric(20, 6).with_variant(sa.BigInteger(), "sqlite")
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SLOT_TABLES = {
    "usage_rollups_quarter_hour": 900,
    "usage_rollups_hour": 3600,
    "usage_rollups_day": 86_400,
}
MEASURES = "credits, messages, events, failed_events"
SUMS = "sum(credits), sum(messages), count(*), sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END)"

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _owner_columns() -> list[sa.Column]:
    return [
        sa.Column("user_id", BIGINT_ID, nullable=False),
        sa.Column("instance", sa.String(length=24), nullable=False),
        sa.Column("institution_id", sa.String(length=24), nullable=True),
    ]


def _measure_columns() -> list[sa.Column]:
    return [
        sa.Column("credits", MONEY, nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("failed_events", sa.BigInteger(), nullable=False),
    ]


def _foreign_keys(table: str) -> list[sa.ForeignKeyConstraint]:
    return [
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f(f"fk_{table}_institution_id_institutions"),
            ondelete="CASCADE",
        ),
    ]


def _slot_start(seconds: int) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"CAST(floor(extract(epoch FROM occurred_at) / {seconds}) AS BIGINT) * {seconds}"
    return f"CAST(strftime('%s', occurred_at) AS INTEGER) / {seconds} * {seconds}"


OWNER = "user_id, COALESCE(institution_id, 'personal'), institution_id"
OWNER_COLUMNS = "user_id, instance, institution_id"


def _backfill(table: str, columns: str, keys: str) -> None:
    op.execute(
        f"INSERT INTO {table} ({columns}, {MEASURES}) "
        f"SELECT {keys}, {SUMS} FROM usage_events GROUP BY {keys}"
    )


def upgrade() -> None:
    for table, seconds in SLOT_TABLES.items():
        op.create_table(
            table,
            sa.Column("slot_start", sa.BigInteger(), nullable=False),
            sa.Column("forgotten", sa.Boolean(), nullable=False),
            *_owner_columns(),
            *_measure_columns(),
            *_foreign_keys(table),
            sa.PrimaryKeyConstraint(
                "user_id", "instance", "slot_start", "forgotten", name=op.f(f"pk_{table}")
            ),
        )
        op.create_index(
            f"ix_{table}_institution_slot", table, ["institution_id", "slot_start"], unique=False
        )
        op.create_index(f"ix_{table}_slot_start", table, ["slot_start"], unique=False)
        _backfill(
            table,
            f"slot_start, forgotten, {OWNER_COLUMNS}",
            f"{_slot_start(seconds)}, forgotten, {OWNER}",
        )
    op.create_table(
        "usage_rollups_day_endpoint",
        sa.Column("slot_start", sa.BigInteger(), nullable=False),
        sa.Column("endpoint_given", sa.Boolean(), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        *_owner_columns(),
        *_measure_columns(),
        *_foreign_keys("usage_rollups_day_endpoint"),
        sa.PrimaryKeyConstraint(
            "user_id",
            "instance",
            "slot_start",
            "endpoint_given",
            "endpoint",
            name=op.f("pk_usage_rollups_day_endpoint"),
        ),
    )
    _backfill(
        "usage_rollups_day_endpoint",
        f"slot_start, endpoint_given, endpoint, {OWNER_COLUMNS}",
        f"{_slot_start(86_400)}, endpoint IS NOT NULL, COALESCE(endpoint, ''), {OWNER}",
    )
    op.create_table(
        "usage_totals",
        *_owner_columns(),
        *_measure_columns(),
        *_foreign_keys("usage_totals"),
        sa.PrimaryKeyConstraint("user_id", "instance", name=op.f("pk_usage_totals")),
    )
    _backfill("usage_totals", OWNER_COLUMNS, OWNER)


def downgrade() -> None:
    op.drop_table("usage_totals")
    op.drop_table("usage_rollups_day_endpoint")
    for table in SLOT_TABLES:
        op.drop_index(f"ix_{table}_slot_start", table_name=table)
        op.drop_index(f"ix_{table}_institution_slot", table_name=table)
        op.drop_table(table)
