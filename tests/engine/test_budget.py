"""What a run leaves of each account's budget for the next run on this host (batchsync.engine.budget)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest
from cli_helpers import SandboxProcess, batchsync, env_with
from inventory_factory import inventory_env, make_inventory

from batchsync.engine import budget
from batchsync.engine.limits import Bucket
from batchsync.engine.lock import runtime_dirs


def test_a_record_is_read_back_with_its_age_and_garbage_is_ignored() -> None:
    files = {"acme": budget.file_name("acme-public", "https://panel.sendcloud.sc/api/v3"), "globex": "g.budget"}
    assert "acme-public" not in files["acme"] and files["acme"].endswith(".budget")
    budget.save({"acme": (2.5, 7.0), "unknown": (0.0, 0.0)}, files)
    (found,) = budget.load(files, now=time.time() + 3).items()
    name, (age, reads, writes) = found
    assert name == "acme" and 2.9 < age < 4 and (reads, writes) == (2.5, 7.0)
    assert budget.load(files, now=time.time() + budget.MAX_AGE + 5) == {}  # too old to say anything
    assert budget.load(files, now=time.time() - 60) == {}  # from the future: a clock set back
    directory = runtime_dirs()[0] / "budget"
    for garbage in (b"", b"{", b'{"at": "x", "reads": 1, "writes": 1}', b"[1, 2, 3]", b'{"at": 1e400}', b"\xff" * 9000):
        (directory / files["acme"]).write_bytes(garbage)
        assert budget.load(files) == {}
    (directory / files["acme"]).unlink()
    os.mkfifo(directory / files["acme"])  # no writer: opened as it was, a run would wait for ever
    assert budget.load(files) == {}


def test_two_names_for_one_account_record_the_less_that_is_left() -> None:
    files = {"a": "same.budget", "b": "same.budget"}
    budget.save({"a": (9.0, 1.0), "b": (3.0, 4.0)}, files)
    assert {k: v[1:] for k, v in budget.load(files).items()} == {"a": (3.0, 1.0), "b": (3.0, 1.0)}


def test_old_records_are_pruned_when_a_run_saves() -> None:
    budget.save({}, {})  # makes the folder
    directory = runtime_dirs()[0] / "budget"
    stale = directory / "account-stale.budget"
    stale.write_text("{}")
    long_ago = time.time() - budget.MAX_AGE - 60
    os.utime(stale, (long_ago, long_ago))
    budget.save({"acme": (1.0, 1.0)}, {"acme": "fresh.budget"})
    assert not stale.exists() and (directory / "fresh.budget").exists()


def test_a_symlinked_budget_folder_is_never_followed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``budget`` made a link to another folder: no record is written there, none read from
    there, and none of that folder's old ``*.budget`` files is deleted."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    old = elsewhere / "precious.budget"
    old.write_text("{}")
    long_ago = time.time() - budget.MAX_AGE - 60
    os.utime(old, (long_ago, long_ago))
    record = {"at": time.time(), "reads": 1.0, "writes": 2.0}
    (elsewhere / "acme.budget").write_text(json.dumps(record))
    directory = runtime_dirs()[0] / "budget"
    directory.symlink_to(elsewhere, target_is_directory=True)
    with caplog.at_level("WARNING", logger="batchsync.budget"):
        budget.save({"acme": (3.0, 4.0)}, {"acme": "acme.budget", "globex": "globex.budget"})
        assert budget.load({"acme": "acme.budget"}) == {}
    assert old.exists() and sorted(p.name for p in elsewhere.iterdir()) == ["acme.budget", "precious.budget"]
    assert json.loads((elsewhere / "acme.budget").read_text()) == record
    assert "not a directory (a symbolic link or a file)" in caplog.text


def test_a_record_that_is_a_link_or_nested_deep_is_ignored(tmp_path: Path) -> None:
    budget.save({}, {})  # makes the folder
    directory = runtime_dirs()[0] / "budget"
    target = tmp_path / "target.budget"
    target.write_text(json.dumps({"at": time.time(), "reads": 1.0, "writes": 2.0}))
    (directory / "linked.budget").symlink_to(target)
    assert budget.load({"acme": "linked.budget"}) == {}
    (directory / "deep.budget").write_bytes(b"[" * 2000 + b"]" * 2000)  # within the size cap
    assert budget.load({"acme": "deep.budget"}) == {}
    long_ago = time.time() - budget.MAX_AGE - 60
    os.utime(target, (long_ago, long_ago))
    budget.save({"acme": (1.0, 1.0)}, {"acme": "linked.budget"})  # replaces the link, never writes through it
    assert not (directory / "linked.budget").is_symlink() and target.exists()
    assert json.loads(target.read_text())["reads"] == 1.0


def test_a_bucket_carries_what_was_left_refilled_by_its_age() -> None:
    bucket = Bucket(600, 15, 0.0, safety=1.0)  # 10 a second
    bucket.carry(2.0, 0.5)
    assert bucket.tokens == 7.0
    bucket.carry(0.0, 100.0)
    assert bucket.tokens == 15.0  # never more than its capacity
    for left, age in ((float("nan"), 0.0), (1.0, -1.0), (1.0, float("inf"))):
        bucket.carry(left, age)
        assert bucket.tokens == 15.0  # ignored
    bucket.take()
    assert bucket.left(0.0) == 14.0


def test_plan_then_apply_then_apply_meet_no_429(tmp_path: Path, sandbox_proc: list[SandboxProcess]) -> None:
    """The second of two runs back to back used to start with a full burst the server's
    bucket no longer had: 429s, a slowed run, and a recap advising to lower limits that
    were right. 40 integrations in sync, read at Sendcloud's 1000 a minute, burst 15."""
    accounts = {"acme": 40}
    limits = {"acme": {"reads_per_minute": 1000, "writes_per_minute": 100, "write_burst": 15}}
    inv = make_inventory(tmp_path, accounts, limits=limits)
    env = env_with(inventory_env(accounts))
    box = SandboxProcess(Path(inv.path), env, "--in-sync", "1")
    sandbox_proc.append(box)
    for i, command in enumerate(("plan", "apply", "apply")):
        report = tmp_path / f"report-{i}.jsonl"
        done = batchsync(command, inv.path, "--base-url", box.url, "--report", str(report), "-q", env=env)
        assert done.returncode == 0, done.stderr
        summary = json.loads(report.read_text().splitlines()[-1])
        assert summary["accounts"]["acme"]["throttled"] == 0, (command, i, done.stderr)
        assert summary["limits_too_high"] == [] and "429" not in done.stderr
    assert box.stats()["throttled"] == {"acme": 0}  # the server's own count
    records = list(Path(tempfile.gettempdir()).glob("batchsync-*/budget/*.budget"))
    assert len(records) == 1 and set(json.loads(records[0].read_text())) == {"at", "reads", "writes"}
