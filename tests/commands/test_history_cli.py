"""The run history as a user meets it: applies against a sandbox process, then
``batchsync history`` answering from the store, SQLite (the default, under the test's own
XDG_STATE_HOME) and PostgreSQL (a throwaway server, see pg_server)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import SandboxProcess, batchsync, env_with, example_inventory, read_report, spawn, wait_for_lines
from inventory_factory import inventory_env, make_inventory

from batchsync.history import schema

ACCOUNTS = {"acme": 6, "globex": 4}


def _json(result: Any) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> list[str]:
    """The ``--history`` arguments of each backend: none (the default SQLite file), or a
    PostgreSQL database of its own."""
    if request.param == "sqlite":
        return []
    return ["--history", request.getfixturevalue("pg_url")]


def applied_store(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], *sandbox_args: str
) -> tuple[dict[str, str], Path]:
    """A SQLite store an apply of ACCOUNTS has recorded one run in: (the env, its path)."""
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    box = SandboxProcess(Path(inv.path), env, *sandbox_args)
    sandbox_proc.append(box)
    store = tmp_path / "h.sqlite3"
    assert batchsync("apply", inv.path, "--base-url", box.url, "--history", str(store), env=env).returncode == 0
    return env, store


def test_two_applies_remember_a_failure_its_streak_and_the_changes(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], store: list[str]
) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    bad = inv.jobs[2].integration_id
    box = SandboxProcess(Path(inv.path), env, "--system-for", f"{bad}=woocommerce", "--in-sync", "0")
    sandbox_proc.append(box)
    report = tmp_path / "first.jsonl"

    first = batchsync("apply", inv.path, "--base-url", box.url, "--report", str(report), *store, env=env)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "new failures: 1" in first.stdout and f"{bad} (acme): new" in first.stdout
    second = batchsync("apply", inv.path, "--base-url", box.url, *store, env=env)
    assert second.returncode == 1, second.stdout + second.stderr

    runs = _json(batchsync("history", "runs", "--format", "json", *store, env=env))
    assert [r["exit_code"] for r in runs] == [1, 1]
    assert [r["command"] for r in runs] == ["apply", "apply"]
    assert runs[0]["id"] > runs[1]["id"]  # newest first
    assert runs[1]["counts"] == {"unchanged": 0, "changed": 9, "failed": 1, "skipped": 0}
    assert set(runs[0]) == {"id", "command", "inventory", "started_at", "ended_at", "exit_code", "counts", "shard"}
    first_run = runs[1]

    failing = _json(batchsync("history", "failing", "--format", "json", *store, env=env))
    assert len(failing) == 1
    assert failing[0]["integration_id"] == bad and failing[0]["account"] == "acme"
    assert failing[0]["runs"] == 2 and failing[0]["since"] == first_run["started_at"]
    assert failing[0]["kind"] == "not_supported" and failing[0]["detail"]
    assert set(failing[0]) == {"integration_id", "account", "name", "since", "runs", "kind", "detail"}

    # The second run's recap says the failure is an old one.
    assert "still failing: 1" in second.stdout
    assert f"{bad} (acme): failing since {first_run['started_at'][:10]}" in second.stdout
    assert "(2 runs)" in second.stdout

    lines, _ = read_report(report)
    changed = next(r for r in lines if r["result"] == "changed")
    timeline = _json(
        batchsync("history", "integration", str(changed["integration_id"]), "--format", "json", *store, env=env)
    )
    assert timeline["integration_id"] == changed["integration_id"]
    events = timeline["events"]
    assert [e["run"] for e in events] == [runs[0]["id"], first_run["id"]]  # newest first
    assert events[1]["result"] == "changed" and events[1]["at"] == first_run["started_at"]
    assert events[1]["changes"] == changed["changes"] and events[1]["changes"]
    assert events[0]["result"] == "unchanged" and events[0]["changes"] == []

    shown = batchsync("history", "show", str(first_run["id"]), *store, env=env)
    assert shown.returncode == 0 and f"{bad} (acme): failed" in shown.stdout

    text = batchsync("history", "failing", *store, env=env)
    assert f"! {bad} (acme): failing since" in text.stdout and "(2 runs)" in text.stdout


def test_a_recovery_is_named_and_ends_the_streak(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    bad = inv.jobs[1].integration_id
    broken = SandboxProcess(Path(inv.path), env, "--system-for", f"{bad}=woocommerce")
    sandbox_proc.append(broken)
    assert batchsync("apply", inv.path, "--base-url", broken.url, env=env).returncode == 1
    fixed = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(fixed)
    healed = batchsync("apply", inv.path, "--base-url", fixed.url, env=env)
    assert healed.returncode == 0, healed.stderr
    assert "recovered: 1" in healed.stdout and f"{bad} (acme): recovered (failing since" in healed.stdout
    assert _json(batchsync("history", "failing", "--format", "json", env=env)) == []


def test_no_history_records_nothing_and_json_run_output_carries_the_memory(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    bad = inv.jobs[0].integration_id
    box = SandboxProcess(Path(inv.path), env, "--system-for", f"{bad}=woocommerce")
    sandbox_proc.append(box)
    off = batchsync("apply", inv.path, "--base-url", box.url, "--no-history", env=env)
    assert off.returncode == 1 and "new failures" not in off.stdout
    store = Path(env["XDG_STATE_HOME"]) / "batchsync" / "history.sqlite3"
    assert not store.exists()
    on = _json_run(batchsync("apply", inv.path, "--base-url", box.url, "--format", "json", env=env))
    assert on["history"]["new"] == [bad]
    assert oct(store.stat().st_mode & 0o777) == "0o600"
    assert oct(store.parent.stat().st_mode & 0o777) == "0o700"


def _json_run(result: Any) -> Any:
    assert result.returncode == 1, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("where", ["sqlite-in-a-file", "postgresql-refused"])
def test_an_unreachable_history_costs_no_integration_and_exits_5(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], where: str
) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    if where == "sqlite-in-a-file":
        url, name = f"sqlite:///{blocker}/history.sqlite3", f"{blocker}/history.sqlite3"
    else:
        url, name = "postgresql://batchsync:s3cr3t-pw@127.0.0.1:1/history", "postgresql://127.0.0.1:1/history"
    report = tmp_path / "report.jsonl"
    result = batchsync("apply", inv.path, "--base-url", box.url, "--report", str(report), "--history", url, env=env)
    assert result.returncode == 5, result.stdout + result.stderr
    lines, summary = read_report(report)
    assert len(lines) == 10 and {r["result"] for r in lines} <= {"changed", "unchanged"}
    assert summary[0]["exit_code"] == 5
    assert f"--history {name} was not written" in result.stderr
    assert ("password on the command line" in result.stderr) is (where == "postgresql-refused")
    everything = result.stdout + result.stderr + report.read_text()
    assert "s3cr3t-pw" not in everything and "batchsync:s3cr3t" not in everything


def test_a_sandbox_run_records_nothing_unless_told_where(tmp_path: Path) -> None:
    """`apply --sandbox` is a rehearsal: its made-up results must not end the streaks of the
    real runs in the default file (a new user's demo marked a client's real failures
    'recovered'). With --history it records, as asked."""
    inv = example_inventory(tmp_path)
    env = env_with({})
    default = Path(os.environ["XDG_STATE_HOME"]) / "batchsync" / "history.sqlite3"
    assert batchsync("apply", str(inv), "--sandbox", "-q", env=env).returncode == 0
    assert not default.exists()
    store = tmp_path / "rehearsals.sqlite3"
    assert batchsync("apply", str(inv), "--sandbox", "-q", "--history", str(store), env=env).returncode == 0
    assert len(_json(batchsync("history", "runs", "--format", "json", "--history", str(store), env=env))) == 1


def test_the_inventory_names_the_store_by_reference_and_the_flag_wins(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    doc = json.loads(Path(inv.path).read_text())
    doc["history"] = {"url": "env:BATCHSYNC_HISTORY_URL"}
    Path(inv.path).write_text(json.dumps(doc))
    in_inventory, by_flag = tmp_path / "inv.sqlite3", tmp_path / "flag.sqlite3"
    env = env_with({**inventory_env(ACCOUNTS), "BATCHSYNC_HISTORY_URL": f"sqlite:///{in_inventory}"})
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    assert batchsync("apply", inv.path, "--base-url", box.url, env=env).returncode == 0
    assert batchsync("apply", inv.path, "--base-url", box.url, "--history", str(by_flag), env=env).returncode == 0
    count = {p: sqlite3.connect(p).execute("SELECT COUNT(*) FROM runs").fetchone()[0] for p in (in_inventory, by_flag)}
    assert count == {in_inventory: 1, by_flag: 1}
    assert not (Path(env["XDG_STATE_HOME"]) / "batchsync").exists()
    # A SQLite file named as it is, relative to the inventory (the commands run elsewhere: ROOT).
    Path(inv.path).write_text(json.dumps(dict(doc, history={"url": "sqlite:///beside.sqlite3"})))
    assert batchsync("apply", inv.path, "--base-url", box.url, env=env).returncode == 0
    assert sqlite3.connect(tmp_path / "beside.sqlite3").execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    # A PostgreSQL URL is a credential: never literal, and never quoted.
    Path(inv.path).write_text(json.dumps(dict(doc, history={"url": "postgresql://u:pw-xyz@db/x"})))
    bad = batchsync("validate", inv.path, env=env)
    assert bad.returncode == 2 and "history.url" in bad.stdout + bad.stderr
    assert "pw-xyz" not in bad.stdout + bad.stderr


def test_history_verbs_on_a_missing_store_and_bad_arguments(tmp_path: Path) -> None:
    env = env_with({})
    missing = batchsync("history", "runs", env=env)
    assert missing.returncode == 2 and "no history yet" in missing.stderr
    bad = batchsync("history", "runs", "--since", "yesterday", env=env)
    assert bad.returncode == 2 and "--since yesterday" in bad.stderr
    scheme = batchsync("history", "failing", "--history", "mysql://u:p@h/db", env=env)
    assert scheme.returncode == 2 and "u:p" not in scheme.stderr


def test_a_store_that_is_no_file_is_said_never_waited_on(tmp_path: Path) -> None:
    """A FIFO (SQLite's read-only open of one waits for a writer for ever), a folder, a
    device: each named, exit 2, at once; and a libpq keyword string given by reference is
    refused, not taken for a file name with its password in it."""
    env = env_with({})
    fifo, folder = tmp_path / "fifo.sqlite3", tmp_path / "folder.sqlite3"
    os.mkfifo(fifo)
    folder.mkdir()
    (tmp_path / "zero.sqlite3").symlink_to("/dev/zero")
    for store, what in ((fifo, "a FIFO"), (folder, "a folder"), (tmp_path / "zero.sqlite3", "a device or socket")):
        for verb in ("runs", "failing"):
            done = batchsync("history", verb, "--history", str(store), env=env)
            assert done.returncode == 2 and f"is {what}, not a file" in done.stderr, (verb, done.stderr)
    dsn = env_with({"HU": "host=db.internal user=batch password=pw-SECRET-5"})
    done = batchsync("history", "runs", "--history", "env:HU", env=dsn)
    assert done.returncode == 2 and "libpq keyword string" in done.stderr and "pw-SECRET-5" not in done.stderr
    inv = make_inventory(tmp_path, ACCOUNTS)
    doc = json.loads(Path(inv.path).read_text())
    Path(inv.path).write_text(json.dumps(dict(doc, history={"url": "env:HU"})))
    planned = batchsync("plan", inv.path, "--sandbox", env={**dsn, **inventory_env(ACCOUNTS)})
    assert planned.returncode == 2 and "libpq keyword string" in planned.stdout + planned.stderr
    assert "pw-SECRET-5" not in planned.stdout + planned.stderr
    assert not [p.name for p in tmp_path.iterdir() if "password" in p.name]


def test_a_store_with_values_no_batchsync_wrote_is_said_and_shown_safely(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    """A store is input like any file: a tampered or damaged one (a shared PostgreSQL is
    written by other hosts) gives a message naming it, never a traceback, and what a
    terminal would act on in it is spelled out."""
    env, store = applied_store(tmp_path, sandbox_proc)
    with sqlite3.connect(store) as db:
        db.execute("UPDATE runs SET command = ?", ("\x1b]0;PWNED\x07apply",))
    shown = batchsync("history", "runs", "--history", str(store), env=env)
    assert shown.returncode == 0 and "\x1b" not in shown.stdout and "\\x1b]0;PWNED" in shown.stdout, shown.stdout
    with sqlite3.connect(store) as db:
        db.execute("UPDATE runs SET command = ?", (b"\x00\xff",))
    broken = batchsync("history", "runs", "--history", str(store), env=env)
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert "did not write" in broken.stderr and "Traceback" not in broken.stderr, broken.stderr
    shown = batchsync("history", "show", "1", "--history", str(store), env=env)  # shown as it can be
    assert shown.returncode == 0 and "Traceback" not in shown.stderr and "\xff" not in shown.stdout


def test_a_kill_while_the_end_waits_for_the_history_loses_no_outcome_line(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    """Once the engine is done, the outputs' end may wait minutes (a locked or slow store:
    up to 120 s); a SIGKILL then (systemd's or Kubernetes' stop timeout) must not cost the
    report the outcomes of the run's last fraction of a second, still in its buffer."""
    import signal
    import time

    accounts = {"acme": 40, "globex": 40}
    limits = {a: {"reads_per_minute": 60000, "writes_per_minute": 60000, "write_burst": 100} for a in accounts}
    inv = make_inventory(tmp_path, accounts, limits=limits)
    env = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), env, "--in-sync", "0")
    sandbox_proc.append(box)
    store, report = tmp_path / "h.sqlite3", tmp_path / "r.jsonl"
    assert batchsync("plan", inv.path, "--base-url", box.url, "--history", str(store), "-q", env=env).returncode == 0
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the store: the run's end waits
    try:
        proc = spawn("apply", inv.path, "--base-url", box.url, "--history", str(store), "--report", str(report),
                     "-q", env=env)  # fmt: skip
        deadline = time.monotonic() + 60
        while sum(box.stats()["applied_posts"].values()) < 80 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # every outcome made, the run at its end, waiting for the store
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        holder.rollback()
        holder.close()
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert len([r for r in rows if "integration_id" in r]) == 80, len(rows)


