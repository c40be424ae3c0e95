"""Institutions (tenants, "instances") and the memberships that tie users to them."""

from __future__ import annotations

import os
import time
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from usagegraph.db.models.base import Base, utcnow
from usagegraph.db.types import Money, UTCDateTime

INSTITUTION_ROLES = ("user", "admin")


def new_institution_id() -> str:
    """A MongoDB-ObjectId-style id: 4 bytes of seconds, then 8 random bytes, as 24 hex."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{os.urandom(8).hex()}"


class Institution(Base):
    """A tenant. Usage in it counts against member caps and its monthly plan limit."""

    __tablename__ = "institutions"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_institution_id)
    name: Mapped[str] = mapped_column(String(200))
    ai_name: Mapped[str | None] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    # Messages per calendar month; None means unlimited (no overage).
    plan_limit: Mapped[int | None] = mapped_column(Integer)
    # Credits each member may spend here unless their membership overrides it; None = no cap.
    default_cap: Mapped[Decimal | None] = mapped_column(Money)
    # True: usage that would take a member past their cap is refused (CAP_REACHED);
    # False: it is recorded and flagged `over_cap`.
    enforce_caps: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("plan_limit IS NULL OR plan_limit >= 0", name="plan_limit_non_negative"),
    )


class Membership(Base):
    """A user's place in an institution: their role there and their credit cap."""

    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    institution_id: Mapped[str] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), default="user")
    # Overrides the institution's default_cap when set.
    cap_limit: Mapped[Decimal | None] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("role IN ('user', 'admin')", name="role_known"),
        # An institution's members by user id: the order of its members page (migration 0006).
        Index("ix_memberships_institution_user", "institution_id", "user_id"),
    )
