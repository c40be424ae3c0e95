"""The caller of one request, resolved once and passed to everything downstream."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class CallerKind(StrEnum):
    """What kind of credential identified the caller."""

    ANONYMOUS = "anonymous"
    USER = "user"
    INSTITUTION = "institution"


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller as the database describes them (never as a token claims)."""

    kind: CallerKind
    user_id: int | None = None
    role: str | None = None
    permissions: frozenset[str] = frozenset()
    # institution id -> the caller's role inside it
    memberships: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # The institution an API key acts for.
    institution_id: str | None = None
    # The digest of that key when its liveness was not read for this request: the write of
    # `POST /v1/events` checks it in its own transaction (auth/known_keys.py).
    unchecked_key: str | None = None
    # Why presented credentials were refused; None when none were presented or all was well.
    rejection: str | None = None
    # Set when a credential came in a header this route does not read: the header it reads.
    expected_header: str | None = None

    @property
    def is_authenticated(self) -> bool:
        return self.kind is not CallerKind.ANONYMOUS

    @classmethod
    def anonymous(cls, rejection: str | None = None) -> Principal:
        return cls(kind=CallerKind.ANONYMOUS, rejection=rejection)

    @classmethod
    def misdirected(cls, expected_header: str) -> Principal:
        """Anonymous: a credential arrived, but not in the header this route reads."""
        return cls(kind=CallerKind.ANONYMOUS, expected_header=expected_header)

    @classmethod
    def for_user(
        cls,
        user_id: int,
        role: str,
        permissions: frozenset[str],
        memberships: dict[str, str],
    ) -> Principal:
        return cls(
            kind=CallerKind.USER,
            user_id=user_id,
            role=role,
            permissions=permissions,
            memberships=MappingProxyType(dict(memberships)),
        )

    @classmethod
    def for_institution(cls, institution_id: str, unchecked_key: str | None = None) -> Principal:
        return cls(
            kind=CallerKind.INSTITUTION, institution_id=institution_id, unchecked_key=unchecked_key
        )