def test_a_second_signal_while_the_outputs_open_names_them_lost_and_the_report_agrees(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    """Every integration done, the other outputs still being opened (the history store held
    by another process): a second signal stops the wait. What was not opened is named lost,
    the report's summary line says 5, and so does the process, not 3 ("stopped before every
    integration was done") beside a report saying 0."""
    import signal

    accounts = {"acme": 3}
    inv = make_inventory(tmp_path, accounts)
    env = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), env, "--in-sync", "0")
    sandbox_proc.append(box)
    store, report, html, junit = (tmp_path / n for n in ("h.sqlite3", "r.jsonl", "r.html", "r.xml"))
    assert batchsync("plan", inv.path, "--base-url", box.url, "--history", str(store), "-q", env=env).returncode == 0
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # the history's opening waits for it (up to its 10 s busy timeout)
    try:
        proc = spawn("apply", inv.path, "--base-url", box.url, "--history", str(store), "--report", str(report),
                     "--html", str(html), "--junit", str(junit), "-q", env=env)  # fmt: skip
        wait_for_lines(report, 1 + 3)  # the header and every outcome: the engine is done
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        holder.rollback()
        holder.close()
    assert proc.returncode == 5, err
    for flag, path in (("--junit", junit), ("--html", html), ("--history", store)):
        assert f"batchsync: {flag} {path} was not written: cut short by a second signal" in err, err
    assert "interrupted while the outputs were written" in err and "Traceback" not in err, err
    outcomes, [summary] = read_report(report)
    assert len(outcomes) == 3 and summary["exit_code"] == 5, summary
    assert not html.exists() and not junit.exists()


