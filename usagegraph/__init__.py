"""usagegraph: one GraphQL graph over usage and billing data, with REST shims for old clients."""

__version__ = "0.1.0"
