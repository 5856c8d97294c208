"""A local Sendcloud-compatible server for demos, tests and benchmarks.

``async with run_sandbox(inventory, SandboxConfig(...)) as sb:`` serves the
shop-order-status endpoints at ``sb.url`` with per-account rate limits and seeded faults.
"""

from batchsync.sandbox.server import FAULT_KINDS, THROTTLED_CODE, Sandbox, SandboxConfig, run_sandbox
from batchsync.sandbox.state import (
    OTHER_SYSTEM,
    PRESTASHOP_V2,
    AccountSeed,
    IntegrationSeed,
    Seed,
    demo_seed,
    seed_from_inventory,
)

__all__ = [
    "FAULT_KINDS",
    "OTHER_SYSTEM",
    "PRESTASHOP_V2",
    "THROTTLED_CODE",
    "AccountSeed",
    "IntegrationSeed",
    "Sandbox",
    "SandboxConfig",
    "Seed",
    "demo_seed",
    "run_sandbox",
    "seed_from_inventory",
]
