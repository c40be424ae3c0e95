"""SQLAlchemy queries and the per-request dataloaders; every read is scoped by construction."""
