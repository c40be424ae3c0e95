"""HTTP plumbing shared by the graph and the REST shims alike.

JSON rendering and each API family's error envelope, request ids, health probes, the
availability and loop-watchdog guards, rate limits, body limits and CORS. Nothing here knows
a route's rules: `schema/` and `rest/` sit beside each other on top of it.
"""
