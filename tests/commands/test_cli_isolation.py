"""One client's trouble stays that client's (issue 14), as a user runs it: real processes
against a sandbox process over loopback.

A broken account spends its own failure budget; two runs never share an account's
budget on one host; a 429 storm is told once per rate change and named in the recap;
the metrics file keeps plan's and apply's series apart and records runs that never ran.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import SandboxProcess, batchsync, env_with, read_report, spawn, wait_for_lines
from inventory_factory import inventory_env, make_inventory
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture
def lock_env(tmp_path: Path) -> dict[str, str]:
    """A temp dir and an XDG_RUNTIME_DIR of the test's own: the locks of real runs on this
    machine are never seen, and both places the account locks go are exercised."""
    temp, xdg = tmp_path / "tmp", tmp_path / "xdg"
    temp.mkdir()
    xdg.mkdir(mode=0o700)
    return {"TMPDIR": str(temp), "XDG_RUNTIME_DIR": str(xdg)}


def samples(prom: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(prom.read_text()):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"series written twice: {key}"
            out[key] = s.value
    return out


def metric(prom: Path, name: str, **labels: str) -> float:
    found = [v for (n, ls), v in samples(prom).items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, (name, labels, found)
    return found[0]


# -- a broken account spends its own budget ------------------------------------------------


def test_a_broken_account_spends_its_own_failure_budget_and_the_others_converge(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], lock_env: dict[str, str]
) -> None:
    accounts = {"alpha": 12, "beta": 12, "gamma": 12, "broken": 30}
    cap = 4
    inv = make_inventory(tmp_path, accounts, limits={"broken": {"write_burst": cap}})
    env = env_with({**inventory_env(accounts), **lock_env})
    box = SandboxProcess(Path(inv.path), env, "--down-account", "broken")
    sandbox_proc.append(box)
    report = tmp_path / "report.jsonl"
    # Two attempts per request keep the test short; the budget counts integrations all the same.
    result = batchsync(
        "apply",
        inv.path,
        "--base-url",
        box.url,
        "--max-failures-per-account",
        "5",
        "--max-attempts",
        "2",
        "--report",
        str(report),
        env=env,
    )
    assert result.returncode == 1, result.stdout + result.stderr  # some failed; not 3: nothing stopped the run
    lines, [summary] = read_report(report)
    by_account: dict[str, list[dict[str, Any]]] = {}
    for row in lines:
        by_account.setdefault(row["account"], []).append(row)
    broken = by_account.pop("broken")
    failed = [r for r in broken if r["result"] == "failed"]
    skipped = [r for r in broken if r["result"] == "skipped"]
    assert len(broken) == 30 and len(failed) + len(skipped) == 30
    assert 5 <= len(failed) <= 5 + cap, len(failed)  # the overshoot is bounded by its in-flight cap
    assert all(r["error"]["kind"] == "server" for r in failed)
    assert all(r["reason"] == "account broken reached --max-failures-per-account 5" for r in skipped)
    for name, rows in by_account.items():
        assert len(rows) == 12 and {r["result"] for r in rows} <= {"changed", "unchanged"}, name
    assert summary["stopped"] is None
    # Converged: a plan of the healthy accounts finds nothing left to do.
    again = batchsync(
        "plan", inv.path, "--base-url", box.url, "--limit", "alpha,beta,gamma", "--detailed-exitcode", env=env
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert box.stats()["faults"]["alpha"] == 0


# -- one account, one run at a time, on this host ------------------------------------------


def second_inventory(first: Path, path: Path, rename: dict[str, str]) -> Path:
    """A copy of ``first`` whose accounts are renamed: the same Sendcloud accounts (same
    keys) under other names, as a colleague's copy of the inventory would have them."""
    doc = json.loads(first.read_text())
    doc["accounts"] = {rename.get(name, name): spec for name, spec in doc["accounts"].items()}
    for integration in doc["integrations"]:
        integration["account"] = rename.get(integration["account"], integration["account"])
    path.write_text(json.dumps(doc))
    return path


