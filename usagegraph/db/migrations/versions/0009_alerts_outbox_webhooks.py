"""alerts, the outbox and webhooks (issue 18)

Alert rules and their per-subject state (the row a crossing updates, so it fires once), the
alerts raised, the outbox of events written in the transaction of each change, webhook
endpoints and their deliveries, the leases that elect one deliverer among all workers, and
an optional expiry of reservations.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from the models (see 0002).
MONEY = sa.Numeric(20, 6).with_variant(sa.BigInteger(), "sqlite")
UTC_TIMESTAMP = sa.DateTime(timezone=True)
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("reservations", sa.Column("expires_at", UTC_TIMESTAMP, nullable=True))
    op.create_index(
        "ix_reservations_status_expires_at", "reservations", ["status", "expires_at"], unique=False
    )
    op.create_table(
        "worker_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_leases")),
    )
    op.create_table(
        "alert_rules",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("institution_id", sa.String(length=24), nullable=True),
        sa.Column("user_id", BIGINT_ID, nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("threshold", MONEY, nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "kind IN ('member_cap_percent', 'institution_period_usage', 'wallet_low_balance', "
            "'auto_reload', 'reservation_expired')",
            name=op.f("ck_alert_rules_kind_known"),
        ),
        sa.CheckConstraint(
            "(institution_id IS NULL) <> (user_id IS NULL)", name=op.f("ck_alert_rules_one_owner")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_alert_rules_institution_id_institutions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_alert_rules_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
    )
    op.create_index(
        op.f("ix_alert_rules_institution_id"), "alert_rules", ["institution_id"], unique=False
    )
    op.create_index(op.f("ix_alert_rules_user_id"), "alert_rules", ["user_id"], unique=False)
    op.create_table(
        "outbox_events",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=24), nullable=True),
        sa.Column("user_id", BIGINT_ID, nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_outbox_events_institution_id_institutions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_outbox_events_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_events_event_id")),
    )
    op.create_index(
        "ix_outbox_events_institution_id_id",
        "outbox_events",
        ["institution_id", "id"],
        unique=False,
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("institution_id", sa.String(length=24), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failing_since", UTC_TIMESTAMP, nullable=True),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_webhook_endpoints_institution_id_institutions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(
        op.f("ix_webhook_endpoints_institution_id"),
        "webhook_endpoints",
        ["institution_id"],
        unique=False,
    )
    op.create_table(
        "alert_states",
        sa.Column("rule_id", BIGINT_ID, nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("fired", sa.Boolean(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=True),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rules.id"],
            name=op.f("fk_alert_states_rule_id_alert_rules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rule_id", "subject", name=op.f("pk_alert_states")),
    )
    op.create_table(
        "alerts",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("rule_id", BIGINT_ID, nullable=False),
        sa.Column("institution_id", sa.String(length=24), nullable=True),
        sa.Column("user_id", BIGINT_ID, nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("subject_user_id", sa.BigInteger(), nullable=True),
        sa.Column("value", MONEY, nullable=True),
        sa.Column("threshold", MONEY, nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("raised_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_alerts_institution_id_institutions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rules.id"],
            name=op.f("fk_alerts_rule_id_alert_rules"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_alerts_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_institution_id_id", "alerts", ["institution_id", "id"], unique=False)
    op.create_index(op.f("ix_alerts_rule_id"), "alerts", ["rule_id"], unique=False)
    op.create_index("ix_alerts_user_id_id", "alerts", ["user_id", "id"], unique=False)
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("endpoint_id", BIGINT_ID, nullable=False),
        sa.Column("outbox_event_id", BIGINT_ID, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("last_attempt_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("delivered_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["outbox_event_id"],
            ["outbox_events.id"],
            name=op.f("fk_webhook_deliveries_outbox_event_id_outbox_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "endpoint_id",
            "outbox_event_id",
            name=op.f("uq_webhook_deliveries_endpoint_id_outbox_event_id"),
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_id",
        "webhook_deliveries",
        ["endpoint_id", "id"],
        unique=False,
    )
    op.create_index(
        "ix_webhook_deliveries_status_next_attempt_at",
        "webhook_deliveries",
        ["status", "next_attempt_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_status_next_attempt_at", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_endpoint_id_id", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_alerts_user_id_id", table_name="alerts")
    op.drop_index(op.f("ix_alerts_rule_id"), table_name="alerts")
    op.drop_index("ix_alerts_institution_id_id", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_states")
    op.drop_index(op.f("ix_webhook_endpoints_institution_id"), table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
    op.drop_index("ix_outbox_events_institution_id_id", table_name="outbox_events")
    op.drop_table("outbox_events")
    op.drop_index(op.f("ix_alert_rules_user_id"), table_name="alert_rules")
    op.drop_index(op.f("ix_alert_rules_institution_id"), table_name="alert_rules")
    op.drop_table("alert_rules")
    op.drop_table("worker_leases")
    op.drop_index("ix_reservations_status_expires_at", table_name="reservations")
    with op.batch_alter_table("reservations") as batch:
        batch.drop_column("expires_at")
