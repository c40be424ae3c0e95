"""Benchmarks of usagegraph: `./scripts/bench` (bench/suite.py) and two focused scripts.

Not part of the test suite: tests never assert on wall-clock time. The suite measures a real
`usagegraph serve` on PostgreSQL with wrk, so its numbers describe the product as deployed;
README.md ("Benchmarks") says how to run it and how to read its table.
"""
