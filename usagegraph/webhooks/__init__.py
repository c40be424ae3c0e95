"""Webhook delivery: the process-level worker that carries outbox deliveries out."""
