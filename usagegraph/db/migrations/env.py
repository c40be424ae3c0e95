"""Alembic environment: runs on a connection handed over by usagegraph.db.schema_version."""

from __future__ import annotations

from alembic import context

from usagegraph.db.models import Base
from usagegraph.db.partitions import is_partition_table

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `usagegraph migrate`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables there.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # usage_events' monthly partitions are made by the app, not described by the models.
    include_name=lambda name, kind, _parents: not (kind == "table" and is_partition_table(name)),
)
with context.begin_transaction():
    context.run_migrations()
