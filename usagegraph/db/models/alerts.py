"""Alert rules, their per-subject firing state, and the alerts they raised."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from usagegraph.db.models.base import Base, BigIntPK, utcnow
from usagegraph.db.types import Money, UTCDateTime

ALERT_KINDS = (
    "member_cap_percent",
    "institution_period_usage",
    "wallet_low_balance",
    "auto_reload",
    "reservation_expired",
)


class AlertRule(Base):
    """A line to watch: an institution's (its admins manage it) or a user's own wallet's.

    Exactly one of institution_id and user_id is set: that is whose the rule is, and who may
    read and change it.
    """

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    institution_id: Mapped[str | None] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    # A percentage (member_cap_percent) or an amount of credits; null for event-like kinds.
    threshold: Mapped[Decimal | None] = mapped_column(Money)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("(institution_id IS NULL) <> (user_id IS NULL)", name="one_owner"),
        CheckConstraint(
            "kind IN ('member_cap_percent', 'institution_period_usage', 'wallet_low_balance', "
            "'auto_reload', 'reservation_expired')",
            name="kind_known",
        ),
    )


class AlertState(Base):
    """Whether a rule has fired for one subject (a member, the institution, a wallet) and is
    waiting to re-arm; `period` is the billing month it fired in, for period-bound kinds.

    The row is the lock that makes a crossing fire once: it is updated in the transaction of
    the write that crossed the line.
    """

    __tablename__ = "alert_states"

    rule_id: Mapped[int] = mapped_column(
        ForeignKey("alert_rules.id", ondelete="CASCADE"), primary_key=True
    )
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    fired: Mapped[bool] = mapped_column(Boolean, default=False)
    period: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Alert(Base):
    """One firing of a rule; its outbox event (`event_id`) carries it to webhooks."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(
        ForeignKey("alert_rules.id", ondelete="CASCADE"), index=True
    )
    institution_id: Mapped[str | None] = mapped_column(
        ForeignKey("institutions.id", ondelete="CASCADE")
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(64))
    # The member whose usage crossed (member_cap_percent), else the wallet owner or null.
    subject_user_id: Mapped[int | None] = mapped_column(BigInteger)
    value: Mapped[Decimal | None] = mapped_column(Money)
    threshold: Mapped[Decimal | None] = mapped_column(Money)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    event_id: Mapped[str] = mapped_column(String(64))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_alerts_institution_id_id", "institution_id", "id"),
        Index("ix_alerts_user_id_id", "user_id", "id"),
    )
