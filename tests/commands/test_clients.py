"""Clients are first-class (issue 27), as an operator runs it: real processes against a
sandbox process over loopback.

One client's broken setup costs only that client; shops carry names; accounts carry tags
that ``--limit`` selects with patterns and intersections; undeclared integrations are
listed; notification routes see only their own client's integrations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cli_helpers import SandboxProcess, batchsync, env_with, read_report
from inventory_factory import inventory_env, make_inventory


def test_an_account_whose_key_is_unset_fails_alone_and_the_others_converge(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    accounts = {"acme": 3, "globex": 2, "stark": 2}
    inv = make_inventory(tmp_path, accounts)
    full = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), full)
    sandbox_proc.append(box)
    env = {k: v for k, v in full.items() if k != "STARK_SEC"}
    report = tmp_path / "report.jsonl"
    result = batchsync("apply", inv.path, "--base-url", box.url, "--report", str(report), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    lines, [summary] = read_report(report)
    by_account: dict[str, list[dict[str, Any]]] = {}
    for row in lines:
        by_account.setdefault(row["account"], []).append(row)
    assert {a: len(rows) for a, rows in by_account.items()} == accounts
    for row in by_account["stark"]:
        assert row["result"] == "failed"
        assert row["error"]["kind"] == "credentials"
        assert "STARK_SEC" in row["error"]["detail"] and "'stark'" in row["error"]["detail"]
    for name in ("acme", "globex"):
        assert {row["result"] for row in by_account[name]} <= {"changed", "unchanged"}
    assert summary["exit_code"] == 1
    assert "stark" in result.stdout and "credentials" in result.stdout
    # Nothing of stark's was sent: not even the pre-flight.
    requests = box.stats()["requests"]
    assert sum(requests["stark"].values()) == 0 and requests["acme"]["POST"] and requests["globex"]["POST"], requests
    # The two others converged: a second plan of theirs has nothing to do.
    again = batchsync("plan", inv.path, "--base-url", box.url, "--limit", "acme,globex", "--detailed-exitcode", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    # All or nothing, for those who want it: exit 2, nothing sent.
    strict = batchsync("apply", inv.path, "--base-url", box.url, "--require-all-credentials", env=env)
    assert strict.returncode == 2, strict.stdout + strict.stderr
    assert "STARK_SEC" in strict.stderr
    # validate still reports it.
    checked = batchsync("validate", inv.path, env=env)
    assert checked.returncode == 2 and "STARK_SEC" in checked.stdout + checked.stderr
