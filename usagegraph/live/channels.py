"""The names of the bus's channels and the shape of their notes, in one place.

A note is `{"users": [ids]}`: the users whose usage or wallet a commit changed on that
channel, or `{"users": null}` ("anyone") when a commit touched more than MAX_NAMED_USERS of
them, so that a note stays far below PostgreSQL's 8,000-byte NOTIFY payload.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PERSONAL_INSTANCE = "personal"
MAX_NAMED_USERS = 200

Payload = dict[str, Any]


def usage_channel(instance_id: str, user_id: int) -> str:
    """Usage of one instance: an institution's (all its members), or one user's personal."""
    if instance_id == PERSONAL_INSTANCE:
        return f"usage.personal.{user_id}"
    return f"usage.{instance_id}"


def wallet_channel(user_id: int) -> str:
    """One user's wallet (balance, reserved)."""
    return f"wallet.{user_id}"


def alert_channel(institution_id: str | None, user_id: int | None) -> str:
    """Alerts of an institution's rules, or of one user's wallet rules."""
    if institution_id is not None:
        return f"alerts.{institution_id}"
    return f"alerts.personal.{user_id}"


def note_of(user_ids: Iterable[int] | None) -> Payload:
    """The note for these users (None: anyone)."""
    if user_ids is None:
        return {"users": None}
    users = sorted(set(user_ids))
    return {"users": users if len(users) <= MAX_NAMED_USERS else None}


def concerns(payload: Mapping[str, Any], user_id: int) -> bool:
    """Whether a note may concern this user (a note naming anyone concerns everyone)."""
    users = payload.get("users")
    return users is None or user_id in users
