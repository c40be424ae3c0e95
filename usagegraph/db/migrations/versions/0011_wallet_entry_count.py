"""the number of entries in each wallet's ledger, kept on the wallet row

A ledger's `totalCount` counted the user's entries on every read: a nested read of 50
members with ~200 entries each walked 10,000 index entries for 50 numbers (0.5-0.9 ms of a
2.5 ms statement). The wallet row already holds what the ledger sums to (`balance`), kept by
the same writer under the same lock; it now holds how many entries there are too, so an
unfiltered total is read, not counted (docs/decisions.md, "The graph").

Existing wallets are counted once here. Entries of a user without a wallet row (which no
writer of usagegraph makes) are not counted: such a user reads as an empty wallet.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("wallets") as batch:
        batch.add_column(
            sa.Column("entry_count", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE wallets SET entry_count = (SELECT count(*) FROM ledger_entries "
        "WHERE ledger_entries.user_id = wallets.user_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("wallets") as batch:
        batch.drop_column("entry_count")