SLOW = {"writes_per_minute": 240, "write_burst": 1}  # 4 writes a second: 16 integrations take 4 s


def test_two_applies_on_two_inventories_naming_one_account_one_exits_75(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], lock_env: dict[str, str]
) -> None:
    accounts = {"acme": 16}
    inv = make_inventory(tmp_path, accounts, limits={"acme": SLOW})
    copy = second_inventory(Path(inv.path), tmp_path / "copy.json", {"acme": "client-a"})
    env = env_with({**inventory_env(accounts), **lock_env})
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    first = spawn("apply", inv.path, "--base-url", box.url, env=env)
    second = spawn("apply", str(copy), "--base-url", box.url, env=env)
    outs = {p.pid: p.communicate(timeout=60) for p in (first, second)}
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 75], outs
    loser, winner = (first, second) if first.returncode == 75 else (second, first)
    err = outs[loser.pid][1]
    name = "acme" if loser is first else "client-a"
    assert f"account {name} is in use by another batchsync run (pid {winner.pid}, started " in err
    assert "Traceback" not in err
    for secret in inventory_env(accounts).values():
        assert secret not in err
    # Every integration was written once, by the run that held the account.
    assert sorted(box.stats()["applied_posts"].values()) == [1] * 16
    # The locks, in both runtime dirs, are named by a hash: no key in any name or content.
    files = [p for d in lock_env.values() for p in Path(d).rglob("account-*.lock")]
    assert len(files) == 2
    for path in files:
        for secret in inventory_env(accounts).values():
            assert secret not in path.name and secret not in path.read_text()
        assert path.parent.stat().st_mode & 0o777 == 0o700


def test_two_applies_with_embedded_sandboxes_lock_alike(tmp_path: Path, lock_env: dict[str, str]) -> None:
    accounts = {"acme": 16}
    inv = make_inventory(tmp_path, accounts, limits={"acme": {"writes_per_minute": 20, "write_burst": 1}})
    copy = second_inventory(Path(inv.path), tmp_path / "copy.json", {"acme": "client-a"})
    env = env_with({**inventory_env(accounts), **lock_env})
    procs = [spawn("apply", path, "--sandbox", env=env) for path in (inv.path, str(copy))]
    outs = [p.communicate(timeout=60) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 75], outs
    loser = 0 if procs[0].returncode == 75 else 1
    assert f"is in use by another batchsync run (pid {procs[1 - loser].pid}" in outs[loser][1]


