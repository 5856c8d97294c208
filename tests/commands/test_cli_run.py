"""The command line as a user runs it: real processes against a sandbox process over loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_helpers import (  # noqa: F401 - re-exported for the tests that import them from here
    ROOT,
    SandboxProcess,
    batchsync,
    env_with,
    read_report,
    spawn,
    wait_for_lines,
)
from inventory_factory import inventory_env, make_inventory

# The command line over loopback, on both event loops it can run on.
pytestmark = pytest.mark.both_loops

ACCOUNTS = {"acme": 12, "globex": 8}


def test_plan_then_apply_then_plan(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    box = SandboxProcess(Path(inv.path), env, "--in-sync", "0.5", "--seed", "4")
    sandbox_proc.append(box)

    plan = batchsync("plan", inv.path, "--base-url", box.url, "--detailed-exitcode", env=env)
    assert plan.returncode == 4, plan.stderr
    assert "will change" in plan.stdout and "RECAP" in plan.stdout
    assert box.stats()["requests"]["acme"]["POST"] == 0

    report = tmp_path / "report.jsonl"
    applied = batchsync("apply", inv.path, "--base-url", box.url, "--report", str(report), env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    lines, summary = read_report(report)
    assert sorted(r["integration_id"] for r in lines) == sorted(j.integration_id for j in inv.jobs)
    assert {r["result"] for r in lines} == {"changed", "unchanged"}
    assert len(summary) == 1 and summary[0]["totals"]["failed"] == 0
    for key in ("integration_id", "account", "result", "added", "changed", "removed", "attempts", "duration_ms"):
        assert key in lines[0]

    again = batchsync("plan", inv.path, "--base-url", box.url, "--detailed-exitcode", "--format", "json", env=env)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["totals"]["changed"] == 0 and doc["totals"]["unchanged"] == 20
    assert len(doc["outcomes"]) == 20


def test_limit_selects_by_id_account_and_tag(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    first = str(inv.jobs[0].integration_id)
    result = batchsync(
        "apply", inv.path, "--base-url", box.url, "--format", "json", "--limit", first, "--limit", "globex", env=env
    )
    assert result.returncode == 0, result.stderr
    ids = {o["integration_id"] for o in json.loads(result.stdout)["outcomes"]}
    assert ids == {int(first)} | {j.integration_id for j in inv.jobs if j.account == "globex"}
    nothing = batchsync("apply", inv.path, "--base-url", box.url, "--limit", "tag:nope", env=env)
    assert nothing.returncode == 2 and "no integration matches" in nothing.stderr


def test_sigterm_mid_run_gives_a_complete_report_and_exit_3(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    # 2 writes a second with a burst of 1: 30 integrations take 15 s unless stopped.
    accounts = {"acme": 30}
    inv = make_inventory(tmp_path, accounts, limits={"acme": {"writes_per_minute": 120, "write_burst": 1}})
    env = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    report = tmp_path / "report.jsonl"
    proc = spawn("apply", inv.path, "--base-url", box.url, "--report", str(report), env=env)
    wait_for_lines(report, 3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, out + err
    lines, summary = read_report(report)
    assert sorted(r["integration_id"] for r in lines) == sorted(j.integration_id for j in inv.jobs)
    results = {r["result"] for r in lines}
    assert "skipped" in results and "changed" in results
    assert all(r["reason"].startswith("interrupted") for r in lines if r["result"] == "skipped")
    assert summary and summary[0]["stopped"].startswith("interrupted")
    assert "RECAP" in out


def test_retry_failed_touches_exactly_the_failed(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    bad = [inv.jobs[3].integration_id, inv.jobs[15].integration_id]
    box = SandboxProcess(Path(inv.path), env, *(a for i in bad for a in ("--system-for", f"{i}=woocommerce")))
    sandbox_proc.append(box)
    report = tmp_path / "first.jsonl"
    first = batchsync("apply", inv.path, "--base-url", box.url, "--report", str(report), env=env)
    assert first.returncode == 1
    assert f"integration {bad[0]}" in first.stdout and "not_supported" in first.stdout
    before = box.stats()["requests"]
    second_report = tmp_path / "second.jsonl"
    second = batchsync(
        "apply",
        inv.path,
        "--base-url",
        box.url,
        "--retry-failed",
        str(report),
        "--report",
        str(second_report),
        env=env,
    )
    assert second.returncode == 1
    lines, _ = read_report(second_report)
    assert sorted(r["integration_id"] for r in lines) == sorted(bad)
    after = box.stats()["requests"]
    touched = sum(after[a]["GET"] - before[a]["GET"] for a in after)
    assert touched == 2  # one read each, nothing else was touched


def test_inventory_errors_send_nothing_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[accounts.a]\npublic_key = "plaintext-key"\nsecret_key = "env:NOPE"\n[[integrations]]\nid = 1\n')
    result = batchsync("apply", str(path), "--base-url", "http://127.0.0.1:9", env=env_with({}))
    assert result.returncode == 2
    assert "plaintext-key" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "literal secret" in result.stderr


def test_no_secret_in_any_output(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    accounts = {"acme": 4}
    inv = make_inventory(tmp_path, accounts)
    env = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), env, "--fault-502", "0.5", "--fault-reset", "0.2")
    sandbox_proc.append(box)
    wrong = env_with(inventory_env(accounts, secrets={"acme": "s3cr3t-that-is-wrong"}))
    report = tmp_path / "r.jsonl"
    for e in (env, wrong):
        result = batchsync("apply", inv.path, "--base-url", box.url, "--report", str(report), "-v", env=e)
        text = result.stdout + result.stderr + report.read_text()
        for value in (*inventory_env(accounts).values(), "s3cr3t-that-is-wrong"):
            assert value not in text
    assert result.returncode == 1 and "auth" in result.stdout


def start_slow_apply(tmp_path: Path, box: SandboxProcess, inv_path: str, env: dict[str, str]) -> subprocess.Popen[str]:
    report = tmp_path / "slow.jsonl"
    proc = spawn("apply", inv_path, "--base-url", box.url, "--report", str(report), env=env)
    wait_for_lines(report, 1)
    return proc


def test_a_second_run_exits_75_while_the_first_holds_the_lock(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    accounts = {"acme": 20}
    inv = make_inventory(tmp_path, accounts, limits={"acme": {"writes_per_minute": 120, "write_burst": 1}})
    env = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    first = start_slow_apply(tmp_path, box, inv.path, env)
    try:
        second = batchsync("apply", inv.path, "--base-url", box.url, env=env)
        assert second.returncode == 75, second.stderr
        assert f"pid {first.pid}" in second.stderr
        # plan takes no lock: looking never blocks the nightly apply, nor is blocked by it
        assert batchsync("plan", inv.path, "--base-url", box.url, env=env).returncode == 0
    finally:
        first.kill()  # SIGKILL: the kernel releases the flock, no stale lock file blocks
        first.wait(10)
    third = batchsync("apply", inv.path, "--base-url", box.url, "--limit", str(inv.jobs[0].integration_id), env=env)
    assert third.returncode == 0, third.stderr


def test_junit_metrics_quiet_and_json_logs(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    import xml.etree.ElementTree as ET

    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    bad = inv.jobs[2].integration_id
    box = SandboxProcess(Path(inv.path), env, "--system-for", f"{bad}=woocommerce", "--fault-503", "0.2")
    sandbox_proc.append(box)
    junit, metrics = tmp_path / "junit.xml", tmp_path / "batchsync.prom"
    result = batchsync(
        "apply",
        inv.path,
        "--base-url",
        box.url,
        "--junit",
        str(junit),
        "--metrics",
        str(metrics),
        "--quiet",
        "--log-format",
        "json",
        env=env,
    )
    assert result.returncode == 1
    assert result.stdout == ""  # --quiet: errors only, and those go to stderr
    logged = [json.loads(line) for line in result.stderr.splitlines()]  # JSON only: a log shipper's input
    failures = [row for row in logged if f"integration {bad}" in row["message"]]
    assert len(failures) == 1 and failures[0]["level"] == "ERROR"
    cases = ET.parse(junit).getroot().iter("testcase")
    by_name = {c.get("name"): c for c in cases}
    assert len(by_name) == 20
    assert by_name[f"integration {bad}"].find("failure") is not None
    prom = metrics.read_text()
    assert 'batchsync_run_integrations{inventory="inv",command="apply",result="failed"} 1' in prom
    assert "batchsync_run_success" in prom

    verbose = batchsync("plan", inv.path, "--base-url", box.url, "-v", "--log-format", "json", env=env)
    logs = [json.loads(line) for line in verbose.stderr.splitlines()]
    assert logs and all({"ts", "level", "message"} <= set(row) for row in logs)
    assert any("integration_id=" in row["message"] for row in logs)


def test_second_sigint_stops_at_once_and_still_flushes_the_report(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    accounts = {"acme": 10}
    inv = make_inventory(tmp_path, accounts)
    env = env_with(inventory_env(accounts))
    # every request hangs for a minute: only cancelling can end this run early
    box = SandboxProcess(Path(inv.path), env, "--fault-hang", "1.0", "--hang-seconds", "60")
    sandbox_proc.append(box)
    report = tmp_path / "report.jsonl"
    proc = spawn("apply", inv.path, "--base-url", box.url, "--report", str(report), "--grace-period", "30", env=env)
    deadline = time.monotonic() + 20
    # One request in flight is enough (the first, hanging, holds the run); waiting for ten
    # waited out the whole deadline, 20 s of every make test, as no second one ever starts.
    while time.monotonic() < deadline and sum(box.stats()["requests"]["acme"].values()) < 1:
        time.sleep(0.05)
    assert sum(box.stats()["requests"]["acme"].values()) >= 1, "no request reached the sandbox"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # the first one waits for the requests in flight (grace 30 s)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - started < 5  # the second one does not wait out the grace period
    assert proc.returncode == 3, out + err
    lines, summary = read_report(report)
    assert sorted(r["integration_id"] for r in lines) == sorted(j.integration_id for j in inv.jobs)
    assert {r["result"] for r in lines} == {"skipped"}
    assert summary and summary[0]["stopped"] == "interrupted by SIGINT"
    assert "RECAP" in out and "Traceback" not in err


def test_bad_base_url_and_selectors_are_usage_errors(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    bad = batchsync("plan", inv.path, "--base-url", "ftp://example", env=env)
    assert bad.returncode == 2 and "--base-url" in bad.stderr
    empty = batchsync("plan", inv.path, "--base-url", "http://127.0.0.1:9", "--limit", "!", env=env)
    assert empty.returncode == 2 and "empty selector" in empty.stderr


def _history_runs(store: Path, env: dict[str, str]) -> list[dict[str, object]]:
    done = batchsync("history", "runs", "--format", "json", "--history", str(store), env=env)
    assert done.returncode == 0, done.stderr
    runs: list[dict[str, object]] = json.loads(done.stdout)
    return runs


def test_sigterm_while_the_exception_logs_are_read_stops_at_once_with_every_output(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    # --with-health reads the logs before the engine starts (up to 90 s an account): a
    # SIGTERM there killed the process (143: no summary line, no metrics, no history end).
    accounts = {"acme": 4, "globex": 3}
    inv = make_inventory(tmp_path, accounts)
    env = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), env, "--endless-logs", "--latency", "0.1:0.2")
    sandbox_proc.append(box)
    report, prom, store = tmp_path / "r.jsonl", tmp_path / "m.prom", tmp_path / "h.sqlite3"
    outputs = ["--report", str(report), "--metrics", str(prom), "--history", str(store)]
    proc = spawn("apply", inv.path, "--base-url", box.url, "--with-health", *outputs, env=env)
    wait_for_lines(report, 1)  # the header: the run has begun, and reads the logs
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 10 and proc.returncode == 3, out + err
    lines, summary = read_report(report)
    assert sorted(r["integration_id"] for r in lines) == sorted(j.integration_id for j in inv.jobs)
    assert {r["result"] for r in lines} == {"skipped"}
    assert summary[0]["stopped"] == "interrupted by SIGTERM" and summary[0]["exit_code"] == 3
    assert "batchsync_last_run_exit_code" in prom.read_text() and " 3\n" in prom.read_text()
    [run] = _history_runs(store, env)
    assert run["exit_code"] == 3 and run["ended_at"]
    assert "SIGTERM before the run started" in err and "Traceback" not in err


def test_sigterm_while_the_outputs_are_written_lets_them_finish(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    # The run is done, its history store is slow to take the last outcomes (another
    # process's transaction): a SIGTERM there killed it with no summary, metrics or history.
    import sqlite3

    accounts = {"acme": 5}
    inv = make_inventory(tmp_path, accounts)
    env = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    report, prom, store = tmp_path / "r.jsonl", tmp_path / "m.prom", tmp_path / "h.sqlite3"
    outputs = ["--report", str(report), "--metrics", str(prom), "--history", str(store)]
    assert batchsync("plan", inv.path, "--base-url", box.url, "--history", str(store), env=env).returncode == 0
    other = sqlite3.connect(store, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        proc = spawn("apply", inv.path, "--base-url", box.url, *outputs, env=env)
        # Every integration read, and the writes answered for a while: the engine is done,
        # and the run's end waits for the store (the report's lines are still in its buffer).
        deadline, seen, still = time.monotonic() + 30, -1, 0
        while time.monotonic() < deadline and still < 10:
            counts = box.stats()["requests"].get("acme", {})
            now = sum(counts.values())
            still = still + 1 if now == seen and counts.get("GET", 0) >= len(inv.jobs) else 0
            seen = now
            time.sleep(0.1)
        assert still >= 10, "the run did not get through its integrations"
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert proc.poll() is None, proc.communicate()  # held: the outputs are still being written
    finally:
        other.execute("ROLLBACK")
        other.close()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err  # the run was done: a stop asked at its end changes nothing
    lines, summary = read_report(report)
    assert len(lines) == len(inv.jobs) and summary[0]["exit_code"] == 0
    assert [r["command"] for r in _history_runs(store, env)] == ["apply", "plan"]
