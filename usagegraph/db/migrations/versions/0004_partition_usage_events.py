"""partition usage_events by month on PostgreSQL (SQLite keeps one table)

The table is rebuilt as a partitioned table with the same columns, constraints and indexes;
its primary key becomes (id, occurred_at), since a unique index on a partitioned table must
include the partition key (idempotency keys already live in their own table). Existing rows
are copied into one partition per month they occupy; a DEFAULT partition catches months that
have none yet. `usagegraph.db.partitions` creates the months ahead from then on.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "id, user_id, institution_id, occurred_at, credits, messages, endpoint, status, forgotten, "
    "created_at, over_cap"
)
OLD = "usage_events_unpartitioned"
INDEXES = {
    "ix_usage_events_institution_time": "institution_id, occurred_at",
    "ix_usage_events_user_time": "user_id, occurred_at",
}


def _create_partitioned() -> None:
    op.execute(
        """
        CREATE TABLE usage_events (
            id BIGINT NOT NULL DEFAULT nextval('usage_events_id_seq'),
            user_id BIGINT NOT NULL,
            institution_id VARCHAR(24),
            occurred_at TIMESTAMP WITH TIME ZONE NOT NULL,
            credits NUMERIC(20, 6) NOT NULL,
            messages INTEGER NOT NULL,
            endpoint VARCHAR(200),
            status VARCHAR(16) NOT NULL,
            forgotten BOOLEAN NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE NOT NULL,
            over_cap BOOLEAN DEFAULT false NOT NULL,
            CONSTRAINT pk_usage_events PRIMARY KEY (id, occurred_at),
            CONSTRAINT ck_usage_events_status_known CHECK (status IN ('success', 'failed')),
            CONSTRAINT ck_usage_events_messages_non_negative CHECK (messages >= 0),
            CONSTRAINT fk_usage_events_institution_id_institutions FOREIGN KEY (institution_id)
                REFERENCES institutions (id) ON DELETE CASCADE,
            CONSTRAINT fk_usage_events_user_id_users FOREIGN KEY (user_id)
                REFERENCES users (id) ON DELETE CASCADE
        ) PARTITION BY RANGE (occurred_at)
        """
    )
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON usage_events ({columns})")
    op.execute("CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT")


def _month_partitions_for_existing_rows() -> None:
    months = op.get_bind().execute(
        sa.text(
            f"SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM {OLD}"
        )
    )
    for (month,) in months:
        following = f"(DATE '{month.isoformat()}' + INTERVAL '1 month')"
        op.execute(
            f"CREATE TABLE usage_events_y{month.year:04d}m{month.month:02d} "
            f"PARTITION OF usage_events FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') "
            f"TO ((({following})::timestamp) AT TIME ZONE 'UTC')"
        )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE usage_events RENAME TO {OLD}")
    op.execute(f"ALTER INDEX pk_usage_events RENAME TO pk_{OLD}")
    for name in INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name.replace('usage_events', OLD)}")
    _create_partitioned()
    _month_partitions_for_existing_rows()
    op.execute(f"INSERT INTO usage_events ({COLUMNS}) SELECT {COLUMNS} FROM {OLD}")
    op.execute("ALTER SEQUENCE usage_events_id_seq OWNED BY usage_events.id")
    op.execute(f"DROP TABLE {OLD}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE usage_events RENAME TO {OLD}")
    op.execute(f"ALTER INDEX pk_usage_events RENAME TO pk_{OLD}")
    for name in INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name.replace('usage_events', OLD)}")
    op.execute(f"CREATE TABLE usage_events (LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    op.execute("ALTER TABLE usage_events ADD CONSTRAINT pk_usage_events PRIMARY KEY (id)")
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON usage_events ({columns})")
    op.execute(
        "ALTER TABLE usage_events ADD CONSTRAINT fk_usage_events_institution_id_institutions "
        "FOREIGN KEY (institution_id) REFERENCES institutions (id) ON DELETE CASCADE"
    )
    op.execute(
        "ALTER TABLE usage_events ADD CONSTRAINT fk_usage_events_user_id_users "
        "FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE"
    )
    op.execute(f"INSERT INTO usage_events ({COLUMNS}) SELECT {COLUMNS} FROM {OLD}")
    op.execute("ALTER SEQUENCE usage_events_id_seq OWNED BY usage_events.id")
    op.execute(f"DROP TABLE {OLD} CASCADE")