def test_two_applies_on_disjoint_accounts_both_run(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], lock_env: dict[str, str]
) -> None:
    accounts = {"acme": 16, "globex": 16}
    # Two writes a second: each run takes about 8 s, so they overlap even when one of them
    # starts seconds late on a loaded machine (with 4 s each, they once ran one after the other).
    slower = {"writes_per_minute": 120, "write_burst": 1}
    both = make_inventory(tmp_path, accounts, limits={"acme": slower, "globex": slower})
    env = env_with({**inventory_env(accounts), **lock_env})
    box = SandboxProcess(Path(both.path), env)
    sandbox_proc.append(box)
    doc = json.loads(Path(both.path).read_text())
    paths = []
    for name in accounts:
        part = {
            **doc,
            "accounts": {name: doc["accounts"][name]},
            "integrations": [i for i in doc["integrations"] if i["account"] == name],
        }
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(part))
    reports = [tmp_path / f"{name}.jsonl" for name in accounts]
    procs = [
        spawn("apply", str(p), "--base-url", box.url, "--report", str(r), env=env)
        for p, r in zip(paths, reports, strict=True)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    spans = []
    for report in reports:
        lines, _ = read_report(report)
        assert len(lines) == 16 and {r["result"] for r in lines} == {"changed"}
        spans.append((min(r["started_at"] for r in lines), max(r["ended_at"] for r in lines)))
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1, spans  # they ran side by side, not one after the other


def test_only_the_selected_accounts_are_locked_and_plan_takes_none(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], lock_env: dict[str, str]
) -> None:
    accounts = {"acme": 16, "globex": 2}
    inv = make_inventory(tmp_path, accounts, limits={"acme": {"writes_per_minute": 20, "write_burst": 1}})
    copy = second_inventory(Path(inv.path), tmp_path / "copy.json", {})
    env = env_with({**inventory_env(accounts), **lock_env})
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    report = tmp_path / "acme.jsonl"
    # A write every 3 s: acme's 16 integrations would hold its lock for about 45 s, longer
    # than the three commands below take on a loaded machine; it is stopped once they ran.
    first = spawn("apply", inv.path, "--base-url", box.url, "--limit", "acme", "--report", str(report), env=env)
    try:
        wait_for_lines(report, 2)  # the header and a first outcome: it holds its locks
        blocked = batchsync("apply", str(copy), "--base-url", box.url, env=env)
        assert blocked.returncode == 75 and f"account acme is in use by another batchsync run (pid {first.pid}" in (
            blocked.stderr
        )
        # Only the accounts left after --limit are locked: globex is free for another run...
        other = batchsync("apply", str(copy), "--base-url", box.url, "--limit", "globex", env=env)
        assert other.returncode == 0, other.stderr
        # ...and plan takes no lock at all.
        assert batchsync("plan", str(copy), "--base-url", box.url, "--limit", "acme", env=env).returncode == 0
        assert first.poll() is None  # all of that while the first run still held acme
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 3  # stopped by the signal, its report complete
    outcomes, summaries = read_report(report)
    assert len(summaries) == 1 and len(outcomes) == 16  # every integration recorded, the stopped ones skipped


# -- the 429 story, told once ------------------------------------------------------------