def test_a_run_cut_short_counts_the_outcomes_it_recorded(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    """A run's counts are written at its end: one killed before it (its row as a SIGKILL
    leaves it) is counted from the outcomes it recorded, not shown with zeros beside them."""
    env, store = applied_store(tmp_path, sandbox_proc, "--in-sync", "0")
    with sqlite3.connect(store) as db:
        db.execute("UPDATE runs SET ended_at = NULL, exit_code = NULL, unchanged = 0, changed = 0, failed = 0")
        recorded = db.execute("SELECT COUNT(*) FROM outcomes WHERE result = 'changed'").fetchone()[0]
    assert recorded == sum(ACCOUNTS.values())
    [run] = _json(batchsync("history", "runs", "--format", "json", "--history", str(store), env=env))
    assert run["exit_code"] is None and run["counts"]["changed"] == recorded, run
    shown = _json(batchsync("history", "show", str(run["id"]), "--format", "json", "--history", str(store), env=env))
    assert shown["counts"]["changed"] == recorded


def test_four_shards_write_into_one_postgresql_at_once_and_merge_records_once(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], pg_url: str
) -> None:
    accounts = {f"acct{i}": 5 for i in range(8)}
    inv = make_inventory(tmp_path, accounts)
    env = env_with(inventory_env(accounts))
    bad = inv.jobs[7].integration_id
    box = SandboxProcess(Path(inv.path), env, "--system-for", f"{bad}=woocommerce")
    sandbox_proc.append(box)
    reports = [tmp_path / f"shard-{i}.jsonl" for i in range(4)]
    hosts = [tmp_path / f"host-{i}" for i in range(4)]  # four machines: each its own copy, its own locks
    for host in hosts:
        host.mkdir()
        (host / "inv.json").write_bytes(Path(inv.path).read_bytes())
    procs = [
        spawn(
            "apply",
            str(hosts[i] / "inv.json"),
            "--base-url",
            box.url,
            "--shard",
            f"{i}/4",
            "--report",
            str(reports[i]),
            "--history",
            pg_url,
            env={**env, "TMPDIR": str(hosts[i])},
        )
        for i in range(4)
    ]
    codes = [p.wait(120) for p in procs]
    assert sorted(codes) == [0, 0, 0, 1], [p.stderr.read() for p in procs if p.stderr]

    import psycopg

    with psycopg.connect(pg_url.replace("postgresql:///", "postgresql:///", 1)) as conn:
        groups = conn.execute("SELECT DISTINCT group_key FROM runs").fetchall()
        assert len(groups) == 1 and groups[0][0].startswith("shards:")
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (4,)
        assert conn.execute("SELECT COUNT(*) FROM outcomes").fetchone() == (40,)  # nothing lost
        assert conn.execute("SELECT integration_id, streak_runs FROM integration_state").fetchall() == [(bad, 1)]
        per_account = conn.execute("SELECT COUNT(*), SUM(unchanged + changed + failed) FROM run_accounts").fetchone()
        assert per_account == (8, 40)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(schema.LATEST,)]  # migrated once
    for again in (False, True):  # merging twice records the merged run once
        merged = batchsync("report", "merge", *map(str, reports), "--history", pg_url, env=env)
        assert merged.returncode == 1, merged.stderr
        assert ("has this merge already" in merged.stderr) is again
    runs = _json(batchsync("history", "runs", "--format", "json", "--history", pg_url, env=env))
    assert [r["command"] for r in runs].count("report merge") == 1
    assert sorted(r["shard"] for r in runs if r["command"] == "apply") == ["0/4", "1/4", "2/4", "3/4"]
    failing = _json(batchsync("history", "failing", "--format", "json", "--history", pg_url, env=env))
    assert [(f["integration_id"], f["runs"]) for f in failing] == [(bad, 1)]  # one night counts once


