"""Alert rules: who may manage them, and how a write that crosses a line raises an alert.

Kinds (an institution's rules are managed by its admins, a wallet's by its owner; super may
manage any):
- `member_cap_percent` (institution): a member's lifetime credits there reach `threshold` %
  of their cap (members without a cap never cross);
- `institution_period_usage` (institution): the institution's credits in a billing period
  (a calendar month, UTC, by the events' time) reach `threshold` credits;
- `wallet_low_balance` (user): the wallet's available credits fall below `threshold`;
- `auto_reload` (user): an automatic reload was posted to the wallet;
- `reservation_expired` (user): a reservation of the wallet expired.

Firing: a line rule fires when a write leaves its value on the far side of the line while
the rule is armed for that subject (a member, a period, a wallet); it is then disarmed and
fires no more until a later write finds the value back on the near side (re-armed) — or, for
period usage, until the period rolls over (each period is its own subject). Event-like kinds
(`auto_reload`, `reservation_expired`) fire at every occurrence.

Same transaction, so none is missed or doubled: the check runs inside the write that moved
the value, after the write and under a lock that every writer of that value takes — the
member's membership row (capped members' usage is serialised on it), the wallet row, or, for
an institution's period total, the institution's rule rows (`datasources.alerts`). The next
writer in line sees the total and the state the previous one committed.

Every alert is raised by `fire` below, the one place: it stores the alert and writes its
`alert.raised` outbox event, whose list for the current transaction is
`datasources.outbox.queued_events(session)` (for live notifications after commit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from usagegraph import money_range
from usagegraph.auth.access import is_institution_admin, is_super
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.datasources import alerts as alert_rows
from usagegraph.datasources.outbox import enqueue
from usagegraph.datasources.transactions import run_write
from usagegraph.datasources.wallet_writes import LedgerBook, Posting
from usagegraph.db.models import Alert, AlertRule, AlertState, Wallet
from usagegraph.errors import forbidden, invalid, not_found, unauthorized
from usagegraph.input_ids import INSTITUTION_ID_PATTERN, is_id
from usagegraph.live.changes import note_change
from usagegraph.live.channels import alert_channel
from usagegraph.shapes import described

ALERT_RAISED = "alert.raised"
MAX_LIST = 100


class AlertKind(StrEnum):
    MEMBER_CAP_PERCENT = "member_cap_percent"
    INSTITUTION_PERIOD_USAGE = "institution_period_usage"
    WALLET_LOW_BALANCE = "wallet_low_balance"
    AUTO_RELOAD = "auto_reload"
    RESERVATION_EXPIRED = "reservation_expired"


INSTITUTION_KINDS = frozenset({AlertKind.MEMBER_CAP_PERCENT, AlertKind.INSTITUTION_PERIOD_USAGE})
WALLET_KINDS = frozenset(
    {AlertKind.WALLET_LOW_BALANCE, AlertKind.AUTO_RELOAD, AlertKind.RESERVATION_EXPIRED}
)
LINE_KINDS = frozenset(
    {
        AlertKind.MEMBER_CAP_PERCENT,
        AlertKind.INSTITUTION_PERIOD_USAGE,
        AlertKind.WALLET_LOW_BALANCE,
    }
)


@dataclass(frozen=True, slots=True)
class AlertRuleInfo:
    """An alert rule as its owner sees it."""

    id: int = described("The rule's id.", graph_name="rule_id")
    kind: str = described(
        "member_cap_percent, institution_period_usage, wallet_low_balance, auto_reload or "
        "reservation_expired."
    )
    institution_id: str | None = described("The institution it watches (institution rules).")
    user_id: int | None = described("The user whose wallet it watches (wallet rules).")
    threshold: Decimal | None = described(
        "The line: a percentage of the cap, or an amount of credits; null for event kinds."
    )
    enabled: bool = described("Whether it is checked.")
    created_at: datetime = described("When it was made.")


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    """One firing of a rule."""

    id: int = described("The alert's id.", graph_name="alert_id")
    rule_id: int = described("The rule that fired.")
    kind: str = described("The rule's kind.")
    institution_id: str | None = described("The institution (institution rules).")
    user_id: int | None = described("The wallet's owner (wallet rules).")
    subject: str = described(
        "What crossed: `member:<user id>`, `period:<YYYY-MM>`, `wallet`, `reload:<entry id>` "
        "or `reservation:<id>`."
    )
    subject_user_id: int | None = described("The member or wallet owner concerned.")
    value: Decimal | None = described("The value that crossed the line.")
    threshold: Decimal | None = described("The line.")
    raised_at: datetime = described("When.")
    event_id: str = described("Its outbox event's id (the webhook-id of its deliveries).")


def rule_info(row: AlertRule) -> AlertRuleInfo:
    return AlertRuleInfo(
        id=row.id,
        kind=row.kind,
        institution_id=row.institution_id,
        user_id=row.user_id,
        threshold=row.threshold,
        enabled=bool(row.enabled),
        created_at=row.created_at,
    )


def alert_info(row: Alert) -> RaisedAlert:
    return RaisedAlert(
        id=row.id,
        rule_id=row.rule_id,
        kind=row.kind,
        institution_id=row.institution_id,
        user_id=row.user_id,
        subject=row.subject,
        subject_user_id=row.subject_user_id,
        value=row.value,
        threshold=row.threshold,
        raised_at=row.raised_at,
        event_id=row.event_id,
    )


# --- firing: the one place -----------------------------------------------------------------


async def fire(
    session: AsyncSession,
    now: datetime,
    rule: AlertRule,
    subject: str,
    *,
    value: Decimal | None,
    subject_user_id: int | None,
    details: Mapping[str, Any] | None = None,
) -> RaisedAlert:
    """Raise an alert of `rule` in this transaction: its row and its `alert.raised` outbox
    event (an institution's event goes to that institution's webhooks)."""
    data = {
        "rule_id": rule.id,
        "kind": rule.kind,
        "institution_id": rule.institution_id,
        "user_id": rule.user_id,
        "subject": subject,
        "subject_user_id": subject_user_id,
        "value": value,
        "threshold": rule.threshold,
        **dict(details or {}),
    }
    event = await enqueue(
        session,
        now,
        ALERT_RAISED,
        data,
        institution_id=rule.institution_id,
        user_id=rule.user_id,
    )
    row = await alert_rows.insert_alert(
        session,
        {
            "rule_id": rule.id,
            "institution_id": rule.institution_id,
            "user_id": rule.user_id,
            "kind": rule.kind,
            "subject": subject,
            "subject_user_id": subject_user_id,
            "value": value,
            "threshold": rule.threshold,
            "details": {k: str(v) for k, v in (details or {}).items()},
            "event_id": event.event_id,
            "raised_at": now,
        },
    )
    # Pushed to `alertRaised` subscribers once this transaction commits.
    note_change(session, alert_channel(rule.institution_id, rule.user_id), None)
    return alert_info(row)


async def _evaluate(
    session: AsyncSession,
    now: datetime,
    rule: AlertRule,
    subject: str,
    states: dict[tuple[int, str], AlertState],
    *,
    beyond: bool,
    value: Decimal,
    subject_user_id: int | None,
    period: str | None = None,
) -> RaisedAlert | None:
    """Fire when `beyond` the line and armed; re-arm when back on the near side."""
    state = states.get((rule.id, subject))
    fired = state is not None and state.fired
    if beyond and not fired:
        if state is None:
            state = AlertState(rule_id=rule.id, subject=subject)
            session.add(state)
            states[(rule.id, subject)] = state
        state.fired, state.period, state.updated_at = True, period, now
        await session.flush()
        return await fire(session, now, rule, subject, value=value, subject_user_id=subject_user_id)
    if not beyond and fired:
        assert state is not None
        state.fired, state.updated_at = False, now
        await session.flush()
    return None


# --- detection, called by the writes -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberUsage:
    """A capped member's lifetime credits in an institution before and after a write (read
    under the membership's lock)."""

    user_id: int
    institution_id: str
    cap: Decimal
    before: Decimal
    after: Decimal


