"""Structured logs: with --log-format json, every line about an account or an integration carries them as fields."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import SandboxProcess, batchsync, env_with
from inventory_factory import inventory_env, make_inventory

ACCOUNTS = {"acme": 6, "globex": 4}


def test_json_log_lines_carry_account_integration_attempt_and_delay(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    box = SandboxProcess(Path(inv.path), env, "--fault-500", "0.3", "--seed", "5")
    sandbox_proc.append(box)
    done = batchsync(
        "apply", inv.path, "--base-url", box.url, "--log-format", "json", "-v", "--max-attempts", "10", env=env
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every stderr line is JSON
    requests = [r for r in lines if r["logger"] == "batchsync.http"]
    assert requests and all(r["account"] in ACCOUNTS for r in requests)
    reads = [r for r in requests if "integration_id" in r]
    assert {r["integration_id"] for r in reads} == {j.integration_id for j in inv.jobs}
    retries = [r for r in lines if "retrying" in r["message"]]
    assert retries, "the faults made some requests retry"
    for r in retries:
        assert r["account"] in ACCOUNTS and r["attempt"] >= 2 and r["delay"] > 0
    assert sum(1 for r in retries if "integration_id" in r) >= len(retries) - 2  # the pre-flight pages have none
