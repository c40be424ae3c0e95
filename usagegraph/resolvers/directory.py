"""The directory's reads through the graph: which institutions a caller sees.

Visibility is the datasource's readable statement (members see their institutions, super
sees all); this is the one call a GraphQL field makes for the institutions list.
"""

from __future__ import annotations

from usagegraph.datasources import directory
from usagegraph.db.models import Institution
from usagegraph.resolvers.request_context import RequestContext


async def institutions_page(
    context: RequestContext, *, size: int, after_id: str | None
) -> tuple[list[Institution], int]:
    """The caller's institutions after `after_id` by id, `size + 1` of them (the extra one
    tells there is a next page), and how many the caller sees in all."""
    async with context.sessions() as session:
        return await directory.institution_page(
            session, context.principal, first=size, after_id=after_id
        )
