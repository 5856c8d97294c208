"""Inventories for tests: N integrations per account on one shared set, env: credentials.

``make_inventory`` writes the file and loads it; the environment its references need is
``inventory_env(accounts)`` (a subprocess gets it in its env).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchsync.inventory.loader import load
from batchsync.model import Inventory

STATUSES = [
    {"external_id": "1", "translations": [{"status": "Awaiting payment", "language": "en-gb"}]},
    {
        "external_id": "2",
        "translations": [{"status": "Shipped", "language": "en-gb"}, {"status": "Verzonden", "language": "nl-nl"}],
    },
    {"external_id": "3", "translations": [{"status": "Delivered", "language": "en-gb"}]},
]


def make_inventory(
    tmp_path: Path,
    accounts: dict[str, int],
    limits: dict[str, dict[str, Any]] | None = None,
    secrets: dict[str, str] | None = None,
    extra: Sequence[dict[str, Any]] = (),
    name: str = "inv.json",
) -> Inventory:
    """``accounts``: name -> number of integrations, all on one shared status set."""
    doc: dict[str, Any] = {"accounts": {}, "status_sets": {"std": {"statuses": STATUSES}}, "integrations": []}
    environ = inventory_env(accounts, secrets)
    next_id = 1000
    for acct, n in accounts.items():
        key = acct.upper()
        spec: dict[str, Any] = {"public_key": f"env:{key}_PUB", "secret_key": f"env:{key}_SEC"}
        if limits and acct in limits:
            spec["limits"] = limits[acct]
        doc["accounts"][acct] = spec
        for _ in range(n):
            next_id += 1
            doc["integrations"].append({"id": next_id, "account": acct, "status_set": "std", "tags": [acct]})
    doc["integrations"].extend(extra)
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    inv = load(path, environ)
    assert inv.valid, inv.problems
    return inv


def inventory_env(accounts: dict[str, int], secrets: dict[str, str] | None = None) -> dict[str, str]:
    """The variables ``make_inventory``'s env: references read."""
    environ: dict[str, str] = {}
    for acct in accounts:
        environ[f"{acct.upper()}_PUB"] = f"{acct}-public"
        environ[f"{acct.upper()}_SEC"] = (secrets or {}).get(acct, f"{acct}-secret")
    return environ
