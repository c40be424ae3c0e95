"""API keys: an institution's credential, stored only as a SHA-256 hash."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from usagegraph.db.models.base import Base, BigIntPK, utcnow
from usagegraph.db.types import UTCDateTime


class ApiKey(Base):
    """A key that acts for one institution. The key itself is never stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    institution_id: Mapped[str] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    # SHA-256 of the whole key, hex. Keys are random, so a fast hash is the right one.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, so a person can tell keys apart in a list.
    display_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