def test_a_429_storm_is_logged_once_per_rate_change_and_named_in_the_recap(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], lock_env: dict[str, str]
) -> None:
    accounts = {"acme": 30, "globex": 30}
    # Declared 5x what the sandbox gives: 3000 writes and 15000 reads a minute against 600 and 3000.
    declared = {"writes_per_minute": 3000, "reads_per_minute": 15000, "write_burst": 5}
    inv = make_inventory(tmp_path, accounts, limits={"acme": declared, "globex": declared})
    env = env_with({**inventory_env(accounts), **lock_env})
    sandbox_limits = ("--writes-per-minute", "600", "--reads-per-minute", "3000", "--write-burst", "5")
    box = SandboxProcess(Path(inv.path), env, *sandbox_limits)
    sandbox_proc.append(box)
    prom = tmp_path / "batchsync.prom"
    result = batchsync(
        "apply", inv.path, "--base-url", box.url, "--log-format", "json", "--metrics", str(prom), env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sum(box.stats()["throttled"].values()) > 0  # it was a storm
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    warnings = [row for row in logs if row["level"] == "WARNING" and "429" in row["message"]]
    assert warnings
    rates: dict[tuple[str, str], list[float]] = {}
    for row in warnings:
        rates.setdefault((row["account"], row["meter"]), []).append(row["rate_per_minute"])
        assert f"429 on {row['meter']}:" in row["message"]  # says which meter
    for key, seq in rates.items():
        # One line per change of rate: each lower than the one before, none repeated.
        assert all(b < a for a, b in itertools.pairwise(seq)), (key, seq)
        assert seq[-1] >= declared[f"{key[1]}_per_minute"] * 0.1  # never below the floor
    assert {account for account, _ in rates} == {"acme", "globex"}
    recap = result.stdout
    assert "declared limits too high (the API answered 429; fix them in the inventory):" in recap
    for (account, meter), seq in rates.items():
        declared_rate = declared[f"{meter}_per_minute"]
        worked = metric(prom, "batchsync_account_rate_per_minute", account=account, meter=meter)
        assert worked == pytest.approx(seq[-1], abs=0.51)  # the last rate logged is the one that worked
        line = (
            f"{account}: 429s on {meter}: declared {declared_rate}/min, worked at {worked:.0f}/min: "
            f"lower {meter}_per_minute"
        )
        assert line in recap, (line, recap)
        assert metric(prom, "batchsync_account_declared_rate_per_minute", account=account, meter=meter) == (
            declared_rate
        )


# -- metrics per command, and runs that never ran --------------------------------------------


def test_metrics_of_plan_apply_and_runs_that_never_started(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], lock_env: dict[str, str]
) -> None:
    accounts = {"acme": 3}
    inv = make_inventory(tmp_path, accounts)
    env = env_with({**inventory_env(accounts), **lock_env})
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    prom = tmp_path / "batchsync.prom"
    url = ("--base-url", box.url, "--metrics", str(prom))
    assert batchsync("plan", inv.path, *url, env=env).returncode == 0
    assert batchsync("apply", inv.path, *url, env=env).returncode == 0
    success = metric(prom, "batchsync_last_success_timestamp_seconds", command="apply")
    assert metric(prom, "batchsync_run_integrations", command="plan", result="changed") == 3
    assert metric(prom, "batchsync_run_integrations", command="apply", result="changed") == 3
    assert all(not name.endswith("_total") for name, _ in samples(prom))

    # An invalid inventory: exit 2, recorded; the last success stays.
    good = Path(inv.path).read_text()
    Path(inv.path).write_text('{"accounts": 3}')
    invalid = batchsync("apply", inv.path, *url, env=env)
    Path(inv.path).write_text(good)
    assert invalid.returncode == 2
    assert metric(prom, "batchsync_last_run_exit_code", command="apply") == 2
    assert metric(prom, "batchsync_last_success_timestamp_seconds", command="apply") == success
    assert metric(prom, "batchsync_run_integrations", command="apply", result="changed") == 3  # the last run's
    # A usage error once --metrics is known: the same.
    usage = batchsync("plan", inv.path, *url, "--max-failures", "lots", env=env)
    assert usage.returncode == 2 and "--max-failures lots" in usage.stderr
    assert metric(prom, "batchsync_last_run_exit_code", command="plan") == 2
    assert metric(prom, "batchsync_last_run_exit_code", command="apply") == 2  # apply's untouched by plan
    assert metric(prom, "batchsync_run_success", command="plan") == 1
    # A good apply sets its exit code back to 0 and keeps plan's 2.
    assert batchsync("apply", inv.path, *url, env=env).returncode == 0
    assert metric(prom, "batchsync_last_run_exit_code", command="apply") == 0
    assert metric(prom, "batchsync_last_run_exit_code", command="plan") == 2
    assert metric(prom, "batchsync_last_success_timestamp_seconds", command="apply") > success
    # Another inventory file of the same name, in another folder, would write the same series
    # (the label is the file's name): refused, named, the first one's series left as they are.
    (tmp_path / "us").mkdir()
    other = tmp_path / "us" / Path(inv.path).name
    other.write_text(good)
    before = prom.read_bytes()
    for command in ("apply", "plan"):
        clash = batchsync(command, str(other), "--base-url", box.url, "--metrics", str(prom), env=env)
        assert clash.returncode == 5, clash.stderr
        assert f"--metrics {prom} was not written: it holds the series of inventory 'inv' of {inv.path}" in clash.stderr
    broken = batchsync("apply", str(other), "--max-failures", "lots", "--metrics", str(prom), env=env)
    assert broken.returncode == 2 and "cannot write the metrics" in broken.stderr
    assert prom.read_bytes() == before
    # The same file by another path (a link to its folder) is the same inventory.
    (tmp_path / "current").symlink_to(Path(inv.path).parent)
    linked = tmp_path / "current" / Path(inv.path).name
    assert batchsync("plan", str(linked), "--base-url", box.url, "--metrics", str(prom), env=env).returncode == 0
    # An owner that is gone (the inventory moved) hands its label over.
    os.remove(inv.path)
    moved = batchsync("plan", str(other), "--base-url", box.url, "--metrics", str(prom), env=env)
    assert moved.returncode == 0, moved.stderr
    assert f'is "{other}"' in prom.read_text()


