"""The access rules of CONTRACT.md ("who may call what"), decided here and nowhere else."""

from __future__ import annotations

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
