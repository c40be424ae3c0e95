"""The rules of a compiled read: when a root field may be answered by one SQL statement.

The compiled statement scopes every relation with the datasources' `readable_*` clauses, as
the loaders do, so what it returns is what the caller may read. What a statement cannot
express is the resolver path's *errors*: FORBIDDEN on an institution you are not a member
of, on members of an institution you do not administer, on someone else's wallet or ledger;
INVALID_REQUEST on a bad window. Those are decided here, before any SQL, with the same
access functions the resolvers call: whenever one would raise (or cannot be decided before
the rows are read), the whole root field goes down the resolver path, which answers with
its error. So a compiled answer is always an answer without errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from usagegraph.auth.access import (
    administered_institutions,
    is_institution_admin,
    is_member,
    is_super,
    owns_account,
)
from usagegraph.auth.principal import CallerKind, Principal
from usagegraph.datasources.json_reads import read_json, root_statement
from usagegraph.datasources.selections import TYPENAME, NotCompilable, Selection
from usagegraph.errors import UsageGraphError
from usagegraph.input_ids import is_id
from usagegraph.resolvers.request_context import RequestContext
from usagegraph.resolvers.wallet_ledger import LedgerFilter, validate_filter

__all__ = ["COMPILED_ROOTS", "TYPENAME", "NotCompilable", "Selection", "compiled_root", "compiles"]

# The root fields the compiled path answers (others always take the resolver path).
COMPILED_ROOTS = frozenset({"institution", "institutions", "user"})


@dataclass(frozen=True, slots=True)
class _Known:
    """What is known of an object before its row is read: its id, when the query named it."""

    institution_id: str | None = None
    user_id: int | None = None


def compiles(context: RequestContext) -> bool:
    """Compiled reads are on (USAGEGRAPH_GRAPHQL_COMPILE) and the database is PostgreSQL."""
    reads = context.loaders.reads
    return (
        context.settings.graphql.compile_reads
        and reads is not None
        and reads.dialect_name == "postgresql"
    )


async def compiled_root(context: RequestContext, root: Selection) -> str | None:
    """The JSON text of a root field, or None when the resolver path must answer it."""
    principal = context.principal
    reads = context.loaders.reads
    if reads is None or root.name not in COMPILED_ROOTS:
        return None
    try:
        if root.name == "user" and not is_id(root.argument("id")):
            return "null"  # `user` answers null for an id no row can have
        _check(principal, root, _known_at_root(principal, root))
        text, parameters = root_statement(principal, root, reads.partition_span)
    except (NotCompilable, UsageGraphError):
        return None
    async with reads.session() as session:
        return await read_json(session, text, parameters)


def _known_at_root(principal: Principal, root: Selection) -> _Known:
    if root.name == "institution":
        institution_id = root.argument("id")
        if not is_member(principal, institution_id):
            raise NotCompilable("FORBIDDEN: not a member")
        return _Known(institution_id=institution_id)
    if root.name == "user":
        return _Known(user_id=root.argument("id"))
    return _Known()


def _check(principal: Principal, selection: Selection, known: _Known) -> None:
    """Raise NotCompilable where the resolver path would answer an error."""
    for child in selection.children:
        name = child.name
        if name == "members":
            _check_members(principal, known)
            _check(principal, child, _Known())
        elif name in ("wallet", "ledger"):
            _check_account(principal, known)
            if name == "ledger":
                validate_filter(
                    LedgerFilter(start=child.argument("from"), end=child.argument("to"))
                )
        elif name == "user":
            _check(principal, child, _Known())  # a member: their id comes with the row
        elif name == "institution":
            _check(principal, child, _Known())
        else:
            _check(principal, child, known if name in ("edges", "node") else _Known())


def _check_members(principal: Principal, known: _Known) -> None:
    """`members` is for the institution's admins (`directory.member_page`)."""
    if known.institution_id is not None:
        if not is_institution_admin(principal, known.institution_id):
            raise NotCompilable("FORBIDDEN: members")
    elif not _administers_every_readable_institution(principal):
        raise NotCompilable("FORBIDDEN on some institution's members")


def _administers_every_readable_institution(principal: Principal) -> bool:
    if is_super(principal):
        return True
    if principal.kind is not CallerKind.USER or not principal.memberships:
        return False
    return len(administered_institutions(principal)) == len(principal.memberships)


def _check_account(principal: Principal, known: _Known) -> None:
    """A wallet and a ledger are their holder's (super: anyone's) (`require_account`)."""
    if is_super(principal):
        return
    if known.user_id is None or not owns_account(principal, known.user_id):
        raise NotCompilable("FORBIDDEN: someone else's account")
