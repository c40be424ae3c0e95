"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Spelled out rather than imported from the models, so this file keeps its meaning when the
# models change: money is NUMERIC on PostgreSQL and integer micro-units on SQLite.
MONEY = sa.Numeric(20, 6).with_variant(sa.BigInteger(), "sqlite")
UTC_TIMESTAMP = sa.DateTime(timezone=True)
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "institutions",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("ai_name", sa.String(length=200), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("plan_limit", sa.Integer(), nullable=True),
        sa.Column("default_cap", MONEY, nullable=True),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "plan_limit IS NULL OR plan_limit >= 0",
            name=op.f("ck_institutions_plan_limit_non_negative"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_institutions")),
    )
    op.create_table(
        "users",
        sa.Column(
            "id",
            BIGINT_ID,
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("fname", sa.String(length=200), nullable=True),
        sa.Column("lname", sa.String(length=200), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("last_login_at", UTC_TIMESTAMP, nullable=True),
        sa.CheckConstraint("role IN ('user', 'admin', 'super')", name=op.f("ck_users_role_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index(
        "uq_users_email_lower", "users", [sa.literal_column("lower(email)")], unique=True
    )
    op.create_table(
        "api_keys",
        sa.Column(
            "id",
            BIGINT_ID,
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("institution_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("display_prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("revoked_at", UTC_TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_api_keys_institution_id_institutions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(
        op.f("ix_api_keys_institution_id"), "api_keys", ["institution_id"], unique=False
    )
    op.create_table(
        "client_buckets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=24), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_client_buckets_institution_id_institutions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_buckets")),
    )
    op.create_index(
        op.f("ix_client_buckets_institution_id"), "client_buckets", ["institution_id"], unique=False
    )
    op.create_table(
        "ledger_entries",
        sa.Column(
            "id",
            BIGINT_ID,
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", BIGINT_ID, nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("balance_after", MONEY, nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "type IN ('credit', 'debit', 'adjustment')", name=op.f("ck_ledger_entries_type_known")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_ledger_entries_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index(
        "ix_ledger_entries_user_time",
        "ledger_entries",
        ["user_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "memberships",
        sa.Column("user_id", BIGINT_ID, nullable=False),
        sa.Column("institution_id", sa.String(length=24), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("cap_limit", MONEY, nullable=True),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.CheckConstraint("role IN ('user', 'admin')", name=op.f("ck_memberships_role_known")),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_memberships_institution_id_institutions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_memberships_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "institution_id", name=op.f("pk_memberships")),
    )
    op.create_index(
        op.f("ix_memberships_institution_id"), "memberships", ["institution_id"], unique=False
    )
    op.create_table(
        "subscriptions",
        sa.Column("user_id", BIGINT_ID, nullable=False),
        sa.Column("plan", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("current_period_start", UTC_TIMESTAMP, nullable=True),
        sa.Column("current_period_end", UTC_TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_subscriptions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_subscriptions")),
    )
    op.create_table(
        "usage_events",
        sa.Column(
            "id",
            BIGINT_ID,
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", BIGINT_ID, nullable=False),
        sa.Column("institution_id", sa.String(length=24), nullable=True),
        sa.Column("occurred_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("credits", MONEY, nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("forgotten", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "status IN ('success', 'failed')", name=op.f("ck_usage_events_status_known")
        ),
        sa.CheckConstraint("messages >= 0", name=op.f("ck_usage_events_messages_non_negative")),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_usage_events_institution_id_institutions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_usage_events_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_events")),
    )
    op.create_index(
        "ix_usage_events_institution_time",
        "usage_events",
        ["institution_id", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "ix_usage_events_user_time", "usage_events", ["user_id", "occurred_at"], unique=False
    )
    op.create_table(
        "usage_idempotency_keys",
        sa.Column("user_id", BIGINT_ID, nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("usage_event_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_usage_idempotency_keys_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_usage_idempotency_keys")),
    )
    op.create_table(
        "wallets",
        sa.Column("user_id", BIGINT_ID, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance", MONEY, nullable=False),
        sa.Column("reserved", MONEY, nullable=False),
        sa.Column("auto_reload_enabled", sa.Boolean(), nullable=False),
        sa.Column("auto_reload_threshold", MONEY, nullable=True),
        sa.Column("auto_reload_amount", MONEY, nullable=True),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_wallets_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_wallets")),
    )
    op.create_table(
        "snapshots",
        sa.Column("bucket_id", sa.String(length=64), nullable=False),
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("records", sa.JSON(), nullable=False),
        sa.Column("object_count", sa.BigInteger(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("by_prefix", sa.JSON(), nullable=False),
        sa.Column("computed_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["bucket_id"],
            ["client_buckets.id"],
            name=op.f("fk_snapshots_bucket_id_client_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bucket_id", "snapshot_date", name=op.f("pk_snapshots")),
    )


def downgrade() -> None:
    op.drop_table("snapshots")
    op.drop_table("wallets")
    op.drop_table("usage_idempotency_keys")
    op.drop_index("ix_usage_events_user_time", table_name="usage_events")
    op.drop_index("ix_usage_events_institution_time", table_name="usage_events")
    op.drop_table("usage_events")
    op.drop_table("subscriptions")
    op.drop_index(op.f("ix_memberships_institution_id"), table_name="memberships")
    op.drop_table("memberships")
    op.drop_index("ix_ledger_entries_user_time", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index(op.f("ix_client_buckets_institution_id"), table_name="client_buckets")
    op.drop_table("client_buckets")
    op.drop_index(op.f("ix_api_keys_institution_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_index("uq_users_email_lower", table_name="users")
    op.drop_table("users")
    op.drop_table("institutions")
