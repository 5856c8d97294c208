"""A local Sendcloud-compatible server for demos, tests and benchmarks.

``async with run_sandbox(inventory, SandboxConfig(...)) as sb:`` serves the
shop-order-status endpoints at ``sb.url`` with per-account rate limits and seeded faults.
The names below load on first use, so that ``batchsync --version`` (whose parser knows
the ``sandbox`` subcommand) never imports the aiohttp server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchsync.model import PRESTASHOP_V2
    from batchsync.sandbox.server import FAULT_KINDS, THROTTLED_CODE, Sandbox, SandboxConfig, run_sandbox
    from batchsync.sandbox.state import OTHER_SYSTEM, AccountSeed, IntegrationSeed, Seed, demo_seed, seed_from_inventory

_WHERE = {
    **dict.fromkeys(("FAULT_KINDS", "THROTTLED_CODE", "Sandbox", "SandboxConfig", "run_sandbox"), "server"),
    **dict.fromkeys(
        ("OTHER_SYSTEM", "PRESTASHOP_V2", "AccountSeed", "IntegrationSeed", "Seed", "demo_seed", "seed_from_inventory"),
        "state",
    ),
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"batchsync.sandbox.{module}"), name)
