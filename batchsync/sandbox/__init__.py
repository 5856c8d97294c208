"""A local Sendcloud-compatible server for demos, tests and benchmarks (``batchsync sandbox``).

``async with run_sandbox(inventory, SandboxConfig(...)) as sb:`` (:mod:`batchsync.sandbox.server`,
:mod:`batchsync.sandbox.config`) serves the shop-order-status endpoints at ``sb.url`` with
per-account rate limits and seeded faults.
"""