def period_of(moment: datetime) -> str:
    """The billing period (calendar month, UTC) of a moment: `YYYY-MM`."""
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"  # strftime costs twice as much, once per event


def _period_bounds(period: str) -> tuple[datetime, datetime]:
    year, month = (int(part) for part in period.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


async def after_usage(
    session: AsyncSession,
    now: datetime,
    members: Iterable[MemberUsage],
    periods: Mapping[str, set[str]],
) -> list[RaisedAlert]:
    """After a usage write into these institutions: cap events and member-cap rules for
    the capped members, period rules for the periods written to. One statement finds the
    institutions' rules (usually none: then that is all it costs)."""
    members = list(members)
    institutions = set(periods) | {m.institution_id for m in members}
    rules = await alert_rows.institution_rules(session, institutions, INSTITUTION_KINDS, lock=False)
    raised = await after_member_usage(
        session, now, members, [r for r in rules if r.kind == AlertKind.MEMBER_CAP_PERCENT]
    )
    if any(r.kind == AlertKind.INSTITUTION_PERIOD_USAGE for r in rules):
        raised += await after_institution_usage(session, now, periods)
    return raised


async def after_member_usage(
    session: AsyncSession,
    now: datetime,
    members: Iterable[MemberUsage],
    rules: list[AlertRule] | None = None,
) -> list[RaisedAlert]:
    """`usage.cap_reached` for members whose write reached their cap, and the member-cap
    rules of their institutions (`rules` when the caller read them). Runs under the
    memberships' locks."""
    members = [m for m in members if m.after != m.before]
    raised: list[RaisedAlert] = []
    for member in members:
        if member.before < member.cap <= member.after:
            await enqueue(
                session,
                now,
                "usage.cap_reached",
                {
                    "user_id": member.user_id,
                    "institution_id": member.institution_id,
                    "cap": member.cap,
                    "lifetime_credits": member.after,
                },
                institution_id=member.institution_id,
            )
    if rules is None:
        rules = await alert_rows.institution_rules(
            session,
            {m.institution_id for m in members},
            [AlertKind.MEMBER_CAP_PERCENT],
            lock=False,
        )
    if not rules:
        return raised
    keys = {(r.id, f"member:{m.user_id}") for r in rules for m in members}
    states = await alert_rows.states(session, keys)
    for member in members:
        for rule in rules:
            if rule.institution_id != member.institution_id or rule.threshold is None:
                continue
            used = member.after * 100 / member.cap if member.cap > 0 else Decimal(100)
            alert = await _evaluate(
                session,
                now,
                rule,
                f"member:{member.user_id}",
                states,
                beyond=used >= rule.threshold,
                value=used.quantize(Decimal("0.01")),
                subject_user_id=member.user_id,
            )
            if alert is not None:
                raised.append(alert)
    return raised


async def after_institution_usage(
    session: AsyncSession, now: datetime, periods: Mapping[str, set[str]]
) -> list[RaisedAlert]:
    """The period-usage rules of institutions that just received usage in these periods
    (institution id → `YYYY-MM` set). Locks the rules first, then reads the totals."""
    rules = await alert_rows.institution_rules(
        session, periods.keys(), [AlertKind.INSTITUTION_PERIOD_USAGE], lock=True
    )
    if not rules:
        return []
    keys = {(r.id, f"period:{p}") for r in rules for p in periods[r.institution_id or ""]}
    states = await alert_rows.states(session, keys)
    raised: list[RaisedAlert] = []
    totals: dict[tuple[str, str], Decimal] = {}
    for rule in rules:
        institution = rule.institution_id or ""
        for period in sorted(periods[institution]):
            if (institution, period) not in totals:
                start, end = _period_bounds(period)
                totals[(institution, period)] = await alert_rows.institution_period_credits(
                    session, institution, start, end
                )
            total = totals[(institution, period)]
            assert rule.threshold is not None
            alert = await _evaluate(
                session,
                now,
                rule,
                f"period:{period}",
                states,
                beyond=total >= rule.threshold,
                value=total,
                subject_user_id=None,
                period=period,
            )
            if alert is not None:
                raised.append(alert)
    return raised


def available_of(wallets: Mapping[int, Wallet]) -> dict[int, Decimal]:
    """Each wallet's available credits now (taken before a movement, to compare after)."""
    return {user_id: w.balance - w.reserved for user_id, w in wallets.items()}


async def after_wallet_moves(
    session: AsyncSession, now: datetime, book: LedgerBook, before: Mapping[int, Decimal]
) -> list[RaisedAlert]:
    """After a book over locked wallets was written: `wallet.auto_reloaded` per reload,
    `wallet.low_balance` per wallet whose available credits crossed its auto-reload
    threshold downwards, and the owners' wallet rules."""
    reloads = [p for p in book.postings if p.auto_reload and p.id is not None]
    for posting in reloads:
        await enqueue(
            session,
            now,
            "wallet.auto_reloaded",
            {"user_id": posting.user_id, "amount": posting.amount, "entry_id": posting.id},
            user_id=posting.user_id,
        )
    moved = {user_id: w for user_id, w in book.wallets.items() if user_id in before}
    for user_id, wallet in moved.items():
        threshold = wallet.auto_reload_threshold
        low_before = before[user_id]
        if threshold is None:
            continue
        # The lowest point of the movement: before a reload put credits back.
        reloaded = sum((p.amount for p in reloads if p.user_id == user_id), Decimal(0))
        lowest = wallet.balance - wallet.reserved - reloaded
        if low_before >= threshold > lowest:
            await enqueue(
                session,
                now,
                "wallet.low_balance",
                {"user_id": user_id, "available": lowest, "threshold": threshold},
                user_id=user_id,
            )
    rules = await alert_rows.user_rules(
        session, moved.keys(), [AlertKind.WALLET_LOW_BALANCE, AlertKind.AUTO_RELOAD]
    )
    if not rules:
        return []
    states = await alert_rows.states(session, {(r.id, "wallet") for r in rules})
    raised: list[RaisedAlert] = []
    for rule in rules:
        wallet = moved[rule.user_id or 0]
        if rule.kind == AlertKind.AUTO_RELOAD:
            for posting in _reloads_of(reloads, wallet.user_id):
                raised.append(
                    await fire(
                        session,
                        now,
                        rule,
                        f"reload:{posting.id}",
                        value=posting.amount,
                        subject_user_id=wallet.user_id,
                    )
                )
            continue
        assert rule.threshold is not None
        available = wallet.balance - wallet.reserved
        alert = await _evaluate(
            session,
            now,
            rule,
            "wallet",
            states,
            beyond=available < rule.threshold,
            value=available,
            subject_user_id=wallet.user_id,
        )
        if alert is not None:
            raised.append(alert)
    return raised


def _reloads_of(reloads: list[Posting], user_id: int) -> list[Posting]:
    return [p for p in reloads if p.user_id == user_id]


async def reservation_expired(
    session: AsyncSession, now: datetime, user_id: int, reservation_id: int, amount: Decimal
) -> list[RaisedAlert]:
    """For the expiry of a reservation (under its wallet's lock): the owner's rules fire.
    Reservations here are settled by hand and carry no expiry yet; this is the hook an
    expiry sweep calls."""
    rules = await alert_rows.user_rules(session, [user_id], [AlertKind.RESERVATION_EXPIRED])
    return [
        await fire(
            session,
            now,
            rule,
            f"reservation:{reservation_id}",
            value=amount,
            subject_user_id=user_id,
        )
        for rule in rules
    ]


# --- managing rules ------------------------------------------------------------------------


def require_admin_of(principal: Principal, institution_id: str | None) -> None:
    """A signed-in user (API keys: FORBIDDEN), and an admin of `institution_id` when one is
    named (FORBIDDEN otherwise, the same answer for an unknown institution)."""
    if not principal.is_authenticated:
        raise unauthorized()
    if principal.kind is not CallerKind.USER or principal.user_id is None:
        raise forbidden("only a signed-in user manages alert rules and webhooks")
    if institution_id is None:
        return
    if not re.fullmatch(INSTITUTION_ID_PATTERN, institution_id) or not is_institution_admin(
        principal, institution_id
    ):
        raise forbidden("only an admin of that institution may do this")


def owner_of(principal: Principal, institution_id: str | None) -> tuple[str | None, int | None]:
    """Whose rules the caller addresses: an institution they administer (FORBIDDEN
    otherwise), or, without one, their own wallet."""
    require_admin_of(principal, institution_id)
    if institution_id is None:
        return None, principal.user_id
    return institution_id, None


def _threshold(kind: AlertKind, threshold: Decimal | None) -> Decimal | None:
    if kind not in LINE_KINDS:
        if threshold is not None:
            raise invalid(f"a {kind.value} rule takes no threshold")
        return None
    if threshold is None:
        raise invalid(f"a {kind.value} rule needs a threshold")
    value = money_range.amount(threshold, "threshold")
    if kind is AlertKind.MEMBER_CAP_PERCENT and not 0 < value <= 1000:
        raise invalid("threshold is a percentage of the cap, above 0 and at most 1000")
    if value < 0:
        raise invalid("threshold must not be negative")
    return value


def parse_kind(kind: str) -> AlertKind:
    try:
        return AlertKind(kind)
    except ValueError:
        raise invalid(f"kind must be one of {', '.join(k.value for k in AlertKind)}") from None


async def create_rule(
    session: AsyncSession,
    principal: Principal,
    now: datetime,
    *,
    kind: str,
    threshold: Decimal | None,
    institution_id: str | None = None,
) -> AlertRuleInfo:
    """A new rule for an institution (its admins) or for the caller's own wallet."""
    institution, user = owner_of(principal, institution_id)
    parsed = parse_kind(kind)
    if institution is not None and parsed not in INSTITUTION_KINDS:
        raise invalid(f"an institution's rule is one of {sorted(INSTITUTION_KINDS)}")
    if institution is None and parsed not in WALLET_KINDS:
        raise invalid(f"a wallet rule is one of {sorted(WALLET_KINDS)}")
    line = _threshold(parsed, threshold)

    async def work(session: AsyncSession) -> AlertRuleInfo:
        row = await alert_rows.add_rule(
            session,
            {
                "institution_id": institution,
                "user_id": user,
                "kind": parsed.value,
                "threshold": line,
                "enabled": True,
                "created_at": now,
            },
        )
        return rule_info(row)

    return await run_write(session, work)


def _may_manage(principal: Principal, row: AlertRule) -> bool:
    if row.institution_id is not None:
        return is_institution_admin(principal, row.institution_id)
    return is_super(principal) or (
        principal.kind is CallerKind.USER and principal.user_id == row.user_id
    )


async def delete_rule(
    session: AsyncSession, principal: Principal, now: datetime, *, rule_id: int
) -> bool:
    """Delete a rule (and its alerts); NOT_FOUND alike for a missing rule and another's."""
    owner_of(principal, None)

    async def work(session: AsyncSession) -> bool:
        row = await alert_rows.rule_by_id(session, rule_id) if is_id(rule_id) else None
        if row is None or not _may_manage(principal, row):
            raise not_found(f"alert rule {rule_id} does not exist")
        await alert_rows.delete_rule(session, rule_id)
        return True

    return await run_write(session, work)


async def list_rules(
    session: AsyncSession, principal: Principal, institution_id: str | None
) -> list[AlertRuleInfo]:
    """An institution's rules (its admins), or the caller's wallet rules."""
    institution, user = owner_of(principal, institution_id)
    rows = await alert_rows.rules_of(session, institution_id=institution, user_id=user)
    return [rule_info(row) for row in rows]


async def list_alerts(
    session: AsyncSession, principal: Principal, institution_id: str | None, first: int
) -> list[RaisedAlert]:
    """The latest alerts (newest first) of an institution's rules or the caller's."""
    institution, user = owner_of(principal, institution_id)
    if not 1 <= first <= MAX_LIST:
        raise invalid(f"first must be 1 to {MAX_LIST}")
    rows = await alert_rows.alerts_of(
        session, institution_id=institution, user_id=user, limit=first
    )
    return [alert_info(row) for row in rows]
