"""idempotency keys remember a digest of their event's payload

A replay with the same key and a different payload is refused (IDEMPOTENCY_KEY_REUSED)
instead of being answered as a duplicate of the first event. Keys claimed before this
revision have no digest; they keep the old rule (the instance must match) until they expire.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "usage_idempotency_keys", sa.Column("payload_digest", sa.String(64), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("usage_idempotency_keys", "payload_digest")
