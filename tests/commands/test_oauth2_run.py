"""OAuth2 accounts end to end: a real ``batchsync apply`` against a sandbox process issuing short-lived tokens.

The issue's must-show: 2,000 integrations over 4 OAuth2 accounts with tokens that last
2 s, in a run long enough to renew each several times; and a wrong client secret, which
costs its account exactly one token request while the others converge.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from cli_helpers import SandboxProcess, batchsync, env_with, read_report

from batchsync.sandbox.oauth2 import TOKEN_PREFIX

ACCOUNTS = ("north", "south", "east", "west")
LIFETIME = 2.0
TOKEN = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{8,}")


def write_inventory(tmp_path: Path, per_account: int, limits: dict[str, Any], secrets: dict[str, str]) -> Path:
    doc: dict[str, Any] = {
        "accounts": {
            name: {
                "auth": "oauth2",
                "client_id": f"env:{name.upper()}_ID",
                "client_secret": f"env:{name.upper()}_SECRET",
                "limits": limits,
            }
            for name in ACCOUNTS
        },
        "status_sets": {
            "std": {
                "statuses": [
                    {"external_id": str(k), "translations": [{"status": f"Status {k}", "language": "en-gb"}]}
                    for k in range(1, 4)
                ]
            }
        },
        "integrations": [
            {"id": 10_000 * (a + 1) + i, "account": name, "status_set": "std"}
            for a, name in enumerate(ACCOUNTS)
            for i in range(per_account)
        ],
    }
    path = tmp_path / "oauth2.json"
    path.write_text(json.dumps(doc))
    return path


def environment(secrets: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in ACCOUNTS:
        env[f"{name.upper()}_ID"] = f"{name}-client-id"
        env[f"{name.upper()}_SECRET"] = secrets.get(name, f"{name}-client-secret-value")
    return env


def no_secret_anywhere(texts: dict[str, str], secrets: dict[str, str]) -> None:
    for where, text in texts.items():
        assert not TOKEN.search(text), (where, "a token")
        for name in ACCOUNTS:
            for value in (f"{name}-client-secret-value", secrets.get(name, "")):
                if value:
                    assert value not in text, (where, name)


def test_two_thousand_integrations_over_four_oauth2_accounts_renew_their_tokens(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    # 500 integrations an account at 3,000 reads and 1,500 writes a minute: about 10 s,
    # five token lifetimes.
    limits = {"reads_per_minute": 3000, "writes_per_minute": 1500, "write_burst": 10}
    inventory = write_inventory(tmp_path, 500, limits, {})
    env = env_with(environment({}))
    box = SandboxProcess(inventory, env, "--token-lifetime", str(int(LIFETIME)), "--in-sync", "0.5", "--seed", "3")
    sandbox_proc.append(box)
    report = tmp_path / "report.jsonl"
    started = time.monotonic()
    done = batchsync("apply", str(inventory), "--base-url", box.url, "--report", str(report), "-v", env=env)
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    rows, summary = read_report(report)
    assert len(rows) == 2000 and {r["result"] for r in rows} == {"changed", "unchanged"}
    stats = box.stats()
    assert sum(stats["expired_tokens"].values()) == 0  # no request ever went with an expired token
    assert stats["unauthenticated"] == 0
    run_length = summary[0]["duration_s"]
    assert run_length >= 3 * LIFETIME, run_length  # long enough to renew several times
    for name in ACCOUNTS:
        fetched = stats["tokens_issued"][name]
        # from its first request to its last, one token per lifetime (and the first one)
        assert abs(fetched - (run_length / LIFETIME + 1)) <= 1 + (wall - run_length) / LIFETIME, (name, fetched)
        assert fetched >= 3
        # -v logs each token request, as it logs the API's, with the account and never the token
        logged = [
            line for line in done.stderr.splitlines() if "/oauth2/token -> 200" in line and f"account={name} " in line
        ]
        assert len(logged) == fetched, (name, len(logged), fetched)
    print(f"run {run_length:.1f} s, wall {wall:.1f} s, tokens issued {stats['tokens_issued']}, expired 0")
    again = batchsync("plan", str(inventory), "--base-url", box.url, "--detailed-exitcode", env=env)
    assert again.returncode == 0, again.stdout[-1000:]  # every integration converged
    no_secret_anywhere({"stdout": done.stdout, "stderr": done.stderr, "report": report.read_text()}, {})


def test_a_wrong_client_secret_costs_one_token_request_and_only_its_account(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    limits = {"reads_per_minute": 60000, "writes_per_minute": 60000, "write_burst": 10}
    inventory = write_inventory(tmp_path, 20, limits, {})
    box = SandboxProcess(inventory, env_with(environment({})), "--seed", "4")
    sandbox_proc.append(box)
    wrong = {"east": "not-the-east-secret"}
    env = env_with(environment(wrong))
    report = tmp_path / "report.jsonl"
    done = batchsync("apply", str(inventory), "--base-url", box.url, "--report", str(report), env=env)
    assert done.returncode == 1, done.stderr[-2000:]
    rows, _ = read_report(report)
    east = [r for r in rows if r["account"] == "east"]
    assert len(east) == 20 and {r["result"] for r in east} == {"failed"}
    assert {r["error"]["kind"] for r in east} == {"credentials"}  # the client refused: issue 27
    assert all("invalid_client" in r["error"]["detail"] for r in east)
    # The account and where its client credentials come from are named, never their values.
    named = "account 'east': the client credentials (env:EAST_ID and env:EAST_SECRET) were refused"
    assert all(named in r["error"]["detail"] for r in east)
    assert {r["result"] for r in rows if r["account"] != "east"} <= {"changed", "unchanged"}
    stats = box.stats()
    assert stats["token_requests"]["east"] == 1  # exactly one token request, then nothing
    assert sum(stats["requests"]["east"].values()) == 0  # and no API request at all
    no_secret_anywhere({"stdout": done.stdout, "stderr": done.stderr, "report": report.read_text()}, wrong)


def test_require_all_credentials_stops_the_run_when_a_token_endpoint_refuses_a_client(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    """Issue 27 counts a token endpoint refusing the client among credential failures, and
    --require-all-credentials keeps all or nothing: exit 2, and no API request sent."""
    limits = {"reads_per_minute": 60000, "writes_per_minute": 60000, "write_burst": 10}
    inventory = write_inventory(tmp_path, 5, limits, {})
    box = SandboxProcess(inventory, env_with(environment({})), "--seed", "4")
    sandbox_proc.append(box)
    wrong = {"east": "not-the-east-secret"}
    env = env_with(environment(wrong))
    report = tmp_path / "report.jsonl"
    done = batchsync(
        "apply", str(inventory), "--base-url", box.url, "--require-all-credentials", "--report", str(report), env=env
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--require-all-credentials: a token endpoint refused its client: credentials 401: account 'east'" in (
        done.stderr
    )
    assert "nothing was sent" in done.stderr and "Traceback" not in done.stderr
    stats = box.stats()
    assert all(sum(stats["requests"][name].values()) == 0 for name in ACCOUNTS)  # not one API request
    assert not report.exists()
    no_secret_anywhere({"stdout": done.stdout, "stderr": done.stderr}, wrong)
    # With every client accepted, the run goes on as without the flag.
    good = batchsync(
        "apply", str(inventory), "--base-url", box.url, "--require-all-credentials", env=env_with(environment({}))
    )
    assert good.returncode == 0, good.stdout + good.stderr


def test_apply_with_the_embedded_sandbox_serves_oauth2_accounts(tmp_path: Path) -> None:
    limits = {"reads_per_minute": 60000, "writes_per_minute": 60000, "write_burst": 10}
    inventory = write_inventory(tmp_path, 5, limits, {})
    env = env_with(environment({}))
    done = batchsync("apply", str(inventory), "--sandbox", "--format", "json", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["totals"]["failed"] == 0