# -- the recap per client --------------------------------------------------------------------


def test_recap_by_tag_in_text_and_json(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    accounts = {"acme": 3, "globex": 2}
    extra = [
        {"id": 3001, "account": "acme", "status_set": "std", "tags": ["client-x", "acme"]},
        {"id": 3002, "account": "globex", "status_set": "std"},
    ]
    inv = make_inventory(tmp_path, accounts, extra=extra)
    env = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    text = batchsync("plan", inv.path, "--base-url", box.url, "--recap-by", "tag", env=env)
    assert text.returncode == 0, text.stderr
    recap = text.stdout[text.stdout.index("RECAP by tag") :].splitlines()
    rows = {line.split()[0]: line.split()[1:5] for line in recap[1:6]}
    assert rows == {
        "acme": ["unchanged=0", "to", "change=4", "failed=0"],
        "client-x": ["unchanged=0", "to", "change=1", "failed=0"],
        "globex": ["unchanged=0", "to", "change=2", "failed=0"],
        "(untagged)": ["unchanged=0", "to", "change=1", "failed=0"],
        "TOTAL": ["unchanged=0", "to", "change=7", "failed=0"],
    }
    assert "(an integration with several tags counts under each)" in recap
    doc = json.loads(
        batchsync("plan", inv.path, "--base-url", box.url, "--recap-by", "tag", "--format", "json", env=env).stdout
    )
    assert doc["recap_by"] == "tag"
    assert {tag: g["changed"] for tag, g in doc["groups"].items()} == {
        "acme": 4,
        "client-x": 1,
        "globex": 2,
        "(untagged)": 1,
    }
    default = json.loads(batchsync("plan", inv.path, "--base-url", box.url, "--format", "json", env=env).stdout)
    assert default["recap_by"] == "account" and set(default["groups"]) == {"acme", "globex"}
    bad = batchsync("plan", inv.path, "--base-url", box.url, "--recap-by", "client", env=env)
    assert bad.returncode == 2 and re.search(r"--recap-by: invalid choice", bad.stderr)


def test_a_report_another_run_writes_is_refused_untouched_and_the_run_exits_75(
    tmp_path: Path, lock_env: dict[str, str]
) -> None:
    # Two runs given one --report (a plan by hand beside the night's apply, two cron lines
    # in one second) mixed their lines into one file that no command could read after.
    import fcntl
    import os

    accounts = {"acme": 2}
    inv = make_inventory(tmp_path, accounts)
    env = env_with({**inventory_env(accounts), **lock_env})
    report, prom = tmp_path / "night.jsonl", tmp_path / "m.prom"
    night = b'{"header": true, "version": 2}\n{"integration_id": 1}\n'
    report.write_bytes(night)
    fd = os.open(report, os.O_WRONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the night's run, writing it
        for command in ("plan", "apply"):
            done = batchsync(command, inv.path, "--sandbox", "--report", str(report), "--metrics", str(prom), env=env)
            assert done.returncode == 75, done.stderr
            assert f"cannot write the report {report}: in use by another batchsync run" in done.stderr
            assert report.read_bytes() == night
            labels = frozenset({("inventory", "inv"), ("command", command)})
            assert samples(prom)[("batchsync_last_run_exit_code", labels)] == 75
    finally:
        os.close(fd)
    assert batchsync("apply", inv.path, "--sandbox", "--report", str(report), env=env).returncode == 0
    lines, summary = read_report(report)
    assert len(lines) == 2 and len(summary) == 1
