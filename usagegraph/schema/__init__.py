"""The one GraphQL graph: Strawberry types, assembled into `usagegraph.schema.root.schema`."""
