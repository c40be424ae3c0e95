"""What an operator sees of a running usagegraph: Prometheus metrics, logs and traces.

The lowest layer of the package: anything may record into it, and it imports nothing of
usagegraph's own but the settings.
"""
