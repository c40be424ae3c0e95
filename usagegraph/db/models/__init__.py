"""Every table, importable from one place (Alembic reads `Base.metadata` from here)."""

from usagegraph.db.models.alerts import Alert, AlertRule, AlertState
from usagegraph.db.models.api_keys import ApiKey
from usagegraph.db.models.base import Base, utcnow
from usagegraph.db.models.buckets import ClientBucket, Snapshot
from usagegraph.db.models.institutions import Institution, Membership, new_institution_id
from usagegraph.db.models.outbox import (
    OutboxEvent,
    WebhookDelivery,
    WebhookEndpoint,
    WorkerLease,
)
from usagegraph.db.models.usage import (
    PERSONAL_INSTANCE,
    UsageEvent,
    UsageIdempotencyKey,
    instance_of,
)
from usagegraph.db.models.usage_rollups import (
    ROLLUPS,
    UsageRollupDay,
    UsageRollupDayEndpoint,
    UsageRollupHour,
    UsageRollupQuarterHour,
    UsageTotal,
)
from usagegraph.db.models.users import User
from usagegraph.db.models.wallets import (
    LedgerEntry,
    Reservation,
    Subscription,
    Wallet,
    signed_amount,
)

__all__ = [
    "PERSONAL_INSTANCE",
    "ROLLUPS",
    "Alert",
    "AlertRule",
    "AlertState",
    "ApiKey",
    "Base",
    "ClientBucket",
    "Institution",
    "LedgerEntry",
    "Membership",
    "OutboxEvent",
    "Reservation",
    "Snapshot",
    "Subscription",
    "UsageEvent",
    "UsageIdempotencyKey",
    "UsageRollupDay",
    "UsageRollupDayEndpoint",
    "UsageRollupHour",
    "UsageRollupQuarterHour",
    "UsageTotal",
    "User",
    "Wallet",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkerLease",
    "instance_of",
    "new_institution_id",
    "signed_amount",
    "utcnow",
]
