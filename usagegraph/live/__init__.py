"""Live updates: which writes changed what (noted in the writing transaction, published after
its commit), the bus that carries those notes to every worker, and the per-subscriber
coalescing of GraphQL subscriptions.

The bus is generic (named channels, JSON payloads) and carries no tenant data: a note says
only *that* a channel changed and for which users; each subscriber then reads the new value
itself, through the same rules (and with its own principal) as the matching query.
"""
