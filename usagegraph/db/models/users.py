"""Users: identified by an integer id, authenticated by JWT, authorised by role here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from usagegraph.db.models.base import Base, BigIntPK, utcnow
from usagegraph.db.types import UTCDateTime

USER_ROLES = ("user", "admin", "super")


class User(Base):
    """A person. Their role and permissions are read from here, never from a token."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    fname: Mapped[str | None] = mapped_column(String(200))
    lname: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="user")
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Emails are unique whatever their case.
        Index("uq_users_email_lower", func.lower(email), unique=True),
        CheckConstraint("role IN ('user', 'admin', 'super')", name="role_known"),
    )