def test_a_run_and_the_merge_of_its_report_are_one_night_for_the_streaks(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    """A run without shards, then `report merge` of its report (the same nightly job with
    or without shards): one night of a failing shop, not two ('new', 1 run)."""
    accounts = {"acct0": 3}
    inv = make_inventory(tmp_path, accounts)
    env = env_with(inventory_env(accounts))
    bad = inv.jobs[1].integration_id
    box = SandboxProcess(Path(inv.path), env, "--system-for", f"{bad}=woocommerce")
    sandbox_proc.append(box)
    store, report = tmp_path / "h.sqlite3", tmp_path / "r.jsonl"
    done = batchsync("apply", inv.path, "--base-url", box.url, "--report", str(report), "--history", str(store),
                     env=env)  # fmt: skip
    assert done.returncode == 1, done.stderr
    merged = batchsync("report", "merge", str(report), "--history", str(store), env=env)
    assert merged.returncode == 1, merged.stderr
    assert f"{bad}" in merged.stdout and "(2 runs)" not in merged.stdout, merged.stdout
    failing = _json(batchsync("history", "failing", "--format", "json", "--history", str(store), env=env))
    assert [(f["integration_id"], f["runs"]) for f in failing] == [(bad, 1)]


def test_a_merge_before_every_shard_reported_does_not_stand_for_the_night(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    accounts = {"acct0": 3, "acct1": 3}
    inv = make_inventory(tmp_path, accounts)
    env = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    reports = [tmp_path / f"shard-{i}.jsonl" for i in range(2)]

    def shard(i: int) -> None:
        done = batchsync(
            "apply", inv.path, "--base-url", box.url, "--shard", f"{i}/2", "--report", str(reports[i]), env=env
        )
        assert done.returncode == 0, done.stderr

    def merge() -> int:
        return batchsync("report", "merge", *map(str, reports), env=env).returncode

    shard(0)
    reports[1].write_text("")  # the merge job ran before shard 1 had reported
    assert merge() == 3
    shard(1)
    assert merge() == 0  # recorded: the night's result is no longer the early merge's
    assert merge() == 0  # the same reports again: recorded once
    runs = _json(batchsync("history", "runs", "--format", "json", env=env))
    merges = [r for r in runs if r["command"] == "report merge"]
    assert sorted(r["exit_code"] for r in merges) == [0, 3]


def test_prune_deletes_old_runs(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    box = SandboxProcess(Path(inv.path), env)
    sandbox_proc.append(box)
    assert batchsync("apply", inv.path, "--base-url", box.url, env=env).returncode == 0
    store = Path(env["XDG_STATE_HOME"]) / "batchsync" / "history.sqlite3"
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE runs SET started_at = '2020-01-01T00:00:00.000Z'")
    assert batchsync("apply", inv.path, "--base-url", box.url, env=env).returncode == 0
    pruned = _json(batchsync("history", "prune", "--older-than", "90d", "--format", "json", env=env))
    assert pruned["runs"] == 1 and pruned["outcomes"] == 10
    assert len(_json(batchsync("history", "runs", "--format", "json", env=env))) == 1
    assert os.path.exists(store)


def test_an_apply_of_a_plan_with_health_records_the_plan_and_each_shops_health(
    tmp_path: Path, sandbox_proc: list[SandboxProcess], store: list[str]
) -> None:
    """The history says which plan an apply carried out (its path and sha256) and, with
    --with-health, each outcome's shop health, as the report does."""
    inv = make_inventory(tmp_path, ACCOUNTS)
    env = env_with(inventory_env(ACCOUNTS))
    sick = inv.jobs[1].integration_id
    box = SandboxProcess(Path(inv.path), env, "--in-sync", "0", "--exception-logs", f"{sick}=3")
    sandbox_proc.append(box)
    plan = tmp_path / "p.json"
    made = batchsync("plan", inv.path, "--base-url", box.url, "--out", str(plan), "--no-history", env=env)
    assert made.returncode == 0, made.stderr
    done = batchsync("apply", inv.path, "--base-url", box.url, "--plan", str(plan), "--with-health", *store, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    import hashlib

    sha = hashlib.sha256(plan.read_bytes()).hexdigest()
    newest = _json(batchsync("history", "runs", "--format", "json", "--limit", "1", *store, env=env))[0]
    run = _json(batchsync("history", "show", str(newest["id"]), "--format", "json", *store, env=env))
    assert run["plan"] == {"path": str(plan), "sha256": sha}
    healths = {o["integration_id"]: o["health"]["count"] for o in run["outcomes"]}
    assert healths == {j.integration_id: 3 if j.integration_id == sick else 0 for j in inv.jobs}
    text = batchsync("history", "show", str(newest["id"]), *store, env=env)
    assert f"carried out the plan {plan} (sha256 {sha})" in text.stdout
    events = _json(batchsync("history", "integration", str(sick), "--format", "json", *store, env=env))["events"]
    assert events[0]["health"]["count"] == 3
    # A run without a plan or health records neither.
    again = batchsync("apply", inv.path, "--base-url", box.url, *store, env=env)
    assert again.returncode == 0, again.stderr
    latest = _json(batchsync("history", "runs", "--format", "json", "--limit", "1", *store, env=env))[0]
    plain = _json(batchsync("history", "show", str(latest["id"]), "--format", "json", *store, env=env))
    assert "plan" not in plain and all("health" not in o for o in plain["outcomes"])


def test_dates_that_are_no_dates_never_prune_and_the_verbs_read_beside_a_writer(
    tmp_path: Path, sandbox_proc: list[SandboxProcess]
) -> None:
    """history prune --older-than 2026-99-99 compared as text was later than every run: it
    deleted them all. Dates not of the calendar, and ages past it, are usage errors. The
    reading verbs never write: they answer while a run holds the store's write lock, and
    --history takes a file: reference as the inventory's [history] url does."""
    env, store = applied_store(tmp_path, sandbox_proc)
    for args in (
        ("prune", "--older-than", "2026-99-99"),
        ("runs", "--since", "2026-13-45"),
        ("runs", "--since", "999999d"),
        ("prune", "--older-than", "99999999d"),
        ("show", "9223372036854775808"),
        ("runs", "--limit", "100000000000000000000000"),
    ):
        done = batchsync("history", *args, "--history", str(store), env=env)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done.stderr)
    assert len(_json(batchsync("history", "runs", "--format", "json", "--history", str(store), env=env))) == 1
    reference = tmp_path / "history.url"
    reference.write_text(f"sqlite:///{store}\n")
    held = sqlite3.connect(store, isolation_level=None)
    try:
        held.execute("BEGIN IMMEDIATE")  # a run writing: the reading verbs do not wait for it
        done = batchsync("history", "runs", "--format", "json", "--history", f"file:{reference}", env=env)
        assert len(_json(done)) == 1
    finally:
        held.execute("ROLLBACK")
        held.close()
    assert not (tmp_path / "file:").exists()
