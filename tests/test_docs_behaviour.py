"""What the manual says of today's behaviour where it is easy to get wrong, checked on the command line.

- docs/running.md (Sharding): shards of one inventory cannot run at once on one host; the
  second exits 75, on the inventory's lock.
- docs/run.md (OAuth2): the token endpoint follows --base-url, not an account's base_url
  nor defaults.base_url; without token_url it stays the production one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli_helpers import SandboxProcess, batchsync, env_with, spawn, wait_for_lines

STATUSES = [{"external_id": "1", "translations": [{"status": "Paid", "language": "en-gb"}]}]


def write_inventory(path: Path, accounts: dict[str, dict[str, object]], per_account: int) -> Path:
    doc: dict[str, object] = {
        "accounts": accounts,
        "status_sets": {"std": {"statuses": STATUSES}},
        "integrations": [
            {"id": 1000 + 100 * a + i, "account": name, "status_set": "std"}
            for a, name in enumerate(accounts)
            for i in range(per_account)
        ],
    }
    path.write_text(json.dumps(doc))
    return path


def test_two_shards_of_one_inventory_on_one_host_do_not_run_at_once(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    slow = {"writes_per_minute": 120, "write_burst": 1}  # two writes a second: the first shard runs a while
    accounts: dict[str, dict[str, object]] = {
        name: {"public_key": f"env:{name.upper()}_PUB", "secret_key": f"env:{name.upper()}_SEC", "limits": slow}
        for name in ("alpha", "bravo")
    }
    env = env_with({f"{n.upper()}_{k}": f"{n}-{k.lower()}" for n in accounts for k in ("PUB", "SEC")})
    inventory = write_inventory(tmp_path / "fleet.json", accounts, per_account=20)
    box = SandboxProcess(inventory, env, "--in-sync", "0")
    sandbox_proc.append(box)
    report = tmp_path / "shard-0.jsonl"
    first = spawn("apply", str(inventory), "--base-url", box.url, "--shard", "0/2", "--report", str(report), env=env)
    try:
        wait_for_lines(report, 2)  # its header and a first outcome: it holds its locks
        second = batchsync("apply", str(inventory), "--base-url", box.url, "--shard", "1/2", env=env)
        assert second.returncode == 75, second.stdout + second.stderr
        assert "holds the lock on" in second.stderr and "fleet.json" in second.stderr  # the inventory's lock
        assert f"pid {first.pid}" in second.stderr
    finally:
        first.kill()
        first.wait(10)


# A batchsync whose name lookups are recorded, and refused for every host but this machine:
# where a request would go is seen without anything leaving the machine.
RECORDING = """
import os, socket, sys
os.environ["BATCHSYNC_EVENT_LOOP"] = "asyncio"  # uvloop resolves names in C, past this recorder
real = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name not in ("127.0.0.1", "localhost", "::1"):
        print(f"LOOKUP {name}", file=sys.stderr, flush=True)
        raise socket.gaierror(socket.EAI_NONAME, "refused by the test")
    return real(host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo
from batchsync.cli import entry
sys.argv[0] = "batchsync"
entry()
"""


def recorded_batchsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RECORDING, *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_the_token_endpoint_follows_base_url_but_not_the_inventory_s_base_url(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    env = env_with({"OAUTH_ID": "oauth-client", "OAUTH_SECRET": "oauth-client-secret"})
    seeding = write_inventory(
        tmp_path / "seed.json",
        {"oauth": {"auth": "oauth2", "client_id": "env:OAUTH_ID", "client_secret": "env:OAUTH_SECRET"}},
        per_account=2,
    )
    box = SandboxProcess(seeding, env)
    sandbox_proc.append(box)
    account = {"auth": "oauth2", "client_id": "env:OAUTH_ID", "client_secret": "env:OAUTH_SECRET"}
    quick = ("--max-attempts", "1", "--timeout", "5", "--no-preflight")

    # The account's base_url points at the sandbox and it names no token_url: refused
    # before anything is sent (production's token endpoint would get the client secret).
    own = write_inventory(tmp_path / "own.json", {"oauth": {**account, "base_url": box.url}}, per_account=2)
    result = recorded_batchsync("plan", str(own), *quick, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "$.accounts.oauth.token_url" in result.stderr and box.url in result.stderr
    assert "LOOKUP" not in result.stderr
    assert sum(box.stats()["token_requests"].values()) == 0

    # So does defaults.base_url.
    doc = json.loads(own.read_text())
    del doc["accounts"]["oauth"]["base_url"]
    doc["defaults"] = {"base_url": box.url}
    (tmp_path / "defaults.json").write_text(json.dumps(doc))
    result = recorded_batchsync("validate", str(tmp_path / "defaults.json"), env=env)
    assert result.returncode == 2 and "defaults.base_url" in result.stderr + result.stdout
    assert "token_url" in result.stderr + result.stdout

    # --base-url moves it: {URL}/oauth2/token, the sandbox's.
    result = recorded_batchsync("plan", str(own), "--base-url", box.url, *quick, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LOOKUP" not in result.stderr
    assert sum(box.stats()["token_requests"].values()) == 1

    # And token_url beside base_url, as the manual advises.
    doc = json.loads(own.read_text())
    doc["accounts"]["oauth"]["token_url"] = f"{box.url}/oauth2/token"
    (tmp_path / "token-url.json").write_text(json.dumps(doc))
    result = recorded_batchsync("plan", str(tmp_path / "token-url.json"), *quick, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LOOKUP" not in result.stderr
