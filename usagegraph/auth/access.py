"""The access rules of CONTRACT.md ("who may call what"), decided here and nowhere else."""

from __future__ import annotations

from collections.abc import Iterable

from usagegraph.auth.principal import CallerKind, Principal

INSTITUTION_ADMIN_PERMISSION = "institutions.edit"


def is_super(principal: Principal) -> bool:
    """A super user sees every institution."""
    return principal.kind is CallerKind.USER and principal.role == "super"


def is_member(principal: Principal, institution_id: str) -> bool:
    """The caller belongs to the institution (super counts as a member of all)."""
    return is_super(principal) or institution_id in principal.memberships


def is_institution_admin(principal: Principal, institution_id: str) -> bool:
    """Super, or role `admin` with `institutions.edit` who is a member of the institution."""
    if is_super(principal):
        return True
    return (
        principal.kind is CallerKind.USER
        and principal.role == "admin"
        and INSTITUTION_ADMIN_PERMISSION in principal.permissions
        and institution_id in principal.memberships
    )


def acts_for_institution(principal: Principal, institution_id: str) -> bool:
    """An API key of exactly this institution."""
    return principal.kind is CallerKind.INSTITUTION and principal.institution_id == institution_id


def owns_account(principal: Principal, user_id: int) -> bool:
    """The caller's own wallet, ledger, subscription and account usage (super: anyone's)."""
    return is_super(principal) or (
        principal.kind is CallerKind.USER and principal.user_id == user_id
    )


def may_see_user(principal: Principal, user_id: int, user_institutions: Iterable[str]) -> bool:
    """Identity (email, names, role) of a user: themself, super, or an admin of one of the
    institutions the user belongs to — the same people who see them in user-stats rows."""
    if owns_account(principal, user_id):
        return True
    return any(is_institution_admin(principal, i) for i in user_institutions)


def administered_institutions(principal: Principal) -> list[str]:
    """The institutions whose members and all-user usage the caller may read (not for super,
    who reads every institution: check `is_super` first)."""
    return sorted(i for i in principal.memberships if is_institution_admin(principal, i))
